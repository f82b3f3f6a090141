"""Reading attribute values whatever their encoding: int64 as a string, JSON as a string or a structure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from trajstream.errors import SpanContentError


def first(attributes: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` that is present and not empty."""
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "" and value != []:
            return value
    return None


def as_int(value: Any) -> int | None:
    """An integer from an int, an integral float or a decimal string (OTLP/JSON writes int64 as strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | bytes):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else json.dumps(value, default=str)


def structured(value: Any, what: str) -> Any:
    """A JSON document given as a string, or already a structure (an AnyValue kvlist or array)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise SpanContentError(f"{what} is not valid JSON: {value[:80]!r}") from None


def maybe_json(value: Any) -> Any:
    """A string that holds JSON as its document; any other value as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
