"""JSON from outside (emit lines, gateway and data API bodies) read with one rule: a document, or a
``JSONInputError`` (a ValueError) that says why.

``json.loads`` has three ways to fail, not one: ``JSONDecodeError``, a plain ``ValueError`` for an integer
over Python's 4300 digits, and ``RecursionError`` for nesting deeper than the interpreter's stack (the
fuzzing found both last two as crashes: a 500, an emit run stopped). A document that parses but nests
deeper than ``MAX_DEPTH`` is refused too: everything after the parse (json.dumps, deepcopy, protobuf's
ParseDict, Avro) recurses on it and would fail the same way, later and less clearly.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100  # arrays and objects inside each other; no record or OTLP request of ours needs a third of it


class JSONInputError(ValueError):
    """The input is not a JSON document trajstream takes; the message says why."""


def loads(text: str | bytes) -> Any:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"{exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise JSONInputError(f"nested deeper than {MAX_DEPTH} arrays or objects") from None
    except ValueError as exc:  # an integer with more digits than int() reads, or bytes that are not UTF-8
        raise JSONInputError(str(exc)) from None
    if _depth_over(doc, MAX_DEPTH):
        raise JSONInputError(f"nested deeper than {MAX_DEPTH} arrays or objects")
    return doc


def _depth_over(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests more than ``limit`` containers, walked without recursion."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
