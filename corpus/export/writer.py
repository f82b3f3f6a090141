"""Writing an export: the format's rows cut into files, every file atomic, and the manifest last.

Each file is written under a temporary name in the output directory (``.NAME.partial``), synced, and
renamed only when the whole export has succeeded; the manifest (``manifest.json``) is written the same
way after them, so a directory with a manifest holds a complete export and every file it names. A run
that fails midway removes its partial files: it leaves no data file and no manifest. The output
directory must be new or empty, so an export never mixes with another's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from trajstream import __version__
from trajstream.corpus.export.formats.base import Format, Row, Skip
from trajstream.corpus.read import CorpusFilter, Skipped, Trajectory
from trajstream.errors import TrajstreamError

MANIFEST = "manifest.json"
_EXAMPLES = 20  # skipped ids kept per reason in the manifest: enough to look at, never the whole corpus


@dataclass
class ExportCounts:
    read: int = 0  # trajectories handed to the format
    exported: int = 0  # rows written
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    examples: dict[str, list[str]] = field(default_factory=dict)  # "id@version" per reason, the first few

    def skip(self, trajectory_id: str, version: int, reason: str) -> None:
        self.skipped[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < _EXAMPLES:
            seen.append(f"{trajectory_id}@{version}")


def _sync_file(path: Path) -> tuple[str, int]:
    """fsync the file (its bytes are on disk before its name is) and return its sha256 and size."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        os.fsync(handle.fileno())
    return digest.hexdigest(), path.stat().st_size


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _partial(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def write_atomically(path: Path, text: str) -> None:
    """A small file (the manifest) written to a temporary name, synced and renamed."""
    tmp = _partial(path)
    tmp.write_text(text, encoding="utf-8")
    _sync_file(tmp)
    tmp.replace(path)
    _sync_dir(path.parent)


def prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrajstreamError(f"{out} exists and is not an empty directory: export into a new one")
    out.mkdir(parents=True, exist_ok=True)


def write_export(fmt: Format, trajectories: Iterable[Trajectory], out: Path, filters: CorpusFilter,
                 reader_skipped: Sequence[Skipped] = (),
                 on_trajectory: Callable[[], None] = lambda: None) -> dict[str, Any]:  # fmt: skip
    """Export ``trajectories`` by ``fmt`` into the directory ``out``; return the manifest written.

    ``reader_skipped`` is the reader's live list of what it could not read back (looked at once the
    stream is done); ``on_trajectory`` is called as each trajectory is read (a progress bar).
    """
    prepare_out(out)
    counts = ExportCounts()

    def counted() -> Iterator[Trajectory]:
        for trajectory in trajectories:
            counts.read += 1
            on_trajectory()
            yield trajectory

    def rows_only() -> Iterator[Row]:
        for item in fmt.rows(counted()):
            if isinstance(item, Skip):
                counts.skip(item.trajectory_id, item.version, item.reason)
            else:
                yield item

    started = time.monotonic()
    written: list[tuple[Path, Path, int, str, int]] = []  # partial, final, rows, sha256, bytes
    try:
        rows = _Peekable(rows_only())
        index = 0
        while rows.has_next():
            final = out / fmt.shard_name(index)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = _partial(final)
            shard = rows if fmt.shard_rows is None else islice(rows, fmt.shard_rows)
            n = fmt.write_shard(shard, tmp)
            sha, size = _sync_file(tmp)
            written.append((tmp, final, n, sha, size))
            counts.exported += n
            index += 1
        for tmp, final, *_ in written:
            tmp.replace(final)
    except BaseException:
        for tmp, final, *_ in written:
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
        for leftover in out.rglob("*.partial"):
            leftover.unlink(missing_ok=True)
        raise
    for item in reader_skipped:
        counts.skip(item.trajectory_id, item.version, item.reason)
    for directory in {final.parent for _, final, *_ in written} | {out}:
        _sync_dir(directory)
    manifest = {
        "format": fmt.name,
        "filters": filters.as_json(),
        "counts": {"read": counts.read, "exported": counts.exported, "skipped": dict(counts.skipped.most_common())},
        "skipped_examples": counts.examples,
        "files": [
            {"path": final.relative_to(out).as_posix(), "rows": n, "sha256": sha, "bytes": size}
            for _, final, n, sha, size in written
        ],
        "settings": {  # every export setting (TRAJSTREAM_EXPORT_*), as the run used it
            name.removeprefix("export_"): value
            for name, value in fmt.settings.model_dump().items()
            if name.startswith("export_")
        },
        "trajstream_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 3),
    }
    write_atomically(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


class _Peekable(Iterator[Row]):
    """An iterator that can say whether another row is coming without losing it (a shard is opened only then)."""

    def __init__(self, it: Iterator[Row]):
        self._it = it
        self._head: list[Row] = []

    def has_next(self) -> bool:
        if not self._head:
            try:
                self._head.append(next(self._it))
            except StopIteration:
                return False
        return True

    def __next__(self) -> Row:
        if self._head:
            return self._head.pop()
        return next(self._it)
