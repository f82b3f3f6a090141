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
    """Answers recall's one query with the given messages rows, as chDB would (in any order)."""

    def __init__(self, messages: list[tuple[Any, ...]]):
        self.messages = messages

    def query(self, sql: str, parameters: dict[str, Any]) -> _Rows:
        return _Rows(list(reversed(self.messages)))


def test_recall_steps_use_the_same_notation() -> None:
    arguments = json.dumps({"order_id": 42}, indent=2)
    messages = [  # trajectory, turn, seq, role, kind, tool, text, call id, a response's status
        ("t-1", 0, 0, "user", "text", "", "Refund order 42", "", ""),
        ("t-1", 1, 0, "assistant", "tool_call", "issue_refund", arguments, "c1", ""),
        ("t-1", 1, 1, "tool", "tool_response", "issue_refund", '{"ok":true}', "c1", "success"),
        ("t-1", 2, 0, "assistant", "tool_call", "notify", "{}", "c2", ""),
        ("t-1", 3, 0, "assistant", "text", "", "All\n\ndone " + "x" * 400, "", ""),
        ("t-1", 4, 0, "assistant", "redacted", "", "[redacted: persist=false]", "", ""),
    ]
    recall = Recall(Settings(), milvus=None, clickhouse=_ClickHouse(messages), embedder=None)  # type: ignore[arg-type]
    steps = recall._steps([{"trajectory_id": "t-1", "agent_id": "a"}])["t-1"]
    assert steps[:2] == ["issue_refund(order_id=42) → success", "notify() → unanswered"]
    assert steps[2].startswith("reply: All done xxx") and steps[2].endswith(" chars]") and len(steps[2]) <= 307
    assert len(steps) == 3  # the user's text and a redacted reply are left out
