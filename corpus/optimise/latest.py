"""Where reports live, so the latest of each kind can be found: ``<home>/reports/<kind>/<UTC timestamp>/``.

A report directory counts once both its files are in place (``write_report`` writes the JSON, then the
Markdown, each atomically), so a report being written is never taken for the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trajstream.settings import Settings

KINDS = ("tools", "skills", "instructions")
_STAMP = "%Y%m%dT%H%M%S.%fZ"  # sorts as it reads; microseconds keep two reports in one second apart


@dataclass(frozen=True)
class Latest:
    kind: str
    directory: Path

    @property
    def json_path(self) -> Path:
        return self.directory / f"{self.kind}.json"

    @property
    def markdown_path(self) -> Path:
        return self.directory / f"{self.kind}.md"


def reports_root(settings: Settings) -> Path:
    return settings.home / "reports"


def new_report_dir(settings: Settings, kind: str, now: datetime | None = None) -> Path:
    """A fresh directory name for a report of ``kind`` made now (not created here)."""
    return reports_root(settings) / kind / (now or datetime.now(UTC)).strftime(_STAMP)


def latest_report(settings: Settings, kind: str) -> Latest | None:
    """The newest complete report of ``kind`` under the reports root, or None."""
    folder = reports_root(settings) / kind
    if not folder.is_dir():
        return None
    for directory in sorted((d for d in folder.iterdir() if d.is_dir()), reverse=True):
        found = Latest(kind, directory)
        if found.json_path.is_file() and found.markdown_path.is_file():
            return found
    return None


def how_to_make(kind: str) -> str:
    return (f"run `trajstream optimise {kind}`, or POST /api/console/reports/{kind} as an operator "
            "(the console's Exports & reports page has a button)")  # fmt: skip
