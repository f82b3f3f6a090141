"""`trajstream up`, `status` and `down`: the whole pipeline as local processes, under a supervisor.

`up` starts the broker (unless external), the local Milvus server (when it is the Milvus in use:
trajstream.milvus_server), the topics and the supervisor (trajstream.supervisor), which
starts each part as its own process and starts again one that dies. `up` reports a part ready only
when its current process said so itself (its ready mark) and, for the data worker, when its API
answers as that process. `down` asks the supervisor to stop and returns once every part's processes
are gone and the stores lock is free, then stops the Milvus server and the broker. Logs:
TRAJSTREAM_HOME/logs/NAME.log (the Milvus server's: TRAJSTREAM_HOME/milvus-server/milvus.log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from trajstream.broker import LocalBroker
from trajstream.data_api import answering_api, api_url, stores_lock_file, try_lock_stores
from trajstream.errors import TrajstreamError
from trajstream.milvus_server import LocalMilvus
from trajstream.parts import (
    PARTS,
    SUPERVISOR,
    SupervisorState,
    alive,
    group_alive,
    log_file,
    pid_file,
    ready_pid,
    recorded_pid,
    running_pid,
    stop_group,
    supervisor_pid,
    trajstream_binary,
)
from trajstream.settings import Settings
from trajstream.supervisor import request_stop
from trajstream.topics import MILVUS_DECISION_GROUP, MILVUS_TRAJECTORY_GROUP, SCORED, create_topics
from trajstream_sdk.kafka_security import start_client

Progress = Callable[[str], None]


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _start_supervisor(settings: Settings, progress: Progress) -> int:
    log = log_file(settings, SUPERVISOR)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        handle.write(f"\n--- started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        handle.flush()
        proc = subprocess.Popen([trajstream_binary(), "supervise"], stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())  # fmt: skip
    deadline = time.monotonic() + 30
    while (state := SupervisorState.load(settings)) is None or state.pid != proc.pid:
        if proc.poll() is not None:
            raise TrajstreamError(f"the supervisor exited while starting; its log {log} ends:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise TrajstreamError(f"the supervisor did not start within 30s; see {log}")
        time.sleep(0.1)
    progress(f"supervisor: started (pid {proc.pid}, log {log})")
    return proc.pid


def _ready(settings: Settings, name: str, pid: int) -> bool:
    """The part's current process marked itself ready and, for the data worker, its API answers as it."""
    if ready_pid(settings, name) != pid:
        return False
    return name != "data" or answering_api(settings, pid) is not None


def up(settings: Settings, progress: Progress, timeout_s: float = 180.0) -> None:
    """Start what is not running: the broker (unless external), the topics, the supervisor and its parts;
    return once every part is ready."""
    if not settings.uses_external_kafka:
        LocalBroker(settings, progress=progress).start()
    if settings.runs_milvus_server:  # before the data worker, whose Milvus sink opens it
        milvus = LocalMilvus(settings, progress=progress).start()
        progress(f"milvus: ready (pid {milvus.pid}, {milvus.version}) on {milvus.uri}")
    asyncio.run(create_topics(settings))
    progress("topics ready")
    if (pid := supervisor_pid(settings)) is not None:
        progress(f"supervisor: already running (pid {pid})")
    else:
        pid = _start_supervisor(settings, progress)
    deadline = time.monotonic() + timeout_s
    waiting = {part.name for part in PARTS}
    restarts: dict[str, int] = {}  # each part's restarts when `up` first saw it running
    while waiting:
        state = SupervisorState.load(settings)
        if supervisor_pid(settings) is None or state is None:
            raise TrajstreamError(f"the supervisor stopped; its log ends:\n{_tail(log_file(settings, SUPERVISOR))}")
        for name in sorted(waiting):
            part = state.parts[name]
            if part.pid is not None:
                restarts.setdefault(name, part.restarts)
            if name in restarts and part.restarts > restarts[name]:
                raise TrajstreamError(
                    f"{name} exited while starting ({part.last_exit}); the supervisor starts it again, "
                    f"`trajstream down` stops everything. Its log {log_file(settings, name)} ends:\n"
                    f"{_tail(log_file(settings, name))}"
                )
            if part.pid is not None and _ready(settings, name, part.pid):
                where = f"; console {url}/console/" if name == "data" and (url := api_url(settings)) else ""
                progress(f"{name}: ready (pid {part.pid}){where}")
                waiting.discard(name)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(sorted(waiting))
            raise TrajstreamError(f"not ready after {timeout_s:.0f}s: {names}; see {settings.home / 'logs'}")
        time.sleep(0.2)


