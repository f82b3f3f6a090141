"""GRPO groups: scored trajectories that attempted the same thing, so that their rewards compare.

Two ways to say "the same thing": the normalised task key (``trajstream.trajectory.task_key``), or, as
the seed's ``entity_based_grouping`` does, entity overlap. A trajectory joins the group whose entities
(the union over its members) it overlaps most, by Jaccard, when that overlap is above the threshold;
otherwise it starts a group. Trajectories are taken in the order given, so the grouping is
deterministic for a window.

In the core, not the trainer, because two stages form these groups: the trainer for GRPO, and the
corpus exports (ART's trajectory groups), which must group as the trainer does and sit below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

GroupBy = Literal["task", "entities"]


@dataclass(frozen=True)
class Sample:
    """What grouping and advantages need of one scored trajectory."""

    trajectory_id: str
    version: int
    task_key: str
    reward: float
    entities: frozenset[str] = frozenset()


@dataclass
class Group:
    key: str
    members: list[Sample] = field(default_factory=list)
    entities: set[str] = field(default_factory=set)  # the union of the members' entities

    def add(self, sample: Sample) -> None:
        self.members.append(sample)
        self.entities |= sample.entities


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def group_by_task(samples: Iterable[Sample]) -> list[Group]:
    groups: dict[str, Group] = {}
    for sample in samples:
        groups.setdefault(sample.task_key, Group(sample.task_key)).add(sample)
    return list(groups.values())


def group_by_entities(samples: Iterable[Sample], threshold: float) -> list[Group]:
    """The seed's grouping: the best Jaccard overlap above ``threshold``, or a new group.

    A trajectory without entities has nothing to overlap on; it falls back to its task key, so that
    windows where extraction found nothing still train.
    """
    groups: list[Group] = []
    by_task: dict[str, Group] = {}
    for sample in samples:
        if not sample.entities:
            key = f"task:{sample.task_key}"
            if key not in by_task:
                by_task[key] = Group(key)
                groups.append(by_task[key])
            by_task[key].add(sample)
            continue
        best: Group | None = None
        best_overlap = 0.0
        for group in groups:
            if group.key.startswith("task:"):
                continue
            overlap = jaccard(sample.entities, group.entities)
            if overlap > threshold and overlap > best_overlap:
                best, best_overlap = group, overlap
        if best is None:
            best = Group(f"entities:{','.join(sorted(sample.entities))}")
            groups.append(best)
        best.add(sample)
    return groups


def make_groups(samples: Sequence[Sample], by: GroupBy, threshold: float = 0.3) -> list[Group]:
    if by == "task":
        return group_by_task(samples)
    if by == "entities":
        return group_by_entities(samples, threshold)
    raise ValueError(f"unknown grouping {by!r}: use 'task' or 'entities'")
