"""Stores that go away: a Milvus server killed under load, and a data worker whose Milvus is down.

Each runs against both Milvus servers this machine has, killed with SIGKILL and started again on their data:
milvus-lite's own server process (`milvus-lite server`, the engine of TRAJSTREAM_MILVUS_LOCAL=lite), and the
Milvus standalone server of the `milvus` package, started as `trajstream up` starts it (LocalMilvus).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.support.env import free_port
from tests.support.scored_landing import scored_by_id
from tests.support.streams import publish
from trajstream.consumers.data_worker import serve
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_sink import TrajectorySink
from trajstream.consumers.milvus_store import TRAJECTORIES, connect, ensure_collections, index_type, search_params
from trajstream.data_api import api_headers
from trajstream.milvus_server import LocalMilvus
from trajstream.parts import pid_file
from trajstream.pipeline import status
from trajstream.settings import Settings
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration


class MilvusServer:
    """`milvus-lite server` on a port and a data directory, as its own process."""

    def __init__(self, data_dir: Path, port: int, log: Path):
        self.data_dir, self.port, self.log = data_dir, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        binary = Path(sys.executable).parent / "milvus-lite"
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen([str(binary), "server", "--data-dir", str(self.data_dir), "--port",
                                          str(self.port)], stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        from pymilvus import MilvusClient

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                MilvusClient(self.uri, timeout=2).list_collections()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("milvus-lite server did not start:\n" + self.log.read_text()[-2000:]) from None
                time.sleep(0.2)

    def token(self) -> str:
        return ""  # milvus-lite's server takes no credentials

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class StandaloneServer:
    """The `milvus` package's server as `trajstream up` runs it, on a home and a port of its own."""

    def __init__(self, home: Path, port: int):
        self.server = LocalMilvus(Settings(home=home, milvus_server_port=port))
        self.uri = self.server.uri

    def start(self) -> None:
        self.server.start()

    def token(self) -> str:
        return self.server.token()

    def kill(self) -> None:
        assert self.server.kill() is not None, "no Milvus server was running to kill"

    def stop(self) -> None:
        self.server.stop()


Killable = MilvusServer | StandaloneServer


# The server's case takes 48 s on 2 cores (its start and restart): `make soak` runs it, `make test` the lite one.
@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def milvus_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Killable]:
    server: Killable
    if request.param == "lite":
        server = MilvusServer(tmp_path / "milvus", free_port(), tmp_path / "milvus.log")
    else:
        server = StandaloneServer(tmp_path / "milvus-home", free_port())
    try:
        yield server
    finally:
        server.stop()


def _scored(settings: Settings, codec: SingleObjectCodec, count: int) -> dict[str, bytes]:
    return scored_by_id(settings, codec, [f"Refund order {n} that arrived damaged" for n in range(count)])


def _searchable(settings: Settings, client: Any, embedder: Embedder, ids: list[str]) -> set[str]:
    """The ids a vector search finds (not only a lookup by key: the index must hold them)."""
    vector = embedder.encode_one("refund a damaged order")
    quoted = ", ".join(f'"{i}"' for i in ids)
    params = search_params(settings, index_type(client, TRAJECTORIES), len(ids))
    hits = client.search(TRAJECTORIES, data=[vector], limit=len(ids), filter=f"trajectory_id in [{quoted}]",
                         output_fields=["trajectory_id"], search_params=params)  # fmt: skip
    return {h["entity"]["trajectory_id"] for h in hits[0]}


@pytest.mark.timeout(600)
async def test_a_milvus_server_killed_under_load_and_started_again_loses_no_trajectory(
    topics: Settings, codec: SingleObjectCodec, milvus_server: Killable
) -> None:
    milvus_server.start()
    settings = topics.model_copy(update={"milvus_uri": milvus_server.uri, "sink_batch_rows": 8,
                                         "milvus_token": SecretStr(milvus_server.token()),
                                         "milvus_batch_seconds": 0.1, "sink_retry_attempts": 2,
                                         "sink_retry_backoff_s": 0.2, "sink_retry_max_backoff_s": 1.0})  # fmt: skip
    scored = await asyncio.to_thread(_scored, settings, codec, 48)
    ids = list(scored)
    client = connect(settings)
    ensure_collections(client, settings)
    embedder = Embedder()
    sink = TrajectorySink(settings, client, embedder, codec)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        for n, tid in enumerate(ids):  # under load: records keep coming while the server dies and returns
            await publish(settings, [("trajectories.scored", tid.encode(), scored[tid])])
            if n == 16:
                while sink.stats.trajectories < 8:  # some landed before the kill
                    await asyncio.sleep(0.1)
                milvus_server.kill()
                killed_at = time.monotonic()
            if n == 32:
                while sink.loop_stats.waiting_since is None:  # the sink noticed and waits, it did not stop
                    assert not task.done() and time.monotonic() - killed_at < 120
                    await asyncio.sleep(0.2)
                await asyncio.to_thread(milvus_server.start)
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 180
        while len(await asyncio.to_thread(_searchable, settings, client, embedder, ids)) < len(ids):
            assert not task.done() and time.monotonic() < deadline, sink.loop_stats
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
    assert await asyncio.to_thread(_searchable, settings, client, embedder, ids) == set(ids)
    assert sink.loop_stats.outages >= 1 and sink.loop_stats.dead_lettered == 0 and sink.loop_stats.poison == 0


