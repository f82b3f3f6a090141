"""Preference pairs within a task group, in bounded memory: a high-reward trajectory against a low-reward one.

A stand-in until the shared pairing (``corpus/export/pairs.py``) lands. A trajectory is high when its reward
is at least the threshold, low otherwise. Each task group keeps at most ``per_group`` of each side (the best
highs, the worst lows), so memory grows with the number of groups, never with the corpus; when the stream
ends, the i-th best is paired with the i-th worst. Every trajectory left out is a Skip, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from trajstream.corpus.export.formats.base import Skip
from trajstream.corpus.read import Trajectory

Pair = tuple[Trajectory, Trajectory]  # (chosen, rejected)


def _skip(t: Trajectory, reason: str) -> Skip:
    return Skip(t.trajectory_id, t.version, reason)


def pair_by_task(trajectories: Iterable[Trajectory], threshold: float, per_group: int) -> Iterator[Pair | Skip]:
    highs: dict[str, list[Trajectory]] = {}
    lows: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        high = t.reward >= threshold
        side = (highs if high else lows).setdefault(t.task_key, [])
        side.append(t)
        # Best highs first, worst lows first; ties in a stable order (the id), so the export is repeatable.
        side.sort(key=lambda x: (-x.reward if high else x.reward, x.trajectory_id, x.version))
        if len(side) > per_group:
            yield _skip(side.pop(), f"its task group has more than {per_group} trajectories on its side of the "
                                   "reward threshold that contrast more")  # fmt: skip
    for key in sorted(highs.keys() | lows.keys()):
        chosen, rejected = highs.get(key, []), lows.get(key, [])
        yield from zip(chosen, rejected, strict=False)
        n = min(len(chosen), len(rejected))
        for t in chosen[n:]:
            yield _skip(t, "no low-reward trajectory of its task group left to pair it with")
        for t in rejected[n:]:
            yield _skip(t, "no high-reward trajectory of its task group left to pair it with")
