"""The deprecated GenAI conventions: content as span events (``gen_ai.{system,user,assistant,tool}.message``,
``gen_ai.choice``; earlier ``gen_ai.content.prompt/completion``), and the flattened
``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` attributes (Traceloop, OpenLLMetry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.errors import SpanContentError
from trajstream.streams.otlp.chat_format import from_chat
from trajstream.streams.otlp.flattened import unflatten
from trajstream.streams.otlp.spans import Span, SpanEvent
from trajstream.streams.otlp.values import maybe_json, structured

_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE = "gen_ai.choice"

Messages = list[Any]


def _body(event: SpanEvent) -> Mapping[str, Any]:
    """An event's body: one JSON attribute (``gen_ai.event.content``, as .NET writes it) or the attributes."""
    if "gen_ai.event.content" in event.attributes:
        body = structured(event.attributes["gen_ai.event.content"], f"{event.name} gen_ai.event.content")
        if not isinstance(body, Mapping):
            raise SpanContentError(f"the body of a {event.name} event is not an object")
        return body
    return {k: maybe_json(v) if k in ("tool_calls", "message") else v for k, v in event.attributes.items()}


def read_events(span: Span) -> tuple[Messages | None, Messages | None]:
    inputs: Messages = []
    outputs: Messages = []
    for event in span.events:
        if event.name in _MESSAGE_EVENTS:
            inputs.append(from_chat(_body(event), _MESSAGE_EVENTS[event.name]))
        elif event.name == _CHOICE:
            body = _body(event)
            message = body.get("message") or {}
            if not isinstance(message, Mapping):
                raise SpanContentError("the message of a gen_ai.choice event is not an object")
            outputs.append((body.get("index") or 0, from_chat({**message, "finish_reason": body.get("finish_reason")},
                                                              "assistant")))  # fmt: skip
        elif event.name in ("gen_ai.content.prompt", "gen_ai.content.completion"):
            prompt = event.name.endswith("prompt")
            key = "gen_ai.prompt" if prompt else "gen_ai.completion"
            found = structured(event.attributes.get(key, "[]"), f"{event.name} {key}")
            if not isinstance(found, list):
                raise SpanContentError(f"{key} of a {event.name} event is not a list of messages")
            if prompt:
                inputs.extend(from_chat(m, "user") for m in found)
            else:
                outputs.extend((0, from_chat(m, "assistant")) for m in found)
    ordered = [m for _, m in sorted(outputs, key=lambda pair: int(pair[0]))]
    return inputs or None, ordered or None


def _flat_message(raw: Any, role: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpanContentError(f"a flattened message is not an object: {raw!r:.80}")
    return from_chat(dict(raw), role)


def read_flattened(span: Span) -> tuple[Messages | None, Messages | None]:
    inputs = [_flat_message(m, "user") for m in unflatten(span.attributes, "gen_ai.prompt")]
    outputs = [_flat_message(m, "assistant") for m in unflatten(span.attributes, "gen_ai.completion")]
    return inputs or None, outputs or None
