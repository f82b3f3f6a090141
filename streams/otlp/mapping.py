"""A trace's spans to trajectory events (trajectory_start, turn..., trajectory_end), deterministically:
the same spans in any order give the same events, ids included, so that a retried export repeats event
ids the assembly drops. Times come from the spans, never from the clock."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from trajstream.errors import SpanContentError
from trajstream.streams.otlp import genai
from trajstream.streams.otlp.boundaries import NAMESPACE, Planned, order, plan
from trajstream.streams.otlp.content import span_messages
from trajstream.streams.otlp.kinds import is_tool, tool_call_id, tool_name
from trajstream.streams.otlp.messages import Item, ToolIndex, finish_reason, items_of
from trajstream.streams.otlp.model import error_of, model_info
from trajstream.streams.otlp.spans import STATUS_ERROR, Span
from trajstream.streams.otlp.tools import available_tools
from trajstream.streams.otlp.values import as_float, as_str, first
from trajstream_sdk.events import (
    OUTCOMES,
    Environment,
    Message,
    Outcome,
    Text,
    end_record,
    start_record,
    turn_record,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class MappedTrajectory:
    trajectory_id: str
    boundary_span_id: str | None
    complete: bool  # its boundary span has arrived
    events: list[tuple[str, dict[str, Any]]]  # (record name, record dict as the events.py builders make it)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (span id, why it was not mapped)


@dataclass
class _Turn:
    span: Span
    new: list[Item]  # the input not in an earlier turn
    output: list[Item]
    finish: str | None


def _time(ns: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ns // 1_000_000)


def _namespace(trajectory_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(trajectory_id)
    except ValueError:
        return uuid.uuid5(NAMESPACE, trajectory_id)  # an explicit id need not be a UUID


def _tool_index(spans: Sequence[Span]) -> ToolIndex:
    """Names and outcomes of the trace's tool runs, by call id (``execute_tool`` and its equivalents)."""
    index = ToolIndex()
    for span in sorted(spans, key=order):
        call_id = tool_call_id(span)
        if not is_tool(span) or call_id is None:
            continue
        name = tool_name(span)
        if name:
            index.names.setdefault(call_id, name)
        error_type = as_str(first(span.attributes, "error.type")) or ""
        if "timeout" in error_type.lower():
            index.statuses[call_id] = "timeout"
        elif span.status_code == STATUS_ERROR:
            index.statuses[call_id] = "error"
        else:
            index.statuses[call_id] = "success"
    return index


def _turns(spans: list[Span], tools: ToolIndex, skipped: list[tuple[str, str]]) -> list[_Turn]:
    """Each inference span's new input and its output; the input is new past the previous turn's input and
    output when that is its prefix, else all of it (the conversation was rewritten)."""
    turns: list[_Turn] = []
    seen: list[tuple[str, str]] = []
    for span in spans:
        try:
            inputs, outputs = span_messages(span)
            items = [item for message in inputs for item in items_of(message, tools)]
            output = items_of(outputs[0], tools) if outputs else []
        except SpanContentError as exc:
            skipped.append((span.span_id, f"{span.name}: {exc}"))
            continue
        keys = [i.key() for i in items]
        new = items[len(seen) :] if keys[: len(seen)] == seen else items
        seen = keys + [i.key() for i in output]
        turns.append(_Turn(span, new, output, finish_reason(outputs[0]) if outputs else None))
    return turns


def _messages(tid: uuid.UUID, turn: _Turn) -> list[Message]:
    tools = tuple(available_tools(turn.span))
    timed = [(i, turn.span.start_ns) for i in turn.new] + [(i, turn.span.end_ns) for i in turn.output]
    return [
        Message(
            item.role,
            item.content,
            reasoning=item.reasoning,
            available_tools=tools,
            message_id=str(uuid.uuid5(tid, f"message:{turn.span.span_id}:{n}")),
            timestamp=_time(ns),
        )
        for n, (item, ns) in enumerate(timed)
    ]


