"""Embedding texts and recall's few-shot steps name actions the way people type them (no broker, no stores)."""

from __future__ import annotations

import json
from typing import Any

from trajstream.assembled import Step, TrajectoryView
from trajstream.consumers.recall import Recall
from trajstream.consumers.summaries import action_of, decision_points
from trajstream.settings import Settings
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ToolCall, ToolResponse, Widget, turn_record


def _view(codec: SingleObjectCodec, turns: list[list[Message]]) -> TrajectoryView:
    encoded = [codec.encode("turn", turn_record("t-1", i, messages)) for i, messages in enumerate(turns)]
    record = {"trajectory_id": "t-1", "task_description": "Refund order 42", "turns": encoded}
    return TrajectoryView(record, tuple(Step(codec.decode(b, expect="turn").record) for b in encoded))


def test_actions_read_as_calls_and_replies(codec: SingleObjectCodec) -> None:
    view = _view(
        codec,
        [
            [Message.text("user", "Refund order 42, please.")],
            [
                Message("assistant", ToolCall("issue_refund", "c1", {"order_id": 42, "reason": "broken"})),
                Message("tool", ToolResponse("issue_refund", "c1", {"ok": True})),
            ],
            [Message("assistant", Widget("receipt", {"order_id": 42}))],
            [Message.text("assistant", "Done:\n  refunded.")],
        ],
    )
    points = decision_points(view)
    assert [(p.tool, p.action) for p in points] == [
        ("issue_refund", 'issue_refund(order_id=42, reason="broken")'),
        ("reply", 'reply: widget receipt: {"order_id":42}'),
        ("reply", "reply: Done: refunded."),
    ]
    assert points[1].state.endswith('[issue_refund→success] issue_refund(order_id=42, reason="broken")')
    assert action_of(view.steps[0]) == ("reply", "reply")  # the user's turn: nothing the assistant did


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]):
        self.result_rows = rows


class _ClickHouse:
    """Answers recall's two queries: the messages, then the tool calls' statuses."""

    def __init__(self, messages: list[tuple[Any, ...]], calls: list[tuple[Any, ...]]):
        self.answers = [_Rows(messages), _Rows(calls)]

    def query(self, sql: str, parameters: dict[str, Any]) -> _Rows:
        return self.answers.pop(0)


def test_recall_steps_use_the_same_notation() -> None:
    arguments = json.dumps({"order_id": 42}, indent=2)
    messages = [
        ("t-1", 1, 0, "tool_call", "issue_refund", arguments, "c1"),
        ("t-1", 1, 1, "tool_response", "issue_refund", '{"ok":true}', "c1"),
        ("t-1", 2, 0, "tool_call", "notify", "{}", "c2"),
        ("t-1", 3, 0, "text", "", "All\n\ndone " + "x" * 400, ""),
        ("t-1", 4, 0, "redacted", "", "[redacted: persist=false]", ""),
    ]
    clickhouse = _ClickHouse(messages, [("t-1", "c1", "success")])
    recall = Recall(Settings(), milvus=None, clickhouse=clickhouse, embedder=None)  # type: ignore[arg-type]
    steps = recall._steps(["t-1"])["t-1"]
    assert steps[:2] == ["issue_refund(order_id=42) → success", "notify() → no result"]
    assert steps[2].startswith("reply: All done xxx") and steps[2].endswith(" chars]") and len(steps[2]) <= 307
    assert len(steps) == 3  # a redacted reply is left out, as before
