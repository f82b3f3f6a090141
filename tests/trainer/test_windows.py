"""Rolling windows by count and time, and the offsets a trained window commits."""

from __future__ import annotations

import pytest

from trajstream.trainer.windows import Position, WindowBuilder


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_windows_close_by_count_and_commit_one_past_their_last_offsets() -> None:
    builder: WindowBuilder[str] = WindowBuilder(max_count=3, max_seconds=60, clock=Clock())
    assert builder.add("a", Position("scored", 0, 10)) is None
    assert builder.add("b", Position("scored", 1, 4)) is None
    window = builder.add("c", Position("scored", 0, 11))
    assert window is not None and window.items == ["a", "b", "c"]
    assert window.commit_offsets() == {("scored", 0): 12, ("scored", 1): 5}
    assert window.window_id == "scored:0@10,scored:1@4"
    assert builder.pending == 0


def test_windows_close_by_time() -> None:
    clock = Clock()
    builder: WindowBuilder[str] = WindowBuilder(max_count=100, max_seconds=5, clock=clock)
    assert builder.due() is None  # nothing open
    builder.add("a", Position("scored", 0, 0))
    clock.now += 4.9
    assert builder.due() is None
    clock.now += 0.1
    window = builder.due()
    assert window is not None and window.items == ["a"] and builder.pending == 0


def test_a_replayed_window_has_the_same_id() -> None:
    """After a crash the same records from the committed offsets make the same window id."""
    ids = []
    for _ in range(2):
        builder: WindowBuilder[int] = WindowBuilder(max_count=2, max_seconds=60, clock=Clock())
        builder.add(1, Position("scored", 2, 7))
        window = builder.add(2, Position("scored", 2, 8))
        assert window is not None
        ids.append(window.window_id)
    assert ids[0] == ids[1] == "scored:2@7"


@pytest.mark.parametrize(("count", "seconds", "match"), [(0, 1, "at least one"), (1, 0, "positive")])
def test_bad_limits_are_refused(count: int, seconds: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WindowBuilder(count, seconds, Clock())