def down(settings: Settings, progress: Progress, timeout_s: float = 20.0, stop_broker: bool = True) -> None:
    """Stop the supervisor and every part (SIGTERM, SIGKILL after ``timeout_s``), then the local Milvus server
    and broker. Returns once no process of any part is left and the stores lock is free."""
    sup = supervisor_pid(settings)
    if sup is not None:
        request_stop(settings, timeout_s)
        os.kill(sup, signal.SIGTERM)
        # The supervisor stops the parts one after the other, each within the timeout.
        deadline = time.monotonic() + timeout_s * len(PARTS) + 30
        while alive(sup) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(sup):
            progress(f"supervisor: no exit after {timeout_s * len(PARTS) + 30:.0f}s; killed")
            stop_group(sup, 0)
        progress("supervisor: stopped")
    # Whatever is left (no supervisor, or one killed): stop it here.
    for part in reversed(PARTS):
        pid = recorded_pid(settings, part.name)
        if pid is not None and group_alive(pid):  # the part, or a child left behind by it
            killed = stop_group(pid, timeout_s)
            progress(f"{part.name}: killed after {timeout_s:.0f}s" if killed else f"{part.name}: stopped")
        pid_file(settings, part.name).unlink(missing_ok=True)
    pid_file(settings, SUPERVISOR).unlink(missing_ok=True)
    lock = try_lock_stores(settings)
    if lock is None:
        raise TrajstreamError(
            f"the parts stopped but another process holds the stores lock {stores_lock_file(settings)} "
            "(a `trajstream` command still running?)"
        )
    lock.close()
    if settings.runs_milvus_server and LocalMilvus(settings, progress=progress).stop(timeout_s):
        progress("milvus: stopped")
    if stop_broker and not settings.uses_external_kafka:
        LocalBroker(settings, progress=progress).stop()
        progress("broker: stopped")


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    lag: int | None  # records its consumer group has yet to process
    detail: str


@dataclass(frozen=True)
class Backlog:
    records: int  # records the group has yet to process
    oldest_ms: int | None = None  # Kafka timestamp of the oldest of them, when asked for and any wait


async def _oldest_ms(consumer: Any, positions: dict[Any, int], timeout_s: float = 3.0) -> int | None:
    """The earliest Kafka timestamp among the first record at each position (one fetch per partition)."""
    consumer.assign(list(positions))
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    first: dict[Any, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(first) < len(positions) and (left := deadline - time.monotonic()) > 0:
        got = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000), max_records=len(positions))
        for tp, records in got.items():
            if records:
                first.setdefault(tp, records[0].timestamp)
                consumer.pause(tp)  # one record per partition is all this asks
    return min(first.values()) if first else None


async def _backlog(settings: Settings, group: str, topics: tuple[str, ...], oldest: bool = False) -> Backlog | None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    # "earliest": a position that compaction removed reads from the next record still there.
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    try:
        # Started inside the try: a client whose start failed (no broker) is closed all the same, else
        # aiokafka reports an "Unclosed AIOKafkaConsumer" when it is collected.
        await start_client(admin, settings.kafka_client_options())
        await start_client(consumer, settings.kafka_client_options())
        from trajstream.reader import topic_partitions

        committed = await admin.list_consumer_group_offsets(group)
        tps = [tp for t in topics for tp in await topic_partitions(consumer, settings.topic(t))]
        if not tps:
            return None
        ends = await consumer.end_offsets(tps)
        done = {tp: committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0 for tp in tps}
        lag = sum(max(0, ends[tp] - done[tp]) for tp in tps)
        waiting = {tp: done[tp] for tp in tps if ends[tp] > done[tp]}
        return Backlog(lag, await _oldest_ms(consumer, waiting) if oldest and waiting else None)
    finally:
        await consumer.stop()
        await admin.close()


def group_backlog(settings: Settings, group: str, topics: tuple[str, ...], oldest: bool = False) -> Backlog | None:
    """What ``group`` has yet to process of ``topics`` (``oldest``: and since when); None without a broker."""
    try:
        return asyncio.run(_backlog(settings, group, topics, oldest))
    except Exception:  # no broker: the lag is unknown, the process table still tells something
        return None


def _lag_or_none(settings: Settings, group: str, topics: tuple[str, ...]) -> int | None:
    backlog = group_backlog(settings, group, topics)
    return backlog.records if backlog is not None else None


def _process_detail(settings: Settings, name: str, pid: int | None, state: SupervisorState | None) -> str:
    part = state.parts.get(name) if state else None
    if pid is None:
        if part is not None and part.next_start_at is not None and state is not None and not state.stopping:
            wait = max(0.0, part.next_start_at - time.time())
            return f"restarting in {wait:.0f}s after {part.last_exit} (restarted {part.restarts} times)"
        return "not running"
    detail = "ready" if ready_pid(settings, name) == pid else "starting"
    if part is not None and part.restarts:
        ago = time.time() - (part.last_exit_at or time.time())
        detail += f"; restarted {part.restarts} times, last after {part.last_exit} {ago:.0f}s ago"
    return detail


