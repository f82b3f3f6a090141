"""One export run: open ClickHouse (``corpus/stores.py``), read the filtered corpus in pages, write it by a
format. The data worker runs the same ``export`` for the console's downloads (``corpus/console``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trajstream.corpus.batch_gc import relaxed_gc
from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats import known_formats
from trajstream.corpus.export.formats.base import Format
from trajstream.corpus.export.writer import prepare_out, write_export
from trajstream.corpus.read import CorpusFilter, CorpusReader
from trajstream.corpus.stores import open_corpus
from trajstream.errors import TrajstreamError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> int:
    """Epoch milliseconds of an ISO time (UTC unless it says otherwise) or of a time ago like 7d, 12h, 30m."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        when = now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise TrajstreamError(f"not a time: {text!r} (an ISO time like 2025-01-31T12:00, or a time ago like "
                                  "7d, 12h, 30m, 2w)") from None  # fmt: skip
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def format_named(name: str, settings: ExportSettings) -> Format:
    formats = known_formats()
    if name not in formats:
        raise TrajstreamError(f"unknown format {name!r}; known: {', '.join(formats) or 'none'}")
    return formats[name](settings)


def export(settings: ExportSettings, format_name: str, out: Path, filters: CorpusFilter, batch: int = 500,
           client: Any = None, on_total: Callable[[int], None] = lambda n: None,
           on_trajectory: Callable[[], None] = lambda: None,
           parts: frozenset[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Export the corpus ``filters`` select by the named format into ``out``; returns the manifest.

    ``client`` reads through an open ClickHouse client (tests, and callers that own one); otherwise
    ``open_corpus`` opens one. ``on_total`` hears how many trajectories the filter selects (before the
    reading starts), ``on_trajectory`` each one read. ``parts`` overrides what the format reads (tests).
    """
    fmt = format_named(format_name, settings)
    prepare_out(out)  # refuse a used directory before reading anything
    with relaxed_gc():
        if client is None:
            with open_corpus(settings) as opened:
                return _export(settings, fmt, out, filters, batch, opened, on_total, on_trajectory, parts)
        return _export(settings, fmt, out, filters, batch, client, on_total, on_trajectory, parts)


def _export(settings: ExportSettings, fmt: Format, out: Path, filters: CorpusFilter, batch: int, client: Any,
            on_total: Callable[[int], None], on_trajectory: Callable[[], None],
            parts: frozenset[str] | None) -> dict[str, Any]:  # fmt: skip
    reader = CorpusReader(client, settings, batch, fmt.parts() if parts is None else parts)
    on_total(reader.count(filters))
    return write_export(fmt, reader.trajectories(filters), out, filters, reader.skipped, on_trajectory)
