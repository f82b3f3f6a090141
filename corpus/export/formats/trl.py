"""Hugging Face TRL's datasets: ``trl-sft``, ``trl-dpo``, ``trl-kto``, ``trl-grpo``, as Parquet shards by ``datasets``.

Each format's shards are ``FORMAT/{i:05d}.parquet`` (``load_dataset("parquet", data_files="FORMAT/*.parquet")``),
written one shard at a time by ``Dataset.from_dict(..., features=...).to_parquet``: memory holds one shard.

Conversations (``messages``, ``prompt``, ``completion``, ``chosen``, ``rejected``) and ``tools`` are lists of
``Json()`` values: each message comes back with exactly its own keys and each call's ``arguments`` as the dict
it was, whatever the other rows hold. Arrow structs would fill every key any message has with None (a
``tool_calls: None`` on a text message, which templates testing ``'tool_calls' in message`` break on) and
merge every tool's arguments into one struct. TRL's trainers read these columns as the lists of dicts they are.

- ``trl-sft``: ``messages`` (the whole conversation), ``tools``. A trajectory whose reward is under the
  weight threshold (``ExportSettings.learned`` by reward) is skipped: TRL has no per-message weight, and
  openai-sft would give it weight 0 throughout (by credit it may learn some steps: TRL cannot say which).
- ``trl-dpo``: ``prompt``/``chosen``/``rejected`` (conversational, explicit prompt) from ``pairs.py``'s pairs
  (the highest against the lowest reward of a task group given the same prompt): the prompt, then each one's
  first reply, as openai-dpo. A completion never holds tool results or user text, which DPO would learn.
- ``trl-kto``: unpaired ``prompt``/``completion``/``label``, the completion the first reply (as in DPO); the
  label is reward >= the weight threshold, or, with TRAJSTREAM_EXPORT_KTO_LABEL_BY=outcome, success (True)
  against failure or error (False).
- ``trl-grpo``: prompt-only ``prompt`` and the columns a reward function receives as keyword arguments:
  ``ground_truth`` (the final answer of a successful trajectory), ``task_key``, ``reward``, ``outcome``,
  ``air`` (per turn) and ``air_total``, ``trajectory_id``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats.base import Format, PerTrajectory, Row, Skip
from trajstream.corpus.export.pairs import preference_pairs
from trajstream.corpus.export.trl_chat import (
    NotExportable,
    conversation,
    final_answer,
    first_reply_of,
    prompt_of,
    tool_specs,
)
from trajstream.corpus.read import TURN_DETAILS, Trajectory

SHARD_ROWS = 10_000  # rows per Parquet shard: what memory holds at once while writing
# Rows per Parquet row group. Given, not left to datasets 5.0.1, whose estimate divides by the row count
# (ZeroDivisionError on an empty shard with Json columns).
ROW_GROUP = 1_000


def _features(columns: dict[str, str]) -> Any:
    """``datasets.Features`` from short names: chat (a list of JSON messages), string, float, floats, bool."""
    from datasets import Features, Json, List, Value  # heavy: only when a TRL format runs

    kinds = {"chat": lambda: List(Json()), "string": lambda: Value("string"), "float": lambda: Value("float64"),
             "floats": lambda: List(Value("float64")), "bool": lambda: Value("bool")}  # fmt: skip
    return Features({name: kinds[kind]() for name, kind in columns.items()})


class _Trl(Format):
    kind = "parquet"
    shard_rows = SHARD_ROWS
    columns: ClassVar[dict[str, str]]  # the column names and their kinds (see _features), in order

    def parts(self) -> frozenset[str]:
        return frozenset()  # learned by reward: TRL has no per-message weight

    def shard_name(self, index: int) -> str:
        return f"{self.name}/{index:05d}.parquet"

    def write_shard(self, rows: Iterable[Row], path: Path) -> int:
        from datasets import Dataset, DatasetInfo, disable_progress_bars, enable_progress_bars, is_progress_bar_enabled

        rows = list(rows)  # one shard: the writer hands over at most shard_rows
        features = _features(self.columns)
        was_enabled = is_progress_bar_enabled()
        disable_progress_bars()  # the export shows its own progress
        try:
            table = _arrow_table(rows, self.columns, features)
            Dataset(table, info=DatasetInfo(features=features)).to_parquet(str(path), batch_size=ROW_GROUP)
        finally:
            if was_enabled:
                enable_progress_bars()
        return len(rows)


def _arrow_table(rows: list[Row], columns: dict[str, str], features: Any) -> Any:
    """The rows as the Arrow table ``Dataset.from_dict(rows, features)`` builds, built directly: a chat column's
    messages are encoded by orjson straight into ``Json()``'s storage (a JSON string per message), where
    ``from_dict`` walked every message through its own encoder (ujson, and a check that re-parsed it): 1.5 s
    of a 3,669-row shard, now 0.3 s. tests/corpus/test_export_trl.py loads the files with ``load_dataset``."""
    import orjson
    import pyarrow as pa

    schema = features.arrow_schema
    arrays = []
    for name, kind in columns.items():
        values = [row[name] for row in rows]
        if kind == "chat":
            storage = pa.array([None if v is None else [orjson.dumps(m).decode() for m in v] for v in values],
                               type=pa.list_(pa.string()))  # fmt: skip
            messages = pa.ExtensionArray.from_storage(pa.json_(), storage.values)
            arrays.append(pa.ListArray.from_arrays(storage.offsets, messages, mask=storage.is_null()))
        else:
            arrays.append(pa.array(values, type=schema.field(name).type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _skip(t: Trajectory, reason: str) -> Skip:
    return Skip(t.trajectory_id, t.version, reason)


class TrlSft(_Trl, PerTrajectory):
    name = "trl-sft"
    summary = "TRL SFT: conversational messages with tools (arguments as dicts), Parquet shards"
    columns: ClassVar[dict[str, str]] = {"messages": "chat", "tools": "chat", "trajectory_id": "string"}

    def row(self, trajectory: Trajectory) -> Row | Skip:
        if not self.settings.learned(trajectory.reward, None):
            return _skip(trajectory, "reward under the weight threshold: nothing to learn from it")
        try:
            messages = conversation(trajectory)
        except NotExportable as exc:
            return _skip(trajectory, str(exc))
        if not any(m["role"] == "assistant" for m in messages):
            return _skip(trajectory, "no assistant message: nothing to learn from it")
        return {"messages": messages, "tools": tool_specs(trajectory), "trajectory_id": trajectory.trajectory_id}


class TrlDpo(_Trl):
    name = "trl-dpo"
    summary = "TRL DPO: prompt/chosen/rejected from a high- and a low-reward trajectory of one task group"
    columns: ClassVar[dict[str, str]] = {
        "prompt": "chat",
        "chosen": "chat",
        "rejected": "chat",
        "tools": "chat",
        "task_key": "string",
        "chosen_trajectory_id": "string",
        "rejected_trajectory_id": "string",
        "chosen_reward": "float",
        "rejected_reward": "float",
    }

    def __init__(self, settings: ExportSettings | None = None, margin: float | None = None):
        super().__init__(settings)
        self.margin = self.settings.export_pair_margin if margin is None else margin  # TRAJSTREAM_EXPORT_PAIR_MARGIN

    def rows(self, trajectories: Iterable[Trajectory]) -> Iterator[Row | Skip]:
        for pair in preference_pairs(trajectories, self.margin):
            if isinstance(pair, Skip):
                yield pair
                continue
            good, bad = pair.preferred, pair.rejected
            try:
                prompt, chosen, rejected = prompt_of(good), first_reply_of(good), first_reply_of(bad)
            except NotExportable as exc:
                yield from (_skip(good, f"pair: {exc}"), _skip(bad, f"pair: {exc}"))
                continue
            yield {"prompt": prompt, "chosen": chosen, "rejected": rejected, "tools": tool_specs(good, bad),
                   "task_key": pair.task_key, "chosen_trajectory_id": good.trajectory_id,
                   "rejected_trajectory_id": bad.trajectory_id, "chosen_reward": good.reward,
                   "rejected_reward": bad.reward}  # fmt: skip


_OUTCOME_LABELS = {"success": True, "failure": False, "error": False}


class TrlKto(_Trl, PerTrajectory):
    name = "trl-kto"
    summary = "TRL KTO: unpaired prompt/completion/label (reward >= threshold, or the outcome)"
    columns: ClassVar[dict[str, str]] = {
        "prompt": "chat",
        "completion": "chat",
        "label": "bool",
        "tools": "chat",
        "trajectory_id": "string",
        "reward": "float",
    }

    def __init__(self, settings: ExportSettings | None = None, label_by: Literal["reward", "outcome"] | None = None):
        super().__init__(settings)
        self.label_by = self.settings.export_kto_label_by if label_by is None else label_by

    def row(self, trajectory: Trajectory) -> Row | Skip:
        if self.label_by == "outcome":
            label = _OUTCOME_LABELS.get(trajectory.outcome)
            if label is None:
                return _skip(trajectory, f"outcome {trajectory.outcome!r} is neither desirable nor undesirable")
        else:
            label = self.settings.learned(trajectory.reward, None)
        try:
            prompt, completion = prompt_of(trajectory), first_reply_of(trajectory)
        except NotExportable as exc:
            return _skip(trajectory, str(exc))
        if not completion:
            return _skip(trajectory, "no assistant message: no completion")
        return {"prompt": prompt, "completion": completion, "label": label, "tools": tool_specs(trajectory),
                "trajectory_id": trajectory.trajectory_id, "reward": trajectory.reward}  # fmt: skip


class TrlGrpo(_Trl, PerTrajectory):
    name = "trl-grpo"
    summary = "TRL GRPO: prompt-only rows with ground_truth, task_key, reward, outcome, AIR per turn"
    columns: ClassVar[dict[str, str]] = {
        "prompt": "chat",
        "ground_truth": "string",
        "task_key": "string",
        "reward": "float",
        "outcome": "string",
        "air": "floats",
        "air_total": "float",
        "trajectory_id": "string",
    }

    def parts(self) -> frozenset[str]:
        return frozenset({TURN_DETAILS})  # AIR per turn

    def row(self, trajectory: Trajectory) -> Row | Skip:
        try:
            opening = prompt_of(trajectory)
        except NotExportable as exc:
            return _skip(trajectory, str(exc))
        air = [turn.air for turn in trajectory.turns]
        return {"prompt": opening,
                "ground_truth": final_answer(trajectory) if trajectory.outcome == "success" else None,
                "task_key": trajectory.task_key, "reward": trajectory.reward, "outcome": trajectory.outcome,
                "air": air, "air_total": math.fsum(air), "trajectory_id": trajectory.trajectory_id}  # fmt: skip


FORMATS = (TrlSft, TrlDpo, TrlKto, TrlGrpo)
