"""A trajectory's messages in TRL's conversational shape (trl ``docs/source/dataset_formats.md``).

The same conversation as ``chat.py`` gives OpenAI (one reply per assistant message, redaction kept, a redacted
call refused), in TRL's keys:

- An assistant's reply is one message: its text and the tool calls that follow it in the same turn go together
  (``content`` and ``tool_calls``), as one model call returns them; two messages would teach the model to end
  its turn between its text and its call.
- tool call: ``{"type": "function", "id", "function": {"name", "arguments"}}`` with ``arguments`` a dict:
  TRL's chat templates iterate it (OpenAI's JSON string is the other formats' business). Arguments that are
  not a JSON object cannot be given as a dict: the conversion refuses them, with the reason.
- tool response: ``{"role": "tool", "name", "tool_call_id", "content"}``, the result's JSON text.
- text, widget, structured: ``{"role", "content"}``, the content's own payload (``content_text``).
- redacted: ``{"role", "content": "[redacted: REASON]"}``: the reason is all it carries; no text is invented.
  A redacted call or response is refused (``REDACTED_CALL``): its call id went with it.
- an assistant's reasoning: ``reasoning_content``, the key TRL's response schemas (Qwen3, ...) parse into.

A message only has the keys it needs: the formats store each message as JSON (``datasets``' ``Json()``), so no
key comes back as None, which templates testing ``'tool_calls' in message`` would take for a tool call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from trajstream.content import content_text
from trajstream.corpus.export.chat import REDACTED_CALL, tool_params
from trajstream.corpus.export.pairs import first_reply, prompt_messages
from trajstream.corpus.read import Message, Trajectory

Chat = list[dict[str, Any]]


class NotExportable(ValueError):
    """A trajectory TRL's shape cannot hold as recorded; the message is the skip's reason."""


def _arguments(content: dict[str, Any]) -> dict[str, Any]:
    try:
        arguments = json.loads(content["arguments"])
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise NotExportable(f"tool call {content['name']!r} has arguments that are not a JSON object; TRL needs a dict")
    return arguments


def chat_messages(messages: Iterable[Message]) -> Chat:
    """These messages (of one turn, or a run of turns) in TRL's shape, each reply one assistant message."""
    chat: Chat = []
    reply: dict[str, Any] | None = None  # the assistant message a tool call joins
    for message in messages:
        content = message.content
        if message.kind == "redacted" and content.get("original_kind") in ("tool_call", "tool_response"):
            raise NotExportable(REDACTED_CALL)
        if message.kind == "tool_call":
            if reply is None:
                reply = {"role": message.role}
                chat.append(reply)
            call = {"type": "function", "id": content["call_id"],
                    "function": {"name": content["name"], "arguments": _arguments(content)}}  # fmt: skip
            reply.setdefault("tool_calls", []).append(call)
            out = reply
        elif message.kind == "tool_response":
            out = {"role": message.role, "name": content["name"], "tool_call_id": content["call_id"],
                   "content": content["result"]}  # fmt: skip
            chat.append(out)
            reply = None
        else:  # text, widget, structured, redacted
            out = {"role": message.role, "content": content_text(content)}
            chat.append(out)
            # A call after an assistant's text is part of that reply; after a placeholder it is not.
            reply = out if message.role == "assistant" and message.kind != "redacted" else None
        if message.reasoning is not None:
            previous = out.get("reasoning_content")
            out["reasoning_content"] = message.reasoning if previous is None else f"{previous}\n{message.reasoning}"
    return chat


def system(trajectory: Trajectory) -> Chat:
    return [{"role": "system", "content": trajectory.system_message}] if trajectory.system_message else []


def conversation(trajectory: Trajectory) -> Chat:
    """The whole conversation: the system message, then every turn's messages (a reply never spans turns)."""
    return system(trajectory) + [m for turn in trajectory.turns for m in chat_messages(turn.messages)]


def prompt_of(trajectory: Trajectory) -> Chat:
    """The system message and what came before the first assistant message (``pairs.prompt_messages``); it
    must end on the user's (or a tool's) message, as a generation prompt does."""
    chat = system(trajectory) + chat_messages(prompt_messages(trajectory))
    if not chat or chat[-1]["role"] not in ("user", "tool"):
        raise NotExportable("no prompt: no user message before the first assistant message")
    return chat


def first_reply_of(trajectory: Trajectory) -> Chat:
    """The first assistant reply (``pairs.first_reply``: one model call), as one message."""
    return chat_messages(first_reply(trajectory))


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
