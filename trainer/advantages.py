"""Group-relative advantages, and the groups GRPO cannot learn from (counted, not trained on).

GRPO's advantage of a member is its reward minus the group's mean, divided by the group's standard
deviation ("grpo"), or not divided ("dr_grpo", which drops the length and std normalisations that bias
the objective). A group of one has no baseline and a group whose rewards are all equal has no signal:
both are skipped and counted, so that a window's numbers reconcile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from trajstream.grouping import Group, Sample

Scaling = Literal["std", "none"]


@dataclass(frozen=True)
class Advantaged:
    sample: Sample
    group: str
    advantage: float


@dataclass
class Advantages:
    kept: list[Advantaged] = field(default_factory=list)
    singleton_groups: int = 0
    flat_groups: int = 0  # every reward equal
    skipped_samples: int = 0

    @property
    def groups_trained(self) -> int:
        return len({a.group for a in self.kept})


def group_advantages(groups: Sequence[Group], scale: Scaling = "std", min_std: float = 1e-6) -> Advantages:
    out = Advantages()
    for group in groups:
        rewards = [m.reward for m in group.members]
        if len(rewards) < 2:
            out.singleton_groups += 1
            out.skipped_samples += len(rewards)
            continue
        mean = sum(rewards) / len(rewards)
        # Population std, as TRL's GRPO computes it over a group's completions.
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
        if std < min_std:
            out.flat_groups += 1
            out.skipped_samples += len(rewards)
            continue
        divisor = std if scale == "std" else 1.0
        out.kept.extend(Advantaged(m, group.key, (m.reward - mean) / divisor) for m in group.members)
    return out


def step_advantages(advantage: float, credits: Sequence[float] | None, steps: int) -> list[float]:
    """Per-step advantages: the trajectory's, uniform over its steps, or shaped by per-step credits.

    Credits (LightningRL or decision-based, from the streams) sum to the trajectory's reward; each
    step's share of their magnitude, scaled so that the steps' mean is the trajectory's advantage,
    says which steps earned (or lost) it. All-zero or missing credits keep the uniform advantage.
    """
    if steps <= 0:
        return []
    if not credits or len(credits) != steps:
        return [advantage] * steps
    total = sum(abs(c) for c in credits)
    if total <= 0:
        return [advantage] * steps
    return [advantage * steps * abs(c) / total for c in credits]
