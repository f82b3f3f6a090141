"""``openai-sft``: chat JSONL for OpenAI's supervised fine-tuning, also valid for Fireworks SFT.

One row per trajectory: ``{"messages": [...], "tools": [...]}``.

- The messages are converted by the one converter of the OpenAI-shaped exports, ``corpus/export/chat.py``.
- The system message (the trajectory's, if it has one) comes first; then each message as sent. An
  assistant's reply is one message: its text and the tool calls that follow it in the same turn go
  together (``content`` and ``tool_calls``), as a model's one response carries them, so that each tool
  message answers a call of the assistant message before it (OpenAI's rule).
- Tool calls are ``{"type": "function", "id", "function": {"name", "arguments"}}`` with ``arguments`` the
  JSON text as recorded (a JSON string, not TRL's dict); tool responses are ``{"role": "tool",
  "tool_call_id", "content": <result text>}``. Widgets and structured output give their data as text.
- ``tools`` lists each tool the trajectory called, in first-call order, as ``{"type": "function",
  "function": {"name", "parameters": {"type": "object"}}}``: trajstream records calls, not the tools'
  schemas, so the parameters say only "an object". A trainer that needs real schemas must add them.
- Each assistant message has ``weight`` 0 or 1 (TRAJSTREAM_EXPORT_WEIGHT_BY: by the trajectory's reward,
  default at least 0.5, or by the turn's credit, default above 0; TRAJSTREAM_EXPORT_WEIGHT_THRESHOLD to
  change the bar). A trajectory none of whose assistant messages is learned is skipped ("nothing to
  learn"), as is one with no assistant message.
- Redacted content stays redacted: the message keeps its place with the placeholder ``[redacted: REASON]``
  (the one renderer's text), and an assistant placeholder is never learned (weight 0). Nothing invents
  the text that was removed. A redacted tool call or tool response is different: the call's id is gone
  with it, and the conversation would answer a call that is not there (or leave one unanswered), which
  the platforms reject; such a trajectory is skipped ("holds a redacted tool call or response").
- The assistant's reasoning is not exported: OpenAI rejects unknown message keys (Fireworks would read a
  ``reasoning_content``; a Fireworks variant can add it).
"""

from __future__ import annotations

from trajstream.corpus.export.chat import REDACTED_CALL, to_chat
from trajstream.corpus.export.formats.base import PerTrajectory, Row, Skip
from trajstream.corpus.read import Trajectory

__all__ = ["NOTHING_LEARNED", "NO_ASSISTANT", "REDACTED_CALL", "OpenAISFT"]

NO_ASSISTANT = "no assistant message"
NOTHING_LEARNED = "nothing to learn: every assistant message has weight 0"


class OpenAISFT(PerTrajectory):
    name = "openai-sft"
    summary = "chat JSONL (messages, tools, assistant weight 0/1, JSON-string arguments); also Fireworks SFT"
    kind = "jsonl"

    def row(self, trajectory: Trajectory) -> Row | Skip:
        chat = to_chat(trajectory.system_message,
                       [(turn.messages, self.settings.learned(trajectory.reward, turn.credit))
                        for turn in trajectory.turns])  # fmt: skip
        if isinstance(chat, str):
            return Skip(trajectory.trajectory_id, trajectory.version, chat)
        weights = [m["weight"] for m in chat.messages if m["role"] == "assistant"]
        if not weights:
            return Skip(trajectory.trajectory_id, trajectory.version, NO_ASSISTANT)
        if not any(weights):
            return Skip(trajectory.trajectory_id, trajectory.version, NOTHING_LEARNED)
        row: Row = {"messages": chat.messages}
        if chat.tool_names:
            row["tools"] = chat.tools
        return row


FORMATS = (OpenAISFT,)
