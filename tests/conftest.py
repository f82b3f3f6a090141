"""Session fixtures: one real Kafka broker (KRaft) for the whole test run, on free ports.

When TRAJSTREAM_KAFKA_BOOTSTRAP names an external cluster, the tests use it instead.
Each test that needs topics gets its own topic prefix, so tests never see each other's events.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from trajstream.broker import LocalBroker
from trajstream.codec import SingleObjectCodec
from trajstream.schemas import SchemaCatalog
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.topics import create_topics

SCHEMAS = PROJECT_ROOT / "schemas"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture
async def topics(broker_settings: Settings) -> AsyncIterator[Settings]:
    """Settings with a fresh topic prefix whose topics exist."""
    settings = broker_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    await create_topics(settings)
    yield settings


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a `trajstream` subprocess that talks to the same broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJSTREAM_")}
    env.update(
        {
            "TRAJSTREAM_HOME": str(settings.home),
            "TRAJSTREAM_BROKER_PORT": str(settings.broker_port),
            "TRAJSTREAM_CONTROLLER_PORT": str(settings.controller_port),
            "TRAJSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "TRAJSTREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
        }
    )
    if settings.kafka_bootstrap:
        env["TRAJSTREAM_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    return env


def trajstream_bin() -> Path:
    """The console script installed beside the interpreter running the tests."""
    return Path(sys.executable).parent / "trajstream"
