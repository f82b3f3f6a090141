"""`trajstream up`, `status` and `down`: the whole pipeline as local processes.

Each worker runs as its own process (its own session, so a stop reaches its children), logs to
TRAJSTREAM_HOME/logs/NAME.log and records its pid in TRAJSTREAM_HOME/run/NAME.pid. The data worker
owns the embedded stores and serves the data API that other processes query.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from trajstream.broker import LocalBroker
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings
from trajstream.topics import (
    ASSEMBLED,
    ASSEMBLY_CONTROL_TOPIC,
    CLICKHOUSE_SINK_GROUP,
    DEAD_LETTER_TOPIC,
    ENRICHMENT_GROUP,
    ENRICHMENT_REQUESTS,
    ENRICHMENT_RESULTS,
    EVENTS_TOPIC,
    FEEDBACK_TOPIC,
    MILVUS_SINK_GROUP,
    SCORED,
    create_topics,
    faust_app_id,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Part:
    name: str
    args: tuple[str, ...]
    group: Callable[[Settings], str]
    topics: tuple[str, ...]
    ready_text: str  # appears in its log once it is ready


PARTS = (
    Part("streams", ("worker", "streams", "--loglevel", "info"), faust_app_id,
         (EVENTS_TOPIC, FEEDBACK_TOPIC, ASSEMBLY_CONTROL_TOPIC, ASSEMBLED, ENRICHMENT_RESULTS), "[^Worker]: Ready"),
    Part("enrich", ("worker", "enrich"), lambda s: s.consumer_group(ENRICHMENT_GROUP), (ENRICHMENT_REQUESTS,),
         "enrichment worker"),
    Part("data", ("worker", "data"), lambda s: s.consumer_group(CLICKHOUSE_SINK_GROUP), (SCORED, DEAD_LETTER_TOPIC),
         "data worker ready"),
)  # fmt: skip


def _run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def _pid_file(settings: Settings, name: str) -> Path:
    return _run_dir(settings) / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def running_pid(settings: Settings, name: str) -> int | None:
    try:
        pid = int(_pid_file(settings, name).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _binary() -> str:
    return str(Path(sys.executable).parent / "trajstream")


def up(settings: Settings, progress: Progress, timeout_s: float = 180.0) -> None:
    """Start what is not running: the broker (unless external), the topics, the workers; wait until ready."""
    if not settings.uses_external_kafka:
        LocalBroker(settings, progress=progress).start()
    asyncio.run(create_topics(settings))
    progress("topics ready")
    _run_dir(settings).mkdir(parents=True, exist_ok=True)
    started: list[Part] = []
    for part in PARTS:
        if running_pid(settings, part.name):
            progress(f"{part.name}: already running (pid {running_pid(settings, part.name)})")
            continue
        log = _log_file(settings, part.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            handle.write(f"\n--- started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            proc = subprocess.Popen([_binary(), *part.args], stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=os.environ.copy())  # fmt: skip
        _pid_file(settings, part.name).write_text(str(proc.pid))
        progress(f"{part.name}: started (pid {proc.pid}, log {log})")
        started.append(part)
    deadline = time.monotonic() + timeout_s
    for part in started:
        log = _log_file(settings, part.name)
        offset = 0
        while True:
            text = log.read_text(errors="replace")
            if part.ready_text in text[offset:] or part.ready_text in text.rsplit("--- started", 1)[-1]:
                progress(f"{part.name}: ready")
                break
            if running_pid(settings, part.name) is None:
                raise TrajstreamError(f"{part.name} exited while starting; its log {log} ends:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                raise TrajstreamError(f"{part.name} not ready after {timeout_s:.0f}s; see {log}")
            time.sleep(0.3)


def down(settings: Settings, progress: Progress, timeout_s: float = 20.0, stop_broker: bool = True) -> None:
    """SIGTERM each worker's process group, SIGKILL after ``timeout_s``; then the local broker."""
    for part in reversed(PARTS):
        pid = running_pid(settings, part.name)
        if pid is None:
            _pid_file(settings, part.name).unlink(missing_ok=True)
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while running_pid(settings, part.name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if running_pid(settings, part.name):
            os.killpg(pid, signal.SIGKILL)  # a Faust worker can hang in shutdown; its state is on Kafka
            progress(f"{part.name}: killed after {timeout_s:.0f}s")
        else:
            progress(f"{part.name}: stopped")
        _pid_file(settings, part.name).unlink(missing_ok=True)
    if stop_broker and not settings.uses_external_kafka:
        LocalBroker(settings, progress=progress).stop()
        progress("broker: stopped")


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    lag: int | None  # records its consumer group has yet to process
    detail: str


async def _lag(settings: Settings, group: str, topics: tuple[str, ...]) -> int | None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
    try:
        # Started inside the try: a client whose start failed (no broker) is closed all the same, else
        # aiokafka reports an "Unclosed AIOKafkaConsumer" when it is collected.
        await admin.start()
        await consumer.start()
        from trajstream.reader import topic_partitions

        committed = await admin.list_consumer_group_offsets(group)
        tps = [tp for t in topics for tp in await topic_partitions(consumer, settings.topic(t))]
        if not tps:
            return None
        ends = await consumer.end_offsets(tps)
        lag: int = sum(max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
                   for tp in tps)  # fmt: skip
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def status(settings: Settings) -> list[PartStatus]:
    out = []
    broker = LocalBroker(settings).status() if not settings.uses_external_kafka else None
    if broker is not None:
        out.append(PartStatus("broker", broker.pid, None, "running" if broker.running else "not running"))
    for part in PARTS:
        pid = running_pid(settings, part.name)
        lag = None
        try:
            lag = asyncio.run(_lag(settings, part.group(settings), part.topics))
        except Exception:  # no broker: the lag is unknown, the process table still tells something
            lag = None
        detail = "running" if pid else "not running"
        if part.name == "data" and pid:
            from trajstream.data_api import api_url

            url = api_url(settings)
            try:
                if url:
                    health = httpx.get(f"{url}/health", timeout=3).json()
                    detail = f"API {url}, {health['sinks']['clickhouse']['trajectories']} trajectories landed"
                with contextlib.suppress(Exception):  # the lag above is ClickHouse's; Milvus has its own group
                    milvus_lag = asyncio.run(_lag(settings, settings.consumer_group(MILVUS_SINK_GROUP), (SCORED,)))
                    detail += f"; Milvus sink lag {milvus_lag}"
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                detail = "running, API not answering"
        out.append(PartStatus(part.name, pid, lag, detail))
    return out
