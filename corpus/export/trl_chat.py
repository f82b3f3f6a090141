"""A trajectory's messages in TRL's conversational shape (trl ``docs/source/dataset_formats.md``).

One exported message per recorded message, in order, after the system message: a round trip can be checked
message for message, and parallel tool calls stay separate assistant messages (as they were recorded).

- text, widget, structured: ``{"role", "content"}``, the content's own payload (``content_text``).
- tool call: ``{"role": "assistant", "tool_calls": [{"type": "function", "id", "function": {"name",
  "arguments"}}]}`` with ``arguments`` a dict: TRL's chat templates iterate it (OpenAI's JSON string is the
  other formats' business).
- tool response: ``{"role": "tool", "name", "tool_call_id", "content"}``, the result's JSON text.
- redacted: ``{"role", "content": "[redacted: REASON]"}``: the reason is all it carries; no text is invented.
- an assistant's reasoning: ``reasoning_content``, the key TRL's response schemas (Qwen3, ...) parse into.

A message only has the keys it needs: the formats store each message as JSON (``datasets``' ``Json()``), so no
key comes back as None, which templates testing ``'tool_calls' in message`` would take for a tool call.
"""

from __future__ import annotations

import json
from typing import Any

from trajstream.content import content_text
from trajstream.corpus.read import Message, Trajectory

Chat = list[dict[str, Any]]


class NotExportable(ValueError):
    """A trajectory TRL's shape cannot hold as recorded; the message is the skip's reason."""


def chat_message(message: Message) -> dict[str, Any]:
    content = message.content
    if message.kind == "tool_call":
        try:
            arguments = json.loads(content["arguments"])
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise NotExportable(
                f"tool call {content['name']!r} has arguments that are not a JSON object; TRL needs a dict"
            )
        out: dict[str, Any] = {
            "role": message.role,
            "tool_calls": [
                {"type": "function", "id": content["call_id"],
                 "function": {"name": content["name"], "arguments": arguments}}
            ],
        }  # fmt: skip
    elif message.kind == "tool_response":
        out = {"role": message.role, "name": content["name"], "tool_call_id": content["call_id"],
               "content": content["result"]}  # fmt: skip
    else:  # text, widget, structured, redacted
        out = {"role": message.role, "content": content_text(content)}
    if message.reasoning is not None:
        out["reasoning_content"] = message.reasoning
    return out


def system(trajectory: Trajectory) -> Chat:
    return [{"role": "system", "content": trajectory.system_message}] if trajectory.system_message else []


def conversation(trajectory: Trajectory) -> Chat:
    """The whole conversation: the system message, then every recorded message."""
    return system(trajectory) + [chat_message(m) for m in trajectory.messages]


def _opening(trajectory: Trajectory) -> int:
    """How many recorded messages come before the first assistant message."""
    return next((i for i, m in enumerate(trajectory.messages) if m.role == "assistant"), len(trajectory.messages))


def prompt_of(trajectory: Trajectory) -> Chat:
    """The system message and what came before the first assistant message; it must end on the user's (or a
    tool's) message, as a generation prompt does. Only these messages are converted (a prompt-only export
    does not fail on a later message TRL's shape cannot hold)."""
    chat = system(trajectory) + [chat_message(m) for m in trajectory.messages[: _opening(trajectory)]]
    if not chat or chat[-1]["role"] not in ("user", "tool"):
        raise NotExportable("no prompt: no user message before the first assistant message")
    return chat


def split_prompt(trajectory: Trajectory) -> tuple[Chat, Chat]:
    """(prompt, completion): the completion is every message from the first assistant message on."""
    return prompt_of(trajectory), [chat_message(m) for m in trajectory.messages[_opening(trajectory) :]]


def tool_specs(trajectory: Trajectory) -> list[dict[str, Any]]:
    """The tools the trajectory called, as function specs. The corpus records calls, not the tools' schemas,
    so each says only its name and that it takes an object: an honest, if loose, schema."""
    names = dict.fromkeys(m.content["name"] for m in trajectory.messages if m.kind == "tool_call")
    return [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in names]


def final_answer(trajectory: Trajectory) -> str | None:
    """The last assistant text of the trajectory (None when there is none, or it was redacted)."""
    for message in reversed(trajectory.messages):
        if message.role == "assistant":
            return str(message.content["text"]) if message.kind == "text" else None
    return None
