"""Read an `art` export with openpipe-art's own code and print what it read, as one JSON line.

    python load.py FILE.parquet

openpipe-art 0.5.18 (the newest on PyPI here) ships the v1 Parquet layout only: its
`read_trajectory_groups_parquet` reads the flat columns and gives plain messages (no Choices, no
log-probabilities). The export is ART's v2 layout (format_version 2, group_json/trajectory_json), whose
reader in later ART restores each trajectory with `Trajectory.model_validate` after turning every
Choice-shaped item into `openai...Choice.model_validate(item)` (`_restore_trajectory`, `_read_v2`). This
program does both with 0.5.18's own models:

- "v1": what 0.5.18's `read_trajectory_groups_parquet` gives back;
- "v2": the groups restored by the v2 rule with 0.5.18's `Trajectory`, `TrajectoryGroup` and openai's `Choice`;
- "writer": the v2 groups written again by 0.5.18's `write_trajectory_groups_parquet`, and every flat column
  of that file compared with the export's (JSON text compared as JSON: the two writers space it differently).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch a price list at import

import pyarrow.parquet as pq
from art.trajectories import Trajectory, TrajectoryGroup
from art.utils.trajectory_logging import (
    read_trajectory_groups_parquet,
    write_trajectory_groups_parquet,
)
from openai.types.chat.chat_completion import Choice

FLAT = ["group_index", "group_metadata", "group_metrics", "group_logs", "reward", "metrics", "metadata", "tools",
        "logs", "messages"]  # fmt: skip
JSON_TEXT = {"group_metadata", "group_metrics", "metrics", "metadata", "tools"}


def restore_v2(path: str) -> list[TrajectoryGroup]:
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"art.trajectory_parquet.version")
    if version != b"2":
        raise SystemExit(f"not ART's v2 layout: art.trajectory_parquet.version is {version!r}")
    rows = table.to_pylist()
    groups: dict[int, list[tuple[int, Trajectory]]] = {}
    group_data: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["format_version"] != 2:
            raise SystemExit(f"format_version {row['format_version']!r}")
        data = json.loads(row["trajectory_json"])
        data["messages_and_choices"] = [
            Choice.model_validate(item) if {"finish_reason", "index", "message"} <= item.keys() else item
            for item in data.get("messages_and_choices", [])
        ]
        groups.setdefault(row["group_index"], []).append((row["trajectory_index"], Trajectory.model_validate(data)))
        group_data.setdefault(row["group_index"], json.loads(row["group_json"]))
    if sorted(groups) != list(range(len(groups))):
        raise SystemExit(f"group indexes are not 0..n-1: {sorted(groups)}")
    out = []
    for index in sorted(groups):
        members = sorted(groups[index], key=lambda x: x[0])
        if [i for i, _ in members] != list(range(len(members))):
            raise SystemExit(f"group {index}: trajectory indexes are not 0..n-1")
        out.append(TrajectoryGroup.model_validate({**group_data[index], "trajectories": [t for _, t in members]}))
    return out


def describe(item: Any) -> dict[str, Any]:
    if isinstance(item, Choice):
        content = item.logprobs.content if item.logprobs is not None else None
        return {"role": item.message.role, "content": item.message.content, "trainable": True,
                "tool_calls": [c.model_dump(mode="json") for c in item.message.tool_calls or []],
                "logprobs": None if content is None else
                [{"token": c.token, "logprob": c.logprob, "text": bytes(c.bytes or []).decode("utf-8")}
                 for c in content]}  # fmt: skip
    return {"role": item["role"], "content": item.get("content"), "trainable": False,
            "tool_calls": item.get("tool_calls") or [], "tool_call_id": item.get("tool_call_id")}  # fmt: skip


def comparable(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in JSON_TEXT:
        return json.loads(value)
    if column == "messages":
        return [{**m, "tool_calls": json.loads(m["tool_calls"]) if m["tool_calls"] else None} for m in value]
    return value


def main(path: str) -> None:
    v1 = read_trajectory_groups_parquet(path)
    v2 = restore_v2(path)
    with tempfile.TemporaryDirectory() as tmp:
        again = os.path.join(tmp, "art.parquet")
        write_trajectory_groups_parquet(v2, again)
        theirs = pq.read_table(again).to_pylist()
    ours = pq.read_table(path).to_pylist()
    differences = [
        {"row": i, "column": c, "export": comparable(c, mine[c]), "art": comparable(c, art[c])}
        for i, (mine, art) in enumerate(zip(ours, theirs, strict=True))
        for c in FLAT
        if comparable(c, mine[c]) != comparable(c, art[c])
    ]
    print(json.dumps({
        "v1": [[{"reward": t.reward, "metadata": t.metadata, "messages": t.messages_and_choices}
                for t in g.trajectories] for g in v1],
        "v2": [{"metadata": g.metadata, "metrics": g.metrics,
                "trajectories": [{"reward": t.reward, "metadata": t.metadata, "metrics": t.metrics,
                                  "tools": t.tools, "messages": [describe(m) for m in t.messages_and_choices]}
                                 for t in g.trajectories]} for g in v2],
        "writer": {"rows": len(theirs), "differences": differences[:20]},
    }, ensure_ascii=False, default=str))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