async def test_a_data_worker_whose_milvus_is_down_still_lands_in_clickhouse_and_answers(
    topics: Settings, codec: SingleObjectCodec, milvus_server: Killable, tmp_path: Path, chdb_dir: Path
) -> None:
    """Milvus is down from the start: the ClickHouse sink and the API go on; Milvus catches up once it is up."""
    # In this process, so on the session's chDB directory (chDB opens one per process), a database of its own.
    settings = topics.model_copy(update={
        "home": tmp_path / "home", "milvus_uri": milvus_server.uri, "api_port": free_port(),
        "milvus_token": SecretStr(milvus_server.token()),
        "clickhouse_dsn": f"chdb://{chdb_dir}", "clickhouse_database": f"t{uuid.uuid4().hex[:10]}",
        "store_open_grace_s": 3.0,
        "sink_retry_backoff_s": 0.2, "sink_retry_max_backoff_s": 1.0,
    })  # fmt: skip
    scored = await asyncio.to_thread(_scored, settings, codec, 6)
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(serve(settings, stop, ready))
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        await asyncio.wait_for(ready.wait(), timeout=120)
        await publish(settings, [("trajectories.scored", t.encode(), v) for t, v in scored.items()])
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=api_headers(settings)) as http:

            async def landed(store: str) -> list[str] | None:
                answer = (await http.post("/exists", json={"ids": list(scored)})).json()
                # While the worker's first batch lands the API may answer an error: polled again, and shown
                # by the assertion below if it lasts.
                found: list[str] | None = answer.get("result", {}).get(store) if "result" in answer else None
                return found

            for _ in range(300):
                if len(await landed("clickhouse") or []) == len(scored):
                    break
                await asyncio.sleep(0.2)
            assert sorted(await landed("clickhouse") or []) == sorted(scored)
            exists = (await http.post("/exists", json={"ids": list(scored)})).json()
            assert exists["result"]["milvus"] is None  # Milvus is not open, and says so
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded" and not health["sinks"]["milvus"]["store"]["open"]
            recall = await http.post("/recall", json={"query": "refund"})
            assert recall.status_code == 503 and "Milvus" in recall.json()["error"]
            sql = await http.post(
                "/sql", json={"query": f"SELECT count() FROM {settings.clickhouse_database}.trajectories"}
            )
            assert sql.json()["result"]["rows"] == [[len(scored)]]
            # `trajstream status` (this process plays the data worker): the Milvus sinks' lag, and why.
            pid_file(settings, "data").parent.mkdir(parents=True, exist_ok=True)
            pid_file(settings, "data").write_text(str(os.getpid()))
            rows = {r.name.strip(): r for r in await asyncio.to_thread(status, settings)}
            for sink in ("milvus trajectories", "milvus decisions"):  # each Milvus sink's own group
                assert rows[sink].lag == len(scored) and "Milvus not open" in rows[sink].detail
            assert "oldest waiting" in rows["milvus decisions"].detail
            assert rows["clickhouse sink"].lag == 0
            assert f"{len(scored)} trajectories landed" in rows["clickhouse sink"].detail

            await asyncio.to_thread(milvus_server.start)
            for _ in range(600):
                if sorted(await landed("milvus") or []) == sorted(scored):
                    break
                await asyncio.sleep(0.2)
            assert sorted(await landed("milvus") or []) == sorted(scored)
            assert (await http.get("/health")).json()["status"] == "ok"
            for _ in range(100):  # the commit follows the upsert
                rows = {r.name.strip(): r for r in await asyncio.to_thread(status, settings)}
                if rows["milvus trajectories"].lag == rows["milvus decisions"].lag == 0:
                    break
                await asyncio.sleep(0.2)
            assert rows["milvus trajectories"].lag == 0 and "trajectories landed" in rows["milvus trajectories"].detail
            assert rows["milvus decisions"].lag == 0 and "decision points of" in rows["milvus decisions"].detail
            assert (await http.post("/recall", json={"query": "refund a damaged order"})).status_code == 200
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=60)
