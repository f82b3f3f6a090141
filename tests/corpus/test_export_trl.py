"""The TRL exports, read back by TRL's own path: ``datasets.load_dataset("parquet")``, then
``trl.data_utils.is_conversational``, ``maybe_extract_prompt`` and ``apply_chat_template`` with a tokenizer
built here. Every exported conversation equals what the agents emitted, message for message: tool names,
arguments as the dicts that were sent, and a redacted message still redacted.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from datasets import Features, Json, List, Value, load_dataset
from trl.data_utils import apply_chat_template, is_conversational, maybe_extract_prompt

from tests.support import trl_corpus
from tests.support.scored_landing import land_events
from tests.support.trl_corpus import Emitted
from trajstream.assembled import task_key
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.export.formats import known_formats
from trajstream.corpus.export.formats.trl import TrlDpo, TrlGrpo, TrlKto, TrlSft
from trajstream.corpus.read import CorpusFilter, CorpusReader, Trajectory
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for
from trajstream_sdk.events import ToolCall

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> tuple[dict[str, Emitted], list[Trajectory]]:
    settings = Settings(home=tmp_path_factory.mktemp("trl"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"trl{uuid.uuid4().hex[:10]}")  # fmt: skip
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    emitted, events = trl_corpus.emit(codec)
    land_events(settings, client, codec, events)
    reader = CorpusReader(client, settings, batch=3)
    read = list(reader.trajectories(CorpusFilter()))
    assert reader.skipped == [] and len(read) == len(emitted)
    return {e.trajectory_id: e for e in emitted}, read


def _load(paths: list[Path]) -> list[dict[str, Any]]:
    return list(load_dataset("parquet", data_files=[str(p) for p in paths], split="train"))


def _tools(*emitted: Emitted) -> list[dict[str, Any]]:
    names = dict.fromkeys(m.content.name for e in emitted for m in e.messages if isinstance(m.content, ToolCall))
    return [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in names]


def _by_task(emitted: dict[str, Emitted], task: str, outcome: str) -> list[Emitted]:
    return [e for e in emitted.values() if e.task == task and e.outcome == outcome]


def test_the_formats_are_registered() -> None:
    assert {"trl-sft", "trl-dpo", "trl-kto", "trl-grpo"} <= set(known_formats())


def test_sft_round_trip(corpus: tuple[dict[str, Emitted], list[Trajectory]], tmp_path: Path) -> None:
    emitted, read = corpus
    paths, skips = trl_corpus.write(TrlSft(), read, tmp_path, shard_rows=2)
    # Four successes of "Refund order 7/8/10" and the partial (reward 0.5, at the threshold): three shards.
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [f"trl-sft/{i:05d}.parquet" for i in range(3)]
    reasons = {emitted[s.trajectory_id].task + "/" + emitted[s.trajectory_id].outcome: s.reason for s in skips}
    assert reasons == {
        "Refund order 7/failure": "reward under the weight threshold: nothing to learn from it",
        "Refund order 8/failure": "reward under the weight threshold: nothing to learn from it",
        "refund order 10!/failure": "reward under the weight threshold: nothing to learn from it",
        "Sum two numbers/success": "tool call 'add' has arguments that are not a JSON object; TRL needs a dict",
    }
    rows = _load(paths)
    assert len(rows) == 5 and set(rows[0]) == {"messages", "tools", "trajectory_id"}
    tok = trl_corpus.tokenizer()
    for row in rows:
        e = emitted[row["trajectory_id"]]
        assert row["messages"] == e.expected  # message for message, arguments as the dicts that were sent
        assert row["tools"] == _tools(e)
        assert row["messages"][4] == {"role": "user", "content": "[redacted: pii]"}  # still redacted
        assert row["messages"][2]["content"] == "Let me look it up." and row["messages"][2]["tool_calls"]
        assert is_conversational(row) and maybe_extract_prompt(row) == row
        text = apply_chat_template(row, tok, tools=row["tools"])["text"]
        assert text == tok.apply_chat_template(e.expected, tools=_tools(e), tokenize=False)
        n = e.task.split()[-1]
        assert f'<call> lookup_order {{"order_id": {n}, "note": "ünïcode"}} </call>' in text
        assert "<|tool|> [lookup_order] " in text and "<think> the order must be found first </think>" in text


def test_dpo_pairs_a_success_with_a_failure_of_its_task_group(
    corpus: tuple[dict[str, Emitted], list[Trajectory]], tmp_path: Path
) -> None:
    emitted, read = corpus
    paths, skips = trl_corpus.write(TrlDpo(), read, tmp_path, shard_rows=100)
    rewards = {t.trajectory_id: t.reward for t in read}
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["trl-dpo/00000.parquet"]
    rows = _load(paths)
    assert [r["task_key"] for r in rows] == ["refund order 7", "refund order 8"]
    reasons = {(emitted[s.trajectory_id].task, s.reason) for s in skips}
    alone = "the only trajectory of its task group with this prompt: nothing to pair with"
    assert len(skips) == len(reasons) == 5
    assert reasons == {
        ("Refund order 7", "neither the highest nor the lowest reward of its task group and prompt"),
        ("Refund order 9", alone),
        ("Sum two numbers", alone),
        ("Refund order 10", alone),  # its group's failure was asked differently
        ("refund order 10!", alone),
    }
    tok = trl_corpus.tokenizer()
    for row in rows:
        good, bad = emitted[row["chosen_trajectory_id"]], emitted[row["rejected_trajectory_id"]]
        assert (good.outcome, bad.outcome, good.task) == ("success", "failure", bad.task)
        assert (row["chosen_reward"], row["rejected_reward"]) == (rewards[good.trajectory_id],
                                                                  rewards[bad.trajectory_id])  # fmt: skip
        assert row["chosen_reward"] >= 0.5 > row["rejected_reward"]
        assert row["prompt"] == good.expected[:2] == bad.expected[:2]  # system, then the user's task
        # Each one's first reply, as one message: text and call together; no tool result or user text.
        assert row["chosen"] == good.expected[2:3] and row["rejected"] == bad.expected[2:3]
        assert row["chosen"][0]["content"] == "Let me look it up."
        assert row["rejected"][0]["tool_calls"][0]["function"]["arguments"] == {
            "order": {"id": int(good.task.split()[-1]), "flags": [True, None]}
        }
        assert row["tools"] == _tools(good, bad)
        assert is_conversational(row) and maybe_extract_prompt(row) == row
        # TRL finds the same prompt when it has to extract it from whole conversations.
        implicit = {"chosen": row["prompt"] + row["chosen"], "rejected": row["prompt"] + row["rejected"]}
        assert maybe_extract_prompt(implicit) == {k: row[k] for k in ("prompt", "chosen", "rejected")}
        text = apply_chat_template(row, tok, tools=row["tools"])
        assert text["prompt"] + text["chosen"] == tok.apply_chat_template(
            good.expected[:3], tools=row["tools"], tokenize=False
        )
        assert text["prompt"] + text["rejected"] == tok.apply_chat_template(
            bad.expected[:3], tools=row["tools"], tokenize=False
        )
        assert text["rejected"].startswith(" <call> cancel_order ")


@pytest.mark.parametrize("label_by", ["reward", "outcome"])
def test_kto_labels(corpus: tuple[dict[str, Emitted], list[Trajectory]], tmp_path: Path, label_by: Any) -> None:
    emitted, read = corpus
    paths, skips = trl_corpus.write(TrlKto(label_by=label_by), read, tmp_path, shard_rows=100)
    rewards = {t.trajectory_id: t.reward for t in read}
    rows = _load(paths)
    skipped = {emitted[s.trajectory_id].task: s.reason for s in skips}
    partial = {"Refund order 9": "outcome 'partial' is neither desirable nor undesirable"}
    assert skipped == {"Sum two numbers": "tool call 'add' has arguments that are not a JSON object; TRL needs "
                                          "a dict", **(partial if label_by == "outcome" else {})}  # fmt: skip
    assert len(rows) == len(emitted) - len(skipped)
    tok = trl_corpus.tokenizer()
    for row in rows:
        e = emitted[row["trajectory_id"]]
        assert row["label"] is (rewards[e.trajectory_id] >= 0.5) is (e.outcome != "failure")  # partial: 0.5
        assert row["reward"] == rewards[e.trajectory_id]
        assert row["prompt"] == e.expected[:2] and row["completion"] == e.expected[2:3]
        assert is_conversational(row) and maybe_extract_prompt(row) == row
        text: dict[str, Any] = apply_chat_template(row, tok, tools=row["tools"])
        assert text["label"] is row["label"]
        assert text["prompt"] + text["completion"] == tok.apply_chat_template(
            e.expected[:3], tools=row["tools"], tokenize=False
        )


def test_grpo_prompts_carry_what_a_reward_function_needs(
    corpus: tuple[dict[str, Emitted], list[Trajectory]], tmp_path: Path
) -> None:
    emitted, read = corpus
    paths, skips = trl_corpus.write(TrlGrpo(), read, tmp_path, shard_rows=3)
    assert skips == [] and len(paths) == 3  # 9 rows, 3 a shard
    rows = _load(paths)
    assert len(rows) == len(emitted)
    # GRPOTrainer hands every column but the prompt to the reward functions, as keyword arguments.
    assert set(rows[0]) - {"prompt"} == {"ground_truth", "task_key", "reward", "outcome", "air", "air_total",
                                          "trajectory_id"}  # fmt: skip
    by_id = {t.trajectory_id: t for t in read}
    tok = trl_corpus.tokenizer()
    truths = {
        "Sum two numbers": "5",
        "Refund order 7": "Refunded.",
        "Refund order 8": "Refunded.",
        "Refund order 10": "Refunded.",
    }
    for row in rows:
        e, t = emitted[row["trajectory_id"]], by_id[row["trajectory_id"]]
        assert row["prompt"] == e.expected[:2]
        assert row["ground_truth"] == (truths[e.task] if e.outcome == "success" else None)
        assert (row["task_key"], row["outcome"]) == (task_key(e.task), e.outcome)
        assert row["reward"] == t.reward and (row["reward"] >= 0.5) is (e.outcome != "failure")
        assert row["air"] == [turn.air for turn in t.turns] and len(row["air"]) == 2
        assert row["air_total"] == pytest.approx(sum(row["air"]))
        assert is_conversational(row) and maybe_extract_prompt(row) == row
        prompt = apply_chat_template(row, tok)["prompt"]
        assert prompt == tok.apply_chat_template(e.expected[:2], tokenize=False, add_generation_prompt=True)
        assert prompt.endswith("</s> <|assistant|>")


def test_an_empty_shard_is_written_with_the_columns(tmp_path: Path) -> None:
    """An export that selected nothing still writes its one shard, with the format's columns and features
    (datasets 5.0.1 estimated its size by dividing by the row count). load_dataset itself refuses a dataset
    with no rows, and fails on an empty file among others: a writer writes an empty shard only when it has
    nothing at all."""
    empty = tmp_path / "00000.parquet"
    assert TrlSft().write_shard([], empty) == 0
    features = Features.from_arrow_schema(pq.read_schema(empty))
    assert features == Features({"messages": List(Json()), "tools": List(Json()), "trajectory_id": Value("string")})
    assert pq.read_table(empty).num_rows == 0
