"""Python's cyclic garbage collector, relaxed for a batch read of the corpus.

Reading a page builds ~30 objects per message (rows, parsed content, messages, chat dicts), nearly all
without cycles and freed by reference counting once the page is written. With the default thresholds the
collector ran every 700 allocations and, each time the older generations filled, walked every object the
process holds (chDB's and pyarrow's modules included): 5,000 trajectories took 1.4-1.8 s to assemble instead
of 0.5 s (benchmarks/export.py). Inside ``relaxed_gc`` the objects alive at its start are frozen out of the
collector's walks and a collection runs every 50,000 allocations; both are undone at its end, so a long-lived
process (the data worker) that runs an export keeps its usual collector afterwards.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_GEN0 = 50_000
_lock = threading.Lock()
_depth = 0  # nested or concurrent batches share one relaxed period
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def relaxed_gc() -> Iterator[None]:
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_GEN0, _saved[0]), _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
