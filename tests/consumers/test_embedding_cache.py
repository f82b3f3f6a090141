"""Repeated texts are embedded once: the vector cache is an LRU of bounded size, and the embedder uses it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trajstream.consumers.embedding import Embedder
from trajstream.consumers.vector_cache import CacheCounts, VectorCache


def _vector(value: float) -> Any:
    return np.full(4, value, dtype=np.float32)


def test_the_cache_keeps_the_most_recently_used_and_no_more() -> None:
    cache = VectorCache(3)
    cache.put(["a", "b", "c"], [_vector(1), _vector(2), _vector(3)])
    assert cache.get(["a"])[0] is not None  # "a" is now the most recent: "b" is the oldest
    cache.put(["d", "e"], [_vector(4), _vector(5)])
    found = cache.get(["a", "b", "c", "d", "e"])
    assert len(cache) == 3
    assert [v is not None for v in found] == [True, False, False, True, True]


def test_an_empty_cache_keeps_nothing() -> None:
    cache = VectorCache(0)
    cache.put(["a"], [_vector(1)])
    assert len(cache) == 0 and cache.get(["a"]) == [None]
    with pytest.raises(ValueError):
        VectorCache(-1)


def test_the_embedder_embeds_a_repeated_text_once_and_its_cache_stays_bounded() -> None:
    embedder = Embedder(cache_entries=4)
    model = embedder._load()
    embedded: list[str] = []
    encode = model.encode

    def counting(texts: list[str], pooled: bool = False) -> Any:
        embedded.extend(texts)
        return encode(texts, pooled=pooled)

    model.encode = counting
    counts = CacheCounts()
    first = embedder.encode(["refund order 7", "reset a password", "refund order 7"], counts)
    again = embedder.encode(["reset a password", "refund order 7"], counts)
    assert embedded == ["refund order 7", "reset a password"]  # each text reached the model once
    assert counts == embedder.counts == CacheCounts(hits=1 + 2, misses=2)
    assert first[0] == first[2] == again[1] and first[1] == again[0]
    fresh = Embedder(cache_entries=0).encode(["refund order 7"])[0]
    assert np.allclose(first[0], fresh, atol=1e-6)  # a cached vector is the model's
    embedder.encode([f"task number {n}" for n in range(10)])
    assert len(embedder.cache) == 4
