"""The corpus read back from ClickHouse equals what the agents emitted, message for message."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.scored_landing import land_events
from trajstream.consumers.clickhouse_store import ClickHouseError, connect, migrate
from trajstream.corpus.batch_gc import relaxed_gc
from trajstream.corpus.read import CorpusFilter, CorpusReader
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Redacted,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    end_record,
    feedback_record,
    start_record,
    turn_record,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path, chdb_dir: Path) -> Iterator[tuple[Settings, Any]]:
    settings = Settings(
        home=tmp_path, clickhouse_dsn=f"chdb://{chdb_dir}", clickhouse_database=f"r{uuid.uuid4().hex[:10]}"
    )
    client = connect(settings)
    migrate(client, settings)
    yield settings, client


def _emit(
    codec: EventCodec, n: int, outcome: str = "success", tid: str | None = None
) -> tuple[str, list[tuple[str, bytes]], list[dict[str, Any]]]:
    tid = tid or f"rt-{n}-{uuid.uuid4().hex[:6]}"
    turns = [
        [Message.text("user", f"Refund order {n}, it arrived broken"),
         Message("assistant", ToolCall("lookup_order", "c1", {"order_id": n, "note": "ünïcode"}),
                 reasoning="the order must be found first")],
        [Message("tool", ToolResponse("lookup_order", "c1", {"status": "damaged"}, "success")),
         Message("user", Redacted("pii", "text")),
         Message.text("assistant", "Refunded.")],
    ]  # fmt: skip
    events = [("events", codec.encode("trajectory_start", start_record(
        tid, f"Refund order {n}", agent_id="agent-r", domain="support", tags=("rt",),
        system_message="You are a careful support agent.")))]  # fmt: skip
    records = []
    for i, messages in enumerate(turns):
        model = ModelInfo(response_model="m", model_version="v1", input_tokens=10, output_tokens=3,
                          logprobs=[TokenLogprob("Re", -0.1, 11), TokenLogprob("funded", -0.2, None)])  # fmt: skip
        record = turn_record(tid, i, messages, duration_ms=40, model=model)
        records.extend(record["messages"])
        events.append(("events", codec.encode("turn", record)))
    events.append(("events", codec.encode("trajectory_end", end_record(tid, outcome, turn_count=2))))
    return tid, events, records


def test_every_message_comes_back_as_emitted(store: tuple[Settings, Any]) -> None:
    settings, client = store
    codec = codec_for(settings)
    emitted: dict[str, list[dict[str, Any]]] = {}
    events: list[tuple[str, bytes]] = []
    for n in range(3):
        tid, these, records = _emit(codec, n, "success" if n else "failure")
        emitted[tid] = records
        events += these
    land_events(settings, client, codec, events)
    reader = CorpusReader(client, settings, batch=2)  # pages of 2: the keyset crosses pages
    read = list(reader.trajectories(CorpusFilter()))
    got = {t.trajectory_id: t for t in read}
    assert len(read) == len(got)  # each once, across pages
    assert set(got) == set(emitted) and reader.skipped == []
    for tid, records in emitted.items():
        t = got[tid]
        assert [(m.role, m.content, m.reasoning) for m in t.messages] == [
            (r["role"], r["content"][1], r["reasoning"])
            for r in records  # (union branch, record) as encoded
        ]
        assert t.system_message == "You are a careful support agent." and t.tags == ["rt"]
        assert t.messages[3].kind == "redacted" and t.messages[3].content == {"reason": "pii", "original_kind": "text"}
        assert t.turns[0].logprobs == [-0.1, -0.2] and t.turns[0].token_ids == [11, None]
        assert [c.tool for c in t.turns[0].tool_calls] == ["lookup_order"] and t.turns[0].credit is not None
    assert {t.trajectory_id for t in reader.trajectories(CorpusFilter(outcomes=("failure",)))} == {
        t for t in emitted if t.startswith("rt-0-")
    }
    assert reader.count(CorpusFilter(tags=("rt",))) == 3 and reader.count(CorpusFilter(agents=("nobody",))) == 0


def test_pages_of_any_size_give_every_latest_version_once_in_order(store: tuple[Settings, Any]) -> None:
    """The keyset pages, in their time windows, against one plain ordered query of the same table."""
    settings, client = store
    codec = codec_for(settings)
    events: list[tuple[str, bytes]] = []
    for n in range(7):
        events += _emit(codec, n)[1]
    land_events(settings, client, codec, events)
    db = settings.clickhouse_database
    expected = [
        (str(t), int(v))
        for t, v in client.query(
            f"SELECT trajectory_id, version FROM {db}.trajectories ORDER BY ended_at, trajectory_id, version"
        ).result_rows
    ]
    for batch in (1, 2, 3, 50):
        pages = list(CorpusReader(client, settings, batch=batch).pages(CorpusFilter()))
        assert [(h[0], h[1]) for page in pages for h in page] == expected, batch
        assert all(0 < len(page) <= batch for page in pages)


def test_ids_that_look_like_sql_or_placeholders_are_read_back(store: tuple[Settings, Any]) -> None:
    """Ids go into the page's queries as one quoted literal: quotes, backslashes and placeholders stay text."""
    settings, client = store
    codec = codec_for(settings)
    odd = ["quote-'-and-\\-backslash", "brace-{lo:Int64}-{agents:Array(String)}", "plain-id"]
    events: list[tuple[str, bytes]] = []
    for n, tid in enumerate(odd):
        events += _emit(codec, n, tid=tid)[1]
    land_events(settings, client, codec, events)
    reader = CorpusReader(client, settings, batch=2)
    got = {t.trajectory_id: len(t.messages) for t in reader.trajectories(CorpusFilter())}
    assert got == {tid: 5 for tid in odd}