def _sink_detail(name: str, sink: dict[str, Any]) -> str:
    loop = sink.get("loop", {})
    store = sink.get("store", {})
    if not store.get("open"):
        text = f"{name} not open: {store.get('error') or 'opening'}"
    elif loop.get("waiting_since") and loop.get("cause"):  # the store refuses every write: say why first
        since = time.time() - float(loop["waiting_since"])
        text = (f"{name} {loop['cause']} for {since:.0f}s: nothing taken or committed until it takes writes "
                f"again ({loop.get('last_error', '')[:160]})")  # fmt: skip
    elif loop.get("waiting_since"):
        since = time.time() - float(loop["waiting_since"])
        text = f"waiting for {name} for {since:.0f}s ({loop.get('last_error', '')[:160]})"
    else:
        text = f"{sink.get('trajectories', 0)} trajectories landed"
        if sink.get("decision_points"):
            text = f"{sink['decision_points']} decision points of {text}"
    if cache := sink.get("cache"):  # the Milvus sinks: texts found in the embedder's cache
        text += f"; {cache['hits']} of {cache['hits'] + cache['misses']} texts from the cache"
    if loop.get("poison"):
        text += f"; {loop['poison']} records dead-lettered by the store"
    if sink.get("restarts"):
        text += f"; sink restarted {sink['restarts']} times ({sink.get('last_failure', '')[:120]})"
    return text


def _listening(bootstrap: str, timeout_s: float = 0.5) -> bool:
    """Whether something accepts connections at the first bootstrap address."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def status(settings: Settings, with_lag: bool = True) -> list[PartStatus]:
    """One row per process (broker, supervisor, parts) and one per sink of the data worker (``with_lag``: each
    with its consumer group's lag, one Kafka client each: the console reads the lag per partition instead)."""

    out = []
    if not settings.uses_external_kafka:
        broker = LocalBroker(settings).status()
        shown = broker.detail if not broker.running else "running"
        if broker.running and (full := LocalBroker(settings).disk_full()):
            shown += f"; {full}: producers will fail soon"
        out.append(PartStatus("broker", broker.pid, None, shown))
    # No broker listening, no lag to ask for: the Kafka client would only log its connection errors. Whether
    # one listens, not this home's pid file, decides: tests and other homes share a broker.
    with_lag = with_lag and _listening(settings.bootstrap)
    if settings.runs_milvus_server:
        milvus = LocalMilvus(settings).status()
        shown = f"{milvus.detail}; {milvus.version} on {milvus.uri}" if milvus.running else milvus.detail
        out.append(PartStatus("milvus", milvus.pid, None, shown))

    def lag(group: str, topics: tuple[str, ...]) -> int | None:
        return _lag_or_none(settings, group, topics) if with_lag else None

    state = SupervisorState.load(settings)
    sup = supervisor_pid(settings)
    out.append(PartStatus(SUPERVISOR, sup, None, "running" if sup else "not running (`trajstream up` starts it)"))
    for part in PARTS:
        pid = running_pid(settings, part.name)
        detail = _process_detail(settings, part.name, pid, state)
        if part.name == "gateway":
            scheme = "https" if settings.gateway_tls_cert else "http"
            where = f"{scheme}://{settings.gateway_host}:{settings.gateway_port}"
            out.append(PartStatus(part.name, pid, None, f"{detail}; {where}" if pid else detail))
            continue
        if part.name != "data":
            out.append(PartStatus(part.name, pid, lag(part.group(settings), part.topics), detail))
            continue
        url = api_url(settings) if pid else None
        health: dict[str, Any] = {}
        if url:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{url}/health", timeout=3).json()
        out.append(PartStatus(part.name, pid, None, f"{detail}; API {url}" if health else
                              f"{detail}; API not answering" if pid else detail))  # fmt: skip
        sinks = health.get("sinks", {})
        for sink, row, store, group, topics in (
            ("clickhouse", "clickhouse sink", "ClickHouse", part.group(settings), part.topics),
            ("milvus", "milvus trajectories", "Milvus", settings.consumer_group(MILVUS_TRAJECTORY_GROUP), (SCORED,)),
            ("milvus_decisions", "milvus decisions", "Milvus", settings.consumer_group(MILVUS_DECISION_GROUP),
             (SCORED,)),
        ):  # fmt: skip
            detail = _sink_detail(store, sinks[sink]) if sink in sinks else "-"
            if sink != "milvus_decisions":
                out.append(PartStatus(f"  {row}", None, lag(group, topics), detail))
                continue
            # The decision points' backlog also as time: how long its oldest record has waited.
            backlog = group_backlog(settings, group, topics, oldest=True) if with_lag else None
            if backlog is not None and backlog.oldest_ms is not None:
                detail += f"; oldest waiting {max(0.0, time.time() - backlog.oldest_ms / 1000):.0f}s"
            out.append(PartStatus(f"  {row}", None, backlog.records if backlog else None, detail))
    return out
