"""OpenInference (Arize Phoenix): ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``,
and the raw ``input.value`` / ``output.value`` when no messages are flattened."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.streams.otlp.chat_format import from_chat
from trajstream.streams.otlp.flattened import unflatten
from trajstream.streams.otlp.spans import Span
from trajstream.streams.otlp.values import maybe_json

Messages = list[Any]


def _chat(entry: Any) -> dict[str, Any]:
    """``{message: {role, content | contents[{message_content: {type, text}}], tool_calls[{tool_call: {id,
    function: {name, arguments}}}], tool_call_id}}`` as a chat message."""
    message = entry.get("message", {}) if isinstance(entry, Mapping) else {}
    out: dict[str, Any] = {k: v for k, v in message.items() if k in ("role", "content", "tool_call_id", "name")}
    contents = message.get("contents")
    if out.get("content") is None and isinstance(contents, list):
        out["content"] = [c.get("message_content", {}) for c in contents if isinstance(c, Mapping)]
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [c.get("tool_call", {}) for c in calls if isinstance(c, Mapping)]
    return out


def read(span: Span) -> tuple[Messages | None, Messages | None]:
    inputs = [from_chat(_chat(m), "user") for m in unflatten(span.attributes, "llm.input_messages")]
    outputs = [from_chat(_chat(m), "assistant") for m in unflatten(span.attributes, "llm.output_messages")]
    return inputs or None, outputs or None


def read_values(span: Span) -> tuple[Messages | None, Messages | None]:
    """``input.value`` as an OpenAI request (its ``messages``) or plain text from the user; ``output.value`` as
    an OpenAI response (its first choice) or plain text from the assistant."""
    inputs: Messages | None = None
    outputs: Messages | None = None
    raw_in = span.attributes.get("input.value")
    if raw_in not in (None, ""):
        value = maybe_json(raw_in)
        if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
            inputs = [from_chat(m) for m in value["messages"]]
        elif isinstance(value, str):
            inputs = [{"role": "user", "parts": [{"type": "text", "content": value}]}]
    raw_out = span.attributes.get("output.value")
    if raw_out not in (None, ""):
        value = maybe_json(raw_out)
        choices = value.get("choices") if isinstance(value, Mapping) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            choice = choices[0]
            outputs = [from_chat({**choice.get("message", {}), "finish_reason": choice.get("finish_reason")},
                                 "assistant")]  # fmt: skip
        elif isinstance(value, str):
            outputs = [{"role": "assistant", "parts": [{"type": "text", "content": value}]}]
    return inputs, outputs
