"""The tools a model could call in an inference span: ``gen_ai.tool.definitions``, OpenInference's
``llm.tools.N.tool.json_schema``, the Vercel AI SDK's ``ai.prompt.tools``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.streams.otlp.flattened import unflatten
from trajstream.streams.otlp.spans import Span
from trajstream.streams.otlp.values import maybe_json


def _name(definition: Any) -> str | None:
    definition = maybe_json(definition)
    if not isinstance(definition, Mapping):
        return None
    function = definition.get("function")
    name = (function if isinstance(function, Mapping) else definition).get("name")
    return str(name) if name else None


def available_tools(span: Span) -> list[str]:
    a = span.attributes
    definitions = maybe_json(a.get("gen_ai.tool.definitions"))
    if not isinstance(definitions, list):
        definitions = [
            t.get("tool", {}).get("json_schema") for t in unflatten(a, "llm.tools") if isinstance(t, Mapping)
        ]
    if not definitions:
        listed = maybe_json(a.get("ai.prompt.tools"))
        definitions = listed if isinstance(listed, list) else []
    return [n for n in map(_name, definitions) if n]
