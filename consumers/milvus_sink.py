"""The Milvus sink: embeds each scored trajectory and its decision points, and upserts them by id.

Upserts make it idempotent: a re-delivered record writes the same rows again, a new version of a
trajectory replaces the old one's (ids are the trajectory id, and trajectory id plus step). Embedding
is batched; a ``BatchSink`` (trajstream.sink), it commits offsets after the upserts return.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_store import DECISIONS, TRAJECTORIES, ensure_collections
from trajstream.consumers.summaries import decision_points, decision_text, trajectory_text
from trajstream.errors import CodecError
from trajstream.settings import Settings
from trajstream.sink import BatchSink, Record, Written
from trajstream.topics import MILVUS_SINK_GROUP, SCORED
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.schemas import SCORED_TRAJECTORY

log = logging.getLogger(__name__)


@dataclass
class MilvusStats:
    records: int = 0
    trajectories: int = 0
    decision_points: int = 0
    skipped: int = 0  # unreadable records (the ClickHouse sink dead-letters them)
    last_upsert_ms: int = 0


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


class MilvusSink(BatchSink):
    stage = "sink-milvus"

    def __init__(self, settings: Settings, client: Any, embedder: Embedder, codec: EventCodec | None = None):
        super().__init__(
            settings, codec or codec_for(settings), group=settings.consumer_group(MILVUS_SINK_GROUP),
            topics=(settings.topic(SCORED),), batch_rows=settings.sink_batch_rows,
            batch_seconds=settings.milvus_batch_seconds,
        )  # fmt: skip
        self.client = client
        self.embedder = embedder
        self.stats = MilvusStats()
        self._vectors: dict[str, list[float]] = {}
        ensure_collections(client, settings)

    async def write(self, batch: list[Record]) -> Written:
        # Unreadable records are counted, not dead-lettered: the ClickHouse sink reads the same topic and
        # dead-letters them once.
        # On the embedder's low-priority thread: the batch's Python work as well as its vectors yield the
        # CPU to the ClickHouse path.
        await asyncio.to_thread(self.embedder.in_background, lambda: self.land(batch))
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

    def rows(self, records: list[Record]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """The rows of both collections, and how many records were unreadable."""
        latest: dict[str, tuple[dict[str, Any], TrajectoryView]] = {}
        skipped = 0
        for r in records:
            try:
                scored = self.codec.decode(r.value, expect=SCORED_TRAJECTORY).record
                view = TrajectoryView.from_bytes(scored["trajectory"], self.codec)
            except CodecError:
                skipped += 1
                continue
            kept = latest.get(view.trajectory_id)
            if kept is None or kept[1].version <= view.version:
                latest[view.trajectory_id] = (scored, view)
        trajectories, decisions = [], []
        for scored, view in latest.values():
            common = {
                "trajectory_id": view.trajectory_id, "version": view.version, "outcome": scored["outcome"],
                "reward": float(scored["reward"]), "domain": view["domain"] or "", "agent_id": view["agent_id"] or "",
                "model_version": scored["model_versions"][-1] if scored["model_versions"] else "",
                "ended_ms": _ms(view["ended_at"]),
            }  # fmt: skip
            trajectories.append({"id": view.trajectory_id, "text": trajectory_text(view),
                                 "task": view.task_description[:2000], **common})  # fmt: skip
            for point in decision_points(view):
                decisions.append({
                    "id": f"{view.trajectory_id}:{point.step_index}", "text": decision_text(point.state, point.action),
                    "step_index": point.step_index, "tool": point.tool[:128], "action": point.action[:1000],
                    "next_tools": point.next_tools[:2000], "state": point.state[:2000], **common,
                })  # fmt: skip
        return trajectories, decisions, skipped

    def land(self, records: list[Record]) -> None:
        trajectories, decisions, skipped = self.rows(records)
        for collection, rows in ((TRAJECTORIES, trajectories), (DECISIONS, decisions)):
            if not rows:
                continue
            texts = [row.pop("text") for row in rows]
            # Vectors outlive a failed upsert: a batch that waits out an outage is embedded once.
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
            self._vectors.update(zip(missing, self.embedder.encode(missing) if missing else [], strict=True))
            for row, text in zip(rows, texts, strict=True):
                row["vector"] = self._vectors[text]
            self.client.upsert(collection, rows)
        self._vectors.clear()
        self.stats.records += len(records)
        self.stats.skipped += skipped
        self.stats.trajectories += len(trajectories)
        self.stats.decision_points += len(decisions)
        self.stats.last_upsert_ms = int(time.time() * 1000)
