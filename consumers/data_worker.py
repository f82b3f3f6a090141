"""The data worker: both sinks and the data API in one process, the one that owns the embedded stores."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict
from typing import Any

from aiohttp import web

from trajstream.consumers.api import build_app
from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.consumers.clickhouse_store import connect as connect_clickhouse
from trajstream.consumers.clickhouse_store import dsn, migrate
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.locked_client import LockedClient
from trajstream.consumers.milvus_sink import MilvusSink
from trajstream.consumers.milvus_store import connect as connect_milvus
from trajstream.consumers.milvus_store import uri
from trajstream.consumers.recall import Recall
from trajstream.data_api import api_file
from trajstream.foreground import run_until_signalled
from trajstream.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    clickhouse = LockedClient(connect_clickhouse(settings))
    applied = migrate(clickhouse, settings)  # type: ignore[arg-type]
    if applied:
        log.warning("applied ClickHouse migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    milvus = connect_milvus(settings)
    embedder = Embedder()
    await asyncio.to_thread(embedder.encode_one, "warm up")  # load the model before reporting ready
    ch_sink = ClickHouseSink(settings, clickhouse, None)  # type: ignore[arg-type]
    mv_sink = MilvusSink(settings, milvus, embedder)
    recall = Recall(settings, milvus, clickhouse, embedder)
    started = time.time()

    def health() -> dict[str, Any]:
        return {
            "status": "ok", "pid": os.getpid(), "uptime_s": round(time.time() - started, 1),
            "clickhouse": dsn(settings), "milvus": uri(settings),
            "sinks": {"clickhouse": asdict(ch_sink.stats), "milvus": asdict(mv_sink.stats)},
        }  # fmt: skip

    runner = web.AppRunner(build_app(recall, clickhouse, settings.clickhouse_database, health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.api_host, settings.api_port)
    await site.start()
    url = f"http://{settings.api_host}:{settings.api_port}"
    api_file(settings).parent.mkdir(parents=True, exist_ok=True)
    api_file(settings).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tasks = [asyncio.create_task(ch_sink.run(stop)), asyncio.create_task(mv_sink.run(stop))]
    if ready is not None:
        ready.set()
    log.warning("data worker ready: API %s, ClickHouse %s, Milvus %s", url, dsn(settings), uri(settings))
    try:
        done, _ = await asyncio.wait([*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in tasks and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        api_file(settings).unlink(missing_ok=True)
        milvus.close()


def run_data_worker(settings: Settings) -> None:
    """Run in the foreground until SIGTERM or SIGINT."""
    run_until_signalled(lambda stop: serve(settings, stop))
