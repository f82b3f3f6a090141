"""The learning demo's environment (a verifiable reward that sharpening cannot earn) and its pooled figure."""

from __future__ import annotations

import asyncio
import math

import pytest

from trajstream.trainer.learn_demo import MIN_SIDE, Curve, LearnDemoError, _raise_if_died
from trajstream.trainer.learn_env import (
    DECOY_SHARE,
    DECOYS,
    RIGHT_SHARE,
    TASKS,
    TOOLS,
    check,
    expected_success,
    vocabulary,
    warm_up,
)
from trajstream.trainer.tiny import build_model, build_tokenizer


def test_the_reward_checks_the_tool_for_the_request() -> None:
    task = "where is my parcel right now"
    assert check(task, "call track_order")
    assert check(task, "call track_order and more")  # what follows the call is ignored
    assert not check(task, "call refund_order")
    assert not check(task, "track_order")
    assert not check(task, "")
    assert set(TASKS.values()) == set(TOOLS) and len(TOOLS) == 6
    assert {"call", *TOOLS} <= set(vocabulary())


def test_the_labels_make_a_wrong_tool_the_mode_below_which_the_right_one_sits() -> None:
    """The design's guarantee: every request's decoy is wrong, the decoys are a permutation (one tool for
    all requests is right one time in six), and the right tool's log-probability under the labels is below
    their mean log-probability, so sharpening the labels' distribution only lowers it."""
    assert all(DECOYS[t] != TASKS[t] for t in TASKS) and sorted(DECOYS.values()) == TOOLS
    other = (1 - RIGHT_SHARE - DECOY_SHARE) / len(TOOLS)
    p_right, p_decoy = RIGHT_SHARE + other, DECOY_SHARE + other
    assert p_decoy > p_right
    mean_log = p_right * math.log(p_right) + p_decoy * math.log(p_decoy) + 4 * other * math.log(other)
    assert math.log(p_right) < mean_log


def test_sharpening_the_warmed_up_model_lowers_its_success() -> None:
    tokenizer = build_tokenizer(vocabulary())
    model = build_model(len(tokenizer), hidden=64, layers=2, heads=4, seed=0)
    warm_up(model, tokenizer, steps=200)
    rates = [expected_success(model, tokenizer, t) for t in (1.0, 0.7, 0.5, 0.3)]
    assert 0.2 < rates[0] < 0.45  # it knows the format and is mostly wrong
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0] - 0.05


def test_the_gain_pools_the_last_minutes_against_the_first_version() -> None:
    curve = Curve()
    for i in range(400):  # v1 for the first 100 s at 25%, then v2..v3 at 75% from 300 s on
        curve.add(i * 0.25, "v1", i % 4 == 0)
    for i in range(400):
        curve.add(100 + i * 0.5, "v2" if i < 200 else "v3", i % 4 != 0)
    gain = curve.gain("v1", duration_s=300.0)
    assert (gain.first.n, gain.last.n) == (400, 360)  # the last 180 s: 120 s .. 300 s
    assert gain.first.rate == 25.0 and gain.last.rate == 75.0 and gain.points == 50.0
    se = math.sqrt(0.25 * 0.75 / 400 + 0.25 * 0.75 / 360)
    assert gain.low == pytest.approx(50 - 196 * se) and gain.high == pytest.approx(50 + 196 * se)
    gain.check()
    assert [round(p.rate) for _, p in curve.buckets(100)] == [25, 75, 75]


def test_too_few_trajectories_on_either_side_refuse_a_figure() -> None:
    curve = Curve()
    for i in range(MIN_SIDE - 1):
        curve.add(float(i), "v1", True)
    with pytest.raises(LearnDemoError, match=f"v1 has {MIN_SIDE - 1}.*needs {MIN_SIDE}"):
        curve.gain("v1", duration_s=1000.0).check()


def test_an_agent_that_dies_fails_the_run() -> None:
    async def dies() -> None:
        raise ConnectionError("the server went away")

    async def main() -> None:
        task = asyncio.create_task(dies(), name="agent 2")
        await asyncio.sleep(0.01)
        _raise_if_died([task])

    with pytest.raises(LearnDemoError, match="agent 2 died: ConnectionError: the server went away"):
        asyncio.run(main())
