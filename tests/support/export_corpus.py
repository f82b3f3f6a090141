"""A small corpus landed through the real scoring and ClickHouse sink, for the export tests.

Each trajectory is a refund conversation whose user text names its marker (``order <marker>``), so an
exported row can be traced back to the trajectory it came from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

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


@dataclass
class Emitted:
    trajectory_id: str
    marker: str
    outcome: str
    records: list[dict[str, Any]]  # the message records as encoded: (role, (branch, content), reasoning)


def emit(codec: EventCodec, marker: str, *, outcome: str = "success", agent: str = "agent-a", domain: str = "support",
         tags: tuple[str, ...] = ("rt",), task: str = "Refund a broken order", redact_call: bool = False,
         ) -> tuple[Emitted, list[tuple[str, bytes]]]:  # fmt: skip
    tid = f"ex-{marker}-{uuid.uuid4().hex[:6]}"
    call: Any = Redacted("secret", "tool_call") if redact_call else ToolCall("lookup_order", "c1", {"order_id": marker})
    turns = [
        [Message.text("user", f"Refund order {marker}, it arrived broken"),
         Message.text("assistant", "Let me look it up.", reasoning="the order must be found first"),
         Message("assistant", call)],
        [Message("tool", ToolResponse("lookup_order", "c1", {"status": "damaged", "note": "ünïcode"}, "success")),
         Message("user", Redacted("pii", "text")),
         Message("assistant", ToolCall("issue_refund", "c2", {"order_id": marker, "amount": 12.5})),
         Message("assistant", ToolCall("notify", "c3", {"channel": "email"}))],
        [Message("tool", ToolResponse("issue_refund", "c2", {"ok": True}, "success")),
         Message("tool", ToolResponse("notify", "c3", "sent", "success")),
         Message.text("assistant", "Refunded.")],
    ]  # fmt: skip
    start = start_record(tid, task, agent_id=agent, domain=domain, tags=tags,
                         system_message="You are a careful support agent.")  # fmt: skip
    events = [("events", codec.encode("trajectory_start", start))]
    records: list[dict[str, Any]] = []
    for i, messages in enumerate(turns):
        model = ModelInfo(response_model="m", model_version="v1", input_tokens=10, output_tokens=3,
                          logprobs=[TokenLogprob("Re", -0.1, 11)])  # fmt: skip
        record = turn_record(tid, i, messages, duration_ms=40, model=model)
        records.extend(record["messages"])
        events.append(("events", codec.encode("turn", record)))
    events.append(("events", codec.encode("trajectory_end", end_record(tid, outcome, turn_count=len(turns)))))  # type: ignore[arg-type]
    return Emitted(tid, marker, outcome, records), events
