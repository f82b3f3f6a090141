"""Fuzz `trajstream emit` lines: each line either becomes events that encode, or is refused with
InputRecordError or CodecError (what emit_file reports and dead-letters) and a reason; nothing else.

The inputs: any text; any JSON value (hypothesis' recursive JSON); the example trajectories with one field,
anywhere in the document, replaced by any JSON value or removed; and their text with characters edited.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.profiles import examples
from tests.support.env import SCHEMAS
from trajstream.emit_file import parse_line
from trajstream.errors import CodecError, InputRecordError
from trajstream.settings import PROJECT_ROOT
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.schemas import SchemaCatalog

CODEC = SingleObjectCodec(SchemaCatalog.from_directory(SCHEMAS))
LINES = [line for line in (PROJECT_ROOT / "examples" / "trajectories.jsonl").read_text().splitlines() if line.strip()]
DOCS = [json.loads(line) for line in LINES]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _emits_or_refuses(text: str) -> None:
    """What emit_file does with a line, minus Kafka: parse it, encode every event."""
    try:
        _, events = parse_line(text)
        for name, record in events:
            CODEC.encode(name, record)
    except (InputRecordError, CodecError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a reason"


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: dict keys and list indexes, depth first."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


def _replace(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@given(st.text(max_size=300))
@example("")
@example("[]")
@example('{"task": "t", "messages": [{"role": "user"}], "id": "00000000-0000-0000-0000-00000000000"}')
def test_any_text(text: str) -> None:
    _emits_or_refuses(text)


@given(JSON)
def test_any_json(value: Any) -> None:
    _emits_or_refuses(json.dumps(value))


@examples(400)
@given(st.data())
def test_example_lines_with_one_field_replaced(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(DOCS))
    path = data.draw(st.sampled_from(_paths(doc)))
    delete = data.draw(st.booleans())
    value = None if delete else data.draw(JSON)
    _emits_or_refuses(json.dumps(_replace(doc, path, value, delete)))


# Every key the line format reads (emit_file.py's docstring, openai_chat.py), at the top or in a message.
KEYS = [
    "id",
    "task",
    "agent_id",
    "domain",
    "framework",
    "environment",
    "tags",
    "parent_id",
    "conversation_id",
    "user_id",
    "entities",
    "model",
    "model_version",
    "messages",
    "outcome",
    "reward",
    "feedback_score",
    "human_reviewed",
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "status",
    "persist",
    "usage",
    "name",
    "reasoning",
    "reasoning_content",
    "function",
    "arguments",
    "type",
    "prompt_tokens",
    "completion_tokens",
]


def _objects(doc: Any) -> list[dict[str, Any]]:
    """Every JSON object in a document, the document first."""
    found = [doc] if isinstance(doc, dict) else []
    for value in doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else []:
        found += _objects(value)
    return found


@examples(400)
@given(st.data())
def test_example_lines_with_a_known_key_set(data: st.DataObject) -> None:
    """A key the parser reads, in any object of the line, set to any JSON value."""
    doc = copy.deepcopy(data.draw(st.sampled_from(DOCS)))
    target = data.draw(st.sampled_from(_objects(doc)))
    target[data.draw(st.sampled_from(KEYS))] = data.draw(JSON)
    _emits_or_refuses(json.dumps(doc))


@examples(400)
@given(st.sampled_from(LINES), st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 3), st.text(max_size=3)),
                                        min_size=1, max_size=5))  # fmt: skip
def test_example_lines_with_characters_edited(line: str, edits: list[tuple[int, int, str]]) -> None:
    for at, cut, text in edits:
        i = at % (len(line) + 1)
        line = line[:i] + text + line[i + cut :]
    _emits_or_refuses(line)


def test_example_lines_emit() -> None:
    """The mutations start from lines that emit: else they would only ever test refusals."""
    for line in LINES:
        _, events = parse_line(line)
        assert [CODEC.encode(name, record) for name, record in events]


# Crashes the fuzzing found, each kept as the line that found it: now a refusal with its reason.
REGRESSIONS = [
    # hypothesis: a message's usage that is not an object (AttributeError: 'list' object has no attribute 'get')
    ({"task": "t", "messages": [{"role": "assistant", "content": "x", "usage": [None]}]}, "bad message 0: usage"),
    # a JSON integer too large for a float (OverflowError in float())
    ({"task": "t", "messages": [{"role": "user", "content": "x"}], "reward": 10**400}, "reward is too large"),
]


@pytest.mark.parametrize(("doc", "reason"), REGRESSIONS)
def test_regression_is_refused_with_its_reason(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputRecordError, match=reason):
        parse_line(json.dumps(doc))


# Found by the gateway's fuzzing (its /v1/trajectories reads this format): json.loads' other two failures.
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"task": "t", "messages": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 100"),  # RecursionError
        ('{"task": "t", "messages": [1], "reward": 1' + "0" * 5000 + "}", "integer string conversion"),  # ValueError
        ('{"task": "t", "messages": ' + "[" * 101 + "]" * 101 + "}", "nested deeper than 100"),  # parses, too deep
    ],
)
def test_regression_json_that_fails_to_load_otherwise_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InputRecordError, match=f"invalid JSON: .*{reason}"):
        parse_line(text)
