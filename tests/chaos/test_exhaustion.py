"""Resources run out (issue 17): the broker's disk, chDB's disk, a worker's memory.

In each case the pipeline stops taking what it cannot store, says so in `trajstream status` and the logs,
loses nothing that was acknowledged, and resumes once the resource returns. The small disks are tmpfs
mounts (root only: the tests skip without it); chDB opens one data directory per process, so the chDB on
a small disk lives in a `trajstream worker data` subprocess, never in this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.env import env_for, free_port, trajstream_bin
from tests.support.small_fs import fill, free_bytes, grow, small_filesystem
from tests.support.streams import publish, read
from trajstream.broker import LocalBroker
from trajstream.data_api import api_headers
from trajstream.errors import BrokerError
from trajstream.parts import pid_file, ready_pid
from trajstream.pipeline import PartStatus, status
from trajstream.reader import read_topic
from trajstream.settings import Settings
from trajstream.streams.assembly import Assembler, Input
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream.topics import EVENTS_TOPIC, TOPICS, create_topics
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ToolCall, end_record, start_record, turn_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rows(settings: Settings) -> dict[str, PartStatus]:
    return {row.name.strip(): row for row in status(settings)}


def _wait(what: str, check: Any, timeout_s: float, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (got := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f}s"
        time.sleep(interval_s)
    return got


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the broker's disk -------------------------------------------------------------------------------------
async def _produce_until_refused(settings: Settings, acked: set[bytes], tried: list[bytes], errors: list[str]) -> None:
    """64 KiB records, 16 in flight, until the broker refuses some. An acknowledgement is waited for 20 s at most:
    aiokafka keeps retrying a batch whose broker is gone (that wait is the producer's error, nothing acked)."""
    producer = AIOKafkaProducer(**settings.durable_producer_options(), request_timeout_ms=10_000)
    await producer.start()
    topic = settings.topic(EVENTS_TOPIC)
    try:
        n = 0
        while not errors and n < 5000:
            keys = [f"r{n + i:05d}".encode() for i in range(16)]
            n += len(keys)
            tried.extend(keys)
            sent = []
            for key in keys:
                try:
                    sent.append((key, await producer.send(topic, os.urandom(64 * 1024), key=key)))
                except Exception as exc:  # refused before it left: nothing was acknowledged
                    errors.append(f"{type(exc).__name__}: {exc}")
            for key, future in sent:
                try:
                    await asyncio.wait_for(future, 20)
                    acked.add(key)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):  # its pending batches would wait for the broker for ever
            await asyncio.wait_for(producer.stop(), 5)


async def _produce_again(settings: Settings, keys: list[bytes]) -> None:
    producer = AIOKafkaProducer(**settings.durable_producer_options())
    await producer.start()
    try:
        for key in keys:
            await producer.send_and_wait(settings.topic(EVENTS_TOPIC), b"again", key=key)
    finally:
        await producer.stop()


async def _keys(settings: Settings) -> list[bytes]:
    return [r.key or b"" async for r in read_topic(settings, settings.topic(EVENTS_TOPIC))]


