"""``art``: OpenPipe ART's ``TrajectoryGroup``s, as the Parquet its ``write_trajectory_groups_parquet`` writes.

The layout is ART's current one (``art/utils/trajectory_logging.py``, ``_FORMAT_VERSION = 2``): schema
metadata ``art.trajectory_parquet.version = 2``, one row per trajectory with ``format_version``,
``group_index``, ``trajectory_index``, the whole group (less its trajectories) as ``group_json`` and the
whole trajectory as ``trajectory_json``, which are what a v2 reader restores (``Choice`` objects with their
log-probabilities included), plus the flat columns of the older layout (``reward``, ``metrics``,
``metadata``, ``tools``, ``messages: list<struct{role, content, tool_calls, tool_call_id, trainable}>``).
A v1 reader (openpipe-art 0.5.18, the newest on PyPI here) reads those flat columns and loses the Choices
and their log-probabilities; a v2 reader keeps them.

- Messages are ``trajstream.corpus.export.chat``'s. Each assistant reply is a trainable ``Choice`` dict
  (``finish_reason``, ``index``, ``message``, ``logprobs``); everything else is a plain message. A
  redacted assistant placeholder stays a plain message: it is not what the model said, so it is not
  trained on.
- A reply carries its turn's recorded log-probabilities (``logprobs.content[]``: token, UTF-8 bytes,
  logprob) when the turn recorded them and the reply is the turn's only one; tokens whose ids were all
  recorded are written ``token_id:<id>``, which ART's tokenizer reads as exact ids. A turn without them
  gives ``logprobs: null`` (ART then needs ``allow_training_without_logprobs``).
- ``reward`` is the trajectory's; ``metrics`` hold AIR per turn and its mean, credit per turn where
  scored, and the reward components; ``metadata`` (scalars only, ART's rule) the trajectory id, version,
  agent, task, task key, outcome, model version and the like, lists as JSON text.
- Groups are formed as the trainer forms them (``trajstream.grouping.make_groups``): within windows of
  TRAJSTREAM_EXPORT_GROUP_WINDOW trajectories in the corpus's order, by task key or entity overlap
  (TRAJSTREAM_EXPORT_GROUP_BY, _THRESHOLD). The group's key and rule are its metadata.
- One file (ART's reader wants a file's groups numbered 0..n-1, and a group must not straddle files),
  ``trajectories/train/0000.parquet`` as ART's ``Model.log`` names a step's file; written in row groups.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajstream.corpus.export.chat import chat_messages
from trajstream.corpus.export.formats.base import Format, Row, Skip
from trajstream.corpus.export.logprobs import logprob_content
from trajstream.corpus.read import ALL_PARTS, TOOL_CALLS, Trajectory
from trajstream.grouping import Group, Sample, make_groups

FORMAT_VERSION = 2
VERSION_KEY = b"art.trajectory_parquet.version"
NOTHING_TRAINABLE = "no assistant reply to train on"
_ROW_GROUP = 10_000


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Prepared:
    trajectory: Trajectory
    data: dict[str, Any]  # ART's Trajectory, as its model_dump (mode="json") gives it
    flat: list[dict[str, Any]]  # the flat ``messages`` column


def _choice(message: dict[str, Any], logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
    inner: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        inner["tool_calls"] = message["tool_calls"]
    return {"finish_reason": "tool_calls" if inner.get("tool_calls") else "stop", "index": 0,
            "logprobs": {"content": logprobs, "refusal": None} if logprobs is not None else None,
            "message": inner}  # fmt: skip


def _flat(message: dict[str, Any], trainable: bool) -> dict[str, Any]:
    """ART's flattened message; tool calls as its writer dumps them (pydantic's field order, json.dumps)."""
    calls = message.get("tool_calls")
    if calls and trainable:
        calls = [{"id": c["id"], "function": {"arguments": c["function"]["arguments"], "name": c["function"]["name"]},
                  "type": "function"} for c in calls]  # fmt: skip
    return {"role": message.get("role"), "content": message.get("content"),
            "tool_calls": json.dumps(calls) if calls else None,
            "tool_call_id": None if trainable else message.get("tool_call_id"), "trainable": trainable}  # fmt: skip


def _metrics(t: Trajectory) -> dict[str, float | int]:
    metrics: dict[str, float | int] = {"turns": len(t.turns)}
    if t.turns:
        metrics["air_mean"] = statistics.fmean(turn.air for turn in t.turns)
    for turn in t.turns:
        metrics[f"air/{turn.index}"] = turn.air
        if turn.credit is not None:
            metrics[f"credit/{turn.index}"] = turn.credit
    for name, value in sorted(t.components.items()):
        metrics[f"reward/{name}"] = value
    return metrics


def _metadata(t: Trajectory) -> dict[str, str | int]:
    return {"trajectory_id": t.trajectory_id, "version": t.version, "agent_id": t.agent_id, "domain": t.domain,
            "environment": t.environment, "task": t.task, "task_key": t.task_key, "outcome": t.outcome,
            "model_version": t.model_version, "reward_function": t.reward_function,
            "parent_trajectory_id": t.parent_trajectory_id, "started_ms": t.started_ms, "ended_ms": t.ended_ms,
            "tags": _compact(t.tags), "entities": _compact(t.entities)}  # fmt: skip


def prepare(t: Trajectory) -> _Prepared | str:
    """The trajectory as ART's, or the reason it is not exported."""
    chat = chat_messages(t)
    if isinstance(chat, str):
        return chat
    replies: dict[int, int] = {}  # assistant replies per turn: log-probabilities go to a turn's only reply
    for m in chat.messages:
        if m.message["role"] == "assistant" and m.turn is not None and not m.redacted:
            replies[m.turn.index] = replies.get(m.turn.index, 0) + 1
    items: list[dict[str, Any]] = []
    flat: list[dict[str, Any]] = []
    for m in chat.messages:
        trainable = m.message["role"] == "assistant" and m.turn is not None and not m.redacted
        if trainable and m.turn is not None:
            logprobs = logprob_content(m.turn, ids_as_tokens=True) if replies[m.turn.index] == 1 else None
            items.append(_choice(m.message, logprobs))
        else:
            items.append(m.message)
        flat.append(_flat(m.message, trainable))
    if not replies:
        return NOTHING_TRAINABLE
    data = {"messages_and_choices": items, "tools": chat.tool_params() or None, "reward": t.reward,
            "initial_policy_version": None, "final_policy_version": None, "metrics": _metrics(t),
            "metadata": _metadata(t), "logs": []}  # fmt: skip
    return _Prepared(t, data, flat)


