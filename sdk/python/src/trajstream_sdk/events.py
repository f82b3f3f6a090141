"""The event model in Python: message contents and builders for the records in ``schemas/``.

Records are plain dicts shaped as fastavro reads and writes them; a union branch of records is
a ``(full_name, fields)`` tuple so that the writer never has to guess the branch.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from trajstream_sdk.limits import DEAD_LETTER_REASON_CHARS

NAMESPACE = "dev.trajstream.events"

Role = Literal["system", "user", "assistant", "tool"]
ToolStatus = Literal["success", "error", "timeout"]
Outcome = Literal["success", "failure", "partial", "abandoned", "error"]
Environment = Literal["prod", "staging", "dev"]

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
TOOL_STATUSES: tuple[str, ...] = ("success", "error", "timeout")
OUTCOMES: tuple[str, ...] = ("success", "failure", "partial", "abandoned", "error")
ENVIRONMENTS: tuple[str, ...] = ("prod", "staging", "dev")

# A text scrubber (for PII) applied to every free-text field before encoding.
Redactor = Callable[[str], str]


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    # Events carry timestamp-millis: truncate here so that what is sent equals what is read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _json_text(value: Any) -> str:
    """Arguments and results travel as JSON documents; a str is taken as already-encoded JSON if it parses."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return json.dumps(value)
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    kind = "text"

    def to_record(self, scrub: Redactor) -> tuple[str, dict[str, Any]]:
        return (f"{NAMESPACE}.TextContent", {"text": scrub(self.text)})


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    call_id: str
    arguments: Any = field(default_factory=dict)
    kind = "tool_call"

    def to_record(self, scrub: Redactor) -> tuple[str, dict[str, Any]]:
        return (
            f"{NAMESPACE}.ToolCall",
            {"name": self.name, "call_id": self.call_id, "arguments": scrub(_json_text(self.arguments))},
        )


@dataclass(frozen=True, slots=True)
class ToolResponse:
    name: str
    call_id: str
    result: Any
    status: ToolStatus = "success"
    kind = "tool_response"

    def to_record(self, scrub: Redactor) -> tuple[str, dict[str, Any]]:
        return (
            f"{NAMESPACE}.ToolResponse",
            {
                "name": self.name,
                "call_id": self.call_id,
                "status": self.status,
                "result": scrub(_json_text(self.result)),
            },
        )


@dataclass(frozen=True, slots=True)
class Widget:
    widget_type: str
    data: Any
    kind = "widget"

    def to_record(self, scrub: Redactor) -> tuple[str, dict[str, Any]]:
        return (f"{NAMESPACE}.Widget", {"widget_type": self.widget_type, "data": scrub(_json_text(self.data))})


@dataclass(frozen=True, slots=True)
class Structured:
    data: Any
    kind = "structured"

    def to_record(self, scrub: Redactor) -> tuple[str, dict[str, Any]]:
        return (f"{NAMESPACE}.StructuredContent", {"data": scrub(_json_text(self.data))})


@dataclass(frozen=True, slots=True)
class Redacted:
    reason: str
    original_kind: str
    kind = "redacted"

    def to_record(self, scrub: Redactor) -> tuple[str, dict[str, Any]]:
        return (f"{NAMESPACE}.RedactedContent", {"reason": self.reason, "original_kind": self.original_kind})


Content = Text | ToolCall | ToolResponse | Widget | Structured | Redacted

# Each content record has a distinct set of fields, which is how a decoded content dict is read.
_CONTENT_BY_FIELDS: dict[frozenset[str], tuple[str, Callable[[dict[str, Any]], Content]]] = {
    frozenset({"text"}): ("text", lambda r: Text(r["text"])),
    frozenset({"name", "call_id", "arguments"}): (
        "tool_call",
        lambda r: ToolCall(r["name"], r["call_id"], json.loads(r["arguments"])),
    ),
    frozenset({"name", "call_id", "status", "result"}): (
        "tool_response",
        lambda r: ToolResponse(r["name"], r["call_id"], json.loads(r["result"]), r["status"]),
    ),
    frozenset({"widget_type", "data"}): ("widget", lambda r: Widget(r["widget_type"], json.loads(r["data"]))),
    frozenset({"data"}): ("structured", lambda r: Structured(json.loads(r["data"]))),
    frozenset({"reason", "original_kind"}): ("redacted", lambda r: Redacted(r["reason"], r["original_kind"])),
}


