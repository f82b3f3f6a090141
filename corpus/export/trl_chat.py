"""A trajectory's messages in TRL's conversational shape (trl ``docs/source/dataset_formats.md``): ``chat.py``'s
one conversion in its ``TRL`` dialect (tool-call arguments as a dict, the tool response's name, the reasoning as
``reasoning_content``), as the lists of messages TRL's rows hold, with what cannot be converted raised as
``NotExportable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trajstream.corpus.export.chat import TRL, convert, tool_params
from trajstream.corpus.export.pairs import first_reply, prompt_messages
from trajstream.corpus.read import Message, Trajectory, Turn

Chat = list[dict[str, Any]]


class NotExportable(ValueError):
    """A trajectory TRL's shape cannot hold as recorded; the message is the skip's reason."""


def _messages(system_message: str, turns: list[tuple[Turn | None, Sequence[Message]]]) -> Chat:
    chat = convert(system_message, turns, TRL)
    if isinstance(chat, str):
        raise NotExportable(chat)
    return chat.plain


def conversation(trajectory: Trajectory) -> Chat:
    """The whole conversation: the system message, then every turn's messages (a reply never spans turns)."""
    return _messages(trajectory.system_message, [(turn, turn.messages) for turn in trajectory.turns])


def prompt_of(trajectory: Trajectory) -> Chat:
    """The system message and what came before the first assistant message (``pairs.prompt_messages``); it
    must end on the user's (or a tool's) message, as a generation prompt does."""
    chat = _messages(trajectory.system_message, [(None, prompt_messages(trajectory))])
    if not chat or chat[-1]["role"] not in ("user", "tool"):
        raise NotExportable(
            "no prompt: the messages before the first assistant message do not end on a user's or "
            "a tool's message, as a generation prompt must"
        )
    return chat


def first_reply_of(trajectory: Trajectory) -> Chat:
    """The first assistant reply (``pairs.first_reply``: one model call), as one message."""
    return _messages("", [(None, first_reply(trajectory))])


def tool_specs(*trajectories: Trajectory) -> list[dict[str, Any]]:
    """The tools called, in first-call order, as ``chat.tool_params`` gives them (names only: the corpus
    records calls, not the tools' schemas)."""
    names = dict.fromkeys(m.content["name"] for t in trajectories for m in t.messages if m.kind == "tool_call")
    return tool_params(names)


def final_answer(trajectory: Trajectory) -> str | None:
    """The last assistant text of the trajectory (None when there is none, or it was redacted)."""
    for message in reversed(trajectory.messages):
        if message.role == "assistant":
            return str(message.content["text"]) if message.kind == "text" else None
    return None
