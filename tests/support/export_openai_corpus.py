"""A corpus of task groups for the OpenAI/Fireworks exports, landed through the real scoring and sink.

Four task groups: "refund" (three attempts, final rewards 1.0 / 0.5 / 0.0, a redacted user message in
their shared prompt), "flight" (three attempts, 0.9 / 0.2 / 0.6, one making two calls in one model
call), "cancel" (one attempt, which speaks before any user message), and "close" (two attempts whose
rewards differ by less than a pair's margin, with a system note after the user's message). Each emitted
trajectory is kept as the SDK messages of its turns, so that a test compares an export with what the
agent sent, not with what was read back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Outcome,
    Redacted,
    ToolCall,
    ToolResponse,
    end_record,
    start_record,
    turn_record,
)

SYSTEM = "You are a careful support agent."


@dataclass
class Emitted:
    trajectory_id: str
    group: str
    task: str
    outcome: str
    final_reward: float
    turns: list[list[Message]]


def _refund(n: int, reward: float, outcome: Outcome) -> tuple[str, list[list[Message]]]:
    task = "Refund order 7, it arrived broken"
    first = (Message("assistant", ToolCall("lookup_order", "c1", {"order_id": 7, "try": n}))
             if n != 1 else Message.text("assistant", "Which order do you mean?"))  # fmt: skip
    answer = Message.text("assistant", f"Refund {n} issued." if outcome == "success" else f"I cannot help ({n}).")
    response = [Message("tool", ToolResponse("lookup_order", "c1", {"status": "damaged"}, "success"))] if n != 1 else []
    return task, [
        [Message.text("user", task), Message("user", Redacted("pii", "text")), Message.text("user", "Please hurry."),
         first],
        [*response, answer],
    ]  # fmt: skip


def _flight(n: int, reward: float, outcome: Outcome) -> tuple[str, list[list[Message]]]:
    task = "Book a flight to Oslo"
    calls = [Message("assistant", ToolCall("search_flights", f"f{n}", {"to": "OSL", "n": n}))]
    if n == 0:  # two calls in one model call
        calls = [Message.text("assistant", "Searching both airports."), *calls,
                 Message("assistant", ToolCall("search_flights", "g0", {"to": "TRF"}))]  # fmt: skip
    responses = [Message("tool", ToolResponse("search_flights", c.content.call_id, {"flights": n}, "success"))
                 for c in calls if isinstance(c.content, ToolCall)]  # fmt: skip
    return task, [[Message.text("user", task), *calls], [*responses, Message.text("assistant", f"Booked flight {n}.")]]


def _cancel(n: int, reward: float, outcome: Outcome) -> tuple[str, list[list[Message]]]:
    task = "Cancel my subscription"
    return task, [[Message.text("assistant", "Hello, I can cancel it for you.")],
                  [Message.text("user", "Yes please."), Message.text("assistant", "Cancelled.")]]  # fmt: skip


def _close(n: int, reward: float, outcome: Outcome) -> tuple[str, list[list[Message]]]:
    task = "Reset my password"
    note = Message.text("system", "The account is verified.")  # after the user message: not in an RFT prompt
    return task, [[Message.text("user", task), note, Message.text("assistant", f"Reset link sent ({n}).")]]


GROUPS: dict[str, tuple[Any, list[tuple[float, Outcome]]]] = {
    "refund": (_refund, [(1.0, "success"), (0.5, "partial"), (0.0, "failure")]),
    "flight": (_flight, [(0.9, "success"), (0.2, "failure"), (0.6, "success")]),
    "cancel": (_cancel, [(1.0, "success")]),
    "close": (_close, [(0.8, "success"), (0.75, "success")]),
}


def emit_corpus(codec: EventCodec) -> tuple[list[Emitted], list[tuple[str, bytes]]]:
    emitted: list[Emitted] = []
    events: list[tuple[str, bytes]] = []
    for group, (build, attempts) in GROUPS.items():
        for n, (reward, outcome) in enumerate(attempts):
            task, turns = build(n, reward, outcome)
            tid = f"{group}-{n}-{uuid.uuid4().hex[:6]}"
            events.append(("events", codec.encode("trajectory_start", start_record(
                tid, task, agent_id="agent-x", domain="support", system_message=SYSTEM))))  # fmt: skip
            for i, messages in enumerate(turns):
                model = ModelInfo(response_model="m", model_version="v1", input_tokens=10, output_tokens=3)
                events.append(("events", codec.encode("turn", turn_record(tid, i, messages, duration_ms=40,
                                                                          model=model))))  # fmt: skip
            events.append(("events", codec.encode("trajectory_end", end_record(
                tid, outcome, final_reward=reward, turn_count=len(turns)))))  # fmt: skip
            emitted.append(Emitted(tid, group, task, outcome, reward, turns))
    return emitted, events
