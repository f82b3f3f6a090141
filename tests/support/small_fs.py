"""A small filesystem for a test (tmpfs, mounted as root) that can be filled to the last byte and grown again."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``64m``) at ``path`` for the block; the test is skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except OSError as exc:
        pytest.skip(f"a small filesystem needs mount (root): {exc}")
    try:
        yield path
    finally:
        # Lazily: a process a failed test left behind must not keep the mount (the test fails on its own).
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path, size: str) -> None:
    """Space returns: the filesystem at ``path`` grows to ``size``, its files untouched."""
    _mount("-o", f"remount,size={size}", str(path))


def fill(path: Path, name: str = "ballast") -> int:
    """Write ``path/name`` until the filesystem has no byte left; the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(path / name, "wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # The last page: a smaller write can still fit where the chunk did not.
    with open(path / name, "ab", buffering=0) as handle, contextlib.suppress(OSError):
        while handle.write(b"\0" * 512):
            written += 512
    return written


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
