"""The learning demo's environment (a verifiable reward) and its success-rate curve."""

from __future__ import annotations

from trajstream.trainer.learn_demo import MIN_TRAJECTORIES, Curve
from trajstream.trainer.learn_env import TASKS, TOOLS, check, vocabulary


def test_the_reward_checks_the_tool_for_the_request() -> None:
    task = "where is my parcel right now"
    assert check(task, "call track_order")
    assert check(task, "call track_order and more")  # what follows the call is ignored
    assert not check(task, "call refund_order")
    assert not check(task, "track_order")
    assert not check(task, "")
    assert set(TASKS.values()) == set(TOOLS) and len(TOOLS) == 6
    assert {"call", *TOOLS} <= set(vocabulary())


def test_the_gain_compares_the_latest_counted_version_with_the_first() -> None:
    curve = Curve()
    curve.attempts["v1"] = [True] * 10 + [False] * 30  # 25%
    curve.attempts["v3"] = [True] * 5  # too few to count
    curve.attempts["v12"] = [True] * 30 + [False] * 10  # 75%
    assert len(curve.attempts["v12"]) >= MIN_TRAJECTORIES
    assert curve.counted() == ["v1", "v12"] and curve.versions() == ["v1", "v3", "v12"]
    assert curve.gain() == 50.0
    assert Curve().gain() == 0.0
