"""The Vercel AI SDK's telemetry names: ``ai.prompt.messages`` (its own message format), ``ai.response.text``,
``ai.response.toolCalls``, ``ai.response.reasoning``, ``ai.response.finishReason``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.errors import SpanContentError
from trajstream.streams.otlp.values import maybe_json, structured

Messages = list[Any]


def _unwrap(output: Any) -> Any:
    """AI SDK 5 wraps tool results as ``{type: "json" | "text", value}``."""
    if isinstance(output, Mapping) and set(output) == {"type", "value"}:
        return output["value"]
    return output


def _part(part: Any) -> dict[str, Any]:
    if not isinstance(part, Mapping):
        return {"type": "text", "content": str(part)}
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "content": part.get("text", "")}
    if kind == "reasoning":
        return {"type": "reasoning", "content": part.get("text", "")}
    if kind == "tool-call":
        arguments = part["input"] if "input" in part else part.get("args")  # AI SDK 5 / 4
        return {"type": "tool_call", "id": part.get("toolCallId"), "name": part.get("toolName"), "arguments": arguments}
    if kind == "tool-result":
        result = part["output"] if "output" in part else part.get("result")
        return {"type": "tool_call_response", "id": part.get("toolCallId"), "response": _unwrap(result)}
    return dict(part)


def _message(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpanContentError(f"an ai.prompt.messages entry is not an object: {raw!r:.80}")
    content = raw.get("content")
    parts = [_part(p) for p in content] if isinstance(content, list) else [_part({"type": "text", "text": content})]
    return {"role": raw.get("role"), "parts": parts}


def read(attributes: Mapping[str, Any]) -> tuple[Messages | None, Messages | None]:
    inputs: Messages | None = None
    if attributes.get("ai.prompt.messages") not in (None, ""):
        found = structured(attributes["ai.prompt.messages"], "ai.prompt.messages")
        if not isinstance(found, list):
            raise SpanContentError("ai.prompt.messages is not a list of messages")
        inputs = [_message(m) for m in found]
    parts: list[dict[str, Any]] = []
    if attributes.get("ai.response.reasoning"):
        parts.append({"type": "reasoning", "content": attributes["ai.response.reasoning"]})
    if attributes.get("ai.response.text"):
        parts.append({"type": "text", "content": attributes["ai.response.text"]})
    calls = maybe_json(attributes.get("ai.response.toolCalls"))
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, Mapping):
            arguments = call["input"] if "input" in call else call.get("args")
            parts.append({"type": "tool_call", "id": call.get("toolCallId"), "name": call.get("toolName"),
                          "arguments": maybe_json(arguments)})  # fmt: skip
    if not parts:
        return inputs, None
    output: dict[str, Any] = {"role": "assistant", "parts": parts}
    if attributes.get("ai.response.finishReason"):
        output["finish_reason"] = attributes["ai.response.finishReason"]
    return inputs, [output]
