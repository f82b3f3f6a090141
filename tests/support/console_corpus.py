"""A small corpus landed in ClickHouse through the real scoring and the real sink, with what it should show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import (
    Message,
    ToolCall,
    ToolResponse,
    dead_letter_record,
    end_record,
    start_record,
    turn_record,
)


@dataclass
class Corpus:
    outcomes: dict[str, str] = field(default_factory=dict)  # trajectory id -> outcome
    agents: dict[str, str] = field(default_factory=dict)
    loop_id: str = ""
    letter_refs: list[str] = field(default_factory=list)


def _record(topic: str, offset: int, value: bytes) -> Any:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", value, None, 0, len(value), [])


def _loop_trajectory(codec: EventCodec) -> tuple[str, list[tuple[str, bytes]]]:
    """The same call (search, same arguments) three times, then a failure."""
    tid = "loop-" + datetime.now(UTC).strftime("%H%M%S%f")
    events = [("events", codec.encode("trajectory_start", start_record(tid, "Find the lost parcel", agent_id="agent-b",
                                                                       domain="logistics")))]  # fmt: skip
    for i in range(3):
        messages = [Message("assistant", ToolCall("search", f"s{i}", {"q": "parcel"}))]
        if i:
            messages.insert(0, Message("tool", ToolResponse("search", f"s{i - 1}", {"hits": 0}, "success")))
        events.append(("events", codec.encode("turn", turn_record(tid, i, messages, duration_ms=50))))
    events.append(("events", codec.encode("trajectory_end", end_record(tid, "failure", turn_count=3))))
    return tid, events


def land_corpus(settings: Settings, client: Any, codec: EventCodec) -> Corpus:
    """Six trajectories of agent-a (four successes, two failures after a failing lookup; tagged, with tokens
    of model gpt-test version v1), one of agent-b looping on search, two model-version events, two dead letters."""
    pipeline = Pipeline(settings, codec)
    corpus = Corpus()
    scored: list[bytes] = []
    for n in range(6):
        ok = n % 3 != 2
        tid, events = tool_trajectory(codec, f"Refund order {n}", "lookup", "success" if ok else "error",
                                      "success" if ok else "failure", turns=3, tags=("beta",), model="gpt-test",
                                      tokens=(100, 10), model_version="v1")  # fmt: skip
        corpus.outcomes[tid], corpus.agents[tid] = ("success" if ok else "failure"), "agent-a"
        scored += pipeline.run(events)
    corpus.loop_id, events = _loop_trajectory(codec)
    corpus.outcomes[corpus.loop_id], corpus.agents[corpus.loop_id] = "failure", "agent-b"
    scored += pipeline.run(events)
    sink = ClickHouseSink(settings, client, codec)
    records = [_record(settings.topic("trajectories.scored"), i, v) for i, v in enumerate(scored)]
    now = datetime.now(UTC)
    for i, event in enumerate(("created", "deployed")):
        value = codec.encode("model_version", {
            "model_name": "policy", "version": "v1", "number": 1, "parent": None, "event": event, "at": now,
            "path": "/models/policy/v1", "windows": ["w1"], "metrics": {"heldout_reward": 0.6, "kl_from_deployed": 0.01,
            "size_bytes": 2_000_000.0}, "reason": "gate: better" if event == "deployed" else "", "base": None,
            "canary_share": 0.0})  # fmt: skip
        records.append(_record(settings.topic("model.versions"), i, value))
    for i, source in enumerate((settings.topic("events"), "file:bad.jsonl")):
        letter = dead_letter_record(stage="assembly", reason="no such trajectory", error_type="OrphanEvent",
                                    source=source, source_partition=0, source_offset=i, trajectory_id=None, key=None,
                                    payload=b"bad",
                                    max_payload_bytes=codec.limits.dead_letter_payload_bytes)  # fmt: skip
        records.append(_record(settings.topic("deadletter"), 40 + i, codec.encode("dead_letter", letter)))
        corpus.letter_refs.append(f"0:{40 + i}")
    assert sink.land(records) == []
    return corpus
