"""What the locally managed servers (the broker, the Milvus server) share: progress messages, a lock on their
state directory, and the tail of their output."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) for the block: one start or stop at a time, across
    processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(path: Path, lines: int = 100) -> str:
    """The last ``lines`` lines of ``path``, read from its last 256 KiB; empty when it does not exist."""
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 256 * 1024))
        tail = handle.read().decode(errors="replace").splitlines()
    return "\n".join(tail[-lines:])
