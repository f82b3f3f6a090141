"""Vectors of texts embedded before, so a repeated text is embedded once: a bounded LRU keyed by text hash.

Texts repeat: a task many agents are given, a trajectory's new version whose summary did not change, the
first decision point of the same task (its state is the task alone), a recall query asked again. The key
is a 16-byte BLAKE2b digest of the text (a 600-character text is not kept twice); a vector is kept as
float32 (1.5 KiB for 384 dimensions), so 10,000 entries cost about 15 MiB.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass
class CacheCounts:
    """Texts asked for that were embedded (``misses``: each distinct text not in the cache) or not (``hits``)."""

    hits: int = 0
    misses: int = 0


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class VectorCache:
    """At most ``entries`` vectors, the least recently used dropped first; safe to share between threads."""

    def __init__(self, entries: int):
        if entries < 0:
            raise ValueError(f"a cache of {entries} entries")
        self.entries = entries
        self._vectors: OrderedDict[bytes, Vector] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, texts: Sequence[str]) -> list[Vector | None]:
        """The vector of each text, or None where it is not kept; found ones become the most recent."""
        with self._lock:
            found: list[Vector | None] = []
            for text in texts:
                key = text_key(text)
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                found.append(vector)
            return found

    def put(self, texts: Sequence[str], vectors: Sequence[Vector]) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                key = text_key(text)
                self._vectors[key] = vector
                self._vectors.move_to_end(key)
            while len(self._vectors) > self.entries:
                self._vectors.popitem(last=False)
