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
                    model_version: str | None = None, trajectory_id: str | None = None,
                    tags: tuple[str, ...] = (), model: str | None = None,
                    tokens: tuple[int, int] | None = None) -> tuple[str, list[tuple[str, bytes]]]:  # fmt: skip
    """A trajectory that calls ``tool`` once per turn with the given result status: (topic, value) events
    (``model_version``: the serving version its turns record; ``trajectory_id``: fixed, else random;
    ``model`` and ``tokens``: the model and the input and output tokens each turn records)."""
    tid = trajectory_id or str(uuid.uuid4())
    start = start_record(tid, task, agent_id=agent, domain="support", tags=tags)
    events = [(EVENTS_TOPIC, codec.encode("trajectory_start", start))]
    for i in range(turns):
        messages = [Message.text("user", f"{task} (step {i})"), Message("assistant", ToolCall(tool, f"c{i}", {"n": i}))]
        if i:
            messages.insert(0, Message("tool", ToolResponse(tool, f"c{i - 1}", {"ok": status == "success"}, status)))
        info = None
        if model_version or model or tokens:
            used = tokens or (None, None)
            info = ModelInfo(response_model=model, model_version=model_version, input_tokens=used[0],
                             output_tokens=used[1])  # fmt: skip
        events.append((EVENTS_TOPIC, codec.encode("turn", turn_record(tid, i, messages, duration_ms=100, model=info))))
    events.append((EVENTS_TOPIC, codec.encode("trajectory_end", end_record(tid, outcome, turn_count=turns))))
    return tid, events


def feedback(codec: EventCodec, tid: str, reward: float) -> tuple[str, bytes]:
    return FEEDBACK_TOPIC, codec.encode("feedback", feedback_record(tid, reward=reward, human_reviewed=True))
