"""``openai-sft``: chat JSONL for OpenAI's supervised fine-tuning, also valid for Fireworks SFT.

One row per trajectory: ``{"messages": [...], "tools": [...]}``.

- The conversation is ``trajstream.corpus.export.chat``'s (the one conversion of our messages to OpenAI chat
  messages): system message first, an assistant's text and tool calls as one reply, JSON-string
  ``arguments``, ``tools`` listing each tool called (parameters only "an object").
- Each assistant message has ``weight`` 0 or 1 (TRAJSTREAM_EXPORT_WEIGHT_BY: by the trajectory's reward,
  default at least 0.5, or by the turn's credit, default above 0; TRAJSTREAM_EXPORT_WEIGHT_THRESHOLD to
  change the bar). A trajectory none of whose assistant messages is learned is skipped ("nothing to
  learn"), as is one with no assistant message.
- Redacted content stays redacted: an assistant placeholder ``[redacted: REASON]`` is never learned
  (weight 0); a trajectory holding a redacted tool call or response is skipped (see ``chat``).
"""

from __future__ import annotations

from trajstream.corpus.export.chat import REDACTED_CALL, chat_messages
from trajstream.corpus.export.formats.base import PerTrajectory, Row, Skip
from trajstream.corpus.read import CREDITS, Trajectory

__all__ = ["NOTHING_LEARNED", "NO_ASSISTANT", "REDACTED_CALL", "OpenAISFT"]

NO_ASSISTANT = "no assistant message"
NOTHING_LEARNED = "nothing to learn: every assistant message has weight 0"


class OpenAISFT(PerTrajectory):
    name = "openai-sft"
    summary = "chat JSONL (messages, tools, assistant weight 0/1, JSON-string arguments); also Fireworks SFT"
    kind = "jsonl"

    def parts(self) -> frozenset[str]:
        return frozenset({CREDITS}) if self.settings.export_weight_by == "credit" else frozenset()

    def row(self, trajectory: Trajectory) -> Row | Skip:
        chat = chat_messages(trajectory)
        if isinstance(chat, str):
            return Skip(trajectory.trajectory_id, trajectory.version, chat)
        messages = []
        for m in chat.messages:
            if m.message["role"] == "assistant" and m.turn is not None:
                learned = self.settings.learned(trajectory.reward, m.turn.credit) and not m.redacted
                m.message["weight"] = int(learned)
            messages.append(m.message)
        weights = [m["weight"] for m in messages if m["role"] == "assistant"]
        if not weights:
            return Skip(trajectory.trajectory_id, trajectory.version, NO_ASSISTANT)
        if not any(weights):
            return Skip(trajectory.trajectory_id, trajectory.version, NOTHING_LEARNED)
        row: Row = {"messages": messages}
        if chat.tools:
            row["tools"] = chat.tool_params()
        return row


FORMATS = (OpenAISFT,)
