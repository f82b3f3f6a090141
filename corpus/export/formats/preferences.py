"""``openai-dpo`` and ``fireworks-dpo``: preference JSONL from the pairs of ``corpus/export/pairs.py``.

One row per pair: ``{"input": {"messages", "tools", ...}, "preferred_output": [...],
"non_preferred_output": [...]}``.

- ``input.messages`` is the pair's shared prompt (the system message and every message before the first
  assistant message, by the one converter ``corpus/export/chat.py``; a redacted message there keeps its
  ``[redacted: REASON]`` placeholder). ``input.tools`` are the tools either trajectory called.
- Each output is the trajectory's first reply (its first model call's assistant message: text and tool
  calls, JSON-string arguments), without ``weight``. Both platforms train on one turn only ("the
  preferred and non-preferred messages need to be the last assistant message"), so what came after the
  first reply (tool results, later turns) is not in the row; the pair is chosen by the whole
  trajectory's reward.
- A pair whose first reply is redacted (its text is gone: a placeholder must never be learned) or holds a
  redacted tool call is skipped, both trajectories with the reason.

OpenAI and Fireworks differ only in ``input.parallel_tool_calls``: OpenAI's preference input has it
(true when either trajectory made several calls in one model call, so the trained model may too);
Fireworks documents ``input.messages`` and ``input.tools`` alone, so its rows leave it out. Both accept
``tools`` (Fireworks' own example has ``"tools": []``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from trajstream.corpus.export.chat import convert, tool_params
from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats.base import Format, Row, Skip
from trajstream.corpus.export.pairs import Pair, first_reply, preference_pairs, prompt_messages
from trajstream.corpus.read import TOOL_CALLS, Trajectory

REDACTED_REPLY = "a first reply of its pair is redacted: its text is gone, and a placeholder must not be learned"


def _calls_in_parallel(trajectory: Trajectory) -> bool:
    return any(len(turn.tool_calls) > 1 for turn in trajectory.turns)


class _Preferences(Format):
    kind = "jsonl"
    with_parallel_tool_calls: ClassVar[bool]

    def __init__(self, settings: ExportSettings | None = None, margin: float | None = None):
        super().__init__(settings)
        self.margin = self.settings.export_pair_margin if margin is None else margin  # TRAJSTREAM_EXPORT_PAIR_MARGIN

    def parts(self) -> frozenset[str]:
        return frozenset({TOOL_CALLS})  # parallel calls and the tools' names

    def rows(self, trajectories: Iterable[Trajectory]) -> Iterator[Row | Skip]:
        for item in preference_pairs(trajectories, self.margin):
            if isinstance(item, Skip):
                yield item
                continue
            row = self.row(item)
            if isinstance(row, str):
                for t in (item.preferred, item.rejected):
                    yield Skip(t.trajectory_id, t.version, row)
            else:
                yield row

    def row(self, pair: Pair) -> Row | str:
        """The pair's row, or the reason it cannot be one."""
        prompt = convert(pair.preferred.system_message, [(None, prompt_messages(pair.preferred))])
        if isinstance(prompt, str):
            return prompt
        outputs: list[list[dict[str, Any]]] = []
        for t in (pair.preferred, pair.rejected):
            reply = first_reply(t)
            if any(m.kind == "redacted" for m in reply):
                return REDACTED_REPLY
            chat = convert("", [(None, reply)])
            if isinstance(chat, str):
                return chat
            outputs.append(chat.plain)
        names = {c.tool: None for t in (pair.preferred, pair.rejected) for turn in t.turns for c in turn.tool_calls}
        input_: dict[str, Any] = {"messages": prompt.plain, "tools": tool_params(names)}
        if self.with_parallel_tool_calls:
            input_["parallel_tool_calls"] = _calls_in_parallel(pair.preferred) or _calls_in_parallel(pair.rejected)
        return {"input": input_, "preferred_output": outputs[0], "non_preferred_output": outputs[1]}


class OpenAIDPO(_Preferences):
    name = "openai-dpo"
    summary = "preference JSONL (input, preferred_output, non_preferred_output): high vs low reward of a task group"
    with_parallel_tool_calls = True


class FireworksDPO(_Preferences):
    name = "fireworks-dpo"
    summary = "Fireworks' preference JSONL: openai-dpo's rows without input.parallel_tool_calls"
    with_parallel_tool_calls = False


FORMATS = (OpenAIDPO, FireworksDPO)
