"""Our messages as OpenAI chat messages: the one converter of every OpenAI-shaped export (SFT, DPO, RFT).

- An assistant's reply is one message: its text and the tool calls that follow it in the same turn go
  together (``content`` and ``tool_calls``), as a model's one response carries them, so that each tool
  message answers a call of the assistant message before it (OpenAI's rule). A reply never spans turns:
  each turn is one model call.
- Tool calls are ``{"type": "function", "id", "function": {"name", "arguments"}}`` with ``arguments`` the
  JSON text as recorded (a JSON string, not TRL's dict); tool responses are ``{"role": "tool",
  "tool_call_id", "content": <result text>}``. Widgets and structured output give their data as text.
- ``tools`` are the tools called, in first-call order, as ``{"type": "function", "function": {"name",
  "parameters": {"type": "object"}}}``: trajstream records calls, not the tools' schemas.
- Redacted content stays redacted: the message keeps its place with the placeholder ``[redacted: REASON]``
  (the one renderer's text), and an assistant placeholder is never learned (weight 0). A redacted tool
  call or response cannot be kept (its call id is gone with it, and the conversation would answer a call
  that is not there): the conversion refuses it, with ``REDACTED_CALL`` as the reason.
- The assistant's reasoning is not exported: OpenAI rejects unknown message keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajstream.content import content_text
from trajstream.corpus.read import Message

REDACTED_CALL = "holds a redacted tool call or response: its call id is gone, so the conversation cannot be kept whole"

ChatMessage = dict[str, Any]


@dataclass
class Chat:
    messages: list[ChatMessage] = field(default_factory=list)
    tool_names: dict[str, None] = field(default_factory=dict)  # insertion-ordered set: first-call order

    @property
    def tools(self) -> list[dict[str, Any]]:
        return tool_params(self.tool_names)


def tool_params(names: Iterable[str]) -> list[dict[str, Any]]:
    """OpenAI's ``tools`` for these tool names: the schema of each is unknown, so only "an object"."""
    return [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}} for name in names]


def to_chat(system_message: str, turns: Iterable[tuple[Sequence[Message], bool | None]]) -> Chat | str:
    """The chat messages of these turns (each turn's messages with whether it is learned: True/False sets
    each assistant message's ``weight``, None leaves ``weight`` out), after the system message if any;
    or the reason they cannot be converted."""
    chat = Chat()
    if system_message:
        chat.messages.append({"role": "system", "content": system_message})
    for messages, learned in turns:
        reply: ChatMessage | None = None  # the assistant message a tool call joins
        for message in messages:
            content = message.content
            if message.kind == "redacted" and content.get("original_kind") in ("tool_call", "tool_response"):
                return REDACTED_CALL
            if message.kind == "tool_call":
                call = {"type": "function", "id": content["call_id"],
                        "function": {"name": content["name"], "arguments": content["arguments"]}}  # fmt: skip
                chat.tool_names[str(content["name"])] = None
                if reply is None:
                    reply = _assistant({}, learned)
                    chat.messages.append(reply)
                reply.setdefault("tool_calls", []).append(call)
                continue
            if message.kind == "tool_response":
                chat.messages.append({"role": "tool", "tool_call_id": content["call_id"], "content": content["result"]})
                reply = None
                continue
            text = content_text(content)
            if message.role == "assistant":
                redacted = message.kind == "redacted"
                reply = _assistant({"content": text}, None if learned is None else learned and not redacted)
                chat.messages.append(reply)
                if redacted:
                    reply = None  # a call after a placeholder must not be learned with it
                continue
            chat.messages.append({"role": message.role, "content": text})
            reply = None
    return chat


def _assistant(fields: dict[str, Any], learned: bool | None) -> ChatMessage:
    message: ChatMessage = {"role": "assistant", **fields}
    if learned is not None:
        message["weight"] = int(learned)
    return message