def _turn_event(tid: str, index: int, turn: _Turn) -> dict[str, Any]:
    span = turn.span
    failed, error_type, _ = error_of(span)
    record = turn_record(
        tid,
        index,
        _messages(_namespace(tid), turn),
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        timestamp=_time(span.start_ns),
        duration_ms=max(0, (span.end_ns - span.start_ns) // 1_000_000),
        error=failed,
        error_type=error_type,
        model=model_info(span, turn.finish),
    )
    record["event_id"] = str(uuid.uuid5(_namespace(tid), f"turn:{span.span_id}"))
    return record


def _environment(resource: dict[str, Any]) -> Environment:
    name = (as_str(first(resource, "deployment.environment.name", "deployment.environment")) or "").lower()
    if name in ("prod", "production"):
        return "prod"
    return "staging" if name in ("staging", "stage") else "dev"


def _tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [t.strip() for t in str(value).split(",") if t.strip()] if value else []


def _start_event(p: Planned, turns: list[_Turn]) -> dict[str, Any]:
    b = p.boundary
    first_turn = p.turns[0] if p.turns else None
    main = b or first_turn
    assert main is not None  # a planned trajectory has a boundary or a turn
    sources = [s.attributes for s in (b, *p.turns) if s is not None]
    a = b.attributes if b is not None else {}
    opening = turns[0].new if turns else []
    first_user = next((i.content.text for i in opening if i.role == "user" and isinstance(i.content, Text)), None)
    system = [i.content.text for i in opening if i.role == "system" and isinstance(i.content, Text)]
    agent_name = as_str(first(a, "gen_ai.agent.name", "agent.name"))
    scope = f"{main.scope_name}@{main.scope_version}" if main.scope_version else main.scope_name
    record = start_record(
        p.trajectory_id,
        as_str(first(a, "trajstream.task")) or first_user or as_str(first(a, "gen_ai.agent.description")) or main.name,
        agent_id=as_str(first(a, "gen_ai.agent.id")) or agent_name or as_str(main.resource.get("service.name"))
        or "unknown",
        agent_name=agent_name,
        conversation_id=next((as_str(first(s, "gen_ai.conversation.id", "session.id")) for s in sources
                              if first(s, "gen_ai.conversation.id", "session.id") is not None), None),
        domain=as_str(first(a, "trajstream.domain")) or "",
        framework=scope,
        environment=_environment(main.resource),
        tags=_tags(first(a, "trajstream.tags")),
        parent_trajectory_id=p.parent_trajectory_id,
        parent_span_id=p.parent_span_id,
        user_id=next((as_str(s["user.id"]) for s in [*sources, main.resource] if s.get("user.id")), None),
        system_message=(b and genai.system_instructions(b))
        or (first_turn and genai.system_instructions(first_turn))
        or ("\n".join(system) if system else None),
        timestamp=_time(main.start_ns if b else min(s.start_ns for s in p.turns)),
    )  # fmt: skip
    record["event_id"] = str(uuid.uuid5(_namespace(p.trajectory_id), f"trajectory_start:{b.span_id if b else ''}"))
    return record


def _end_event(p: Planned, turn_count: int, now_ms: int | None) -> dict[str, Any] | None:
    b, tid = p.boundary, p.trajectory_id
    if b is None:
        if now_ms is None:
            return None  # wait for the boundary; the caller flushes with now_ms when it gives up
        record = end_record(tid, "abandoned", turn_count=turn_count, timestamp=_EPOCH + timedelta(milliseconds=now_ms))
        record["event_id"] = str(uuid.uuid5(_namespace(tid), "trajectory_end:abandoned"))
        return record
    failed, error_type, error_message = error_of(b)
    declared = as_str(first(b.attributes, "trajstream.outcome"))
    outcome = declared if declared in OUTCOMES else "error" if failed else "success"
    record = end_record(
        tid,
        cast(Outcome, outcome),
        final_reward=as_float(first(b.attributes, "trajstream.reward")),
        turn_count=turn_count,
        error_type=error_type if outcome == "error" else None,
        error_message=error_message if outcome == "error" else None,
        timestamp=_time(b.end_ns),
    )
    record["event_id"] = str(uuid.uuid5(_namespace(tid), f"trajectory_end:{b.span_id}"))
    return record


def _trace(trace_id: str, spans: list[Span], now_ms: int | None) -> list[MappedTrajectory]:
    planned, outside = plan(trace_id, spans)
    tools = _tool_index(spans)
    out = []
    for p in planned:
        skipped: list[tuple[str, str]] = []
        turns = _turns(p.turns, tools, skipped)
        events: list[tuple[str, dict[str, Any]]] = [("trajectory_start", _start_event(p, turns))]
        events += [("turn", _turn_event(p.trajectory_id, n, t)) for n, t in enumerate(turns)]
        end = _end_event(p, len(turns), now_ms)
        if end is not None:
            events.append(("trajectory_end", end))
        boundary = p.boundary.span_id if p.boundary else None
        out.append(MappedTrajectory(p.trajectory_id, boundary, p.boundary is not None, events, skipped))
    if out:
        out[0].skipped += outside  # spans no trajectory holds are reported, never dropped
    return out


def map_trace(spans: Sequence[Span], *, now_ms: int | None = None) -> list[MappedTrajectory]:
    """The trajectories of a trace's spans (all of one trace, or several traces each mapped on its own).

    A trajectory whose boundary span has not arrived is ``complete=False`` and has no end event: the caller
    waits for more spans, or gives up and passes ``now_ms``, which closes it as ``abandoned`` at that time.
    """
    by_trace: dict[str, dict[str, Span]] = defaultdict(dict)
    for span in sorted(spans, key=lambda s: (s.trace_id, s.span_id, s.end_ns)):
        by_trace[span.trace_id][span.span_id] = span  # a span exported twice counts once
    out: list[MappedTrajectory] = []
    for trace_id in sorted(by_trace):
        out += _trace(trace_id, list(by_trace[trace_id].values()), now_ms)
    return out
