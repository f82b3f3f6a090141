"""Failing trajectories grouped by what they look like: an embedding of each one's task, calls, errors and
closing text (the project's MiniLM ``Embedder``), joined greedily to the nearest cluster centre when the
cosine similarity reaches ``THRESHOLD``. Without an embedder, by (agent, task group, tools called)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from trajstream.corpus.optimise.digest import Digest
from trajstream.corpus.optimise.skills import folded

THRESHOLD = 0.8


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> list[list[float]]: ...


def describe(d: Digest) -> str:
    """The text a failure is embedded by: what it was asked, what it called, what went wrong, what it said."""
    errors = "; ".join(d.errors[:2]) or "none"
    return (f"Task: {d.task}. Request: {d.request} Calls: {' > '.join(folded(d.tools)) or 'none'}. "
            f"Tool errors: {errors}. Final answer: {d.final}")  # fmt: skip


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def cluster(failures: list[Digest], encoder: Encoder | None) -> list[list[Digest]]:
    """Clusters, largest first; each trajectory in exactly one."""
    if encoder is None:
        keyed: dict[tuple[str, str, frozenset[str]], list[Digest]] = {}
        for d in failures:
            keyed.setdefault((d.agent_id, d.task_key, frozenset(d.tools)), []).append(d)
        return sorted(keyed.values(), key=lambda c: (-len(c), c[0].trajectory_id))
    vectors = encoder.encode([describe(d) for d in failures])
    members: list[list[Digest]] = []
    sums: list[list[float]] = []
    for d, v in zip(failures, vectors, strict=True):
        best, score = -1, THRESHOLD
        for i, s in enumerate(sums):
            sim = sum(a * b for a, b in zip(_unit(s), v, strict=True))
            if sim >= score:
                best, score = i, sim
        if best < 0:
            members.append([d])
            sums.append(list(v))
        else:
            members[best].append(d)
            sums[best] = [a + b for a, b in zip(sums[best], v, strict=True)]
    return sorted(members, key=lambda c: (-len(c), c[0].trajectory_id))
