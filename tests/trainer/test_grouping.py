"""GRPO groups (task key and the seed's entity overlap) and group-relative advantages."""

from __future__ import annotations

import math

import pytest

from trajstream.grouping import Sample, group_by_entities, jaccard, make_groups
from trajstream.trainer.advantages import group_advantages, step_advantages


def _s(tid: str, reward: float, task: str = "t", entities: tuple[str, ...] = ()) -> Sample:
    return Sample(tid, 1, task, reward, frozenset(entities))


def test_task_grouping_keeps_arrival_order() -> None:
    groups = make_groups([_s("a", 1, "x"), _s("b", 0, "y"), _s("c", 0.5, "x")], "task")
    assert [(g.key, [m.trajectory_id for m in g.members]) for g in groups] == [("x", ["a", "c"]), ("y", ["b"])]


def test_entity_grouping_follows_the_seed() -> None:
    """ACME sales and ACME revenue share ACME; the best overlap above 0.3 wins; no overlap starts a group."""
    samples = [
        _s("sales", 1, "q1", ("ACME", "sales")),
        _s("revenue", 0, "q2", ("ACME", "revenue", "sales")),  # 2/3 with the first group
        _s("weather", 1, "q3", ("Paris", "rain")),
        _s("weak", 1, "q4", ("ACME", "x", "y", "z", "w")),  # 1/7 < 0.3 with the ACME group: its own group
        _s("none", 0, "q1"),  # no entities: falls back to the task key
    ]
    groups = group_by_entities(samples, threshold=0.3)
    members = {g.key: [m.trajectory_id for m in g.members] for g in groups}
    assert members == {
        "entities:ACME,sales": ["sales", "revenue"],
        "entities:Paris,rain": ["weather"],
        "entities:ACME,w,x,y,z": ["weak"],
        "task:q1": ["none"],
    }
    assert jaccard(frozenset({"a"}), frozenset()) == 0.0 and jaccard(frozenset(), frozenset()) == 0.0


def test_entity_grouping_picks_the_best_overlap() -> None:
    first = _s("a", 1, entities=("x", "y", "z"))
    second = _s("b", 1, entities=("p", "q", "r"))
    both = _s("c", 0, entities=("x", "y", "p", "q", "r"))  # 2/6 with the first group, 3/5 with the second
    groups = group_by_entities([first, second, both], threshold=0.3)
    assert [[m.trajectory_id for m in g.members] for g in groups] == [["a"], ["b", "c"]]


def test_unknown_grouping_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown grouping"):
        make_groups([], "tasks")  # type: ignore[arg-type]


def test_advantages_are_relative_to_the_group_and_skips_are_counted() -> None:
    groups = make_groups(
        [_s("a", 1.0, "x"), _s("b", 0.0, "x"), _s("c", 0.5, "x"), _s("d", 1.0, "solo"), _s("e", 0.2, "flat"),
         _s("f", 0.2, "flat")], "task")  # fmt: skip
    adv = group_advantages(groups)
    by_id = {a.sample.trajectory_id: a.advantage for a in adv.kept}
    std = math.sqrt(((0.5**2) * 2) / 3)
    assert by_id == pytest.approx({"a": 0.5 / std, "b": -0.5 / std, "c": 0.0})
    assert (adv.singleton_groups, adv.flat_groups, adv.skipped_samples, adv.groups_trained) == (1, 1, 3, 1)
    assert len(adv.kept) + adv.skipped_samples == 6  # every sample is trained on or counted as skipped
    unscaled = group_advantages(groups, scale="none")
    assert {a.sample.trajectory_id: a.advantage for a in unscaled.kept} == pytest.approx(
        {"a": 0.5, "b": -0.5, "c": 0.0}
    )


def test_step_advantages_follow_the_credits() -> None:
    assert step_advantages(1.0, None, 3) == [1.0, 1.0, 1.0]
    assert step_advantages(1.0, [0.0, 0.0], 2) == [1.0, 1.0]
    assert step_advantages(1.0, [0.1, 0.2], 3) == [1.0, 1.0, 1.0]  # credits for other steps: not used
    shaped = step_advantages(-0.6, [0.5, 0.25, 0.25], 3)
    assert shaped == pytest.approx([-0.9, -0.45, -0.45]) and sum(shaped) / 3 == pytest.approx(-0.6)
    assert step_advantages(1.0, [], 0) == []
