"""Resources run out (issue 17): the broker's disk, chDB's disk, a worker's memory.

In each case the pipeline stops taking what it cannot store, says so in `trajstream status` and the logs,
loses nothing that was acknowledged, and resumes once the resource returns. The small disks are tmpfs
mounts and the memory limit a memory cgroup, as a container's
(root only: the tests skip without it); chDB opens one data directory per process, so the chDB on
a small disk lives in a `trajstream worker data` subprocess, never in this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
from tests.support.memory_cgroup import memory_cgroup
from tests.support.scored_landing import scored_by_id
from tests.support.small_fs import fill, free_bytes, grow, small_filesystem
from tests.support.streams import latest_by_trajectory, publish, read
from trajstream.broker import LocalBroker
from trajstream.data_api import api_headers
from trajstream.errors import BrokerError
from trajstream.parts import pid_file, ready_pid, stop_group
from trajstream.pipeline import PartStatus, status
from trajstream.reader import read_topic
from trajstream.settings import Settings
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
    stop_group(proc.pid, 30.0)
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
    return scored_by_id(settings, codec, [f"Replace the broken kettle of order {n}" for n in range(count)])


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
_SUPERVISE_STREAMS = """
from trajstream.parts import PARTS
from trajstream.settings import Settings
from trajstream.supervisor import Supervisor

Supervisor(Settings(), parts=tuple(p for p in PARTS if p.name == "streams")).run()
"""

HEADROOM = 64 * 1024 * 1024  # the limit: what the idle cgroup uses, and this
OPEN = 160  # trajectories left open: assembly holds each in memory (its table is memory://) until it ends
TURN_TEXT = 768 * 1024  # of each one's one turn: 160 of them hold ~120 MiB encoded, more as Python objects


def _open_trajectories(codec: SingleObjectCodec) -> tuple[dict[str, list[bytes]], dict[str, bytes]]:
    """OPEN trajectories of a start and one large turn each (cheap to make: one text, a different prefix each),
    and the end event of each."""
    text = "order refunded, ledger balanced " * (TURN_TEXT // 32)
    opened, ends = {}, {}
    for n in range(OPEN):
        tid = str(uuid.uuid4())
        opened[tid] = [
            codec.encode("trajectory_start", start_record(tid, "Summarise the ledger", agent_id="a")),
            codec.encode("turn", turn_record(tid, 0, [Message.text("user", f"{n} {text}"),
                                                      Message("assistant", ToolCall("sum", "c0", {}))])),
        ]  # fmt: skip
        ends[tid] = codec.encode("trajectory_end", end_record(tid, "success", turn_count=1))
    return opened, ends


@pytest.mark.timeout(300)
async def test_a_worker_at_its_memory_limit_is_oom_killed_says_why_is_restarted_and_loses_no_event(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    """The streams worker and its supervisor in a memory cgroup, as in a container with a memory limit. Events
    that keep many large trajectories open grow assembly's in-memory table past the limit: the kernel's OOM
    killer ends the worker (SIGKILL), the supervisor says why in `status` and starts it again; once the limit
    is lifted every trajectory the broker acknowledged is assembled, whole."""
    started = time.monotonic()
    settings = topics.model_copy(update={"home": tmp_path / "home"})
    env = {**env_for(settings), "TRAJSTREAM_RESTART_BACKOFF_S": "0.5", "TRAJSTREAM_RESTART_MAX_BACKOFF_S": "2"}
    opened, ends = await asyncio.to_thread(_open_trajectories, codec)
    log = tmp_path / "supervisor.log"
    with memory_cgroup() as cgroup:
        with open(log, "ab") as handle:
            supervisor = subprocess.Popen(cgroup.command([sys.executable, "-c", _SUPERVISE_STREAMS]), env=env,
                                          stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            worker = await asyncio.to_thread(_wait, "the streams worker ready",
                                             lambda: ready_pid(settings, "streams"), 120)  # fmt: skip
            assert worker in cgroup.pids() and supervisor.pid in cgroup.pids()
            idle, kills = cgroup.usage(), cgroup.oom_kills()
            cgroup.limit(idle + HEADROOM)
            ready_at = time.monotonic()
            # Acknowledged by the broker (acks=all): from here the pipeline owes every one an assembled trajectory.
            await publish(settings, [("events", t.encode(), e) for t, events in opened.items() for e in events])

            def oom_shown() -> PartStatus | None:
                row = _rows(settings)["streams"]
                return row if "out of memory" in row.detail else None

            row = await asyncio.to_thread(_wait, "status says out of memory", oom_shown, 90)
            killed_at = time.monotonic()
            print(f"worker memory: idle {idle >> 20} MiB, limit {(idle + HEADROOM) >> 20} MiB; status: {row.detail}")
            assert "signal 9 (SIGKILL): out of memory (the kernel's OOM killer" in row.detail, row
            assert cgroup.oom_kills() > kills
            assert "streams: signal 9 (SIGKILL): out of memory" in log.read_text(errors="replace")

            # Memory returns: the worker the supervisor starts next (or has started) gets all it needs.
            cgroup.limit(None)
            await publish(settings, [("events", t.encode(), e) for t, e in ends.items()])

            async def assembled() -> dict[str, dict[str, Any]]:
                return latest_by_trajectory(await read(settings, codec, "trajectories.assembled"))

            deadline = time.monotonic() + 120
            while len(got := await assembled()) < len(opened):
                assert time.monotonic() < deadline, f"{len(opened) - len(got)} of {len(opened)} never assembled"
                await asyncio.sleep(1)
            assert set(got) == set(opened)
            for tid, body in got.items():  # each whole: its start, its one large turn and its end
                whole = body["outcome"] == "success" and not body["missing_turns"] and len(body["turns"]) == 1
                assert whole and len(body["turns"][0]) > TURN_TEXT, (tid, body["outcome"], body["missing_turns"])
            letters = [r for r in await read(settings, codec, "deadletter") if r.key and r.key.decode() in opened]
            assert letters == [], letters
            assert supervisor.poll() is None, "the supervisor itself must survive"
            row = (await asyncio.to_thread(_rows, settings))["streams"]
            assert row.pid is not None and row.pid != worker and "restarted" in row.detail, row
            print(f"worker memory: OOM-killed {killed_at - ready_at:.0f}s after the load began; all {len(got)} "
                  f"assembled {time.monotonic() - killed_at:.0f}s later; {time.monotonic() - started:.0f}s in all; "
                  f"{cgroup.oom_kills() - kills} OOM kills; status: {row.detail}")  # fmt: skip
        finally:
            _stop(supervisor)
            for pid in cgroup.pids():  # a worker the supervisor left behind (it failed): ours to end
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
