"""Session fixtures: one real Kafka broker (KRaft) for the whole test run, on free ports.

When TRAJSTREAM_KAFKA_BOOTSTRAP names an external cluster, the tests use it instead.
Each test that needs topics gets its own topic prefix, so tests never see each other's events.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.env import SCHEMAS, free_port
from trajstream.broker import LocalBroker
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.schemas import SchemaCatalog


@pytest.fixture(scope="session")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.from_directory(SCHEMAS)


@pytest.fixture(scope="session")
def codec(catalog: SchemaCatalog) -> SingleObjectCodec:
    return SingleObjectCodec(catalog)


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at the session's broker (started here unless an external one is configured)."""
    home = tmp_path_factory.mktemp("trajstream-home")
    if os.environ.get("TRAJSTREAM_KAFKA_BOOTSTRAP"):
        yield Settings(home=home, topic_partitions=3)
        return
    settings = Settings(home=home, broker_port=free_port(), controller_port=free_port(), topic_partitions=3)
    broker = LocalBroker(settings)
    broker.start()
    try:
        yield settings
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chDB opens one data directory per process: every test shares it, each with its own database."""
    return tmp_path_factory.mktemp("clickhouse")


@pytest.fixture
async def topics(broker_settings: Settings) -> AsyncIterator[Settings]:
    """Settings with a fresh topic prefix whose topics exist."""
    settings = broker_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    await create_topics(settings)
    yield settings
