"""Each trajectory reduced to what the reports mine: its calls in order, its outcome, a few texts.

The reports read the corpus once through ``CorpusReader`` (one page of whole trajectories in memory at a
time) and keep only these digests: a few hundred bytes a trajectory, whatever the turns held.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from trajstream.corpus.read import CorpusFilter, CorpusReader, Trajectory

_TEXT_CLIP = 300


@dataclass(frozen=True)
class Call:
    tool: str
    arguments: dict[str, Any]  # {} when the recorded arguments are not a JSON object
    status: str  # success, error, timeout, unanswered


@dataclass
class Digest:
    trajectory_id: str
    agent_id: str
    task_key: str
    task: str
    system_message: str
    outcome: str
    reward: float
    calls: list[Call] = field(default_factory=list)
    request: str = ""  # the first user text
    final: str = ""  # the last assistant text
    errors: list[str] = field(default_factory=list)  # what failing tools answered

    @property
    def success(self) -> bool:
        return self.outcome == "success"

    @property
    def tools(self) -> list[str]:
        return [c.tool for c in self.calls]


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def digest(t: Trajectory) -> Digest:
    d = Digest(t.trajectory_id, t.agent_id, t.task_key, t.task, t.system_message, t.outcome, t.reward)
    for turn in t.turns:
        d.calls += [Call(c.tool, _arguments(c.arguments), c.status) for c in turn.tool_calls]
        for m in turn.messages:
            if m.kind == "text" and m.role == "user" and not d.request:
                d.request = str(m.content.get("text", ""))[:_TEXT_CLIP]
            elif m.kind == "text" and m.role == "assistant":
                d.final = str(m.content.get("text", ""))[:_TEXT_CLIP]
            elif m.kind == "tool_response" and m.content.get("status") in ("error", "timeout"):
                d.errors.append(f"{m.content.get('name')}: {str(m.content.get('result', ''))[:_TEXT_CLIP]}")
    return d


def read_digests(
    reader: CorpusReader, f: CorpusFilter, progress: Callable[[int, int], None] | None = None
) -> list[Digest]:
    """Every selected trajectory's digest; ``progress(done, total)`` after each."""
    total = reader.count(f) if progress else 0
    out: list[Digest] = []
    for t in reader.trajectories(f):
        out.append(digest(t))
        if progress:
            progress(len(out), total)
    return out


def by_group(digests: list[Digest]) -> Iterator[tuple[tuple[str, str], list[Digest]]]:
    """The digests of each (agent, task group), in a stable order."""
    groups: dict[tuple[str, str], list[Digest]] = {}
    for d in digests:
        groups.setdefault((d.agent_id, d.task_key), []).append(d)
    yield from sorted(groups.items())
