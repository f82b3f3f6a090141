"""The local Milvus server (trajstream.milvus_server): started as its own process, shown by `trajstream status`,
stopped cleanly by `trajstream down`, and started again on the same data."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support.env import env_for, free_port, trajstream_bin
from trajstream.consumers.milvus_store import MilvusError, connect
from trajstream.milvus_server import LocalMilvus, MilvusServerError
from trajstream.pipeline import down, status
from trajstream.settings import Settings

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(trajstream_bin()), *args], env=env_for(settings), capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _rows(uri: str, token: str) -> list[str]:
    from pymilvus import MilvusClient

    client = MilvusClient(uri, token=token)
    try:
        if not client.has_collection("kept"):
            return []
        client.load_collection("kept")
        return sorted(r["id"] for r in client.query("kept", filter='id != ""', output_fields=["id"],
                                                    consistency_level="Strong"))  # fmt: skip
    finally:
        client.close()


def _write(uri: str, token: str, ids: list[str]) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri, token=token)
    try:
        client.create_collection("kept", dimension=4, id_type="string", max_length=64, metric_type="COSINE")
        client.upsert("kept", [{"id": i, "vector": [1.0, 0.5, 0.25, float(n)]} for n, i in enumerate(ids)])
        client.flush("kept")
    finally:
        client.close()


# 75 s on 2 cores, so in `make soak`; `make test` starts the server in tests/e2e/test_pipeline_e2e.py.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_server_starts_shows_in_status_stops_and_starts_again_on_its_data(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, milvus_server_port=free_port(), milvus_local="server")
    started = _cli(settings, "milvus", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "running" in started.stdout and "2.3.5" in started.stdout
    server = LocalMilvus(settings)
    first = server.pid()
    assert first is not None and (tmp_path / "milvus-server" / "data").is_dir()
    try:
        rows = {row.name: row for row in status(settings, with_lag=False)}
        assert rows["milvus"].pid == first
        assert rows["milvus"].detail.startswith("ready;") and server.uri in rows["milvus"].detail
        _write(server.uri, server.token(), ["a", "b", "c"])
        assert _rows(server.uri, server.token()) == ["a", "b", "c"]

        messages: list[str] = []
        down(settings, messages.append, timeout_s=30.0, stop_broker=False)  # nothing else runs: only Milvus
        assert "milvus: stopped" in messages and server.pid() is None
        assert not any("killed" in m for m in messages)  # it stopped on SIGTERM, not by force
        stopped = _cli(settings, "milvus", "status")
        assert stopped.returncode == 1 and "not running" in stopped.stdout
        assert {row.name: row for row in status(settings, with_lag=False)}["milvus"].detail == "not running"

        again = _cli(settings, "milvus", "start")
        assert again.returncode == 0, again.stdout + again.stderr
        assert server.pid() not in (None, first)
        assert _rows(server.uri, server.token()) == ["a", "b", "c"]  # the same data, the same password
        assert _cli(settings, "milvus", "status").returncode == 0
    finally:
        server.stop()


@pytest.mark.timeout(300)
def test_the_server_refuses_requests_without_its_generated_root_password(tmp_path: Path) -> None:
    """2.3.5 listens on every interface: a request must carry the password generated for this home."""
    import grpc
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    server = LocalMilvus(Settings(home=tmp_path, milvus_server_port=free_port()))
    server.start()
    try:
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert server.token() != "root:Milvus" and len(server.token()) > 30
        assert MilvusClient(server.uri, token=server.token()).list_collections() is not None
        for token in ("", "root:Milvus", "root:wrong"):
            # pymilvus' words for it: at the connection, or at the first call
            with pytest.raises((MilvusException, grpc.RpcError), match=r"illegal connection params|auth check failure"):
                MilvusClient(server.uri, token=token, timeout=10).list_collections()
        wrong = Settings(home=tmp_path, milvus_uri=server.uri, milvus_token=SecretStr("root:wrong"))
        with pytest.raises(MilvusError, match="TRAJSTREAM_MILVUS_TOKEN") as refused:
            connect(wrong)
        assert "root:wrong" not in str(refused.value)
        secret = server.token().split(":", 1)[1]
        assert secret not in server.logs(10_000)
    finally:
        server.stop()


def test_a_taken_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(home=tmp_path, milvus_server_port=port)
        with pytest.raises(MilvusServerError, match=rf"127.0.0.1:{port} is already in use.*TRAJSTREAM_MILVUS_SERVER"):
            LocalMilvus(settings).start()
        result = _cli(settings, "milvus", "start")
    assert result.returncode == 1
    assert "already in use" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "milvus-server" / "milvus.pid").exists()


def test_a_pid_file_naming_another_process_is_not_the_server(tmp_path: Path) -> None:
    server = LocalMilvus(Settings(home=tmp_path, milvus_server_port=free_port()))
    server.state_dir.mkdir(parents=True)
    server.pid_file.write_text(str(os.getpid()))  # alive, but not a Milvus server
    assert server.pid() is None
    assert not server.status().running and server.status().detail == "not running"
    assert server.stop() is False  # and nothing was signalled
