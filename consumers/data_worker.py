"""The data worker: both sinks and the data API in one process, the one that owns the embedded stores.

Each store has a link (``store_link``) and each sink runs on its own: a store that is away, at start or
later, holds back only its own sink (which waits it out with capped back-off, its lag growing) and
the API requests that need it. A sink whose loop fails (Kafka away, a bug) is started again with
back-off; the API keeps answering through all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

from aiohttp import web

from trajstream.consumers.api import RouteAdder, build_app
from trajstream.consumers.api_access import check_listen
from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.consumers.clickhouse_store import connect as connect_clickhouse
from trajstream.consumers.clickhouse_store import migrate, shown_dsn
from trajstream.consumers.console.pipeline_view import FlowSampler
from trajstream.consumers.console.routes import Console
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.locked_client import LockedClient
from trajstream.consumers.milvus_sink import DecisionSink, TrajectorySink
from trajstream.consumers.milvus_store import connect as connect_milvus
from trajstream.consumers.milvus_store import ensure_collections, uri
from trajstream.consumers.recall import Recall
from trajstream.consumers.store_link import StoreLink
from trajstream.data_api import api_file, stores_lock_file, try_lock_stores
from trajstream.foreground import run_until_signalled
from trajstream.parts import mark_ready
from trajstream.settings import Settings
from trajstream.sink import BatchSink, capped_backoff

log = logging.getLogger(__name__)


@dataclass
class SinkRun:
    """How one sink's loop is doing, for /health and `trajstream status`."""

    restarts: int = 0
    last_failure: str = ""


