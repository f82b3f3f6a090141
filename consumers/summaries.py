"""Compact texts for embedding: a trajectory (task and steps) and its decision points (state, action)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trajstream.assembled import Step, TrajectoryView
from trajstream.content import render_call, render_content

MAX_CHARS = 600  # the embedder reads 128 word pieces (consumers.embedding); the rest would be cut anyway
MAX_CALL_CHARS = 120
MAX_REPLY_CHARS = 80


def action_of(step: Step) -> tuple[str, str]:
    """(tool name or "reply", a short text of what the assistant did in this step).

    A call reads ``issue_refund(order_id=42)``, the notation of the actions people ask about.
    """
    for call in step.tool_calls:
        return call["name"], render_call(str(call["name"]), str(call["arguments"]), MAX_CALL_CHARS)
    for message in step.messages:
        if message["role"] == "assistant":
            return "reply", reply_action(message["content"])
    return "reply", "reply"


def reply_action(content: Mapping[str, Any]) -> str:
    """The action text of a step that answers with a message (``reply: ...``): what an agent passes to
    ``predict_outcome`` to ask about an answer it has not given yet."""
    return "reply: " + render_content(content, MAX_REPLY_CHARS)


def step_line(step: Step) -> str:
    results = [f"{r['name']}→{r['status']}" for r in step.tool_responses]
    _, action = action_of(step)
    return (f"[{'; '.join(results)}] " if results else "") + action


def trajectory_text(view: TrajectoryView) -> str:
    """The text of a trajectory's vector: its task, in the form recall asks (``task: ...``).

    Recall finds past trajectories by what they were asked to do; their steps are read from ClickHouse
    (``Recall._steps``) and the decision points carry the steps' own vectors. The steps were once in this
    text too: 106 word pieces against the task's 12 took the embedder 24 times longer, and the trajectory
    vectors fell minutes behind at 50 trajectories/s on 2 cores (issue 16's target is 2 s)."""
    return f"task: {view.task_description}"[:MAX_CHARS]


def state_text(task: str, previous: list[str]) -> str:
    return "\n".join([f"task: {task}", *previous[-2:]])[:MAX_CHARS]  # the last steps say most


def decision_text(state: str, action: str) -> str:
    return f"{state}\nnext action: {action}"[:MAX_CHARS]


@dataclass(frozen=True)
class DecisionPoint:
    step_index: int
    turn_index: int
    tool: str
    action: str
    state: str
    next_tools: str  # the tools the trajectory called after this step, in order


def decision_points(view: TrajectoryView) -> list[DecisionPoint]:
    steps = view.llm_steps
    tools = [action_of(s)[0] for s in steps]
    points: list[DecisionPoint] = []
    previous: list[str] = []
    for i, step in enumerate(steps):
        tool, action = action_of(step)
        points.append(DecisionPoint(i, step.turn_index, tool, action, state_text(view.task_description, previous),
                                    " > ".join(tools[i + 1 :])))  # fmt: skip
        previous.append(step_line(step))
    return points
