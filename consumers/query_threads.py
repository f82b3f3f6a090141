"""One query's embedding on one thread: a short text gains nothing from torch's OpenMP team, and on a machine
whose cores are busy the team's threads wait for each other.

Measured on this 2-core machine under the other engineers' load (load average about 9): a recall query's
embedding took p50 688 ms with torch's default two threads and 61 ms with one.
torch's thread count is per calling thread (OpenMP's), so the bulk embedding of the Milvus sink, on its own
threads, keeps its team.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def single_thread() -> Iterator[None]:
    """torch's intra-op threads set to one in the calling thread, and set back after."""
    torch = sys.modules.get("torch")  # not imported: the embedding does not run on torch, nothing to set
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