def content_kind(fields: Mapping[str, Any]) -> str:
    """The kind (text, tool_call, tool_response, widget, structured, redacted) of a decoded content dict."""
    try:
        return _CONTENT_BY_FIELDS[frozenset(fields)][0]
    except KeyError:
        raise ValueError(f"not a content record: fields {sorted(fields)}") from None


def content_from_record(fields: Mapping[str, Any]) -> Content:
    """The Content object for a decoded content dict."""
    try:
        return _CONTENT_BY_FIELDS[frozenset(fields)][1](dict(fields))
    except KeyError:
        raise ValueError(f"not a content record: fields {sorted(fields)}") from None


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a turn. ``persist=False`` messages leave the process only as a placeholder."""

    role: Role
    content: Content
    reasoning: str | None = None
    send_to_user: bool = True
    persist: bool = True
    active_entities: Sequence[str] = ()
    available_tools: Sequence[str] = ()
    message_id: str = field(default_factory=new_id)
    timestamp: datetime = field(default_factory=utcnow)

    @classmethod
    def text(cls, role: Role, text: str, **kw: Any) -> Message:
        return cls(role, Text(text), **kw)

    def redacted(self, reason: str) -> Message:
        return replace(self, content=Redacted(reason, self.content.kind), reasoning=None)

    def to_record(self, scrub: Redactor = _identity) -> dict[str, Any]:
        msg = self if self.persist else self.redacted("persist=false")
        snapshot = None
        if msg.active_entities or msg.available_tools:
            snapshot = {
                "active_entities": [scrub(e) for e in msg.active_entities],
                "available_tools": list(msg.available_tools),
            }
        return {
            "message_id": msg.message_id,
            "role": msg.role,
            "timestamp": msg.timestamp,
            "content": msg.content.to_record(scrub),
            "reasoning": scrub(msg.reasoning) if msg.reasoning is not None else None,
            "visibility": {"send_to_user": msg.send_to_user, "persist": msg.persist},
            "context_snapshot": snapshot,
        }


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    token_id: int | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The model call behind a turn; field meanings follow the OTel GenAI conventions."""

    request_model: str | None = None
    response_model: str | None = None
    provider: str | None = None
    model_version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    logprobs: Sequence[TokenLogprob] | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "request_model": self.request_model,
            "response_model": self.response_model,
            "provider": self.provider,
            "model_version": self.model_version,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "response_id": self.response_id,
            "finish_reason": self.finish_reason,
            "logprobs": (
                [{"token": t.token, "token_id": t.token_id, "logprob": t.logprob} for t in self.logprobs]
                if self.logprobs is not None
                else None
            ),
        }


def start_record(
    trajectory_id: str,
    task_description: str,
    *,
    agent_id: str,
    domain: str = "",
    agent_name: str | None = None,
    conversation_id: str | None = None,
    framework: str = "",
    environment: Environment = "dev",
    tags: Iterable[str] = (),
    parent_trajectory_id: str | None = None,
    parent_span_id: str | None = None,
    referrer: str | None = None,
    user_id: str | None = None,
    user_attributes: Mapping[str, str] | None = None,
    entities: Iterable[Mapping[str, Any]] = (),
    resources: Iterable[Mapping[str, Any]] = (),
    custom_context: Any = None,
    system_message: str | None = None,
    timestamp: datetime | None = None,
    scrub: Redactor = _identity,
) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "timestamp": timestamp or utcnow(),
        "task_description": scrub(task_description),
        "domain": domain,
        "agent_id": agent_id,
        "agent_name": agent_name,
        "conversation_id": conversation_id,
        "framework": framework,
        "environment": environment,
        "tags": list(tags),
        "parent_trajectory_id": parent_trajectory_id,
        "parent_span_id": parent_span_id,
        "context": {
            "referrer": referrer,
            "user": {"user_id": user_id, "attributes": dict(user_attributes or {})} if user_id else None,
            "entities": [
                {"name": scrub(e["name"]), "entity_type": e.get("entity_type"), "entity_id": e.get("entity_id")}
                for e in entities
            ],
            "resources": [
                {"uri": r["uri"], "kind": r.get("kind", ""), "description": r.get("description")} for r in resources
            ],
            "custom": scrub(_json_text(custom_context)) if custom_context is not None else None,
        },
        "system_message": scrub(system_message) if system_message is not None else None,
    }


