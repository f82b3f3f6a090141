"""A compact, numbered, deterministic transcript of a trajectory: what an LLM extractor reads.

Every line names its step (the turn index), so that the step indices a model answers with can be
checked against the trajectory. Each message is clipped, and the whole transcript is cut to a budget
(keeping its beginning and its end, where the task and the outcome are), so a huge trajectory cannot
blow the prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from trajstream.assembled import Step, TrajectoryView
from trajstream_sdk.events import content_kind

DEFAULT_MAX_MESSAGE_CHARS = 1500
REDACTED = "[redacted]"

_SPACES = re.compile(r"\s+")


def clip(text: str, limit: int) -> str:
    """``text`` with whitespace collapsed, cut to at most ``limit`` characters (saying how much was cut)."""
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    room = limit - len(f"… [+{len(text)} chars]")
    if room <= 0:
        return text[:limit]
    return f"{text[:room]}… [+{len(text) - room} chars]"


def compact_json(text: str) -> str:
    """JSON text re-serialised compactly (agents may send it indented); other text as it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    # A bare string (an error message, say) reads better without its JSON quotes.
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _content_line(role: str, content: Mapping[str, Any], limit: int) -> str:
    kind = content_kind(content)
    if kind == "text":
        return f"{role}: {clip(content['text'], limit)}"
    if kind == "tool_call":
        return f"{role} -> tool_call {content['name']} {clip(compact_json(content['arguments']), limit)}"
    if kind == "tool_response":
        return f"tool {content['name']} ({content['status']}): {clip(compact_json(content['result']), limit)}"
    if kind == "widget":
        return f"{role} -> widget {content['widget_type']} {clip(compact_json(content['data']), limit)}"
    if kind == "structured":
        return f"{role} -> structured {clip(compact_json(content['data']), limit)}"
    return f"{role}: {REDACTED}"


def _header(view: TrajectoryView, limit: int) -> list[str]:
    lines = [f"task: {clip(view.task_description, limit) or '(none)'}"]
    reward = view.final_reward
    lines.append(f"outcome: {view.outcome}" + (f", final reward {reward:g}" if reward is not None else ""))
    system = view.record.get("system_message")
    if system:
        lines.append(f"system prompt: {clip(system, limit)}")
    entities = context_entities(view)
    if entities:
        named = ", ".join(f"{n} ({t})" if t else n for n, t in entities)
        lines.append(f"context entities: {clip(named, limit)}")
    missing = view.record.get("missing_turns") or []
    if missing:
        lines.append(f"missing steps: {', '.join(str(i) for i in missing)}")
    return lines


def context_entities(view: TrajectoryView) -> list[tuple[str, str | None]]:
    """(name, entity_type) of the entities in the start event's context, when it has any."""
    raw = view.record.get("context")
    if not raw:
        return []
    try:
        context = json.loads(raw)
    except ValueError:
        return []
    found: list[tuple[str, str | None]] = []
    for entity in (context.get("entities") or []) if isinstance(context, dict) else []:
        if isinstance(entity, dict) and isinstance(entity.get("name"), str) and entity["name"].strip():
            kind = entity.get("entity_type")
            found.append((entity["name"].strip(), kind if isinstance(kind, str) and kind else None))
    return found


def _step_lines(step: Step, limit: int, tools_shown: list[str]) -> list[str]:
    prefix = f"[step {step.turn_index}]"
    lines: list[str] = []
    for message in step.messages:
        role = message["role"]
        snapshot = message.get("context_snapshot") or {}
        tools = list(snapshot.get("available_tools") or [])
        # Alternatives need the tool list, but repeating it on every line would eat the budget.
        if tools and tools != tools_shown:
            tools_shown[:] = tools
            lines.append(f"{prefix} available tools: {clip(', '.join(tools), limit)}")
        if message.get("reasoning"):
            lines.append(f"{prefix} {role} (reasoning): {clip(message['reasoning'], limit)}")
        lines.append(f"{prefix} {_content_line(role, message['content'], limit)}")
    if step.error:
        lines.append(f"{prefix} turn error: {step.record.get('error_type') or 'unspecified'}")
    return lines


def _fit(lines: list[str], max_chars: int) -> str:
    """Lines joined, or their head and tail around a marker when they are longer than ``max_chars``."""
    text = "\n".join(lines)
    if len(text) <= max_chars:
        return text
    marker_room = len(f"[... {len(lines)} lines omitted ...]") + 2
    budget = max(0, max_chars - marker_room)
    head: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget // 2:
            break
        head.append(line)
        used += len(line) + 1
    tail: list[str] = []
    for line in reversed(lines[len(head) :]):
        if used + len(line) + 1 > budget:
            break
        tail.append(line)
        used += len(line) + 1
    omitted = len(lines) - len(head) - len(tail)
    text = "\n".join([*head, f"[... {omitted} lines omitted ...]", *reversed(tail)])
    return text[:max_chars]


def format_transcript(view: TrajectoryView, max_chars: int, max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS) -> str:
    """The trajectory as numbered lines, at most ``max_chars`` long. Same view, same text.

    Lines look like ``[step 0] user: ...``, ``[step 1] assistant -> tool_call lookup_order {...}`` and
    ``[step 1] tool lookup_order (error): ...``; a redacted message reads ``[redacted]``.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    # No single message may take more than a quarter of the budget, so several always fit.
    limit = max(40, min(max_message_chars, max_chars // 4))
    lines = _header(view, limit)
    tools_shown: list[str] = []
    for step in view.steps:
        lines.extend(_step_lines(step, limit, tools_shown))
    return _fit(lines, max_chars)
