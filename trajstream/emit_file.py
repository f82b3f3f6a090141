"""Publish trajectories from a JSON Lines file: one trajectory per line, built on OpenAI chat messages.

Line format (only ``task`` and ``messages`` are required)::

    {"id": "uuid (optional)", "task": "Refund order 42", "agent_id": "support-bot",
     "domain": "billing", "framework": "openai-agents", "environment": "dev", "tags": ["demo"],
     "parent_id": null, "conversation_id": null, "user_id": null,
     "entities": [{"name": "ACME", "entity_type": "company"}],
     "model": "gpt-4o-mini", "model_version": null,
     "messages": [  # OpenAI chat messages; a leading system message becomes the system prompt
        {"role": "system", "content": "You are ..."},
        {"role": "user", "content": "..."},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": "{\\"order\\": 42}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{...}", "status": "success"},
        {"role": "assistant", "content": "Refunded."}],
     "outcome": "success", "reward": 1.0, "feedback_score": null, "human_reviewed": false}

A turn is the messages since the previous assistant message plus that assistant message (its
text and tool calls); tool results open the next turn. ``status`` on a tool message (success,
error, timeout) and ``persist: false`` on any message are trajstream extensions.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajstream import json_input
from trajstream.errors import CodecError, EventTooLargeError, InputRecordError
from trajstream.topics import DEAD_LETTER_TOPIC
from trajstream_sdk.emitter import AsyncEmitter
from trajstream_sdk.events import (
    ENVIRONMENTS,
    OUTCOMES,
    Message,
    ModelInfo,
    dead_letter_record,
    end_record,
    start_record,
    turn_record,
)
from trajstream_sdk.openai_chat import ChatRecorder
from trajstream_sdk.schemas import DEAD_LETTER, TRAJECTORY_END, TRAJECTORY_START, TURN

Event = tuple[str, dict[str, Any]]


@dataclass
class EmitSummary:
    lines: int = 0
    blank: int = 0
    trajectories: int = 0
    events: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    dead_lettered: int = 0

    @property
    def reasons(self) -> Counter[str]:
        return Counter(reason.split(":")[0] for _, reason in self.rejected)


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise InputRecordError(reason)


def _number(doc: dict[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    _require(isinstance(value, int | float) and not isinstance(value, bool), f"{key} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # JSON integers have no bound; a float has
        raise InputRecordError(f"{key} is too large for a number: {str(value)[:20]}...") from None


def parse_line(text: str, scrub: Callable[[str], str] = lambda s: s) -> tuple[str, list[Event]]:
    """Validate one line and return its trajectory id and events, or raise InputRecordError."""
    try:
        doc = json_input.loads(text)
    except json_input.JSONInputError as exc:
        raise InputRecordError(f"invalid JSON: {exc}") from None
    _require(isinstance(doc, dict), f"a line must be a JSON object, got {type(doc).__name__}")
    task = doc.get("task")
    _require(isinstance(task, str) and bool(task.strip()), "missing task: a non-empty string is required")
    messages = doc.get("messages")
    _require(isinstance(messages, list) and len(messages) > 0, "missing messages: a non-empty list is required")
    trajectory_id = str(doc.get("id") or uuid.uuid4())
    try:
        uuid.UUID(trajectory_id)
    except ValueError:
        raise InputRecordError(f"bad id: {trajectory_id!r} is not a UUID") from None
    outcome = doc.get("outcome", "success")
    _require(outcome in OUTCOMES, f"bad outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
    environment = doc.get("environment", "dev")
    _require(environment in ENVIRONMENTS, f"bad environment: {environment!r} is not one of {', '.join(ENVIRONMENTS)}")
    tags = doc.get("tags", [])
    _require(isinstance(tags, list) and all(isinstance(t, str) for t in tags), "bad tags: a list of strings")
    reward = _number(doc, "reward")
    feedback_score = _number(doc, "feedback_score")

    system_message: str | None = None
    if (
        isinstance(messages[0], dict)
        and messages[0].get("role") == "system"
        and isinstance(messages[0].get("content"), str)
    ):
        system_message = messages[0]["content"]
        messages = messages[1:]

    recorder = ChatRecorder()
    turns: list[tuple[list[Message], ModelInfo | None]] = []
    pending: list[Message] = []
    for i, raw in enumerate(messages):
        _require(isinstance(raw, dict), f"bad message {i}: must be an object")
        status = raw.get("status", "success")
        ctx = {"available_tools": (), "active_entities": (), "persist": bool(raw.get("persist", True))}
        statuses = {str(raw.get("tool_call_id")): status} if raw.get("role") == "tool" else {}
        try:
            converted = recorder.message(raw, statuses, ctx)
        except (ValueError, TypeError, KeyError) as exc:
            raise InputRecordError(f"bad message {i}: {exc}") from None
        pending.extend(converted)
        if raw.get("role") == "assistant":
            usage = raw.get("usage") or {}
            _require(isinstance(usage, dict), f"bad message {i}: usage must be an object, got {type(usage).__name__}")
            model: ModelInfo | None = ModelInfo(
                request_model=doc.get("model"),
                response_model=raw.get("model") or doc.get("model"),
                model_version=doc.get("model_version"),
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
            )
            turns.append((pending, model))
            pending = []
    if pending:
        if turns:
            turns[-1][0].extend(pending)
        else:
            turns.append((pending, None))

    try:
        start = start_record(
            trajectory_id,
            task,
            agent_id=str(doc.get("agent_id") or "unknown"),
            domain=str(doc.get("domain") or ""),
            framework=str(doc.get("framework") or ""),
            environment=environment,
            tags=tags,
            parent_trajectory_id=doc.get("parent_id"),
            conversation_id=doc.get("conversation_id"),
            user_id=doc.get("user_id"),
            entities=doc.get("entities") or [],
            system_message=system_message,
            scrub=scrub,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputRecordError(f"bad trajectory fields: {exc!r}") from None
    events: list[Event] = [(TRAJECTORY_START, start)]
    for index, (msgs, model) in enumerate(turns):
        events.append((TURN, turn_record(trajectory_id, index, msgs, model=model, scrub=scrub)))
    events.append(
        (
            TRAJECTORY_END,
            end_record(
                trajectory_id,
                outcome,
                final_reward=reward,
                feedback_score=feedback_score,
                human_reviewed=bool(doc.get("human_reviewed", False)),
                turn_count=len(turns),
            ),
        )
    )
    return trajectory_id, events


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        yield from enumerate(handle, start=1)


async def emit_file(
    path: Path,
    emitter: AsyncEmitter,
    *,
    on_line: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
) -> EmitSummary:
    """Validate and publish every line; rejected lines are reported and dead-lettered with the reason.

    A trajectory's events are all encoded before the first is sent, so a line is sent whole or not at all.
    """
    summary = EmitSummary()
    dlq_topic = emitter.settings.topic(DEAD_LETTER_TOPIC)
    for number, raw in iter_lines(path):
        summary.lines += 1
        if on_line is not None:
            on_line(number, len(raw))
        if not raw.strip():
            summary.blank += 1
            continue
        trajectory_id: str | None = None
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
            trajectory_id, events = parse_line(text, emitter.redactor)
            encoded = [emitter.codec.encode(name, record) for name, record in events]
        except UnicodeDecodeError as exc:
            reason, error_type = f"not UTF-8: {exc.reason} at byte {exc.start}", "InputRecordError"
        except InputRecordError as exc:
            reason, error_type = str(exc), type(exc).__name__
        except EventTooLargeError as exc:
            reason, error_type = f"too large: {exc}", type(exc).__name__
        except CodecError as exc:
            reason, error_type = f"does not fit the schema: {exc}", type(exc).__name__
        else:
            if not dry_run:
                key = trajectory_id.encode()
                for data in encoded:
                    await emitter.send_encoded(data, key=key, topic=emitter.events_topic)
            summary.trajectories += 1
            summary.events += len(encoded)
            continue
        summary.rejected.append((number, reason))
        if not dry_run:
            letter = dead_letter_record(
                stage="emit",
                reason=reason,
                error_type=error_type,
                source=f"file:{path}",
                source_offset=number,
                trajectory_id=trajectory_id,
                payload=raw,
                # A line longer than a dead letter may carry keeps its first bytes, its size and its hash:
                # the letter always fits, so one oversize line never stops the run.
                max_payload_bytes=emitter.codec.limits.dead_letter_payload_bytes,
            )
            await emitter.emit(DEAD_LETTER, letter, key=trajectory_id or f"{path}:{number}", topic=dlq_topic)
            summary.dead_lettered += 1
    if not dry_run:
        await emitter.flush()
    return summary
