"""OTel GenAI messages (``{role, parts[], finish_reason?}``, the shape every convention reader produces) to
the SDK's message contents: one item per part, reasoning attached to the message it came with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trajstream.errors import SpanContentError
from trajstream.streams.otlp.values import maybe_json
from trajstream_sdk.events import Content, Role, Structured, Text, ToolCall, ToolResponse, ToolStatus

# Roles are open strings in the conventions; these are the spellings instrumentations are known to send.
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}


def role_of(raw: Any) -> Role:
    role = _ROLES.get(str(raw or "").strip().lower())
    if role is None:
        raise SpanContentError(f"unknown message role {raw!r}")
    return role


@dataclass
class ToolIndex:
    """What a tool response needs from elsewhere in the trajectory: the tool's name and how its run ended."""

    names: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, ToolStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Item:
    """One message of a turn before it gets its id and time."""

    role: Role
    content: Content
    reasoning: str | None = None

    def key(self) -> tuple[str, str]:
        """What a message is, for finding a turn's new input: content compared as canonical JSON (an
        instrumentation may write the same arguments as an object in the output and a string in the input)."""
        c = self.content
        if isinstance(c, Text):
            body: Any = c.text
        elif isinstance(c, ToolCall):
            body = [c.name, c.call_id, maybe_json(c.arguments)]
        elif isinstance(c, ToolResponse):
            body = [c.call_id, maybe_json(c.result)]
        else:
            body = maybe_json(getattr(c, "data", None))
        return self.role, json.dumps([c.kind, body], sort_keys=True, default=str)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _part(role: Role, part: Mapping[str, Any], tools: ToolIndex) -> Item | str:
    """An item, or the text of a reasoning part."""
    kind = part.get("type")
    if kind == "text":
        return Item(role, Text(_text(part.get("content", ""))))
    if kind == "reasoning":
        return _text(part.get("content", ""))
    if kind == "tool_call":
        name = part.get("name")
        if not name:
            raise SpanContentError("a tool_call part has no name")
        call_id = str(part.get("id") or "")
        if call_id:
            tools.names.setdefault(call_id, str(name))
        arguments = part.get("arguments")
        return Item(role, ToolCall(str(name), call_id, {} if arguments is None else arguments))
    if kind == "tool_call_response":
        call_id = str(part.get("id") or "")
        result = part["response"] if "response" in part else part.get("result")
        name = tools.names.get(call_id, "unknown")
        return Item("tool", ToolResponse(name, call_id, result, tools.statuses.get(call_id, "success")))
    if kind == "blob":
        # The bytes stay with the agent: an event is no place for images.
        return Item(role, Structured({k: v for k, v in part.items() if k != "content"}))
    return Item(role, Structured(dict(part)))


def items_of(message: Any, tools: ToolIndex) -> list[Item]:
    """The items of one OTel message; its reasoning rides on its first item."""
    if not isinstance(message, Mapping):
        raise SpanContentError(f"a message is not an object: {_text(message)[:80]!r}")
    role = role_of(message.get("role"))
    parts = message.get("parts")
    if parts is None:
        parts = []
    if not isinstance(parts, list):
        raise SpanContentError(f"the parts of a {role} message are not a list")
    items: list[Item] = []
    reasoning: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            raise SpanContentError(f"a part of a {role} message is not an object: {_text(part)[:80]!r}")
        got = _part(role, part, tools)
        if isinstance(got, str):
            reasoning.append(got)
        else:
            items.append(got)
    if reasoning:
        thought = "\n".join(reasoning)
        if items:
            items[0] = Item(items[0].role, items[0].content, thought)
        else:
            items.append(Item(role, Text(""), thought))
    return items


def finish_reason(message: Any) -> str | None:
    if isinstance(message, Mapping) and message.get("finish_reason"):
        return str(message["finish_reason"])
    return None
