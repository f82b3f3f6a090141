"""The Milvus sinks: one embeds each scored trajectory's vector, the other its decision points; both upsert by id.

Recall needs the trajectory's vector first, and a trajectory brings one trajectory text and 4-5 decision
texts: embedded in one batch, the trajectory vectors waited behind the decision points. So two sinks read
the scored topic, each in its own consumer group (Kafka's lag of each group is its own backlog):

- ``TrajectorySink``: small batches, their vectors on the embedder's fresh lane;
- ``DecisionSink``: larger batches, their vectors on its low-priority lane, which yields the CPU to the
  fresh vectors; its lag is the decision points' backlog (`trajstream status`).

The rest of a batch's work (decoding, texts, upserts) runs at normal priority (``Embedder``'s docstring).

Upserts make them idempotent: a re-delivered record writes the same rows again, a new version of a
trajectory replaces the old one's (ids are the trajectory id, and trajectory id plus step). Each is a
``BatchSink`` (trajstream.sink): it commits offsets after its upserts return.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.consumers.embedding import Embedder, Lane
from trajstream.consumers.milvus_store import DECISIONS, TRAJECTORIES, ensure_collections
from trajstream.consumers.summaries import decision_points, decision_text, trajectory_text
from trajstream.consumers.vector_cache import CacheCounts
from trajstream.errors import CodecError
from trajstream.settings import Settings
from trajstream.sink import BatchSink, Record, Written
from trajstream.topics import MILVUS_DECISION_GROUP, MILVUS_TRAJECTORY_GROUP, SCORED
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.schemas import SCORED_TRAJECTORY

log = logging.getLogger(__name__)


@dataclass
class MilvusStats:
    records: int = 0
    trajectories: int = 0  # trajectories whose rows this sink upserted
    decision_points: int = 0
    skipped: int = 0  # unreadable records (the ClickHouse sink dead-letters them)
    last_upsert_ms: int = 0
    cache: CacheCounts = field(default_factory=CacheCounts)  # texts found in the embedder's cache, or embedded


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


def latest_views(codec: EventCodec, records: list[Record]) -> tuple[list[tuple[dict[str, Any], TrajectoryView]], int]:
    """The latest version of each trajectory in ``records`` (scored record, view), and how many were unreadable."""
    latest: dict[str, tuple[dict[str, Any], TrajectoryView]] = {}
    skipped = 0
    for r in records:
        try:
            scored = codec.decode(r.value, expect=SCORED_TRAJECTORY).record
            view = TrajectoryView.from_bytes(scored["trajectory"], codec)
        except CodecError:
            skipped += 1
            continue
        kept = latest.get(view.trajectory_id)
        if kept is None or kept[1].version <= view.version:
            latest[view.trajectory_id] = (scored, view)
    return list(latest.values()), skipped


def common_fields(scored: dict[str, Any], view: TrajectoryView) -> dict[str, Any]:
    """The scalar fields both collections filter on."""
    return {
        "trajectory_id": view.trajectory_id, "version": view.version, "outcome": scored["outcome"],
        "reward": float(scored["reward"]), "domain": view["domain"] or "", "agent_id": view["agent_id"] or "",
        "model_version": scored["model_versions"][-1] if scored["model_versions"] else "",
        # A version with neither time (a sub-agent linked to a state with no events of its own) sorts by when
        # it was scored, as the ClickHouse sink's rows do not exist for it to disagree with.
        "ended_ms": _ms(view.times[1] or scored["scored_at"]),
    }  # fmt: skip


def trajectory_rows(scored: dict[str, Any], view: TrajectoryView) -> list[dict[str, Any]]:
    return [{"id": view.trajectory_id, "text": trajectory_text(view), "task": view.task_description[:2000],
             **common_fields(scored, view)}]  # fmt: skip


def decision_rows(scored: dict[str, Any], view: TrajectoryView) -> list[dict[str, Any]]:
    common = common_fields(scored, view)
    return [{
        "id": f"{view.trajectory_id}:{point.step_index}", "text": decision_text(point.state, point.action),
        "step_index": point.step_index, "tool": point.tool[:128], "action": point.action[:1000],
        "next_tools": point.next_tools[:2000], "state": point.state[:2000], **common,
    } for point in decision_points(view)]  # fmt: skip


class MilvusSink(BatchSink):
    """What both Milvus sinks share: decoding, embedding through the cache, upserting, the store's health."""

    collection: str
    lane: Lane  # the embedder's lane of this sink's vectors

    def __init__(self, settings: Settings, client: Any, embedder: Embedder, codec: EventCodec | None, *,
                 group: str, batch_rows: int):  # fmt: skip
        super().__init__(
            settings, codec or codec_for(settings), group=settings.consumer_group(group),
            topics=(settings.topic(SCORED),), batch_rows=batch_rows, batch_seconds=settings.milvus_batch_seconds,
        )  # fmt: skip
        self.client = client
        self.embedder = embedder
        self.stats = MilvusStats()
        ensure_collections(client, settings)

    @abstractmethod
    def rows(self, scored: dict[str, Any], view: TrajectoryView) -> list[dict[str, Any]]:
        """This sink's rows of one trajectory, each with its ``text`` to embed."""

    @abstractmethod
    def counted(self, trajectories: int, rows: int) -> None:
        """Add one batch's trajectories and rows to the stats."""

    async def write(self, batch: list[Record]) -> Written:
        # Unreadable records are counted, not dead-lettered: the ClickHouse sink reads the same topic and
        # dead-letters them once.
        await asyncio.to_thread(self.land, batch)
        return Written()

    @property
    def store(self) -> str:
        return "Milvus"

    async def store_answers(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.client.list_collections, timeout=5), timeout=10)
        except Exception:  # any failure to answer is an outage; the write's own error says which
            return False
        return True

    async def store_back(self) -> None:
        # A restarted server serves its collections released: load them before writing and searching.
        await asyncio.to_thread(ensure_collections, self.client, self.settings)

    def land(self, records: list[Record]) -> None:
        # Vectors outlive a failed upsert: a batch that waits out an outage finds them in the embedder's cache.
        latest, skipped = latest_views(self.codec, records)
        rows = [row for scored, view in latest for row in self.rows(scored, view)]
        if rows:
            texts = [row.pop("text") for row in rows]
            for row, vector in zip(rows, self.embedder.encode(texts, self.stats.cache, self.lane), strict=True):
                row["vector"] = vector
            self.client.upsert(self.collection, rows)
        self.stats.records += len(records)
        self.stats.skipped += skipped
        self.counted(len(latest), len(rows))
        self.stats.last_upsert_ms = int(time.time() * 1000)


