"""The current OTel GenAI content: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
``gen_ai.system_instructions`` as JSON strings or structured values, on the span or on its
``gen_ai.client.inference.operation.details`` event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.errors import SpanContentError
from trajstream.streams.otlp.spans import Span
from trajstream.streams.otlp.values import maybe_json, structured

INPUT, OUTPUT, SYSTEM = "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"

Messages = list[Any]


def _messages(attributes: Mapping[str, Any], key: str) -> Messages | None:
    if attributes.get(key) in (None, ""):
        return None
    value = structured(attributes[key], key)
    if not isinstance(value, list):
        raise SpanContentError(f"{key} is not a list of messages")
    return value


def _sources(span: Span) -> list[Mapping[str, Any]]:
    """The span's attributes, then each operation-details event's."""
    return [span.attributes, *(e.attributes for e in span.events if e.name == DETAILS_EVENT)]


def read(span: Span) -> tuple[Messages | None, Messages | None]:
    found_in: Messages | None = None
    found_out: Messages | None = None
    for attributes in _sources(span):
        found_in = found_in if found_in is not None else _messages(attributes, INPUT)
        found_out = found_out if found_out is not None else _messages(attributes, OUTPUT)
    return found_in, found_out


def system_instructions(span: Span) -> str | None:
    """The text parts of ``gen_ai.system_instructions``, joined (a plain string is taken as the text)."""
    for attributes in _sources(span):
        value = maybe_json(attributes.get(SYSTEM))
        if value in (None, "", []):
            continue
        if isinstance(value, str):
            return value
        parts = value if isinstance(value, list) else [value]
        texts = [str(p.get("content", "")) for p in parts if isinstance(p, Mapping) and p.get("type") == "text"]
        return "\n".join(texts) if texts else None
    return None
