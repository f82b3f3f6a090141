"""Message content as text: the one renderer every stage uses.

A message's content is a decoded Avro record whose kind its fields tell (``content_kind``): text, a
tool call, a tool response, a widget, structured output, or a redacted placeholder. The transcripts
that models read (the enrichment extractor's, the judge's), the embedding texts and the ClickHouse rows
all describe content the same way, so that a change of notation happens here once and everywhere.

A tool call reads ``call lookup_order(order_id=1042)``: the notation people type for an action to
predict or compare (``trajstream predict --action "issue_refund(order_id=42)"``), so that the recorded
actions and the typed ones embed alike. A redacted content renders as its reason only: it carries no
text, and nothing here may guess one. ``clip`` and ``fit_lines`` cut text to a budget (one line, many
lines) and say what they dropped, so a reader never mistakes a cut text for a whole one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from trajstream_sdk.events import content_kind

__all__ = ["clip", "compact_json", "content_text", "fit_lines", "render_call", "render_content"]

_SPACES = re.compile(r"\s+")


def clip(text: str, limit: int) -> str:
    """``text`` with whitespace collapsed, cut to at most ``limit`` characters (saying how much was cut)."""
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    room = limit - len(f"… [+{len(text)} chars]")
    if room <= 0:
        return text[: max(limit, 0)]
    return f"{text[:room]}… [+{len(text) - room} chars]"


def compact_json(text: str) -> str:
    """JSON text re-serialised compactly (agents may send it indented); other text as it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return _json_value(value)


def fit_lines(lines: Sequence[str], max_chars: int) -> str:
    """Lines joined, or their head and tail around a marker when they are longer than ``max_chars``.

    A transcript's beginning holds the task and its end the outcome: what is dropped is the middle.
    """
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


def _json_value(value: Any) -> str:
    # A bare string (an error message, say) reads better without its JSON quotes.
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _arguments(text: str) -> str:
    """A call's JSON arguments as ``key=value, ...`` (values as compact JSON); other JSON or text compacted."""
    try:
        value = json.loads(text)
    except ValueError:
        return text  # redaction may have left arguments that are not JSON
    if not isinstance(value, dict):
        return _json_value(value)
    # Strings keep their quotes here: ``customer="Jane Doe"`` must not read like two arguments.
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'), ensure_ascii=False)}" for k, v in value.items())


def _framed(head: str, payload: str, tail: str, limit: int | None) -> str:
    """``head + payload + tail`` on one line; with a limit the payload gives way first, so the frame survives."""
    payload = _SPACES.sub(" ", payload).strip()
    if limit is not None:
        room = limit - len(head) - len(tail)
        if room <= 0:
            return clip(f"{head}{payload}{tail}", limit)
        payload = clip(payload, room)
    return f"{head}{payload}{tail}"


def content_text(content: Mapping[str, Any]) -> str:
    """The content's own payload, unclipped: the text, a call's arguments, a response's result, the data.

    A redacted content yields ``[redacted: REASON]``: the reason is all it carries.
    """
    kind = content_kind(content)
    if kind == "text":
        return str(content["text"])
    if kind == "tool_call":
        return str(content["arguments"])
    if kind == "tool_response":
        return str(content["result"])
    if kind == "redacted":
        return f"[redacted: {content['reason']}]"
    return str(content["data"])


def render_call(name: str, arguments: str, limit: int | None = None) -> str:
    """``NAME(key=value, ...)`` of a tool call, from its JSON ``arguments`` text; at most ``limit`` characters.

    The call as an action, without ``render_content``'s ``call`` verb; it also serves stages that hold a
    call only as its name and arguments (a ClickHouse row).
    """
    return _framed(f"{name}(", _arguments(arguments), ")", limit)


def render_content(content: Mapping[str, Any], limit: int | None = None) -> str:
    """One line describing a message's content, for a stage to put behind its own prefix (the role, the step).

    ============= ==========================================
    text          the text
    tool_call     ``call NAME(key=value, ...)``
    tool_response ``NAME -> STATUS: RESULT``
    widget        ``widget TYPE: DATA``
    structured    ``structured: DATA``
    redacted      ``[redacted: REASON]``
    ============= ==========================================

    JSON is shown compactly and whitespace is collapsed. With ``limit`` the line is at most that long: the
    payload is clipped (saying by how much) before the tool's name or status is.
    """
    kind = content_kind(content)
    if kind == "text":
        return _framed("", str(content["text"]), "", limit)
    if kind == "tool_call":
        return _framed(f"call {content['name']}(", _arguments(str(content["arguments"])), ")", limit)
    if kind == "tool_response":
        head = f"{content['name']} -> {content['status']}: "
        return _framed(head, compact_json(str(content["result"])), "", limit)
    if kind == "widget":
        return _framed(f"widget {content['widget_type']}: ", compact_json(str(content["data"])), "", limit)
    if kind == "structured":
        return _framed("structured: ", compact_json(str(content["data"])), "", limit)
    return _framed("", content_text(content), "", limit)
