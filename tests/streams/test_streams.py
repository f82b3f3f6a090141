"""The streams stage against the real broker: assembly, AIR and credit, enrichment, dead letters.

One streams worker (a real `trajstream worker streams` subprocess) and one enrichment worker serve
the whole module; each test uses its own trajectory ids.
"""

from __future__ import annotations

import json
import math
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import env_for, trajstream_bin
from tests.support.streams import Worker, latest_by_trajectory, publish, read, running_enricher, wait_for
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import (
    Message,
    ToolCall,
    ToolResponse,
    end_record,
    feedback_record,
    new_id,
    start_record,
    turn_record,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 4.0
MAX_TURNS = 8


@pytest.fixture(scope="module")
def streams(broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = broker_settings.model_copy(
        update={
            "topic_prefix": f"s{uuid.uuid4().hex[:8]}.",
            "assembly_inactivity_timeout_s": TIMEOUT_S,
            "assembly_sweep_interval_s": 0.5,
            "assembly_max_turns": MAX_TURNS,
        }
    )
    import asyncio

    asyncio.run(create_topics(settings))
    logs = tmp_path_factory.mktemp("streams-logs")
    env = {
        "TRAJSTREAM_ASSEMBLY_INACTIVITY_TIMEOUT_S": str(TIMEOUT_S),
        "TRAJSTREAM_ASSEMBLY_SWEEP_INTERVAL_S": "0.5",
        "TRAJSTREAM_ASSEMBLY_MAX_TURNS": str(MAX_TURNS),
    }
    worker = Worker(settings, logs / "streams.log", **env)
    worker.start()
    try:
        with running_enricher(settings, logs / "enrich.log", **env):
            yield settings
    finally:
        worker.stop()


def _turn(tid: str, index: int, *messages: Message, error: bool = False) -> dict[str, Any]:
    return turn_record(tid, index, messages or (Message.text("assistant", f"step {index}"),), error=error)


def _events(codec: SingleObjectCodec, tid: str, turns: int, *, end: bool = True, **start: Any) -> list[Any]:
    key = tid.encode()
    out = [
        ("events", key, codec.encode("trajectory_start", start_record(tid, f"task {tid[:6]}", agent_id="t", **start)))
    ]
    out += [("events", key, codec.encode("turn", _turn(tid, i))) for i in range(turns)]
    if end:
        out.append(("events", key, codec.encode("trajectory_end", end_record(tid, "success", turn_count=turns))))
    return out


def _assembled(settings: Settings, codec: SingleObjectCodec, tid: str, version: int = 1) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        latest = latest_by_trajectory(await read(settings, codec, "trajectories.assembled"))
        found = latest.get(tid)
        return found if found and found["version"] >= version else None

    return wait_for(probe, timeout_s=60)  # type: ignore[no-any-return]


def _turn_indices(codec: SingleObjectCodec, assembled: dict[str, Any]) -> list[int]:
    return [codec.decode(t).record["turn_index"] for t in assembled["turns"]]


def test_out_of_order_turns_and_replays(streams: Settings, codec: SingleObjectCodec) -> None:
    tid = str(uuid.uuid4())
    start, t0, t1, t2, end = _events(codec, tid, 3)
    import asyncio

    asyncio.run(publish(streams, [t2, start, t0, t2, t1, t0, end]))  # two replays
    assembled = _assembled(streams, codec, tid)
    assert _turn_indices(codec, assembled) == [0, 1, 2]
    assert assembled["version"] == 1 and assembled["reason"] == "ended"
    assert assembled["event_count"] == 5
    assert assembled["missing_turns"] == [] and assembled["outcome"] == "success"
    assert assembled["task_description"] == f"task {tid[:6]}"


def test_inactivity_timeout_closes_as_abandoned(streams: Settings, codec: SingleObjectCodec) -> None:
    tid = str(uuid.uuid4())
    import asyncio

    asyncio.run(publish(streams, _events(codec, tid, 2, end=False)))
    assembled = _assembled(streams, codec, tid)
    assert assembled["timed_out"] is True and assembled["reason"] == "timed_out"
    assert assembled["outcome"] == "abandoned"
    assert _turn_indices(codec, assembled) == [0, 1]
    assert assembled["ended_at"] >= assembled["started_at"]


def test_late_turn_and_late_feedback_make_new_versions(streams: Settings, codec: SingleObjectCodec) -> None:
    tid = str(uuid.uuid4())
    import asyncio

    events = _events(codec, tid, 2)
    asyncio.run(publish(streams, events))
    assert _assembled(streams, codec, tid)["version"] == 1
    late = ("events", tid.encode(), codec.encode("turn", _turn(tid, 2)))
    asyncio.run(publish(streams, [late]))
    v2 = _assembled(streams, codec, tid, version=2)
    assert v2["reason"] == "late_turn" and _turn_indices(codec, v2) == [0, 1, 2]
    review = feedback_record(tid, source="reviewer", reward=0.25, score=0.3, human_reviewed=True, comment="meh")
    asyncio.run(publish(streams, [("feedback", tid.encode(), codec.encode("feedback", review))]))
    v3 = _assembled(streams, codec, tid, version=3)
    assert v3["reason"] == "feedback" and v3["final_reward"] == 0.25 and v3["human_reviewed"] is True
    assert [f["comment"] for f in v3["feedback"]] == ["meh"]
    # Each version is emitted once and scored once downstream.
    scored = asyncio.run(read(streams, codec, "trajectories.scored"))
    versions = [r.event.record["trajectory_version"] for r in scored if r.key == tid.encode()]  # type: ignore[union-attr]
    assert sorted(set(versions)) == sorted(versions)


def test_sub_agents_are_linked_to_their_parent(streams: Settings, codec: SingleObjectCodec) -> None:
    parent, child = str(uuid.uuid4()), str(uuid.uuid4())
    import asyncio

    asyncio.run(publish(streams, _events(codec, parent, 1)))
    asyncio.run(publish(streams, _events(codec, child, 1, parent_trajectory_id=parent)))
    linked = _assembled(streams, codec, parent, version=2)
    assert linked["children"] == [child] and linked["reason"] == "child_added"
    assert _assembled(streams, codec, child)["parent_trajectory_id"] == parent


def test_oversize_trajectories_and_bad_bytes_go_to_dead_letters(streams: Settings, codec: SingleObjectCodec) -> None:
    big = str(uuid.uuid4())
    import asyncio

    events = _events(codec, big, MAX_TURNS + 2)
    junk_key = f"junk-{uuid.uuid4()}".encode()
    unknown = b"\xc3\x01" + b"\x07" * 8 + b"\x00"
    asyncio.run(publish(streams, [*events, ("events", junk_key, b"not avro at all"), ("events", junk_key, unknown)]))

    async def letters() -> list[dict[str, Any]] | None:
        found = [
            r.event.record
            for r in await read(streams, codec, "deadletter")
            if r.event and (r.event.record["trajectory_id"] == big or r.key == junk_key)
        ]
        return found if len(found) >= len(events) + 2 else None

    found = wait_for(letters)
    oversize = [f for f in found if f["trajectory_id"] == big]
    assert len(oversize) == len(events)  # every event of the trajectory, none silently dropped
    assert all(f"more than {MAX_TURNS} turns" in f["reason"] for f in oversize)
    assert {f["payload"] for f in oversize} == {value for _, _, value in events}
    bad = {f["error_type"]: f for f in found if f["key"] == junk_key}
    assert bad["MalformedEventError"]["payload"] == b"not avro at all"
    assert "bad marker" in bad["MalformedEventError"]["reason"]
    assert "0707070707070707" in bad["UnknownSchemaError"]["reason"]
    assert bad["UnknownSchemaError"]["source_offset"] is not None
    assert big not in latest_by_trajectory(asyncio.run(read(streams, codec, "trajectories.assembled")))


def test_air_credit_and_heuristic_enrichment_reach_the_scored_trajectory(
    streams: Settings, codec: SingleObjectCodec
) -> None:
    tid = str(uuid.uuid4())
    key = tid.encode()
    turns = [
        turn_record(tid, 0, [Message.text("user", "refund order 7 for ACME"),
                             Message("assistant", ToolCall("refund", "c1", {"order_id": 7}))]),
        turn_record(tid, 1, [Message("tool", ToolResponse("refund", "c1", {"error": "down"}, "error")),
                             Message("assistant", ToolCall("refund", "c2", {"order_id": 7}))]),
        turn_record(tid, 2, [Message("tool", ToolResponse("refund", "c2", {"ok": True}, "success")),
                             Message.text("assistant", "refunded")]),
    ]  # fmt: skip
    start = start_record(tid, "Refund order 7 for ACME", agent_id="t", entities=[{"name": "ACME"}])
    end = end_record(tid, "success", final_reward=0.8, turn_count=3)
    messages = [("events", key, codec.encode("trajectory_start", start))]
    messages += [("events", key, codec.encode("turn", t)) for t in turns]
    messages.append(("events", key, codec.encode("trajectory_end", end)))
    import asyncio

    asyncio.run(publish(streams, messages))

    async def scored() -> dict[str, Any] | None:
        return latest_by_trajectory(await read(streams, codec, "trajectories.scored"), "trajectory_version").get(tid)

    record = wait_for(scored)
    assert record["extractor"] == "heuristic" and record["outcome"] == "success"
    assert record["reward_function"] == "entity_aware@1"
    # The decision method falls back to uniform when the decisions' raw credit is not positive (the
    # backtrack here), and says so in its name.
    credits = {c["method"].split(":")[0]: c for c in (codec.decode(b).record for b in record["credits"])}
    assert set(credits) == {"uniform", "decision"}
    for credit in credits.values():
        assert credit["final_reward"] == 0.8
        assert math.isclose(sum(s["credit"] for s in credit["steps"]), 0.8, abs_tol=1e-9)
        assert [s["turn_index"] for s in credit["steps"]] == [0, 1, 2]
    airs = {s["turn_index"]: s for s in credits["uniform"]["steps"]}
    assert airs[0]["air"] == pytest.approx(-0.1) and "tool_error:refund" in airs[0]["air_reasons"]
    assert airs[1]["air"] == pytest.approx(0.1 - 0.05)  # the retry succeeded but repeated the call
    results = asyncio.run(read(streams, codec, "enrichment.results"))
    enrichment = next(r.event.record for r in results if r.key == key)  # type: ignore[union-attr]
    assert enrichment["extractor"] == "heuristic" and enrichment["status"] == "ok"
    assert any(d["decision_type"] == "backtrack" for d in enrichment["decisions"])
    rewards = asyncio.run(read(streams, codec, "rewards"))
    methods = {r.event.record["method"].split(":")[0] for r in rewards if r.key == key}  # type: ignore[union-attr]
    assert methods == {"uniform", "decision"}


def test_counts_reconcile(streams: Settings, codec: SingleObjectCodec) -> None:
    """Distinct events in = events in the latest assembled versions + dead letters.

    A replay is the same event (same event_id) and counts once; undecodable input counts as one event.
    """
    tids = [str(uuid.uuid4()) for _ in range(6)]
    sent: list[Any] = []
    for i, tid in enumerate(tids):
        events = _events(codec, tid, i + 1)
        sent += events + events[1:2]  # one replayed turn each
    too_big = str(uuid.uuid4())  # never closed, then over the limit: all of it is dead-lettered
    sent += _events(codec, too_big, MAX_TURNS + 1, end=False)
    late = _events(codec, tids[-1], MAX_TURNS + 2)[1:]  # conflicting turns, turns past the limit, a second end
    sent += late
    bad_key = tids[0].encode()
    sent.append(("events", bad_key, b"\xc3\x01garbage"))
    sent.append(("feedback", tids[1].encode(), codec.encode("feedback", feedback_record(tids[1], reward=1.0))))
    import asyncio

    asyncio.run(publish(streams, sent))
    distinct = len({value for _, _, value in sent})
    ours = {*tids, too_big}

    async def tally() -> tuple[int, int] | None:
        latest = latest_by_trajectory(await read(streams, codec, "trajectories.assembled"))
        in_assembled = sum(latest[t]["event_count"] for t in ours if t in latest)
        letters = [
            r for r in await read(streams, codec, "deadletter")
            if r.event and (r.event.record["trajectory_id"] in ours or r.key == bad_key)
        ]  # fmt: skip
        return (in_assembled, len(letters)) if in_assembled + len(letters) >= distinct else None

    in_assembled, dead = wait_for(tally)
    assert in_assembled + dead == distinct, (in_assembled, dead, distinct)
    assert dead == 1 + (MAX_TURNS + 2) + len(late) - 2  # garbage, too_big whole, late minus 2 that fit


def test_a_3_mib_trajectory_is_assembled_scored_and_read_back(streams: Settings, codec: SingleObjectCodec) -> None:
    """Three times the largest event, eight times Kafka's default record: within the limits, so it is written
    as the assembled record, the enrichment request, the tables' changelog records and the scored record."""
    tid = str(uuid.uuid4())
    key = tid.encode()
    turns = [
        codec.encode("turn", turn_record(tid, i, [
            Message.text("user", f"summarise part {i}"),
            Message("assistant", ToolCall("fetch", f"c{i}", {"part": i})),
            Message("tool", ToolResponse("fetch", f"c{i}", {"text": f"{i}" * (800 * 1024)}, "success")),
        ]))
        for i in range(4)
    ]  # fmt: skip
    start = codec.encode("trajectory_start", start_record(tid, "Summarise a long report", agent_id="t"))
    end = codec.encode("trajectory_end", end_record(tid, "success", final_reward=1.0, turn_count=4))
    events = [("events", key, value) for value in (start, *turns, end)]
    assert sum(len(v) for _, _, v in events) > 3 * 1024 * 1024
    assert max(len(v) for _, _, v in events) <= streams.max_event_bytes
    import asyncio

    asyncio.run(publish(streams, events))
    assembled = _assembled(streams, codec, tid)
    assert assembled["turns"] == turns and assembled["version"] == 1 and assembled["reason"] == "ended"

    async def scored() -> dict[str, Any] | None:
        return latest_by_trajectory(await read(streams, codec, "trajectories.scored"), "trajectory_version").get(tid)

    record = wait_for(scored)
    assert record["trajectory_version"] == 1 and record["outcome"] == "success" and record["reward"] > 0
    assert codec.decode(record["trajectory"]).record["turns"] == turns  # the scored record carries it whole
    assert len(record["turn_air"]) == 4
    letters = [r for r in asyncio.run(read(streams, codec, "deadletter")) if r.event and r.key == key]
    assert letters == []


def test_dlq_list_and_replay(streams: Settings, codec: SingleObjectCodec, tmp_path: Path) -> None:
    """A dead letter fixed by hand goes back to its topic and is assembled."""
    tid = str(uuid.uuid4())
    events = _events(codec, tid, 1)
    broken = ("events", tid.encode(), b"\xc3\x01" + events[1][2][2:10] + b"\xff\xff")  # truncated body
    import asyncio

    asyncio.run(publish(streams, [events[0], broken, events[2]]))
    first = _assembled(streams, codec, tid)
    assert first["missing_turns"] == [0]
    env = env_for(streams)

    def letters() -> list[dict[str, Any]]:
        out = subprocess.run([trajstream_bin(), "dlq", "list", "--stage", "assembly", "--json"], env=env,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return [row for row in map(json.loads, out.splitlines()) if row["trajectory_id"] == tid]

    rows = wait_for(lambda: _async(letters))
    assert rows[0]["error_type"] == "MalformedEventError" and "corrupt turn" in rows[0]["reason"]
    ref = rows[0]["ref"]
    fixed = tmp_path / "fixed.bin"
    fixed.write_bytes(events[1][2])
    result = subprocess.run([trajstream_bin(), "dlq", "replay", ref, "--payload", str(fixed)], env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 dead letter(s) sent back" in result.stdout
    again = _assembled(streams, codec, tid, version=2)
    assert again["missing_turns"] == [] and again["reason"] == "late_turn"


def test_a_turn_cut_after_its_envelope_is_dead_lettered_by_scoring(streams: Settings, codec: SingleObjectCodec) -> None:
    """Assembly reads a turn's leading fields only; the cut tail is caught where the turn is decoded whole."""
    tid = str(uuid.uuid4())
    start, t0, end = _events(codec, tid, 1)
    cut = (t0[0], t0[1], t0[2][:-4])
    import asyncio

    asyncio.run(publish(streams, [start, cut, end]))
    assert _assembled(streams, codec, tid)["event_count"] == 3  # the event is counted once, in the trajectory

    async def letters() -> dict[str, Any] | None:
        rows = [r.event.record for r in await read(streams, codec, "deadletter") if r.event]
        by_stage = {r["stage"]: r for r in rows if r["trajectory_id"] == tid}
        return by_stage if {"scoring", "enrichment"} <= set(by_stage) else None

    found = wait_for(letters)
    assert "cannot score" in found["scoring"]["reason"] and "corrupt turn" in found["scoring"]["reason"]
    assert all(r["error_type"] == "MalformedEventError" for r in found.values())


async def _async(fn: Any) -> Any:
    return fn()


def test_replayed_events_do_not_duplicate_new_ids(codec: SingleObjectCodec) -> None:
    # Guard for the tests above: every builder call makes fresh event ids.
    tid = str(uuid.uuid4())
    assert _turn(tid, 0)["event_id"] != _turn(tid, 0)["event_id"]
    assert new_id() != new_id()


def test_reenrich_since_requests_the_latest_versions_again(streams: Settings, codec: SingleObjectCodec) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    tid = str(uuid.uuid4())
    asyncio.run(publish(streams, _events(codec, tid, 1)))
    _assembled(streams, codec, tid)
    since = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
    result = subprocess.run(
        [trajstream_bin(), "enrich", "--since", since, "--prompt-version", "v2"],
        env=env_for(streams), capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.split()[0])
    assembled = latest_by_trajectory(asyncio.run(read(streams, codec, "trajectories.assembled")))
    assert count == len(assembled)  # one request per trajectory, for its latest version
    requests = [r.event.record for r in asyncio.run(read(streams, codec, "enrichment.requests"))]  # type: ignore[union-attr]
    mine = [r for r in requests if r["trajectory_id"] == tid and r["requested_by"] == "reenrich"]
    assert len(mine) == 1 and mine[0]["prompt_version"] == "v2"
    assert mine[0]["trajectory_version"] == assembled[tid]["version"]


def test_the_worker_starts_in_a_home_that_does_not_exist_yet(broker_settings: Settings, tmp_path: Path) -> None:
    """Regression: with an external cluster nothing created TRAJSTREAM_HOME, and Faust, which makes its data
    directory without parents, stopped the worker with FileNotFoundError."""
    home = tmp_path / "not" / "there" / "yet"
    settings = broker_settings.model_copy(update={"home": home, "kafka_bootstrap": broker_settings.bootstrap,
                                                  "topic_prefix": f"h{uuid.uuid4().hex[:8]}."})  # fmt: skip
    import asyncio

    asyncio.run(create_topics(settings))
    worker = Worker(settings, tmp_path / "streams.log", TRAJSTREAM_KAFKA_BOOTSTRAP=settings.bootstrap)
    worker.start()
    try:
        assert (home / "streams").is_dir()
    finally:
        worker.stop()
