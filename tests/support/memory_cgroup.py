"""A memory cgroup for a test: what a container's memory limit is, so a process that reaches it is OOM-killed.

cgroup v2 (``memory.max``) where the unified hierarchy has the memory controller, else v1's memory controller
(``memory.limit_in_bytes``), a child of this process's own cgroup. Root only: the test is skipped without it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path("/sys/fs/cgroup")


class MemoryCgroup:
    def __init__(self, path: Path, v2: bool):
        self.path = path
        self.v2 = v2

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the cgroup: a shell moves itself in, then execs it (no preexec_fn in a threaded test)."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path), *argv]

    def usage(self) -> int:
        name = "memory.current" if self.v2 else "memory.usage_in_bytes"
        return int((self.path / name).read_text())

    def limit(self, limit: int | None) -> None:
        """Set the memory limit, in bytes; None lifts it."""
        if self.v2:
            (self.path / "memory.max").write_text("max" if limit is None else str(limit))
        else:
            (self.path / "memory.limit_in_bytes").write_text("-1" if limit is None else str(limit))

    def oom_kills(self) -> int:
        text = (self.path / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        return int(next(line.split()[1] for line in text.splitlines() if line.startswith("oom_kill ")))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]


def _where() -> tuple[Path, bool] | None:
    """Where a new memory cgroup can be made, and whether it is v2."""
    if "memory" in _read(ROOT / "cgroup.controllers").split() and "memory" in _read(ROOT / "cgroup.subtree_control"):
        return ROOT, True
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return ROOT / "memory" / path.lstrip("/"), False
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@contextlib.contextmanager
def memory_cgroup() -> Iterator[MemoryCgroup]:
    """A new memory cgroup, no limit yet; removed afterwards (its processes must be gone by then)."""
    where = _where()
    if where is None:
        pytest.skip("no memory cgroup controller to make a cgroup under")
    parent, v2 = where
    path = parent / f"trajstream-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as exc:
        pytest.skip(f"a memory cgroup needs a writable {parent} (root): {exc}")
    try:
        yield MemoryCgroup(path, v2)
    finally:
        deadline = time.monotonic() + 10
        while True:  # a dying process leaves its cgroup a moment after its parent saw it exit
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