def _open_clickhouse(settings: Settings) -> LockedClient:
    client = LockedClient(connect_clickhouse(settings))
    applied = migrate(client, settings)  # type: ignore[arg-type]
    if applied:
        log.warning("applied ClickHouse migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    return client


def _open_milvus(settings: Settings) -> Any:
    client = connect_milvus(settings)
    ensure_collections(client, settings)
    return client


def _backoff(settings: Settings) -> Iterator[float]:
    return capped_backoff(settings.sink_retry_backoff_s, settings.sink_retry_max_backoff_s)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def keep_running(settings: Settings, link: StoreLink[Any], build: Callable[[Any], BatchSink],
                       stop: asyncio.Event, run: SinkRun, sinks: dict[str, BatchSink], name: str) -> None:  # fmt: skip
    """Open the store, run the sink on it; after any failure, again with capped back-off, until ``stop``."""
    delays = _backoff(settings)
    while not stop.is_set():
        started = time.monotonic()
        try:
            client = await link.open()
        except Exception:  # the store is away: its link says why (status, /health); try again
            delay = next(delays)
            log.error("%s not open (%s); trying again in %.1fs", link.name, link.error, delay)
            await _sleep(stop, delay)
            continue
        try:
            if name not in sinks:
                sinks[name] = build(client)
            await sinks[name].run(stop)
        except Exception as exc:  # whatever stopped it, the other sink and the API go on
            run.restarts += 1
            run.last_failure = f"{type(exc).__name__}: {exc}"[:2000]
            if time.monotonic() - started > 60:
                delays = _backoff(settings)  # it ran a good while: this failure waits little again
            delay = next(delays)
            log.error("%s sink stopped (%s); starting it again in %.1fs", name, run.last_failure, delay, exc_info=True)
            await _sleep(stop, delay)
        else:
            return


def _hold_stores_lock(settings: Settings) -> IO[bytes]:
    """The stores lock, waited for: a CLI command that opened the stores directly finishes first."""
    told = False
    while (handle := try_lock_stores(settings)) is None:
        if not told:
            log.warning("waiting for the stores lock %s (another process has the stores open)",
                        stores_lock_file(settings))  # fmt: skip
            told = True
        time.sleep(0.5)
    return handle


async def serve(settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None,
                routes: Sequence[RouteAdder] = ()) -> None:  # fmt: skip
    """Run the sinks and the data API (with ``routes`` from later stages) until ``stop``."""
    check_listen(settings)  # before anything: a data API open to the network with no token never starts
    lock = await asyncio.to_thread(_hold_stores_lock, settings)
    clickhouse: StoreLink[LockedClient] = StoreLink("ClickHouse", lambda: _open_clickhouse(settings))
    milvus: StoreLink[Any] = StoreLink("Milvus", lambda: _open_milvus(settings))
    embedder = Embedder.for_settings(settings)
    sinks: dict[str, BatchSink] = {}
    # The Milvus sinks: "milvus" writes the trajectory vectors, "milvus_decisions" the decision points.
    runs = {"clickhouse": SinkRun(), "milvus": SinkRun(), "milvus_decisions": SinkRun()}
    started = time.time()
    recalls: dict[tuple[int, int], Recall] = {}

    def recall() -> Recall:
        ch, mv = clickhouse.client, milvus.client  # each raises StoreUnavailableError while its store is away
        key = (id(ch), id(mv))
        if key not in recalls:
            recalls.clear()
            recalls[key] = Recall(settings, mv, ch, embedder)
        return recalls[key]

    def sink_health(name: str, link: StoreLink[Any]) -> dict[str, Any]:
        sink = sinks.get(name)
        out: dict[str, Any] = {"store": link.state(), **asdict(runs[name])}
        if sink is not None:
            out.update(asdict(getattr(sink, "stats")))  # noqa: B009 (each sink has its own stats type)
            loop = sink.loop_stats
            out["loop"] = {**asdict(loop), "state": loop.state}
        else:
            out["loop"] = {"state": "opening its store"}
        return out

    def health() -> dict[str, Any]:
        waiting = [n for n, s in sinks.items() if s.loop_stats.waiting_since is not None]
        closed = [link.name for link in (clickhouse, milvus) if not link.is_open]
        return {
            "status": "degraded" if waiting or closed else "ok", "pid": os.getpid(),
            "uptime_s": round(time.time() - started, 1), "clickhouse": shown_dsn(settings), "milvus": uri(settings),
            "embedder": "loaded" if embedder.loaded else "loading",
            "embed_runtime": embedder.runtime, "embed_cache": {"entries": len(embedder.cache),
                                                               **asdict(embedder.counts)},
            "sinks": {"clickhouse": sink_health("clickhouse", clickhouse), "milvus": sink_health("milvus", milvus),
                      "milvus_decisions": sink_health("milvus_decisions", milvus)},
        }  # fmt: skip

    def landed() -> int:
        sink = sinks.get("clickhouse")
        return int(getattr(sink, "stats").trajectories) if sink is not None else 0  # noqa: B009

    sampler = FlowSampler(settings, landed)
    tasks = [
        asyncio.create_task(sampler.run(stop)),
        asyncio.create_task(keep_running(settings, clickhouse, lambda c: ClickHouseSink(settings, c, None), stop,
                                         runs["clickhouse"], sinks, "clickhouse")),
        asyncio.create_task(keep_running(settings, milvus, lambda c: TrajectorySink(settings, c, embedder), stop,
                                         runs["milvus"], sinks, "milvus")),
        asyncio.create_task(keep_running(settings, milvus, lambda c: DecisionSink(settings, c, embedder), stop,
                                         runs["milvus_decisions"], sinks, "milvus_decisions")),
    ]  # fmt: skip
    runner: web.AppRunner | None = None
    try:
        # The model loads in the background (10-20 s on 2 cores): the API and the ClickHouse sink need not
        # wait for it; a recall or a Milvus write that comes first waits for the load. A daemon thread: a
        # stop during the load does not wait for it.
        threading.Thread(target=embedder.warm_up, name="embedder-load",
                         daemon=True).start()  # fmt: skip
        # The API (and the ready mark `up` waits for) comes once both stores are open, or after the grace
        # even if one is not: a store that is away must not keep the other's sink and the API down.
        grace = time.monotonic() + settings.store_open_grace_s
        while not (clickhouse.is_open and milvus.is_open) and time.monotonic() < grace and not stop.is_set():
            await asyncio.sleep(0.1)
        for link in (clickhouse, milvus):
            if not link.is_open:
                log.error("%s not open after %.0fs (%s); the API starts without it", link.name,
                          settings.store_open_grace_s, link.error or "still opening")  # fmt: skip
        console = Console(settings, lambda: clickhouse.client, recall, landed, lambda: health()["sinks"], sampler)
        app = build_app(settings, recall, lambda: clickhouse.client, health, console, routes, embedder)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.api_host, settings.api_port).start()
        url = f"http://{settings.api_host}:{settings.api_port}"
        api_file(settings).parent.mkdir(parents=True, exist_ok=True)
        api_file(settings).write_text(json.dumps({"url": url, "pid": os.getpid()}))
        if ready is not None:
            ready.set()
        mark_ready(settings, "data")
        log.warning("data worker ready: API %s, ClickHouse %s, Milvus %s", url, shown_dsn(settings), uri(settings))
        await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        api_file(settings).unlink(missing_ok=True)
        if runner is not None:
            await runner.cleanup()
        if milvus.is_open:
            with contextlib.suppress(Exception):
                milvus.client.close()
        lock.close()


def run_data_worker(settings: Settings, routes: Sequence[RouteAdder] = ()) -> None:
    """Run in the foreground until SIGTERM or SIGINT."""
    run_until_signalled(lambda stop: serve(settings, stop, routes=routes))
