"""A trajectory as OpenAI chat messages: the one conversion every chat-shaped export shares.

- The system message (the trajectory's, if it has one) comes first; then each message as sent. An
  assistant's reply is one message: its text and the tool calls that follow it in the same turn go
  together (``content`` and ``tool_calls``), as a model's one response carries them, so that each tool
  message answers a call of the assistant message before it (OpenAI's rule).
- Tool calls are ``{"type": "function", "id", "function": {"name", "arguments"}}``; tool responses are
  ``{"role": "tool", "tool_call_id", "content": <result text>}``. Widgets and structured output give their
  data as text.
- Redacted content stays redacted: the message keeps its place with the placeholder ``[redacted: REASON]``
  (the one renderer's text), marked ``redacted`` so that no format learns it. A redacted tool call or tool
  response cannot be kept: the call's id is gone with it, and the conversation would answer a call that is
  not there (or leave one unanswered), which the platforms reject; the conversion gives the reason instead.
- The assistant's reasoning is not carried (but in the TRL dialect): OpenAI rejects unknown message keys.

The platforms differ only in a few keys, which a ``Dialect`` names: ``OPENAI`` (OpenAI, Fireworks, ART, Agent
Lightning: ``arguments`` the JSON text as recorded) and ``TRL`` (trl ``docs/source/dataset_formats.md``:
``arguments`` a dict, since TRL's chat templates iterate it, so arguments that are not a JSON object are refused
with the reason; the tool response also names its tool; the reasoning goes in ``reasoning_content``, the key
TRL's response schemas such as Qwen3's parse into). A message only has the keys it needs: no key is None,
which a template testing ``'tool_calls' in message`` would take for a tool call.

Each message comes with the turn it was sent in (None for the system message), so a format can weigh an
assistant reply by its turn's credit or attach the turn's token log-probabilities to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trajstream.content import content_text
from trajstream.corpus.read import Message, Trajectory, Turn

REDACTED_CALL = "holds a redacted tool call or response: its call id is gone, so the conversation cannot be kept whole"


@dataclass(frozen=True)
class Dialect:
    """What differs between the platforms' chat shapes."""

    arguments: Literal["json", "dict"] = "json"  # a tool call's arguments: the recorded JSON text, or a dict
    tool_name: bool = False  # a tool response names its tool
    reasoning: bool = False  # the assistant's reasoning as ``reasoning_content``


OPENAI = Dialect()
TRL = Dialect(arguments="dict", tool_name=True, reasoning=True)


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


def chat_messages(trajectory: Trajectory, dialect: Dialect = OPENAI) -> Chat | str:
    """The trajectory's conversation, or the reason it cannot be given as one."""
    return convert(trajectory.system_message, [(turn, turn.messages) for turn in trajectory.turns], dialect)


def _arguments(content: dict[str, Any], dialect: Dialect) -> Any:
    """The call's arguments in the dialect's form; None when a dict is wanted and they are not a JSON object."""
    if dialect.arguments == "json":
        return content["arguments"]
    try:
        arguments = json.loads(content["arguments"])
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None


def convert(system_message: str, turns: Iterable[tuple[Turn | None, Sequence[Message]]],
            dialect: Dialect = OPENAI) -> Chat | str:  # fmt: skip
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
                arguments = _arguments(content, dialect)
                if arguments is None:
                    return f"tool call {content['name']!r} has arguments that are not a JSON object; TRL needs a dict"
                call = {"type": "function", "id": content["call_id"],
                        "function": {"name": content["name"], "arguments": arguments}}  # fmt: skip
                tools[str(content["name"])] = None
                if reply is None:
                    reply = {"role": "assistant"}
                    chat.messages.append(ChatMessage(reply, turn))
                reply.setdefault("tool_calls", []).append(call)
                out = reply
            elif message.kind == "tool_response":
                out = {"role": "tool", **({"name": content["name"]} if dialect.tool_name else {}),
                       "tool_call_id": content["call_id"], "content": content["result"]}  # fmt: skip
                chat.messages.append(ChatMessage(out, turn))
                reply = None
            elif message.role == "assistant":
                redacted = message.kind == "redacted"
                out = {"role": "assistant", "content": content_text(content)}
                chat.messages.append(ChatMessage(out, turn, redacted))
                reply = None if redacted else out  # a call after a placeholder must not be learned with it
            else:
                out = {"role": message.role, "content": content_text(content)}
                chat.messages.append(ChatMessage(out, turn))
                reply = None
            if dialect.reasoning and message.reasoning is not None:
                previous = out.get("reasoning_content")
                out["reasoning_content"] = message.reasoning if previous is None else f"{previous}\n{message.reasoning}"
    chat.tools = list(tools)
    return chat
