"""The live comparison behind canaries and rollbacks: reward statistics and the sequential test."""

from __future__ import annotations

import math
import random

import pytest

from trajstream.trainer.live import RewardStats, Trial, TrialParameters, log_likelihood_ratio, sequential_test

PARAMS = TrialParameters(margin=0.1, alpha=0.05, beta=0.2, min_n=30, max_n=2000)


def _stats(successes: int, n: int) -> RewardStats:
    stats = RewardStats()
    for i in range(n):
        stats.add(1.0 if i < successes else 0.0)
    return stats


def test_stats_are_the_sample_mean_and_variance() -> None:
    stats = _stats(3, 4)
    assert stats.mean == 0.75 and stats.variance == pytest.approx(0.25)
    other = _stats(1, 4)
    stats.merge(other)
    assert (stats.n, stats.mean) == (8, 0.5) and stats.variance == pytest.approx(2 / 7)
    assert math.isnan(RewardStats().mean) and math.isnan(_stats(1, 1).variance)


def test_a_clearly_worse_candidate_is_rejected_and_an_equal_one_accepted() -> None:
    reference = _stats(60, 100)
    assert sequential_test(_stats(20, 100), reference, PARAMS)[0] == "worse"
    assert sequential_test(_stats(60, 100), _stats(60, 100), PARAMS)[0] == "undecided"  # 100 each: not yet
    assert sequential_test(_stats(240, 400), _stats(240, 400), PARAMS)[0] == "ok"
    assert sequential_test(_stats(80, 100), reference, PARAMS)[0] == "ok"  # better: quickly not worse


def test_nothing_is_decided_before_the_minimum_and_the_limit_rolls_back() -> None:
    assert sequential_test(_stats(0, 29), _stats(29, 29), PARAMS) == ("undecided", pytest.approx(math.nan, nan_ok=True))
    # Between the boundaries at the limit: not shown to be as good, so the old version stays.
    llr = log_likelihood_ratio(_stats(55, 100), _stats(60, 100), 0.1)
    assert math.log(0.2 / 0.95) < llr < math.log(0.8 / 0.05)
    limited = TrialParameters(0.1, 0.05, 0.2, 30, max_n=100)
    assert sequential_test(_stats(55, 100), _stats(60, 100), limited)[0] == "worse"
    assert sequential_test(_stats(55, 100), _stats(60, 100), PARAMS)[0] == "undecided"


def test_error_rates_hold_in_simulation() -> None:
    """Simulated canaries fed in windows: one worse by the margin is promoted at most about alpha of the
    time, an equal one rolled back at most about beta of the time (the normal approximation, so with
    slack)."""
    rng = random.Random(0)

    def run(p_candidate: float, p_reference: float) -> str:
        trial = Trial("canary", "v2", "v1")
        while True:
            for version, p, n in (("v2", p_candidate, 24), ("v1", p_reference, 24)):
                window = RewardStats()
                for _ in range(n):
                    window.add(1.0 if rng.random() < p else 0.0)
                trial.add(version, window)
            decision, _ = sequential_test(trial.candidate_stats, trial.reference_stats, PARAMS)
            if decision != "undecided":
                return decision

    worse = [run(0.4, 0.5) for _ in range(200)]
    equal = [run(0.5, 0.5) for _ in range(200)]
    assert worse.count("ok") / 200 <= 0.05 + 0.04
    assert equal.count("worse") / 200 <= 0.2 + 0.07


def test_a_trial_counts_only_its_versions_and_a_watch_keeps_its_reference() -> None:
    trial = Trial("canary", "v3", "v2")
    trial.add("v3", _stats(1, 2))
    trial.add("v2", _stats(2, 2))
    trial.add("v1", _stats(0, 50))  # a stale version's trajectories are not this comparison's
    assert (trial.candidate_stats.n, trial.reference_stats.n) == (2, 2)
    watch = Trial("watch", "v3", "v2", reference_stats=_stats(5, 10), reference_frozen=True)
    watch.add("v2", _stats(0, 10))
    assert watch.reference_stats.n == 10 and watch.reference_stats.mean == 0.5
    assert Trial.from_json(watch.to_json()) == watch
