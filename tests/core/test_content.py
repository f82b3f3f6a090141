"""The one renderer of message content (trajstream.content) and the one reader of context entities."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trajstream.assembled import ContextEntity, TrajectoryView
from trajstream.content import clip, compact_json, content_text, fit_lines, render_call, render_content
from trajstream_sdk.events import Message, Redacted, Structured, Text, ToolCall, ToolResponse, Widget

SECRET = "my card is 4111 1111 1111 1111"


def record(content: Any) -> dict[str, Any]:
    """The content as a decoded Avro record: what every stage holds."""
    _, fields = content.to_record(lambda text: text)
    return dict(fields)


CALL = record(ToolCall("refund", "c1", {"order_id": 1042, "customer": "Jane Doe"}))
RESPONSE = record(ToolResponse("refund", "c1", {"refund_id": "R-9"}, "error"))
WIDGET = record(Widget("order_card", {"order_id": 1042}))
STRUCTURED = record(Structured({"answer": 42}))
REDACTED = record(Redacted("persist=false", "text"))


@pytest.mark.parametrize(
    ("content", "rendered"),
    [
        (record(Text("Your refund\n  is   done.")), "Your refund is done."),
        (CALL, 'call refund(order_id=1042, customer="Jane Doe")'),
        (RESPONSE, 'refund -> error: {"refund_id":"R-9"}'),
        (WIDGET, 'widget order_card: {"order_id":1042}'),
        (STRUCTURED, 'structured: {"answer":42}'),
        (REDACTED, "[redacted: persist=false]"),
    ],
)
def test_every_kind_renders_on_one_line(content: dict[str, Any], rendered: str) -> None:
    assert render_content(content) == rendered


INDENTED = '{\n  "order_id": 1042\n}'  # as an agent may send it


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ({"text": "Your refund\nis done."}, "Your refund\nis done."),
        ({"name": "refund", "call_id": "c1", "arguments": INDENTED}, INDENTED),
        ({"name": "refund", "call_id": "c1", "status": "success", "result": INDENTED}, INDENTED),
        ({"widget_type": "order_card", "data": INDENTED}, INDENTED),
        ({"data": INDENTED}, INDENTED),
        (REDACTED, "[redacted: persist=false]"),
    ],
)
def test_content_text_is_the_payload_as_it_is(content: dict[str, Any], text: str) -> None:
    assert content_text(content) == text


def test_arguments_that_are_not_an_object_or_not_json_are_shown_as_they_are() -> None:
    assert render_call("search", json.dumps(["acme", "q3"])) == 'search(["acme","q3"])'
    assert render_call("search", json.dumps("acme q3")) == "search(acme q3)"
    assert render_call("search", "not json {") == "search(not json {)"
    assert render_call("ping", "{}") == "ping()"


def test_a_bare_json_string_result_reads_without_quotes() -> None:
    response = record(ToolResponse("refund", "c2", "payment provider down", "error"))
    assert render_content(response) == "refund -> error: payment provider down"
    assert compact_json('{\n  "a": [1, 2]\n}') == '{"a":[1,2]}'
    assert compact_json("plain text") == "plain text"


@pytest.mark.parametrize("content", [CALL, RESPONSE, WIDGET, STRUCTURED, REDACTED, record(Text("x" * 500))])
@pytest.mark.parametrize("limit", [0, 5, 20, 40, 80])
def test_a_limit_bounds_the_whole_line(content: dict[str, Any], limit: int) -> None:
    assert len(render_content(content, limit)) <= limit


def test_the_payload_gives_way_before_the_tool_name_and_status() -> None:
    big = record(ToolCall("refund", "c1", {"order_id": 1042, "note": "n" * 500}))
    line = render_content(big, 60)
    assert line.startswith("call refund(order_id=1042, ") and line.endswith(" chars])")
    answer = record(ToolResponse("lookup_order", "c1", {"rows": ["r" * 30] * 20}, "timeout"))
    assert render_content(answer, 60).startswith("lookup_order -> timeout: ")
    assert render_content(CALL, 1000) == render_content(CALL)  # room to spare: nothing cut


def test_a_redacted_content_never_shows_text() -> None:
    # The SDK's own path: a persist=false message leaves the process as a placeholder.
    _, content = Message.text("user", SECRET, persist=False).to_record()["content"]
    for text in (render_content(content), render_content(content, 10), content_text(content)):
        assert "4111" not in text and text.startswith("[redacted")


def test_clip_collapses_whitespace_and_says_how_much_was_cut() -> None:
    assert clip("  a \n\t b  ", 10) == "a b"
    cut = clip("word " * 100, 40)
    assert len(cut) == 40 and cut.endswith(" chars]") and cut.startswith("word word")
    kept = int(cut.rsplit("+", 1)[1].split()[0])
    assert len(cut.split("…")[0]) + kept == len(("word " * 100).strip())  # what is shown plus what was cut
    assert clip("abcdefgh", 3) == "abc"  # no room for the marker: a plain cut
    assert clip("abc", 0) == "" and clip("abc", -1) == ""


def test_fit_lines_keeps_the_beginning_and_the_end() -> None:
    lines = [f"line {i} " + "x" * 50 for i in range(100)]
    assert fit_lines(lines[:3], 1000) == "\n".join(lines[:3])
    text = fit_lines(lines, 1000)
    assert len(text) <= 1000
    kept = text.splitlines()
    assert kept[0] == lines[0] and kept[-1] == lines[-1]
    assert any(line.startswith("[... ") and "lines omitted" in line for line in kept)


# --- entities from a trajectory's context ---------------------------------------------------------


def view(context: str | None) -> TrajectoryView:
    return TrajectoryView({"context": context}, ())


def test_context_entities_are_read_once_in_order_with_their_types() -> None:
    context = {
        "entities": [
            {"name": " ACME Corp ", "entity_type": "org", "entity_id": None},
            {"name": "Q3 2024", "entity_type": None},
            {"name": "   "},  # nameless: skipped
            {"entity_type": "org"},
            {"name": 42},  # not a name
            "Jane Doe",  # not an object
        ]
    }
    assert view(json.dumps(context)).context_entities == (
        ContextEntity("ACME Corp", "org"),
        ContextEntity("Q3 2024", None),
    )


@pytest.mark.parametrize("context", [None, "", "not json", "[1, 2]", '{"entities": null}', '{"entities": {"a": 1}}'])
def test_a_missing_or_unreadable_context_has_no_entities(context: str | None) -> None:
    assert view(context).context_entities == ()