class ART(Format):
    name = "art"
    summary = "ART TrajectoryGroups as Parquet v2 (Choices with token logprobs), grouped as the trainer groups"
    kind = "parquet"
    shard_rows = None  # one file: a group never straddles two

    def parts(self) -> frozenset[str]:
        return ALL_PARTS - {TOOL_CALLS}  # logprobs, AIR, credit and reward components, but not call results

    def shard_name(self, index: int) -> str:
        return f"trajectories/train/{index:04d}.parquet"

    def rows(self, trajectories: Iterable[Trajectory]) -> Iterator[Row | Skip]:
        window: list[_Prepared] = []
        groups = 0
        for t in trajectories:
            prepared = prepare(t)
            if isinstance(prepared, str):
                yield Skip(t.trajectory_id, t.version, prepared)
                continue
            window.append(prepared)
            if len(window) >= self.settings.export_group_window:
                for row in self._grouped(window, groups):
                    groups = max(groups, row["group_index"] + 1)
                    yield row
                window = []
        for row in self._grouped(window, groups):
            yield row

    def _grouped(self, window: list[_Prepared], first: int) -> Iterator[Row]:
        by_id = {(p.trajectory.trajectory_id, p.trajectory.version): p for p in window}
        samples = [Sample(p.trajectory.trajectory_id, p.trajectory.version, p.trajectory.task_key, p.trajectory.reward,
                          frozenset(p.trajectory.entities)) for p in window]  # fmt: skip
        s = self.settings
        for offset, group in enumerate(make_groups(samples, s.export_group_by, s.export_group_threshold)):
            members = [by_id[(m.trajectory_id, m.version)] for m in group.members]
            yield from self._group_rows(group, members, first + offset)

    def _group_rows(self, group: Group, members: list[_Prepared], index: int) -> Iterator[Row]:
        metadata = {"group_key": group.key, "group_by": self.settings.export_group_by}
        metrics = {"size": len(members), "reward_mean": statistics.fmean(p.trajectory.reward for p in members)}
        group_data = {"exceptions": [], "metadata": metadata, "metrics": metrics, "logs": []}
        for position, p in enumerate(members):
            yield {
                "format_version": FORMAT_VERSION, "group_index": index, "trajectory_index": position,
                "group_json": _compact(group_data), "trajectory_json": _compact(p.data),
                "group_metadata": _compact(metadata), "group_metrics": _compact(metrics), "group_logs": None,
                "reward": p.trajectory.reward, "metrics": _compact(p.data["metrics"]),
                "metadata": _compact(p.data["metadata"]),
                "tools": _compact(p.data["tools"]) if p.data["tools"] else None, "logs": None, "messages": p.flat,
            }  # fmt: skip

    def write_shard(self, rows: Iterable[Row], path: Path) -> int:
        """ART's schema exactly (types, column order, version metadata), ZSTD as ART writes it; the file's
        groups renumbered from 0, as ART's reader requires of one file."""
        import pyarrow as pa  # heavy: only when this format runs
        import pyarrow.parquet as pq

        schema = art_schema()
        local: dict[int, int] = {}
        pending: list[Row] = []
        n = 0
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for row in rows:
                pending.append({**row, "group_index": local.setdefault(row["group_index"], len(local))})
                n += 1
                if len(pending) >= _ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(pending, schema=schema))
                    pending.clear()
            if pending or not n:
                writer.write_table(pa.Table.from_pylist(pending, schema=schema))
        return n


def art_schema() -> Any:
    """ART's v2 Parquet schema (``trajectory_logging._schema``), column for column."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.string()),
                         ("tool_call_id", pa.string()), ("trainable", pa.bool_())])  # fmt: skip
    return pa.schema(
        [("format_version", pa.int16()), ("group_index", pa.int64()), ("trajectory_index", pa.int64()),
         ("group_json", pa.large_string()), ("trajectory_json", pa.large_string()),
         ("group_metadata", pa.string()), ("group_metrics", pa.string()), ("group_logs", pa.list_(pa.string())),
         ("reward", pa.float64()), ("metrics", pa.string()), ("metadata", pa.string()), ("tools", pa.string()),
         ("logs", pa.list_(pa.string())), ("messages", pa.list_(message))],
        metadata={VERSION_KEY: str(FORMAT_VERSION).encode()},
    )  # fmt: skip


FORMATS = (ART,)