@pytest.mark.timeout(300)
def test_broker_disk_full_refuses_producers_says_why_and_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    # Not a coroutine: LocalBroker starts and answers `status` with asyncio.run of its own.
    started = time.monotonic()
    settings = Settings(home=tmp_path / "broker-home", broker_port=free_port(), controller_port=free_port(),
                        topic_partitions=1, topic_prefix="full.")  # fmt: skip
    broker = LocalBroker(settings)
    with small_filesystem(broker.data_dir, "24m") as disk:
        try:
            broker.start()
            events = next(t for t in TOPICS if t.name == EVENTS_TOPIC)
            asyncio.run(create_topics(settings, (events,)))
            acked: set[bytes] = set()
            tried: list[bytes] = []
            errors: list[str] = []
            asyncio.run(_produce_until_refused(settings, acked, tried, errors))
            filled_at = time.monotonic()
            assert errors and len(acked) >= 50, (len(acked), errors[:3])
            print(f"broker disk: {len(acked)} of {len(tried)} acknowledged; first errors: {errors[:3]}")
            # Kafka takes the failed log dir offline; with its only one (and the metadata log) gone it halts.
            _wait("the broker gone", lambda: broker.pid() is None, 60)
            log = broker.logs(5000)
            assert "No space left on device" in log, log[-3000:]
            row = _rows(settings)["broker"]
            assert row.pid is None and "not running: its data dir" in row.detail, row
            assert "is full" in row.detail and "disk full (No space left on device)" in row.detail, row
            with pytest.raises(BrokerError, match=r"not starting the broker: its data dir .* is full"):
                broker.start()  # on a disk still full it would only fail again

            grow(disk, "256m")
            broker.start()  # on the same data
            assert "disk full" not in _rows(settings)["broker"].detail
            kept = asyncio.run(_keys(settings))
            lost = acked - set(kept)
            assert not lost, f"{len(lost)} acknowledged records lost: {sorted(lost)[:5]}"
            assert set(kept) <= set(tried)
            asyncio.run(_produce_again(settings, [f"again{n}".encode() for n in range(10)]))
            assert {f"again{n}".encode() for n in range(10)} <= set(asyncio.run(_keys(settings)))
            print(f"broker disk full: filled in {filled_at - started:.0f}s, {time.monotonic() - started:.0f}s in all")
        finally:
            broker.stop()


# --- chDB's disk ------------------------------------------------------------------------------------------
def _scored(settings: Settings, codec: SingleObjectCodec, count: int) -> dict[str, bytes]:
    pipeline = Pipeline(settings, codec)
    out: dict[str, bytes] = {}
    for n in range(count):
        tid, events = tool_trajectory(codec, f"Replace the broken kettle of order {n}", "lookup", "success", "success")
        (out[tid],) = pipeline.run(events)
    return out


