"""The Milvus store, sink and recall on both backends: milvus-lite and the Milvus server (tests/consumers/conftest.py).

What differs between them is what these check: the index each gets, the search parameters that index takes,
released collections after a reload, filters without templating (milvus-lite has none), and a fresh upsert
becoming searchable (the server's default consistency is bounded: polled, never assumed at once).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from tests.consumers.conftest import MilvusOf
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_sink import DecisionSink, TrajectorySink
from trajstream.consumers.milvus_store import (
    DECISIONS,
    TRAJECTORIES,
    connect,
    ensure_collections,
    index_type,
    search_params,
)
from trajstream.consumers.recall import Recall
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream.topics import SCORED
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def _settings(milvus_of: MilvusOf, tmp_path: Any, **update: Any) -> Settings:
    return milvus_of(Settings(home=tmp_path, **update))


def _record(value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(SCORED, 0, offset, 0, 0, b"k", value, None, 0, len(value), [])


def _scored(settings: Settings, codec: SingleObjectCodec, tasks: list[tuple[str, str, str]],
            trajectory_id: str | None = None) -> dict[str, bytes]:  # fmt: skip
    """(task, outcome, agent) -> the scored record's bytes, by trajectory id."""
    pipeline = Pipeline(settings, codec)
    out: dict[str, bytes] = {}
    for task, outcome, agent in tasks:
        status = "success" if outcome == "success" else "error"
        tid, events = tool_trajectory(codec, task, "lookup", status, outcome, agent=agent,  # type: ignore[arg-type]
                                      trajectory_id=trajectory_id)  # fmt: skip
        (out[tid],) = pipeline.run(events)
    return out


def _eventually(found: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not found():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f}s: {what}"
        time.sleep(0.2)


def test_each_backend_gets_its_index_with_the_parameters_of_the_settings(milvus_of: MilvusOf, tmp_path: Any) -> None:
    settings = _settings(milvus_of, tmp_path, milvus_hnsw_m=8, milvus_hnsw_ef_construction=64)
    client = connect(settings)
    ensure_collections(client, settings)
    ensure_collections(client, settings)  # again: an existing collection is loaded, not made twice
    server = settings.milvus_uri is not None and settings.milvus_uri.startswith("http")
    for collection in (TRAJECTORIES, DECISIONS):
        assert index_type(client, collection) == ("HNSW" if server else "IVF_FLAT")
        (name,) = client.list_indexes(collection, field_name="vector")
        described = client.describe_index(collection, index_name=name)
        if server:
            assert (int(described["M"]), int(described["efConstruction"])) == (8, 64)
        assert described["metric_type"] == "COSINE"


def test_a_search_asks_what_the_collections_index_takes() -> None:
    settings = Settings(milvus_hnsw_ef=40, recall_nprobe=12)
    assert search_params(settings, "HNSW", 3) == {"params": {"ef": 40}}
    assert search_params(settings, "HNSW", 50) == {"params": {"ef": 50}}  # never fewer candidates than k
    assert search_params(settings, "IVF_FLAT", 3) == {"params": {"nprobe": 12}}


def test_landed_trajectories_are_found_by_recall_with_filters_and_a_new_version_replaces_the_old(
    milvus_of: MilvusOf, tmp_path: Any, codec: SingleObjectCodec, embedder: Embedder
) -> None:
    settings = _settings(milvus_of, tmp_path)
    client = connect(settings)
    agent = f'agent "{uuid.uuid4().hex[:6]}" \\ quoted'  # a filter literal with both characters to escape
    scored = _scored(settings, codec, [
        ("Refund order 7 that arrived damaged", "success", agent),
        ("Refund order 8 that arrived damaged", "failure", agent),
        ("Book a flight from Paris to Rome", "success", "agent-b"),
    ])  # fmt: skip
    refund_ok, refund_bad, flight = scored
    sink = TrajectorySink(settings, client, embedder, codec)
    sink.land([_record(v, n) for n, v in enumerate(scored.values())])
    DecisionSink(settings, client, embedder, codec).land([_record(v, n) for n, v in enumerate(scored.values())])
    recall = Recall(settings, client, clickhouse=None, embedder=embedder)

    def similar(**filters: Any) -> list[str]:
        return [h["trajectory_id"] for h in recall.similar("refund a broken parcel", 3, filters, default_outcome=None)]

    _eventually(lambda: len(similar()) == 3, "the three landed trajectories searchable")
    assert similar()[2] == flight  # the paraphrase finds the refunds first
    assert similar(agent_id=agent, outcome="success") == [refund_ok]
    assert set(similar(agent_id=agent)) == {refund_ok, refund_bad}

    def predicted() -> Any:
        return recall.predict_outcome("Refund order 9 that arrived damaged", "lookup(q=1)", k=20)

    # Decision points: searched with k above ef's floor; a server makes fresh rows searchable within a second.
    _eventually(lambda: bool(predicted().support), "the decision points searchable")
    assert predicted().p_success is not None

    # The failed refund delivered again, now a success: the upsert by id leaves one row, the new outcome.
    (again,) = _scored(settings, codec, [("Refund order 8 that arrived damaged", "success", agent)],
                       trajectory_id=refund_bad).values()  # fmt: skip
    sink.land([_record(again, 9)])
    _eventually(lambda: set(similar(agent_id=agent, outcome="success")) == {refund_ok, refund_bad},
                "the new outcome searchable")  # fmt: skip
    rows = client.query(TRAJECTORIES, filter=f'trajectory_id == "{refund_bad}"', output_fields=["outcome"])
    assert [r["outcome"] for r in rows] == ["success"]


def test_a_released_collection_is_loaded_again_by_recall(
    milvus_of: MilvusOf, tmp_path: Any, codec: SingleObjectCodec, embedder: Embedder
) -> None:
    """A restarted server (milvus-lite after a crash, the server after a release) serves collections released."""
    settings = _settings(milvus_of, tmp_path)
    client = connect(settings)
    scored = _scored(settings, codec, [("Reset the password for user alice", "success", "agent-a")])
    TrajectorySink(settings, client, embedder, codec).land([_record(v, 0) for v in scored.values()])
    recall = Recall(settings, client, clickhouse=None, embedder=embedder)
    _eventually(lambda: len(recall.similar("reset a password", 1)) == 1, "the trajectory searchable")
    client.release_collection(TRAJECTORIES)
    fresh = Recall(settings, client, clickhouse=None, embedder=embedder)  # reads the index type again, released
    assert [h["trajectory_id"] for h in fresh.similar("reset a password", 1)] == list(scored)
