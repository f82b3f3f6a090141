"""``openai-rft`` and ``fireworks-rft``: prompt rows for reinforcement fine-tuning, with what graders read.

One row per trajectory that succeeded with a text answer:

- ``messages``: the prompt, ending on a user message, as both platforms require. It is the trajectory's
  system message and its messages before the first assistant message, cut after the last user message
  among them (what the agent had been asked when it first answered); when there is no user message
  there, the task itself is the user message. A redacted message before it keeps its placeholder; a
  prompt whose last user message is redacted is skipped (the question is gone).
- ``tools``: the tools the trajectory called (names only: trajstream does not record schemas).
- ``ground_truth``: the final answer of the trajectory, the text of its last assistant message. It is a
  reference only when the trajectory succeeded, so other outcomes are skipped ("no reference answer"),
  as is a success whose last assistant message is not text (a tool call) or is redacted. Every row
  therefore carries a string a grader can compare with (OpenAI's ``{{ item.ground_truth }}``,
  eval-protocol's ``EvaluationRow.ground_truth``); select the successes of a task group to train on it.
- ``task_id`` (the task group, ``task_key``), ``reward`` and ``trajectory_id``.

OpenAI keeps ``messages`` and ``tools`` for itself and gives graders every other top-level key, so
``openai-rft`` puts ``ground_truth``, ``task_id``, ``reward``, ``trajectory_id`` at the top. Fireworks
reads rows with eval-protocol's ``EvaluationRow(**row)``: ``ground_truth`` is one of its fields, and ours
go in ``input_metadata`` (``row_id``: the trajectory id, so that an evaluation result names the trajectory
it came from; ``dataset_info``: ``task_id``, ``reward``, ``trajectory_id``), its typed place for a dataset
row's details. (``EvaluationRow`` allows unknown keys too, but they are untyped and its row id would be a
hash of the content.)
"""

from __future__ import annotations

from typing import Any, ClassVar

from trajstream.corpus.export.chat import convert, tool_params
from trajstream.corpus.export.formats.base import PerTrajectory, Row, Skip
from trajstream.corpus.export.pairs import prompt_messages
from trajstream.corpus.read import TOOL_CALLS, Message, Trajectory

NOT_A_SUCCESS = "not a success: its answer is no reference answer for the graders"
NO_TEXT_ANSWER = "its last assistant message is not a text answer: no reference answer for the graders"
REDACTED_ANSWER = "its final answer is redacted: no reference answer for the graders"
REDACTED_QUESTION = "its prompt's last user message is redacted: the question is gone"


def rft_prompt(trajectory: Trajectory) -> list[Message] | None:
    """The prompt's messages up to its last user message; None when there is no user message before the
    first assistant message (the task is then the user message)."""
    before = prompt_messages(trajectory)
    last = max((i for i, m in enumerate(before) if m.role == "user"), default=None)
    return None if last is None else before[: last + 1]


def ground_truth(trajectory: Trajectory) -> str | Skip:
    """The final answer of a successful trajectory, or the Skip saying why there is none."""

    def skip(reason: str) -> Skip:
        return Skip(trajectory.trajectory_id, trajectory.version, reason)

    if trajectory.outcome != "success":
        return skip(NOT_A_SUCCESS)
    last = next((m for m in reversed(trajectory.messages) if m.role == "assistant"), None)
    if last is None or last.kind not in ("text", "redacted"):
        return skip(NO_TEXT_ANSWER)
    if last.kind == "redacted":
        return skip(REDACTED_ANSWER)
    return str(last.content["text"])


class _Reinforcement(PerTrajectory):
    kind = "jsonl"
    metadata_in_input: ClassVar[bool]

    def parts(self) -> frozenset[str]:
        return frozenset({TOOL_CALLS})  # the tools' names

    def row(self, trajectory: Trajectory) -> Row | Skip:
        answer = ground_truth(trajectory)
        if isinstance(answer, Skip):
            return answer
        prompt = rft_prompt(trajectory)
        if prompt is not None and prompt[-1].kind == "redacted":
            return Skip(trajectory.trajectory_id, trajectory.version, REDACTED_QUESTION)
        chat = convert(trajectory.system_message, [(None, prompt or [])])
        if isinstance(chat, str):
            return Skip(trajectory.trajectory_id, trajectory.version, chat)
        messages = chat.plain
        if prompt is None:
            messages.append({"role": "user", "content": trajectory.task})
        tools = tool_params({c.tool: None for turn in trajectory.turns for c in turn.tool_calls})
        fields: dict[str, Any] = {"task_id": trajectory.task_key, "reward": trajectory.reward,
                                  "trajectory_id": trajectory.trajectory_id}  # fmt: skip
        if self.metadata_in_input:
            return {"messages": messages, "tools": tools, "ground_truth": answer,
                    "input_metadata": {"row_id": trajectory.trajectory_id, "dataset_info": fields}}  # fmt: skip
        return {"messages": messages, "tools": tools, "ground_truth": answer, **fields}


class OpenAIRFT(_Reinforcement):
    name = "openai-rft"
    summary = "RFT prompts ending on a user message, with ground_truth (the successful answer), task_id, reward"
    metadata_in_input = False


class FireworksRFT(_Reinforcement):
    name = "fireworks-rft"
    summary = "RFT rows for eval-protocol's EvaluationRow(**row): ground_truth, and ours in input_metadata"
    metadata_in_input = True


FORMATS = (OpenAIRFT, FireworksRFT)
