"""The labelled set recall quality is measured on (benchmarks/labelled_recall.py), and its metric."""

from __future__ import annotations

import pytest

from benchmarks.labelled_recall import labelled_set, recall_at_k


def test_the_labelled_set_is_the_same_each_time_and_its_queries_differ_from_the_landed_text() -> None:
    tasks = labelled_set()
    assert tasks == labelled_set()
    assert tasks != labelled_set(seed=17)  # the seed decides it, nothing else
    assert len({t.kind for t in tasks}) >= 5 and len(tasks) >= 20
    for task in tasks:
        assert len(task.queries) == 3
        assert len({task.landed, *task.queries}) == 4, task  # every paraphrase differs from the landed one
    landed = [t.landed for t in tasks]
    assert len(set(landed)) == len(landed)


def test_recall_at_k_counts_the_queries_whose_own_answer_is_among_the_first_k() -> None:
    answers = [["a", "b", "c"], ["x", "y", "a"], ["b"], []]
    expected = ["a", "a", "c", "c"]
    assert recall_at_k(answers, expected, 1) == 0.25  # only the first has it first
    assert recall_at_k(answers, expected, 2) == 0.25
    assert recall_at_k(answers, expected, 3) == 0.5  # the second has it third
    assert recall_at_k([["b", "a"]], ["a"], 5) == 1.0
    with pytest.raises(ValueError, match="answers for"):
        recall_at_k(answers, expected[:2], 5)