@contextmanager
def _data_worker(settings: Settings, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`trajstream worker data` on ``settings`` (its own home, chDB and milvus-lite), ready when this returns."""
    with open(log, "ab") as handle:
        proc = subprocess.Popen([str(trajstream_bin()), "worker", "data"], env={**env_for(settings), **env},
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        pid_file(settings, "data").parent.mkdir(parents=True, exist_ok=True)
        pid_file(settings, "data").write_text(str(proc.pid))  # what the supervisor would write: `status` reads it

        def ready() -> bool:
            assert proc.poll() is None, f"the data worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            return ready_pid(settings, "data") == proc.pid

        _wait("the data worker ready", ready, 150)
        yield proc
    finally:
        _stop(proc)


def _sql(settings: Settings, query: str) -> list[list[Any]]:
    answer = httpx.post(f"http://127.0.0.1:{settings.api_port}/sql", json={"query": query},
                        headers=api_headers(settings), timeout=30).json()  # fmt: skip
    assert "result" in answer, answer
    rows: list[list[Any]] = answer["result"]["rows"]
    return rows


def _landed(settings: Settings) -> tuple[int, int]:
    """Rows of trajectories, and distinct trajectories, in the worker's ClickHouse."""
    ((rows, distinct),) = _sql(settings, "SELECT count(), uniqExact(trajectory_id) FROM trajstream.trajectories")
    return int(rows), int(distinct)


def _health(settings: Settings) -> dict[str, Any]:
    health: dict[str, Any] = httpx.get(f"http://127.0.0.1:{settings.api_port}/health", timeout=10).json()
    return health


@pytest.mark.timeout(300)
async def test_chdb_disk_full_stops_the_sink_without_losing_or_dead_lettering_and_it_lands_all_once_space_returns(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    started = time.monotonic()
    with small_filesystem(tmp_path / "chdb-disk", "64m") as disk:
        settings = topics.model_copy(update={
            "home": tmp_path / "home", "api_port": free_port(), "milvus_local": "lite",
            "clickhouse_dsn": f"chdb://{disk / 'clickhouse'}",
        })  # fmt: skip
        env = {"TRAJSTREAM_CLICKHOUSE_DSN": settings.clickhouse_dsn or "", "TRAJSTREAM_SINK_BATCH_ROWS": "8",
               "TRAJSTREAM_SINK_RETRY_ATTEMPTS": "2", "TRAJSTREAM_SINK_RETRY_BACKOFF_S": "0.2",
               "TRAJSTREAM_SINK_RETRY_MAX_BACKOFF_S": "2"}  # fmt: skip
        scored = await asyncio.to_thread(_scored, settings, codec, 30)
        ids = list(scored)
        log = tmp_path / "data-worker.log"
        with _data_worker(settings, log, **env) as worker:
            # Some land while there is space.
            await publish(settings, [("trajectories.scored", t.encode(), scored[t]) for t in ids[:10]])
            await asyncio.to_thread(_wait, "the first 10 landed", lambda: _landed(settings) == (10, 10), 60)

            ballast = fill(disk)
            assert free_bytes(disk) < 4096, free_bytes(disk)
            # Acknowledged by the broker: from here the pipeline owes them to ClickHouse.
            await publish(settings, [("trajectories.scored", t.encode(), scored[t]) for t in ids[10:]])

            def full_shown() -> PartStatus | None:
                row = _rows(settings)["clickhouse sink"]
                return row if "ClickHouse disk full for" in row.detail else None

            row = await asyncio.to_thread(_wait, "status says disk full", full_shown, 60)
            assert row.lag == 20, row  # nothing of what it could not store was committed
            assert "NOT_ENOUGH_SPACE" in row.detail or "No space left" in row.detail, row
            health = await asyncio.to_thread(_health, settings)
            assert health["status"] == "degraded"
            assert health["sinks"]["clickhouse"]["loop"]["cause"] == "disk full"
            await asyncio.sleep(8)  # it keeps waiting: with back-off, not in a tight loop, not dying
            assert worker.poll() is None
            text = log.read_text(errors="replace")
            waits = text.count("ClickHouse disk full; the")
            assert 2 <= waits <= 20, f"{waits} retries in ~10 s:\n{text[-3000:]}"
            assert "(nothing is committed)" in text
            assert await asyncio.to_thread(_landed, settings) == (10, 10)
            loop = (await asyncio.to_thread(_health, settings))["sinks"]["clickhouse"]["loop"]
            assert loop["dead_lettered"] == 0 and loop["poison"] == 0, loop

            grow(disk, "256m")  # space returns; the ballast stays
            await asyncio.to_thread(_wait, "all 30 landed", lambda: _landed(settings) == (30, 30), 90)
            assert set(map(tuple, _sql(settings, "SELECT trajectory_id FROM trajstream.trajectories"))) == {
                (t,) for t in ids
            }

            def caught_up() -> PartStatus | None:
                row = _rows(settings)["clickhouse sink"]
                return row if row.lag == 0 else None

            row = await asyncio.to_thread(_wait, "status back to landing", caught_up, 60)
            assert "30 trajectories landed" in row.detail and "disk full" not in row.detail, row
            loop = (await asyncio.to_thread(_health, settings))["sinks"]["clickhouse"]["loop"]
            assert loop["dead_lettered"] == 0 and loop["poison"] == 0 and loop["outages"] == 1, loop
            assert "ClickHouse takes writes again" in log.read_text(errors="replace")
    print(f"chDB disk full: ballast {ballast} bytes, {time.monotonic() - started:.0f}s")


# --- a worker's memory --------------------------------------------------------------------------------------
_SUPERVISE_ENRICH = """
from trajstream.parts import PARTS
from trajstream.settings import Settings
from trajstream.supervisor import Supervisor

Supervisor(Settings(), parts=tuple(p for p in PARTS if p.name == "enrich")).run()
"""


def _big_request(settings: Settings, codec: SingleObjectCodec, tid: str, text_bytes: int) -> bytes:
    """An enrichment request as assembly makes it, for a trajectory of three turns of ``text_bytes`` each."""
    assembler = Assembler(settings, codec)
    events = [codec.encode("trajectory_start", start_record(tid, "Summarise the ledger", agent_id="a"))]
    for i in range(3):
        text = " ".join(f"entry{i}-{n} order {n} refunded" for n in range(text_bytes // 32))
        events.append(
            codec.encode(
                "turn",
                turn_record(tid, i, [Message.text("user", text), Message("assistant", ToolCall("sum", f"c{i}", {}))]),
            )
        )
    events.append(codec.encode("trajectory_end", end_record(tid, "success", turn_count=3)))
    state, outputs = None, []
    for i, value in enumerate(events):
        result = assembler.handle(Input(settings.topic("events"), 0, i, tid.encode(), value, int(time.time() * 1000)),
                                  state)  # fmt: skip
        state, outputs = result.state or state, result.outputs
    (request,) = [o.value for o in outputs if o.topic == settings.topic("enrichment.requests")]
    return request


def _vm_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmPeak for {pid}")


def _limit(pid: int, limit: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skip(
    reason="unfinished: under a RLIMIT_AS 24 MiB above the idle worker's VmPeak the load reached the "
    "limit in one run of three (aiokafka then logged MemoryError 4622 times and never exited; the exit "
    "on MemoryError is now in trajstream/out_of_memory.py) and in the others the worker neither died "
    "nor answered within 120 s: the load must be made to reach the limit every time"
)
@pytest.mark.timeout(300)
async def test_a_worker_at_its_memory_limit_dies_is_restarted_says_why_and_loses_no_request(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    """The enrichment worker under RLIMIT_AS (set on its supervisor, so every restart inherits it) gets a load
    of large requests: it dies of MemoryError, the supervisor starts it again, `status` says why, and once the
    limit is raised every request acknowledged by the broker has its result."""
    started = time.monotonic()
    settings = topics.model_copy(update={"home": tmp_path / "home"})
    env = {**env_for(settings), "TRAJSTREAM_RESTART_BACKOFF_S": "0.5", "TRAJSTREAM_RESTART_MAX_BACKOFF_S": "2"}
    log = tmp_path / "supervisor.log"
    with open(log, "ab") as handle:
        supervisor = subprocess.Popen([sys.executable, "-c", _SUPERVISE_ENRICH], env=env, stdout=handle,
                                      stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        worker = await asyncio.to_thread(_wait, "the enrichment worker ready",
                                         lambda: ready_pid(settings, "enrich"), 90)  # fmt: skip
        # The limit: what the idle worker mapped, and a little more. Set on the running worker and on the
        # supervisor, whose next children inherit it (RLIMIT_AS is per process, inherited across fork).
        limit = _vm_peak(worker) + 24 * 1024 * 1024
        _limit(worker, limit)
        _limit(supervisor.pid, max(limit, _vm_peak(supervisor.pid) + 64 * 1024 * 1024))
        ids = [str(uuid.uuid4()) for _ in range(48)]
        requests = await asyncio.to_thread(lambda: [_big_request(settings, codec, t, 100_000) for t in ids])
        await publish(settings, [("enrichment.requests", t.encode(), r) for t, r in zip(ids, requests, strict=True)])

        def died_of_memory() -> PartStatus | None:
            row = _rows(settings)["enrich"]
            return row if "out of memory" in row.detail else None

        row = await asyncio.to_thread(_wait, "status says out of memory", died_of_memory, 120)
        print(f"worker memory: limit {limit} bytes; status: {row.detail}")
        assert "exit code" in row.detail or "signal" in row.detail, row
        assert "MemoryError" in (tmp_path / "home" / "logs" / "enrich.log").read_text(errors="replace")

        # Memory returns: the next worker the supervisor starts runs without the limit.
        _limit(supervisor.pid, resource.RLIM_INFINITY)
        if (pid := ready_pid(settings, "enrich")) is not None:
            os.killpg(pid, signal.SIGKILL)  # one still under the limit gives way to one without it

        async def results() -> set[str]:
            return {r.key.decode() for r in await read(settings, codec, "enrichment.results") if r.key}

        deadline = time.monotonic() + 120
        while (done := await results()) != set(ids):
            assert time.monotonic() < deadline, f"{len(set(ids) - done)} of {len(ids)} requests have no result"
            await asyncio.sleep(1)
        letters = [r for r in await read(settings, codec, "deadletter") if r.key and r.key.decode() in ids]
        assert letters == [], letters
        assert supervisor.poll() is None, "the supervisor itself must survive"
        print(f"worker memory: {time.monotonic() - started:.0f}s")
    finally:
        _stop(supervisor)
