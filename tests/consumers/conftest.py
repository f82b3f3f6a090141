"""The two Milvus backends the Milvus tests run against: milvus-lite (a file per test) and the Milvus server
of the `milvus` package (started once per session under tmp, a database per test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support.env import free_port
from trajstream.milvus_server import LocalMilvus
from trajstream.settings import Settings

BACKENDS = ("lite", "server")

# Gives settings a Milvus of its own on the backend under test.
MilvusOf = Callable[[Settings], Settings]


@pytest.fixture(scope="session")
def local_milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMilvus]:
    """One Milvus server for the session, as `trajstream up` starts it (its own process, its own home)."""
    settings = Settings(home=tmp_path_factory.mktemp("milvus-server-home"), milvus_server_port=free_port())
    server = LocalMilvus(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def milvus_of(request: pytest.FixtureRequest, tmp_path: Path) -> MilvusOf:
    """``milvus_of(settings)``: ``settings`` with an empty Milvus, on milvus-lite or on the session's server."""
    if request.param == "lite":
        path = str(tmp_path / "milvus.db")
        return lambda settings: settings.model_copy(update={"milvus_uri": path})
    server: LocalMilvus = request.getfixturevalue("local_milvus")
    from pymilvus import MilvusClient

    database = f"t{uuid.uuid4().hex[:10]}"  # the collections' names are fixed: a database keeps tests apart
    admin = MilvusClient(server.uri, token=server.token())
    admin.create_database(database)
    admin.close()
    token = SecretStr(server.token())
    return lambda settings: settings.model_copy(
        update={"milvus_uri": f"{server.uri}/{database}", "milvus_token": token}
    )
