"""Recall's few-shot examples: the steps of the hit trajectories, hydrated from ClickHouse rows the real sink
landed (the Milvus search is stubbed: its hits are what hydration starts from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.landing import landing_settings
from tests.support.scored_landing import land_events
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.consumers.embedding import DIM
from trajstream.consumers.recall import Recall
from trajstream.settings import Settings
from trajstream.synthetic import tool_trajectory
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration


class _Milvus:
    """Answers every search with the given hits, as MilvusClient.search shapes them."""

    def __init__(self, hits: list[dict[str, Any]]):
        self.hits = hits

    def list_indexes(self, collection: str, field_name: str) -> list[str]:
        return []

    def search(self, collection: str, **_: Any) -> list[list[dict[str, Any]]]:
        return [[{"id": h["trajectory_id"], "distance": 0.9, "entity": h} for h in self.hits]]


class _Embedder:
    def encode_one(self, text: str) -> list[float]:
        return [0.0] * DIM


def test_recall_shows_each_hits_calls_with_their_status_from_the_landed_rows(
    broker_settings: Settings, chdb_dir: Path, codec: SingleObjectCodec
) -> None:
    settings = landing_settings(broker_settings, chdb_dir)
    client = connect(settings)
    migrate(client, settings)
    ok, ok_events = tool_trajectory(codec, "Refund order 7", "lookup", "success", "success", agent="a1", turns=2)
    bad, bad_events = tool_trajectory(codec, "Refund order 8", "refund", "error", "failure", agent="a2", turns=3)
    land_events(settings, client, codec, ok_events + bad_events)
    hits = [{"trajectory_id": t, "version": 1, "task": task, "outcome": outcome, "reward": 0.5, "domain": "support",
             "agent_id": agent} for t, task, outcome, agent in [(bad, "Refund order 8", "failure", "a2"),
                                                                 (ok, "Refund order 7", "success", "a1")]]  # fmt: skip
    recall = Recall(settings, _Milvus(hits), client, _Embedder())  # type: ignore[arg-type]

    messages = recall.recall("refund an order", k=2)["messages"]

    assert [m["content"] for m in messages] == [
        "Example task: Refund order 8",
        # Each call's status is its response's; the last call was never answered.
        "Steps taken (failure, reward 0.50):\n1. refund(n=0) → error\n2. refund(n=1) → error\n"
        "3. refund(n=2) → unanswered",
        "Example task: Refund order 7",
        "Steps taken (success, reward 0.50):\n1. lookup(n=0) → success\n2. lookup(n=1) → unanswered",
    ]
