"""A span's messages, from whichever convention carries them: the first that has the input wins for the
input, the first that has the output for the output (the order is docs/otlp-mapping.md's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trajstream.streams.otlp import genai, legacy, openinference, vercel
from trajstream.streams.otlp.spans import Span

Messages = list[Any]
_READERS: tuple[Callable[[Span], tuple[Messages | None, Messages | None]], ...] = (
    genai.read,
    lambda span: vercel.read(span.attributes),
    legacy.read_events,
    openinference.read,
    legacy.read_flattened,
    openinference.read_values,
)


def span_messages(span: Span) -> tuple[Messages, Messages]:
    """(input messages, output messages) in the OTel shape ``{role, parts[], finish_reason?}``; empty when
    the span carries no content (content capture off). Raises SpanContentError for content it cannot read."""
    found_in: Messages | None = None
    found_out: Messages | None = None
    for reader in _READERS:
        got_in, got_out = reader(span)
        found_in = found_in if found_in is not None else got_in
        found_out = found_out if found_out is not None else got_out
        if found_in is not None and found_out is not None:
            break
    return found_in or [], found_out or []