class TrajectorySink(MilvusSink):
    """One vector per trajectory, in small batches on the embedder's fresh lane: what recall searches."""

    stage = "sink-milvus"
    collection = TRAJECTORIES
    lane = "fresh"

    def __init__(self, settings: Settings, client: Any, embedder: Embedder, codec: EventCodec | None = None):
        super().__init__(settings, client, embedder, codec, group=MILVUS_TRAJECTORY_GROUP,
                         batch_rows=settings.milvus_trajectory_batch_rows)  # fmt: skip

    def rows(self, scored: dict[str, Any], view: TrajectoryView) -> list[dict[str, Any]]:
        return trajectory_rows(scored, view)

    def counted(self, trajectories: int, rows: int) -> None:
        self.stats.trajectories += trajectories


class DecisionSink(MilvusSink):
    """One vector per decision point, from its own backlog on the embedder's low-priority lane."""

    stage = "sink-milvus-decisions"
    collection = DECISIONS
    lane = "background"

    def __init__(self, settings: Settings, client: Any, embedder: Embedder, codec: EventCodec | None = None):
        super().__init__(settings, client, embedder, codec, group=MILVUS_DECISION_GROUP,
                         batch_rows=settings.milvus_decision_batch_rows)  # fmt: skip

    def rows(self, scored: dict[str, Any], view: TrajectoryView) -> list[dict[str, Any]]:
        return decision_rows(scored, view)

    def counted(self, trajectories: int, rows: int) -> None:
        self.stats.trajectories += trajectories
        self.stats.decision_points += rows