def turn_record(
    trajectory_id: str,
    turn_index: int,
    messages: Iterable[Message],
    *,
    span_id: str | None = None,
    parent_span_id: str | None = None,
    timestamp: datetime | None = None,
    duration_ms: int = 0,
    error: bool = False,
    error_type: str | None = None,
    turn_reward: float | None = None,
    model: ModelInfo | None = None,
    scrub: Redactor = _identity,
) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "turn_index": turn_index,
        "span_id": span_id or uuid.uuid4().hex[:16],
        "parent_span_id": parent_span_id,
        "timestamp": timestamp or utcnow(),
        "duration_ms": int(duration_ms),
        "error": error,
        "error_type": error_type,
        "turn_reward": turn_reward,
        "model": model.to_record() if model is not None else None,
        "messages": [m.to_record(scrub) for m in messages],
    }


def end_record(
    trajectory_id: str,
    outcome: Outcome,
    *,
    final_reward: float | None = None,
    feedback_score: float | None = None,
    human_reviewed: bool = False,
    turn_count: int | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    timestamp: datetime | None = None,
    scrub: Redactor = _identity,
) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "timestamp": timestamp or utcnow(),
        "outcome": outcome,
        "final_reward": final_reward,
        "feedback_score": feedback_score,
        "human_reviewed": human_reviewed,
        "turn_count": turn_count,
        "error_type": error_type,
        "error_message": scrub(error_message) if error_message is not None else None,
    }


def feedback_record(
    trajectory_id: str,
    *,
    source: str = "user",
    reward: float | None = None,
    score: float | None = None,
    human_reviewed: bool = False,
    reviewer: str | None = None,
    comment: str | None = None,
    timestamp: datetime | None = None,
    scrub: Redactor = _identity,
) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "timestamp": timestamp or utcnow(),
        "source": source,
        "reward": reward,
        "score": score,
        "human_reviewed": human_reviewed,
        "reviewer": reviewer,
        "comment": scrub(comment) if comment is not None else None,
    }


def dead_letter_record(
    *,
    stage: str,
    reason: str,
    error_type: str,
    source: str,
    payload: bytes,
    max_payload_bytes: int,
    source_partition: int | None = None,
    source_offset: int | None = None,
    trajectory_id: str | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """A dead letter of ``payload``: whole, or its first ``max_payload_bytes`` (``Limits.dead_letter_payload_bytes``)
    with the whole input's size and SHA-256, so that the letter always fits the dead-letter limit."""
    cut = len(payload) > max_payload_bytes
    if len(reason) > DEAD_LETTER_REASON_CHARS:
        # A reason quotes what failed, which can be the input itself: it must not outgrow the letter's framing.
        more = f"... [+{len(reason) - DEAD_LETTER_REASON_CHARS} chars]"
        reason = reason[: DEAD_LETTER_REASON_CHARS - len(more)] + more
    return {
        "event_id": new_id(),
        "timestamp": utcnow(),
        "stage": stage,
        "reason": reason,
        "error_type": error_type,
        "source": source,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "trajectory_id": trajectory_id,
        "key": key,
        "payload": payload[:max_payload_bytes] if cut else payload,
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_cut": cut,
    }
