"""A trajectory as OpenAI chat messages: the one conversion every chat-shaped export shares.

- The system message (the trajectory's, if it has one) comes first; then each message as sent. An
  assistant's reply is one message: its text and the tool calls that follow it in the same turn go
  together (``content`` and ``tool_calls``), as a model's one response carries them, so that each tool
  message answers a call of the assistant message before it (OpenAI's rule).
- Tool calls are ``{"type": "function", "id", "function": {"name", "arguments"}}`` with ``arguments`` the
  JSON text as recorded (a JSON string, not TRL's dict); tool responses are ``{"role": "tool",
  "tool_call_id", "content": <result text>}``. Widgets and structured output give their data as text.
- Redacted content stays redacted: the message keeps its place with the placeholder ``[redacted: REASON]``
  (the one renderer's text), marked ``redacted`` so that no format learns it. A redacted tool call or tool
  response cannot be kept: the call's id is gone with it, and the conversation would answer a call that is
  not there (or leave one unanswered), which the platforms reject; the conversion gives the reason instead.
- The assistant's reasoning is not carried: OpenAI rejects unknown message keys.

Each message comes with the turn it was sent in (None for the system message), so a format can weigh an
assistant reply by its turn's credit or attach the turn's token log-probabilities to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajstream.content import content_text
from trajstream.corpus.read import Message, Trajectory, Turn

REDACTED_CALL = "holds a redacted tool call or response: its call id is gone, so the conversation cannot be kept whole"


@dataclass
class ChatMessage:
    message: dict[str, Any]  # the OpenAI chat message, as a format writes it (a format may add keys)
    turn: Turn | None  # the turn it was sent in; None for the trajectory's system message
    redacted: bool = False  # an assistant placeholder for redacted text: never learned


@dataclass
class Chat:
    messages: list[ChatMessage] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)  # each tool called, in first-call order

    def tool_params(self) -> list[dict[str, Any]]:
        return tool_params(self.tools)

    @property
    def plain(self) -> list[dict[str, Any]]:
        """The chat messages alone, without their turns."""
        return [m.message for m in self.messages]


def tool_params(names: Iterable[str]) -> list[dict[str, Any]]:
    """``tools`` as OpenAI's ``{"type": "function", "function": {...}}``: trajstream records calls, not the
    tools' schemas, so the parameters say only "an object"; a trainer that needs real schemas adds them."""
    return [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}} for name in names]


def chat_messages(trajectory: Trajectory) -> Chat | str:
    """The trajectory's conversation, or the reason it cannot be given as one."""
    return convert(trajectory.system_message, [(turn, turn.messages) for turn in trajectory.turns])


def convert(system_message: str, turns: Iterable[tuple[Turn | None, Sequence[Message]]]) -> Chat | str:
    """These messages (grouped by the turn they were sent in; None where a format cut them from their turn,
    as a DPO prompt or an RFT prompt is) as chat messages after the system message, if any; or the reason
    they cannot be converted."""
    chat = Chat()
    if system_message:
        chat.messages.append(ChatMessage({"role": "system", "content": system_message}, None))
    tools: dict[str, None] = {}  # insertion-ordered set
    for turn, messages in turns:
        reply: dict[str, Any] | None = None  # the assistant message a tool call joins; never spans turns
        for message in messages:
            content = message.content
            if message.kind == "redacted" and content.get("original_kind") in ("tool_call", "tool_response"):
                return REDACTED_CALL
            if message.kind == "tool_call":
                call = {"type": "function", "id": content["call_id"],
                        "function": {"name": content["name"], "arguments": content["arguments"]}}  # fmt: skip
                tools[str(content["name"])] = None
                if reply is None:
                    reply = {"role": "assistant"}
                    chat.messages.append(ChatMessage(reply, turn))
                reply.setdefault("tool_calls", []).append(call)
                continue
            if message.kind == "tool_response":
                answer = {"role": "tool", "tool_call_id": content["call_id"], "content": content["result"]}
                chat.messages.append(ChatMessage(answer, turn))
                reply = None
                continue
            text = content_text(content)
            if message.role == "assistant":
                redacted = message.kind == "redacted"
                reply = {"role": "assistant", "content": text}
                chat.messages.append(ChatMessage(reply, turn, redacted))
                if redacted:
                    reply = None  # a call after a placeholder must not be learned with it
                continue
            chat.messages.append(ChatMessage({"role": message.role, "content": text}, turn))
            reply = None
    chat.tools = list(tools)
    return chat
