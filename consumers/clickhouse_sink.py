"""The ClickHouse sink: scored trajectories, dead letters and model versions from Kafka into ClickHouse.

A ``BatchSink`` (trajstream.sink): the base batches by size and time, retries a failed batch,
dead-letters what cannot become rows and commits offsets only after every insert of the batch has
succeeded. Every table's insert is idempotent on its own: before inserting, the sink asks which of
the batch's keys the table already holds and leaves those out, so a re-delivered batch (however it
is cut this time), a crash between insert and commit, or a trajectory's new version never count
twice, and the materialised rollups only ever see new rows. That relies on one writer per key,
which the consumer group gives (the topics are keyed by trajectory id).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from trajstream.consumers.clickhouse_rows import (
    COLUMNS,
    DELTA_ATTRIBUTES,
    Rows,
    dead_letter_row,
    delta_rows,
    epoch_ms,
    model_version_row,
    scored_rows,
)
from trajstream.settings import Settings
from trajstream.sink import BatchSink, Record, Rejected, Written
from trajstream.topics import CLICKHOUSE_SINK_GROUP, DEAD_LETTER_TOPIC, MODEL_VERSIONS, SCORED
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.schemas import DEAD_LETTER, MODEL_VERSION, SCORED_TRAJECTORY

log = logging.getLogger(__name__)

# The key that makes a row unique in each table: what "already there" means.
KEYS: dict[str, tuple[str, ...]] = {
    "trajectories": ("trajectory_id", "version"),
    "trajectory_deltas": ("trajectory_id", "version", "sign"),
    "turns": ("trajectory_id", "turn_index"),
    "messages": ("trajectory_id", "turn_index", "seq"),
    "tool_calls": ("trajectory_id", "turn_index", "call_id"),
    "rewards": ("trajectory_id", "version", "component"),
    "credits": ("trajectory_id", "version", "method", "step_index"),
    "decisions": ("trajectory_id", "version", "prompt_version", "extractor", "step_index"),
    "entities": ("trajectory_id", "version", "prompt_version", "extractor", "name"),
    "dead_letters": ("dlq_partition", "dlq_offset"),
    "model_versions": ("model_name", "version", "event", "at"),
}
# How ClickHouse (a server, or chDB) says its disk is full: it could not reserve space for a part (code 243), or
# a write failed with ENOSPC. Seen from chDB on a full tmpfs: "Code: 243. DB::Exception: Cannot reserve
# 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)".
_DISK_FULL = ("NOT_ENOUGH_SPACE", "Code: 243.", "No space left on device", "ENOSPC")
# Insert order: the rollups' source goes last, so a failure earlier leaves nothing half-counted.
ORDER = ("dead_letters", "model_versions", "turns", "messages", "tool_calls", "rewards", "credits", "decisions",
         "entities", "trajectories", "trajectory_deltas")  # fmt: skip


@dataclass
class SinkStats:
    records: int = 0
    trajectories: int = 0
    repeats: int = 0  # (trajectory, version) already landed: re-delivery
    dead_letters: int = 0  # landed in the dead_letters table
    rejected: int = 0  # records the sink could not land, sent to the dead-letter topic
    rows: dict[str, int] = field(default_factory=dict)


def _key(values: Iterable[Any]) -> str:
    """A row's key as one string, as the checks query builds it: ClickHouse's toString of each part."""
    return "\x1f".join(str(v) for v in values)


def _plain(value: Any) -> Any:
    """A key part as ``_key`` compares it: a time as epoch milliseconds, whoever made it."""
    return epoch_ms(value) if isinstance(value, datetime) else value


class ClickHouseSink(BatchSink):
    stage = "sink-clickhouse"

    def __init__(self, settings: Settings, client: Client, codec: EventCodec | None = None):
        codec = codec or codec_for(settings)
        self.scored_topic = settings.topic(SCORED)
        self.versions_topic = settings.topic(MODEL_VERSIONS)
        super().__init__(
            settings, codec, group=settings.consumer_group(CLICKHOUSE_SINK_GROUP),
            topics=(self.scored_topic, settings.topic(DEAD_LETTER_TOPIC), self.versions_topic),
            batch_rows=settings.sink_batch_rows, batch_seconds=settings.sink_batch_seconds,
        )  # fmt: skip
        self.client = client
        self.db = settings.clickhouse_database
        self.stats = SinkStats()

    async def write(self, batch: list[Record]) -> Written:
        rejected = await asyncio.to_thread(self.land, batch)
        self.stats.rejected += len(rejected)
        return Written(rejected=rejected)

    @property
    def store(self) -> str:
        return "ClickHouse"

    def outage(self, error: BaseException) -> str | None:
        """A full disk refuses every insert until space returns: no record is to blame, none is dead-lettered."""
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return "disk full"
        return "disk full" if any(sign in str(error) for sign in _DISK_FULL) else None

    async def store_answers(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.client.query, "SELECT 1"), timeout=10)
        except Exception:  # any failure to answer is an outage; the write's own error says which
            return False
        return True

    # --- one batch ---------------------------------------------------------------------------
    def land(self, records: list[Record]) -> list[Rejected]:
        """Insert a batch; return the records that could not be landed, with their reason."""
        rejected: list[Rejected] = []
        rows = Rows()
        scored: list[tuple[dict[str, Any], Rows]] = []
        for r in records:
            try:
                if r.topic == self.dlq_topic:
                    letter = self.codec.decode(r.value, expect=DEAD_LETTER).record
                    rows.add("dead_letters", dead_letter_row(letter, r.partition, r.offset))
                    continue
                if r.topic == self.versions_topic:
                    rows.add(
                        "model_versions", model_version_row(self.codec.decode(r.value, expect=MODEL_VERSION).record)
                    )
                    continue
                event = self.codec.decode(r.value, expect=SCORED_TRAJECTORY).record
                these, attrs = scored_rows(event, self.codec, r.partition, r.offset)
            except Exception as exc:  # decoding and row building are deterministic: retrying cannot help
                reason = f"cannot make ClickHouse rows: {type(exc).__name__}: {exc}"
                rejected.append(Rejected(r, reason, type(exc).__name__))
                continue
            scored.append((attrs, these))
        # What every table already holds of these trajectories, in one query: a batch costs one round trip
        # for its checks, not one per table (at 50 trajectories/s the checks were half of each batch's time).
        present = self._present(sorted({a["trajectory_id"] for a, _ in scored}))
        seen: set[tuple[str, int]] = set()
        fresh: list[dict[str, Any]] = []
        repeats = 0
        for attrs, these in scored:
            key = (attrs["trajectory_id"], attrs["version"])
            # A version has landed when its +1 delta is there: that table is written last.
            if _key((*key, 1)) in present["trajectory_deltas"] or key in seen:
                repeats += 1
                continue
            seen.add(key)
            fresh.append(attrs)
            rows.extend(these)
        for delta in self._deltas(fresh):
            rows.add("trajectory_deltas", delta)
        self._insert(rows, present)
        # Counted once the inserts are done: a batch that failed is written (and counted) again.
        self.stats.records += len(records)
        self.stats.repeats += repeats
        self.stats.trajectories += len(fresh)
        return rejected

    def _deltas(self, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """+1 per new version, -1 for the version it replaces (stored, or earlier in this batch)."""
        if not fresh:
            return []
        ids = sorted({a["trajectory_id"] for a in fresh})
        latest: dict[str, dict[str, Any]] = {}
        cols = DELTA_ATTRIBUTES
        for row in self._select(
            f"SELECT {', '.join(cols)} FROM {self.db}.trajectory_deltas WHERE trajectory_id IN {{ids:Array(String)}} "
            "AND sign = 1 ORDER BY version DESC LIMIT 1 BY trajectory_id",
            {"ids": ids},
        ):
            latest[row[0]] = dict(zip(cols, row, strict=True))
        out: list[dict[str, Any]] = []
        for attrs in sorted(fresh, key=lambda a: (a["trajectory_id"], a["version"])):
            before = latest.get(attrs["trajectory_id"])
            if before is not None and before["version"] >= attrs["version"]:
                continue  # an older version arriving late: the newer one already counts
            out.extend(delta_rows(attrs, [before] if before else []))
            latest[attrs["trajectory_id"]] = attrs
        return out

    def _present(self, ids: list[str]) -> dict[str, set[str]]:
        """Per table keyed by trajectory id, the keys (as ``_key`` strings) it holds for ``ids``."""
        tables = [t for t in ORDER if KEYS[t][0] == "trajectory_id"]
        found: dict[str, set[str]] = {t: set() for t in tables}
        if not ids:
            return found
        separator = ", '\\x1f', "  # ClickHouse's escape for the unit separator _key joins with
        sql = " UNION ALL ".join(
            f"SELECT '{t}', concat({separator.join(f'toString({c})' for c in KEYS[t])}) FROM {self.db}.{t} "
            "WHERE trajectory_id IN {ids:Array(String)}"
            for t in tables
        )
        for table, key in self._select(sql, {"ids": ids}):
            found[table].add(key)
        return found

    def _dead_letters_present(self, keys: set[tuple[Any, ...]]) -> set[str]:
        if not keys:
            return set()
        found = self._select(
            f"SELECT DISTINCT dlq_partition, dlq_offset FROM {self.db}.dead_letters WHERE dlq_partition IN "
            "{p:Array(UInt32)} AND dlq_offset BETWEEN {lo:UInt64} AND {hi:UInt64}",
            {"p": sorted({k[0] for k in keys}), "lo": min(k[1] for k in keys), "hi": max(k[1] for k in keys)},
        )
        return {_key(row) for row in found}

    def _versions_present(self, keys: set[tuple[Any, ...]]) -> set[str]:
        """Model-version events already landed (a re-delivered batch): keyed by model, version, event and time."""
        found = self._select(
            f"SELECT model_name, version, event, at FROM {self.db}.model_versions WHERE model_name IN "
            "{m:Array(String)} AND version IN {v:Array(String)}",
            {"m": sorted({k[0] for k in keys}), "v": sorted({k[1] for k in keys})},
        )
        return {_key((m, v, e, epoch_ms(at))) for m, v, e, at in found}

    def _insert(self, rows: Rows, present: dict[str, set[str]]) -> None:
        for table in ORDER:
            batch = rows.tables[table]
            if not batch:
                continue
            positions = [COLUMNS[table].index(k) for k in KEYS[table]]
            keys = [tuple(_plain(row[i]) for i in positions) for row in batch]
            if table in present:
                there = present[table]
            elif table == "model_versions":
                there = self._versions_present(set(keys))
            else:
                there = self._dead_letters_present(set(keys))
            new: list[list[Any]] = []
            seen: set[str] = set()
            for row, key in zip(batch, keys, strict=True):
                text = _key(key)
                if text not in there and text not in seen:
                    seen.add(text)
                    new.append(row)
            if new:
                self._insert_rows(table, new)
                self.stats.rows[table] = self.stats.rows.get(table, 0) + len(new)
                if table == "dead_letters":
                    self.stats.dead_letters += len(new)

    def _insert_rows(self, table: str, rows: list[list[Any]]) -> None:
        self.client.insert(f"{self.db}.{table}", rows, column_names=COLUMNS[table])

    def _select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql, parameters=parameters).result_rows]
