"""What every export format is: trajectories in, rows (or skips, with the reason) out, and the file kind.

A format is pure: it never opens ClickHouse nor writes a file by itself. The run (``corpus/export/run.py``)
reads the corpus and hands the format a stream of ``Trajectory`` objects; the writer
(``corpus/export/writer.py``) cuts the rows into files, each written atomically, and records each skip in
the manifest. A format that needs more than one trajectory at a time (pairs of one task group, ART's
groups) reads ahead in ``rows`` as it needs, in bounded memory; one that needs one at a time subclasses
``PerTrajectory``.

To add a format: a module in ``corpus/export/formats/`` with a ``FORMATS`` tuple of its classes; the
registry (``formats/__init__.py``) finds it, so formats never edit a shared list.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.shards import write_jsonl, write_parquet
from trajstream.corpus.read import ALL_PARTS, Trajectory

Row = dict[str, Any]
FileKind = Literal["jsonl", "parquet"]


@dataclass(frozen=True)
class Skip:
    """A trajectory (version) not exported, and why: counted by reason in the manifest."""

    trajectory_id: str
    version: int
    reason: str


class Format(ABC):
    name: ClassVar[str]  # the FORMAT argument of `trajstream export`, e.g. "openai-sft"
    summary: ClassVar[str]  # one line for `trajstream export --help`
    kind: ClassVar[FileKind]
    shard_rows: ClassVar[int | None] = None  # rows per file; None: one file, however many rows

    def __init__(self, settings: ExportSettings | None = None):
        self.settings = settings if settings is not None else ExportSettings()

    @abstractmethod
    def rows(self, trajectories: Iterable[Trajectory]) -> Iterator[Row | Skip]:
        """Each row to write, or a Skip for each trajectory not exported, in a stable order."""

    def parts(self) -> frozenset[str]:
        """What the format reads besides each trajectory's head and messages (``corpus/read.py``'s parts): all
        of them unless it says less. Reading less is what makes an export fast; tests/corpus/test_export_parts.py
        checks that each format writes the same files from its own parts as from all of them."""
        return ALL_PARTS

    def shard_name(self, index: int) -> str:
        """The path of the index-th file, relative to --out (a format may nest its files in folders)."""
        return f"{self.name}-{index:05d}.{self.kind}"

    def write_shard(self, rows: Iterable[Row], path: Path) -> int:
        """Write rows to path (a temporary name: the writer syncs and renames it); return how many were written.
        The default writes JSON lines or a Parquet file by pyarrow; a format may write its own (by ``datasets``)."""
        return write_jsonl(rows, path) if self.kind == "jsonl" else write_parquet(rows, path)


class PerTrajectory(Format):
    """A format with one row (or one skip) per trajectory."""

    @abstractmethod
    def row(self, trajectory: Trajectory) -> Row | Skip: ...

    def rows(self, trajectories: Iterable[Trajectory]) -> Iterator[Row | Skip]:
        for trajectory in trajectories:
            yield self.row(trajectory)
