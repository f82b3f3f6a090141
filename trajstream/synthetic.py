"""Synthetic trajectories as encoded events, for tests, benchmarks and demos: a tool called once per turn."""

from __future__ import annotations

import uuid

from trajstream.topics import EVENTS_TOPIC, FEEDBACK_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Outcome,
    ToolCall,
    ToolResponse,
    ToolStatus,
    end_record,
    feedback_record,
    start_record,
    turn_record,
)


def tool_trajectory(codec: EventCodec, task: str, tool: str, status: ToolStatus, outcome: Outcome,
                    agent: str = "agent-a", turns: int = 2,
                    model_version: str | None = None,
                    trajectory_id: str | None = None) -> tuple[str, list[tuple[str, bytes]]]:  # fmt: skip
    """A trajectory that calls ``tool`` once per turn with the given result status: (topic, value) events
    (``model_version``: the serving version its turns record; ``trajectory_id``: fixed, else random)."""
    tid = trajectory_id or str(uuid.uuid4())
    events = [
        (EVENTS_TOPIC, codec.encode("trajectory_start", start_record(tid, task, agent_id=agent, domain="support")))
    ]
    for i in range(turns):
        messages = [Message.text("user", f"{task} (step {i})"), Message("assistant", ToolCall(tool, f"c{i}", {"n": i}))]
        if i:
            messages.insert(0, Message("tool", ToolResponse(tool, f"c{i - 1}", {"ok": status == "success"}, status)))
        model = ModelInfo(model_version=model_version) if model_version else None
        events.append((EVENTS_TOPIC, codec.encode("turn", turn_record(tid, i, messages, duration_ms=100, model=model))))
    events.append((EVENTS_TOPIC, codec.encode("trajectory_end", end_record(tid, outcome, turn_count=turns))))
    return tid, events


def feedback(codec: EventCodec, tid: str, reward: float) -> tuple[str, bytes]:
    return FEEDBACK_TOPIC, codec.encode("feedback", feedback_record(tid, reward=reward, human_reviewed=True))
