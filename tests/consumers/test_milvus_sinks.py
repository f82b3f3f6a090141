"""The two Milvus sinks: trajectory vectors first, decision points from their own backlog.

Real broker, real milvus-lite (a database file of each test's own), the real model.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.streams import publish
from trajstream.assembled import TrajectoryView
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_sink import DecisionSink, MilvusSink, TrajectorySink
from trajstream.consumers.milvus_store import DECISIONS, TRAJECTORIES, connect
from trajstream.consumers.summaries import decision_points
from trajstream.pipeline import group_backlog
from trajstream.settings import Settings
from trajstream.sink import Record
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream.topics import MILVUS_DECISION_GROUP, MILVUS_TRAJECTORY_GROUP, SCORED
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

TASKS = ["Refund order 7 that arrived damaged", "Reset the password of user 9", "Book a flight for trip 3"]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()  # the model loads once for the module


def _scored(settings: Settings, codec: SingleObjectCodec, count: int) -> dict[str, bytes]:
    """``count`` scored trajectories over three tasks: trajectories of one task share their texts."""
    pipeline = Pipeline(settings, codec)
    out: dict[str, bytes] = {}
    for n in range(count):
        tid, events = tool_trajectory(codec, TASKS[n % len(TASKS)], "lookup", "success", "success", turns=3)
        (out[tid],) = pipeline.run(events)
    return out


def _points(codec: SingleObjectCodec, scored: dict[str, bytes]) -> set[str]:
    ids = set()
    for value in scored.values():
        view = TrajectoryView.from_bytes(codec.decode(value).record["trajectory"], codec)
        ids |= {f"{view.trajectory_id}:{p.step_index}" for p in decision_points(view)}
    return ids


def _in(client: Any, collection: str, ids: list[str]) -> set[str]:
    """The trajectory ids of ``ids`` whose rows a vector search in ``collection`` finds (the index holds them)."""
    quoted = ", ".join(f'"{i}"' for i in ids)
    hits = client.search(collection, data=[[1.0] + [0.0] * 383], limit=1000, filter=f"trajectory_id in [{quoted}]",
                         output_fields=["trajectory_id"])  # fmt: skip
    return {h["entity"]["trajectory_id"] for h in hits[0]}


async def _until(check: Callable[[], Any], what: str, tasks: list[asyncio.Task[None]], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        for task in tasks:
            if task.done():
                task.result()  # a sink stopped: its error, not a timeout
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        await asyncio.sleep(0.2)


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    return topics.model_copy(update={"milvus_uri": str(tmp_path / "milvus.db"), "milvus_batch_seconds": 0.1,
                                     "milvus_trajectory_batch_rows": 4, "milvus_decision_batch_rows": 8})  # fmt: skip


async def test_both_sinks_land_every_trajectory_and_decision_point_and_the_counts_reconcile(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path, embedder: Embedder
) -> None:
    settings = _settings(topics, tmp_path)
    scored = await asyncio.to_thread(_scored, settings, codec, 12)
    points = _points(codec, scored)
    client = connect(settings)
    sinks: list[MilvusSink] = [TrajectorySink(settings, client, embedder, codec),
                               DecisionSink(settings, client, embedder, codec)]  # fmt: skip
    trajectories, decisions = sinks
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sink.run(stop)) for sink in sinks]
    try:
        await publish(settings, [(SCORED, tid.encode(), value) for tid, value in scored.items()])
        await _until(lambda: trajectories.stats.records == decisions.stats.records == len(scored), "both sinks", tasks)
        groups = (MILVUS_TRAJECTORY_GROUP, MILVUS_DECISION_GROUP)

        def committed() -> bool:  # the commit follows the upsert
            return all(_backlog(settings, group) == 0 for group in groups)

        await _until(committed, "both groups committed", tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    ids = list(scored)
    assert _in(client, TRAJECTORIES, ids) == set(ids)
    quoted = ", ".join(f'"{i}"' for i in ids)
    found = client.query(DECISIONS, filter=f"trajectory_id in [{quoted}]", output_fields=["id"])
    assert {row["id"] for row in found} == points
    assert (trajectories.stats.trajectories, trajectories.stats.decision_points) == (len(scored), 0)
    assert (decisions.stats.trajectories, decisions.stats.decision_points) == (len(scored), len(points))
    assert trajectories.stats.skipped == decisions.stats.skipped == 0
    # Trajectories of one task share their texts: each distinct text was embedded once, the rest came from the
    # cache; the counts add up to the rows each sink wrote.
    assert trajectories.stats.cache.hits + trajectories.stats.cache.misses == len(scored)
    assert decisions.stats.cache.hits + decisions.stats.cache.misses == len(points)
    assert trajectories.stats.cache.hits >= len(scored) - len(TASKS) and decisions.stats.cache.hits > 0


def _backlog(settings: Settings, group: str) -> int | None:
    backlog = group_backlog(settings, settings.consumer_group(group), (SCORED,))
    return backlog.records if backlog is not None else None


class HeldDecisionSink(DecisionSink):
    """A decision sink whose batches wait until ``gate`` opens: decision points backlogged."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.held = threading.Event()  # a batch is waiting at the gate

    def land(self, records: list[Record]) -> None:
        self.held.set()
        self.gate.wait(timeout=300)
        super().land(records)


async def test_a_trajectory_is_searchable_before_its_decision_points_while_they_are_backlogged(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path, embedder: Embedder
) -> None:
    settings = _settings(topics, tmp_path)
    scored = await asyncio.to_thread(_scored, settings, codec, 6)
    ids = list(scored)
    client = connect(settings)
    trajectories = TrajectorySink(settings, client, embedder, codec)
    decisions = HeldDecisionSink(settings, client, embedder, codec)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sink.run(stop)) for sink in (trajectories, decisions)]
    try:
        await publish(settings, [(SCORED, tid.encode(), value) for tid, value in scored.items()])
        # The decision sink holds its batch on the embedder's low-priority lane; the trajectory vectors, on the
        # fresh lane, do not wait behind it.
        await _until(lambda: _in(client, TRAJECTORIES, ids) == set(ids), "trajectories searchable", tasks)
        assert decisions.held.is_set() and not decisions.gate.is_set()
        assert _in(client, DECISIONS, ids) == set() and decisions.stats.decision_points == 0
        # Kafka measures the backlog: the decision group has every record still to do, and says since when.
        backlog = await asyncio.to_thread(group_backlog, settings, settings.consumer_group(MILVUS_DECISION_GROUP),
                                          (SCORED,), True)  # fmt: skip
        assert backlog is not None and backlog.records == len(ids)
        assert backlog.oldest_ms is not None and 0 <= time.time() * 1000 - backlog.oldest_ms < 120_000
        decisions.gate.set()
        await _until(lambda: _in(client, DECISIONS, ids) == set(ids), "decision points searchable", tasks)
        await _until(lambda: _backlog(settings, MILVUS_DECISION_GROUP) == 0, "decision group committed", tasks)
    finally:
        decisions.gate.set()
        stop.set()
        await asyncio.gather(*tasks)
