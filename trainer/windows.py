"""Rolling training windows over the scored-trajectories topic, and the offsets a trained window commits.

A window closes when it holds ``max_count`` records or when ``max_seconds`` have passed since its first
record, whichever comes first. The trainer commits a window's offsets only after it has trained on it:
for each partition, one past the last offset the window holds. A crash before that commit replays the
window from the last committed offsets; the checkpoint says which window ids were already trained, so a
replayed window that was trained (crash between checkpoint and commit) is committed, not trained again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int


@dataclass
class Window(Generic[T]):
    opened_at: float
    items: list[T] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)

    def commit_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the offset to commit: one past the last record of the window."""
        out: dict[tuple[str, int], int] = {}
        for p in self.positions:
            key = (p.topic, p.partition)
            out[key] = max(out.get(key, 0), p.offset + 1)
        return out

    @property
    def window_id(self) -> str:
        """Stable across a replay: the first offset of each partition the window holds."""
        first: dict[tuple[str, int], int] = {}
        for p in self.positions:
            key = (p.topic, p.partition)
            first[key] = min(first.get(key, p.offset), p.offset)
        return ",".join(f"{t}:{part}@{off}" for (t, part), off in sorted(first.items()))


class WindowBuilder(Generic[T]):
    """Collects records into windows by count and by time."""

    def __init__(self, max_count: int, max_seconds: float, clock: Callable[[], float]):
        if max_count < 1:
            raise ValueError(f"a window holds at least one record, not {max_count}")
        if max_seconds <= 0:
            raise ValueError(f"a window's time limit must be positive, not {max_seconds}")
        self.max_count = max_count
        self.max_seconds = max_seconds
        self.clock = clock
        self._open: Window[T] | None = None

    def add(self, item: T, position: Position) -> Window[T] | None:
        """Add a record; the window it completes, if it completes one by count."""
        if self._open is None:
            self._open = Window(self.clock())
        self._open.items.append(item)
        self._open.positions.append(position)
        if len(self._open.items) >= self.max_count:
            return self._close()
        return None

    def due(self) -> Window[T] | None:
        """The open window, if its time is up (call it when no record arrived for a while)."""
        if self._open is not None and self.clock() - self._open.opened_at >= self.max_seconds:
            return self._close()
        return None

    def _close(self) -> Window[T]:
        window, self._open = self._open, None
        assert window is not None
        return window

    @property
    def pending(self) -> int:
        return len(self._open.items) if self._open else 0
