"""An OOM kill is told from any other SIGKILL by the memory cgroup's count (trajstream/oom_kills.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from trajstream import oom_kills as module
from trajstream.supervisor import _describe_exit


def test_the_memory_cgroup_files_of_v2_and_of_v1() -> None:
    assert module.memory_cgroup_files("0::/system.slice/worker\n") == [
        Path("/sys/fs/cgroup/system.slice/worker/memory.events"),
        Path("/sys/fs/cgroup/unified/system.slice/worker/memory.events"),
    ]
    v1 = "5:devices:/\n4:memory:/docker/abc\n0::/\n"
    assert Path("/sys/fs/cgroup/memory/docker/abc/memory.oom_control") in module.memory_cgroup_files(v1)


def test_the_count_is_read_from_the_oom_kill_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n")
    monkeypatch.setattr(module, "memory_cgroup_files", lambda text: [tmp_path / "absent", tmp_path / "memory.events"])
    assert module.oom_kills() == 2
    monkeypatch.setattr(module, "memory_cgroup_files", lambda text: [tmp_path / "absent"])
    assert module.oom_kills() is None


def test_a_sigkill_is_out_of_memory_only_when_the_cgroup_counted_an_oom_kill() -> None:
    killed = -signal.SIGKILL
    assert _describe_exit(killed, oom_killed=True) == (
        "signal 9 (SIGKILL): out of memory (the kernel's OOM killer, at its cgroup's memory limit)"
    )
    assert "out of memory" not in _describe_exit(killed, oom_killed=False)
    assert "out of memory" not in _describe_exit(1, "ValueError: bad\n", oom_killed=True)  # it exited on its own
    assert "out of memory" in _describe_exit(3, "MemoryError: out of memory\n")
