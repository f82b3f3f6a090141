"""What every report shares: its evidence (trajectory ids, clipped), and writing it as Markdown and JSON."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trajstream.corpus.optimise.stats import Rate

MAX_IDS = 12  # ids listed per claim; the count says how many there are in all


def evidence(ids: Iterable[str]) -> dict[str, Any]:
    """The trajectories behind a claim: how many, and the first ``MAX_IDS`` of them (sorted)."""
    unique = sorted(set(ids))
    return {"count": len(unique), "trajectory_ids": unique[:MAX_IDS]}


def ids_md(ev: dict[str, Any]) -> str:
    shown = ", ".join(f"`{t}`" for t in ev["trajectory_ids"])
    more = ev["count"] - len(ev["trajectory_ids"])
    return shown + (f" and {more} more" if more > 0 else "")


def rate_md(r: Rate) -> str:
    return str(r)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a report


def write_report(out: Path, kind: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """``{out}/{kind}.json`` and ``{out}/{kind}.md``, each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"kind": kind, "generated_at_ms": int(time.time() * 1000), **data}
    json_path, md_path = out / f"{kind}.json", out / f"{kind}.md"
    _atomic_write(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _atomic_write(md_path, markdown)
    return json_path, md_path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path
