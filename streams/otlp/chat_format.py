"""OpenAI chat-completion messages (``{role, content, tool_calls, tool_call_id}``) as OTel GenAI messages.

Several conventions carry this shape: the deprecated event bodies, OpenInference's flattened messages and
``input.value``, Traceloop's ``gen_ai.prompt.N``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.errors import SpanContentError
from trajstream.streams.otlp.values import maybe_json


def _content_parts(content: Any) -> list[dict[str, Any]]:
    content = maybe_json(content) if isinstance(content, str) and content[:1] == "[" else content
    if content is None or content == "":
        return []
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append({"type": "text", "content": part.get("text", "")})
            elif isinstance(part, Mapping):
                parts.append(dict(part))
            else:
                parts.append({"type": "text", "content": str(part)})
        return parts
    return [{"type": "text", "content": content}]


def tool_call_part(call: Any) -> dict[str, Any]:
    """``{id, function: {name, arguments}}`` (or a flat ``{id, name, arguments}``) as a tool_call part."""
    if not isinstance(call, Mapping):
        raise SpanContentError(f"a tool call is not an object: {call!r:.80}")
    function = call.get("function")
    fn = function if isinstance(function, Mapping) else call
    return {"type": "tool_call", "id": call.get("id"), "name": fn.get("name"), "arguments": fn.get("arguments")}


def from_chat(message: Any, role: str | None = None) -> dict[str, Any]:
    """One chat message as an OTel message; ``role`` for bodies that do not carry theirs (event bodies)."""
    if not isinstance(message, Mapping):
        raise SpanContentError(f"a chat message is not an object: {message!r:.80}")
    role = str(message.get("role") or role or "")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    parts: list[dict[str, Any]] = [{"type": "reasoning", "content": reasoning}] if reasoning else []
    if role in ("tool", "function"):
        call_id = message.get("tool_call_id") or message.get("id")
        parts.append({"type": "tool_call_response", "id": call_id, "response": message.get("content")})
    else:
        parts += _content_parts(message.get("content"))
        tool_calls = maybe_json(message.get("tool_calls"))
        parts += [tool_call_part(call) for call in tool_calls or []]
    out: dict[str, Any] = {"role": role, "parts": parts}
    if message.get("finish_reason"):
        out["finish_reason"] = message["finish_reason"]
    return out