class _FailingMessages:
    """A client whose messages query fails: the read-ahead thread's error must reach the reader's caller."""

    def __init__(self, client: Any):
        self.client = client

    def query(self, sql: str, **kw: Any) -> Any:
        if ".messages " in sql:
            raise RuntimeError("disk gone")
        return self.client.query(sql, **kw)


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "corpus-read-ahead"]


def test_the_read_ahead_thread_hands_over_errors_and_stops_with_the_reader(store: tuple[Settings, Any]) -> None:
    settings, client = store
    codec = codec_for(settings)
    events: list[tuple[str, bytes]] = []
    for n in range(5):
        events += _emit(codec, n)[1]
    land_events(settings, client, codec, events)
    with pytest.raises(ClickHouseError, match="disk gone"):
        list(CorpusReader(_FailingMessages(client), settings, batch=2).trajectories(CorpusFilter()))
    assert _read_ahead_threads() == []
    reading = CorpusReader(client, settings, batch=1).trajectories(CorpusFilter())
    next(reading)  # one page taken, the next ones waiting to be handed over
    assert len(_read_ahead_threads()) == 1
    reading.close()  # a consumer that stops early (an error while writing) must not leave the thread behind
    assert _read_ahead_threads() == []


def test_relaxed_gc_restores_the_collector() -> None:
    before = gc.get_threshold()
    with relaxed_gc():
        assert gc.get_threshold()[0] >= 50_000 and gc.get_freeze_count() > 0
        with relaxed_gc():  # nested (an export inside a worker's job) keeps it relaxed until the outer ends
            pass
        assert gc.get_threshold()[0] >= 50_000
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_latest_only_keeps_each_trajectorys_latest_version_and_filters_it(store: tuple[Settings, Any]) -> None:
    """Feedback re-scores two trajectories into a second version with a reward under 0.5: only that version is read, a
    filter on the reward applies to it (the first version's reward no longer counts), and latest_only=False
    reads both versions."""
    settings, client = store
    codec = codec_for(settings)
    events: list[tuple[str, bytes]] = []
    tids = []
    for n in range(5):
        tid, these, _ = _emit(codec, n)
        tids.append(tid)
        events += these
    pipeline = Pipeline(settings, codec)
    land_events(settings, client, codec, events, pipeline)  # version 1 of each
    feedback = [("feedback", codec.encode("feedback", feedback_record(tid, source="reviewer", reward=0.0)))
                for tid in tids[:2]]  # fmt: skip
    land_events(settings, client, codec, feedback, pipeline)
    db = settings.clickhouse_database
    versions = {(str(t), int(v)): float(r) for t, v, r in client.query(
        f"SELECT trajectory_id, version, reward FROM {db}.trajectories").result_rows}  # fmt: skip
    latest = {t: max(v for u, v in versions if u == t) for t in tids}
    assert all(latest[t] > 1 for t in tids[:2]) and all(latest[t] == 1 for t in tids[2:])
    assert len(versions) == 7
    for batch in (1, 2, 50):
        reader = CorpusReader(client, settings, batch=batch)
        got = [(t.trajectory_id, t.version) for t in reader.trajectories(CorpusFilter())]
        assert sorted(got) == sorted(latest.items()), batch
        assert all(versions[k] < 0.5 for k in got if k[0] in tids[:2]), versions  # blended with the reviews 0
        good = {t.trajectory_id for t in reader.trajectories(CorpusFilter(min_reward=0.5))}
        assert good == set(tids[2:]), batch
        every = [(t.trajectory_id, t.version) for t in reader.trajectories(CorpusFilter(latest_only=False))]
        assert sorted(every) == sorted(versions), batch
