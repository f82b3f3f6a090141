"""Live rewards by serving version, and the sequential test that promotes or rolls back on them.

The offline gate estimates a candidate's reward from logged trajectories; live traffic measures it. A
candidate that passed the gate serves a share of requests beside the deployed version (a canary), and
the trainer, which reads every scored trajectory, keeps each version's live reward.

The test is Wald's sequential probability ratio test on the difference of the two mean rewards, with the
normal approximation (the difference of means is near normal once each side has a few dozen rewards):

* H_worse: candidate - reference = -margin, against H_ok: candidate - reference = 0;
* log-likelihood ratio of H_ok over H_worse for the observed difference D with variance V
  (var_c / n_c + var_r / n_r): margin * (2D + margin) / (2V);
* decide H_ok once it reaches log((1 - beta) / alpha), H_worse once it falls to log(beta / (1 - alpha)):
  alpha bounds the chance of accepting a version worse by the margin, beta that of rejecting an equal one.

A canary is promoted on H_ok and rolled back on H_worse (or when it reaches its trajectory limit
undecided). After a promotion the same test watches the new version against its predecessor's canary-time
reward: H_worse rolls it back, H_ok ends the watch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Decision = Literal["ok", "worse", "undecided"]
VARIANCE_FLOOR = 1e-3  # two arms of identical rewards (all failures) still need a finite ratio


@dataclass
class RewardStats:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, reward: float) -> None:
        self.n += 1
        self.total += reward
        self.squares += reward * reward

    def merge(self, other: RewardStats) -> None:
        self.n += other.n
        self.total += other.total
        self.squares += other.squares

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        if self.n < 2:
            return math.nan
        return max((self.squares - self.total * self.total / self.n) / (self.n - 1), 0.0)


@dataclass(frozen=True)
class TrialParameters:
    margin: float
    alpha: float
    beta: float
    min_n: int
    max_n: int


def log_likelihood_ratio(candidate: RewardStats, reference: RewardStats, margin: float) -> float:
    """log P(data | difference 0) / P(data | difference -margin), normal approximation."""
    variance = (max(candidate.variance, VARIANCE_FLOOR) / candidate.n
                + max(reference.variance, VARIANCE_FLOOR) / reference.n)  # fmt: skip
    difference = candidate.mean - reference.mean
    return margin * (2 * difference + margin) / (2 * variance)


def sequential_test(candidate: RewardStats, reference: RewardStats, p: TrialParameters) -> tuple[Decision, float]:
    """(decision, log-likelihood ratio) for "candidate is not worse than reference by p.margin"."""
    if candidate.n < p.min_n or reference.n < p.min_n:
        return "undecided", math.nan
    llr = log_likelihood_ratio(candidate, reference, p.margin)
    if llr >= math.log((1 - p.beta) / p.alpha):
        return "ok", llr
    if llr <= math.log(p.beta / (1 - p.alpha)):
        return "worse", llr
    if candidate.n >= p.max_n:
        return "worse", llr  # not shown to be as good within the limit: the safe side is the old version
    return "undecided", llr


@dataclass
class Trial:
    """A live comparison: ``candidate`` (a canary, or a newly promoted version under watch) against
    ``reference`` (the deployed version beside it, or the predecessor's canary-time reward)."""

    kind: Literal["canary", "watch"]
    candidate: str
    reference: str
    candidate_stats: RewardStats = field(default_factory=RewardStats)
    reference_stats: RewardStats = field(default_factory=RewardStats)
    reference_frozen: bool = False  # a watch compares with the predecessor's reward as it was

    def add(self, version: str, stats: RewardStats) -> None:
        """Count live rewards of trajectories ``version`` served (other versions' are not this trial's)."""
        if version == self.candidate:
            self.candidate_stats.merge(stats)
        elif version == self.reference and not self.reference_frozen:
            self.reference_stats.merge(stats)

    def line(self) -> str:
        c, r = self.candidate_stats, self.reference_stats
        return (f"{self.candidate} {c.mean:.3f} on {c.n} trajectories against {self.reference} "
                f"{r.mean:.3f} on {r.n}")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        return cls(data["kind"], data["candidate"], data["reference"], RewardStats(**data["candidate_stats"]),
                   RewardStats(**data["reference_stats"]), bool(data["reference_frozen"]))  # fmt: skip
