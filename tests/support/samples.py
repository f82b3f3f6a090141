"""Sample events covering every record type and every branch of the content union."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Structured,
    Text,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    Widget,
    dead_letter_record,
    end_record,
    feedback_record,
    start_record,
    turn_record,
)
from trajstream_sdk.limits import Limits

T0 = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)

ALL_CONTENT = [
    Message("user", Text("Refund order 42 please"), timestamp=T0),
    Message(
        "assistant",
        ToolCall("lookup_order", "call_1", {"order_id": 42, "nested": {"a": [1, 2]}}),
        reasoning="look it up first",
        available_tools=("lookup_order", "refund"),
        active_entities=("order 42",),
        timestamp=T0,
    ),
    Message("tool", ToolResponse("lookup_order", "call_1", {"status": "delivered"}, "success"), timestamp=T0),
    Message("tool", ToolResponse("refund", "call_2", "provider down", "error"), timestamp=T0),
    Message("tool", ToolResponse("refund", "call_3", None, "timeout"), timestamp=T0),
    Message("assistant", Widget("order_card", {"order_id": 42, "total": 9.5}), send_to_user=True, timestamp=T0),
    Message("assistant", Structured({"refund": True, "amount": 9.5}), timestamp=T0),
    Message("user", Text("my card is 4111 1111 1111 1111"), persist=False, reasoning="secret", timestamp=T0),
]

CONTENT_KINDS = {"text", "tool_call", "tool_response", "widget", "structured", "redacted"}


def as_decoded(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the codec reads it back: content unions are written as (name, fields), read as fields."""
    if "messages" not in record:
        return record
    return {**record, "messages": [{**m, "content": m["content"][1]} for m in record["messages"]]}


def sample_records(trajectory_id: str = "6f1c2b1e-7d7a-4f7e-9a51-0c3d1f0b7a11") -> dict[str, dict[str, Any]]:
    return {
        "trajectory_start": start_record(
            trajectory_id,
            "Refund order 42",
            agent_id="support-bot",
            agent_name="Support",
            conversation_id="conv-1",
            domain="support",
            framework="openai-agents",
            environment="staging",
            tags=["a", "b"],
            parent_trajectory_id="00000000-0000-4000-8000-000000000001",
            parent_span_id="span-parent",
            referrer="https://shop.example/help",
            user_id="u-123",
            user_attributes={"plan": "pro"},
            entities=[{"name": "order 42", "entity_type": "order"}],
            resources=[{"uri": "kb://refund-policy", "kind": "document", "description": "policy"}],
            custom_context={"ab_test": "B"},
            system_message="You are a support agent.",
            timestamp=T0,
        ),
        "turn": turn_record(
            trajectory_id,
            3,
            ALL_CONTENT,
            span_id="span-3",
            parent_span_id="span-root",
            timestamp=T0,
            duration_ms=812,
            error=True,
            error_type="ToolError",
            turn_reward=0.1,
            model=ModelInfo(
                request_model="gpt-4o-mini",
                response_model="gpt-4o-mini-2024-07-18",
                provider="openai",
                model_version="v7",
                input_tokens=321,
                output_tokens=45,
                response_id="chatcmpl-1",
                finish_reason="tool_calls",
                logprobs=[TokenLogprob("look", -0.12, 1000), TokenLogprob("up", -1.5)],
            ),
        ),
        "trajectory_end": end_record(
            trajectory_id,
            "partial",
            final_reward=0.5,
            feedback_score=0.8,
            human_reviewed=True,
            turn_count=4,
            error_type=None,
            error_message=None,
            timestamp=T0,
        ),
        "feedback": feedback_record(
            trajectory_id,
            source="reviewer",
            reward=1.0,
            score=0.9,
            human_reviewed=True,
            reviewer="r-1",
            comment="good",
            timestamp=T0,
        ),
        "dead_letter": dead_letter_record(
            stage="emit",
            reason="invalid JSON",
            error_type="InputRecordError",
            source="file:x.jsonl",
            source_partition=None,
            source_offset=7,
            trajectory_id=None,
            key=b"k",
            payload=b"\x00\xffnot json",
            max_payload_bytes=Limits().dead_letter_payload_bytes,
        ),
    }
