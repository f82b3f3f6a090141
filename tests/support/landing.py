"""Land what an emitter sent: the real streams worker assembles and scores it (after the enrichment
worker, on its deterministic local extractor, has read it), the ClickHouse sink writes it to chDB,
and the test reads back the rows of the trajectories it expects.

Used by every "it lands whole" test (the TypeScript and Rust emitters, the gateway, the proxy).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.streams import running_enricher, running_worker
from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.settings import Settings
from trajstream_sdk.codec import EventCodec


@dataclass
class Landed:
    """The rows one trajectory left in ClickHouse (latest version)."""

    trajectory: dict[str, Any]
    turns: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # ordered by turn, then seq
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def landing_settings(settings: Settings, chdb_dir: Path) -> Settings:
    """``settings`` writing to a database of its own in the session's chDB directory."""
    return settings.model_copy(update={"clickhouse_dsn": f"chdb://{chdb_dir}",
                                       "clickhouse_database": f"t{uuid.uuid4().hex[:10]}",
                                       "sink_batch_seconds": 0.2})  # fmt: skip


def land(
    settings: Settings, codec: EventCodec, trajectory_ids: Collection[str], log: Path, timeout_s: float = 120.0
) -> dict[str, Landed]:
    """Run the streams worker and the ClickHouse sink until every id in ``trajectory_ids`` has landed.

    Raises AssertionError naming the ids that did not land in time.
    """
    client = connect(settings)
    migrate(client, settings)
    db = settings.clickhouse_database
    wanted = set(trajectory_ids)
    with running_worker(settings, log), running_enricher(settings, log.with_suffix(".enrich.log")):
        asyncio.run(_sink_until(settings, codec, client, db, wanted, timeout_s))
    return {tid: _rows(client, db, tid) for tid in sorted(wanted)}


async def _sink_until(
    settings: Settings, codec: EventCodec, client: Any, db: str, wanted: set[str], timeout_s: float
) -> None:
    sink = ClickHouseSink(settings, client, codec)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    deadline = time.monotonic() + timeout_s
    missing = set(wanted)
    try:
        while missing and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.5)
            missing = wanted - _present(client, db, wanted)
    finally:
        stop.set()
        await task
    assert not missing, f"{len(missing)} trajectories did not land in {timeout_s:.0f} s: {sorted(missing)[:5]}"


def _present(client: Any, db: str, ids: set[str]) -> set[str]:
    result = client.query(f"SELECT DISTINCT trajectory_id FROM {db}.trajectories WHERE trajectory_id IN %(ids)s",
                          parameters={"ids": list(ids)})  # fmt: skip
    return {row[0] for row in result.result_rows}


def _dicts(client: Any, sql: str, tid: str) -> list[dict[str, Any]]:
    result = client.query(sql, parameters={"tid": tid})
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _rows(client: Any, db: str, tid: str) -> Landed:
    turns = f"SELECT * FROM {db}.turns WHERE trajectory_id = %(tid)s ORDER BY turn_index"
    messages = f"SELECT * FROM {db}.messages WHERE trajectory_id = %(tid)s ORDER BY turn_index, seq"
    tool_calls = f"SELECT * FROM {db}.tool_calls WHERE trajectory_id = %(tid)s ORDER BY turn_index, call_id"
    latest = _dicts(client, f"SELECT * FROM {db}.trajectories WHERE trajectory_id = %(tid)s "
                            "ORDER BY version DESC LIMIT 1", tid)  # fmt: skip
    return Landed(
        trajectory=latest[0],
        turns=_dicts(client, turns, tid),
        messages=_dicts(client, messages, tid),
        tool_calls=_dicts(client, tool_calls, tid),
    )
