"""A corpus for the ART and Agent Lightning exports, landed through the real scoring and ClickHouse sink.

Each trajectory has three turns: the first recorded its log-probabilities with every token's id, the second
its log-probabilities with one id missing, the third none; a user message is redacted. Tasks repeat, so the
task groups have more than one member.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Redacted,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    end_record,
    start_record,
    turn_record,
)

# Per turn: the (token text, logprob, token id) the serving model returned, or None where it returned none.
TURN_LOGPROBS: list[list[tuple[str, float, int | None]] | None] = [
    [("Let", -0.11, 101), (" me", -0.22, 102)],
    [("Re", -0.31, 201), ("funded", -0.42, None)],
    None,
]
ASSISTANT_TEXT = ["Let me look it up.", None, "Refunded ünïcode."]  # turn 1 replies with a tool call only


@dataclass
class Emitted:
    trajectory_id: str
    task: str


def emit(codec: EventCodec, task: str, outcome: str = "success") -> tuple[Emitted, list[tuple[str, bytes]]]:
    tid = f"aa-{uuid.uuid4().hex[:8]}"
    turns = [
        [Message.text("user", f"{task}: order 7 arrived broken"),
         Message.text("assistant", "Let me look it up."),
         Message("assistant", ToolCall("lookup_order", "c1", {"order_id": 7}))],
        [Message("tool", ToolResponse("lookup_order", "c1", {"status": "damaged"}, "success")),
         Message("user", Redacted("pii", "text")),
         Message("assistant", ToolCall("issue_refund", "c2", {"order_id": 7, "amount": 12.5}))],
        [Message("tool", ToolResponse("issue_refund", "c2", {"ok": True}, "success")),
         Message.text("assistant", "Refunded ünïcode.")],
    ]  # fmt: skip
    start = start_record(tid, task, agent_id="agent-art", domain="support", tags=("art",),
                         system_message="You are a careful support agent.")  # fmt: skip
    events = [("events", codec.encode("trajectory_start", start))]
    for i, messages in enumerate(turns):
        recorded = TURN_LOGPROBS[i]
        logprobs = [TokenLogprob(t, lp, tok) for t, lp, tok in recorded] if recorded is not None else None
        model = ModelInfo(response_model="m", model_version="v3", input_tokens=20, output_tokens=4, logprobs=logprobs)
        events.append(("events", codec.encode("turn", turn_record(tid, i, messages, duration_ms=50, model=model))))
    events.append(("events", codec.encode("trajectory_end", end_record(tid, outcome, turn_count=len(turns)))))  # type: ignore[arg-type]
    return Emitted(tid, task), events
