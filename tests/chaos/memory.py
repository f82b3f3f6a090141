"""Resident memory of the pipeline's processes, from /proc: each part's process group, the broker, the trainer."""

from __future__ import annotations

import os
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, process group, resident bytes) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[2]), int(fields[21]) * PAGE  # pgrp, rss (pages)


def resident_by_group(groups: dict[str, int]) -> dict[str, int]:
    """Resident bytes of every process in each named process group: {name: bytes}; the python process that
    leads a group under its name, any other process of it as ``name/command`` (milvus-lite's server, ...)."""
    out: dict[str, int] = {}
    leaders = {pgid: name for name, pgid in groups.items()}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None or stat[1] not in leaders:
            continue
        name, pgid, rss = stat
        key = leaders[pgid] if int(entry) == pgid else f"{leaders[pgid]}/{name}"
        out[key] = out.get(key, 0) + rss
    return out


def group_of(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None
