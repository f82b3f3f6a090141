"""openai-dpo, fireworks-dpo, openai-rft and fireworks-rft from a corpus landed by the real scoring and sink:
the pairs are the right trajectories, every row says what the agents emitted, the rows are valid for the
`openai` package's types, and eval-protocol's own adapter loads the RFT rows (the Fireworks anchor)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletionAssistantMessageParam, ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import TypeAdapter

from tests.support.anchors import run_anchor
from tests.support.export_openai_corpus import SYSTEM, Emitted, emit_corpus
from tests.support.scored_landing import land_events
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.export.formats.base import Row, Skip
from trajstream.corpus.export.formats.preferences import FireworksDPO, OpenAIDPO
from trajstream.corpus.export.formats.rft import FireworksRFT, OpenAIRFT
from trajstream.corpus.export.shards import write_jsonl
from trajstream.corpus.read import CorpusFilter, CorpusReader, Trajectory
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for
from trajstream_sdk.events import Message, Redacted, Text, ToolCall

pytestmark = pytest.mark.integration

MESSAGE = TypeAdapter(ChatCompletionMessageParam)
ASSISTANT = TypeAdapter(ChatCompletionAssistantMessageParam)
TOOL = TypeAdapter(ChatCompletionToolParam)


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path
) -> Iterator[tuple[dict[str, Emitted], list[Trajectory]]]:
    settings = Settings(home=tmp_path_factory.mktemp("home"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"x{uuid.uuid4().hex[:10]}")  # fmt: skip
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    emitted, events = emit_corpus(codec)
    land_events(settings, client, codec, events)
    reader = CorpusReader(client, settings, batch=3)
    read = list(reader.trajectories(CorpusFilter()))
    assert reader.skipped == [] and len(read) == len(emitted)
    yield {e.trajectory_id: e for e in emitted}, read


def _said(message: Message) -> dict[str, Any]:
    """What the agent sent, as the export must give it: text, the redaction placeholder, or a call."""
    content = message.content
    if isinstance(content, ToolCall):
        return {"call": (content.name, content.call_id, content.arguments)}
    if isinstance(content, Redacted):
        return {"content": f"[redacted: {content.reason}]"}
    assert isinstance(content, Text)
    return {"content": content.text}


def _exported(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An exported chat message as _said's: an assistant message with calls is its text, then each call."""
    out = [{"content": message["content"]}] if "content" in message else []
    for call in message.get("tool_calls", []):
        assert call["type"] == "function" and isinstance(call["function"]["arguments"], str)  # a JSON string
        out.append({"call": (call["function"]["name"], call["id"], json.loads(call["function"]["arguments"]))})
    return out


def _prompt(e: Emitted) -> list[Message]:
    """The emitted messages before the first assistant message."""
    out = []
    for m in (m for turn in e.turns for m in turn):
        if m.role == "assistant":
            break
        out.append(m)
    return out


def _split(items: list[Row | Skip]) -> tuple[list[Row], dict[str, str]]:
    rows = [r for r in items if not isinstance(r, Skip)]
    skips = {s.trajectory_id: s.reason for s in items if isinstance(s, Skip)}
    return rows, skips


def test_dpo_pairs_the_highest_against_the_lowest_reward_of_each_task_group(
    corpus: tuple[dict[str, Emitted], list[Trajectory]],
) -> None:
    emitted, read = corpus
    rows, skips = _split(list(OpenAIDPO().rows(read)))
    by_group: dict[str, list[Trajectory]] = {}
    for t in read:
        by_group.setdefault(emitted[t.trajectory_id].group, []).append(t)
    # the rows come sorted by task key: "book a flight to oslo" before "refund order 7, ..."
    assert len(rows) == 2
    for row, group in zip(rows, ("flight", "refund"), strict=True):
        members = by_group[group]
        best = max(members, key=lambda t: t.reward)
        worst = min(members, key=lambda t: t.reward)
        assert best.trajectory_id.startswith(f"{group}-0-") and best.reward > worst.reward
        for output, t in (("preferred_output", best), ("non_preferred_output", worst)):
            e = emitted[t.trajectory_id]
            first_reply = [m for m in e.turns[0] if m.role == "assistant"]  # the first model call's reply
            assert [x for m in row[output] for x in _exported(m)] == [_said(m) for m in first_reply]
            assert all(m["role"] == "assistant" and "weight" not in m for m in row[output])
            for m in row[output]:
                ASSISTANT.validate_python(m)
        prompt = _prompt(emitted[best.trajectory_id])
        assert row["input"]["messages"] == [{"role": "system", "content": SYSTEM}] + [
            {"role": m.role, **_said(m)} for m in prompt
        ]
        for m in row["input"]["messages"]:
            MESSAGE.validate_python(m)
        for tool in row["input"]["tools"]:
            TOOL.validate_python(tool)
    flight, refund = rows
    assert flight["input"]["parallel_tool_calls"] is True  # flight-0 made two calls in one model call
    assert refund["input"]["parallel_tool_calls"] is False
    assert {"role": "user", "content": "[redacted: pii]"} in refund["input"]["messages"]  # still redacted
    assert [t["function"]["name"] for t in refund["input"]["tools"]] == ["lookup_order"]

    reasons = {tid.split("-")[0] + tid.split("-")[1]: reason for tid, reason in skips.items()}
    assert set(reasons) == {"refund1", "flight2", "cancel0", "close0", "close1"}
    assert reasons["refund1"].startswith("neither the highest nor the lowest")
    assert reasons["cancel0"].startswith("the only trajectory")
    assert "margin" in reasons["close0"] and "margin" in reasons["close1"]

    # Fireworks: the same rows, without input.parallel_tool_calls
    fw_rows, fw_skips = _split(list(FireworksDPO().rows(read)))
    assert fw_skips == skips
    for fw, oa in zip(fw_rows, rows, strict=True):
        assert "parallel_tool_calls" not in fw["input"]
        assert fw == {**oa, "input": {k: v for k, v in oa["input"].items() if k != "parallel_tool_calls"}}
    # a margin between the two groups' spreads (final rewards 1.0 - 0.0 and 0.9 - 0.2) leaves only the refund pair
    spread = {g: max(t.reward for t in ts) - min(t.reward for t in ts) for g, ts in by_group.items()}
    assert spread["refund"] > spread["flight"]
    wide, _ = _split(list(OpenAIDPO(margin=(spread["refund"] + spread["flight"]) / 2).rows(read)))
    assert wide == [refund]


def test_rft_rows_end_on_a_user_message_with_the_graders_fields_and_load_in_eval_protocol(
    corpus: tuple[dict[str, Emitted], list[Trajectory]], tmp_path: Path
) -> None:
    emitted, read = corpus
    rows, skips = _split(list(OpenAIRFT().rows(read)))
    successes = {t.trajectory_id for t in read if emitted[t.trajectory_id].outcome == "success"}
    assert {r["trajectory_id"] for r in rows} == successes and len(rows) == len(successes) == 6
    assert set(skips) == {t.trajectory_id for t in read} - successes
    assert all(reason.startswith("not a success") for reason in skips.values())
    got = {t.trajectory_id: t for t in read}
    for row in rows:
        e, t = emitted[row["trajectory_id"]], got[row["trajectory_id"]]
        prompt = _prompt(e)
        while prompt and prompt[-1].role != "user":
            prompt.pop()
        expected = [{"role": m.role, **_said(m)} for m in prompt] or [{"role": "user", "content": e.task}]
        assert row["messages"] == [{"role": "system", "content": SYSTEM}, *expected]
        assert row["messages"][-1]["role"] == "user"
        for m in row["messages"]:
            MESSAGE.validate_python(m)
        final = [m for turn in e.turns for m in turn if m.role == "assistant"][-1]
        assert row["ground_truth"] == _said(final)["content"]
        assert (row["task_id"], row["reward"]) == (t.task_key, t.reward)
    cancel = next(r for r in rows if r["trajectory_id"].startswith("cancel-"))
    assert cancel["messages"][-1] == {"role": "user", "content": "Cancel my subscription"}  # no user message first
    refund = next(r for r in rows if r["trajectory_id"].startswith("refund-"))
    assert refund["messages"][2] == {"role": "user", "content": "[redacted: pii]"}

    fireworks, fw_skips = _split(list(FireworksRFT().rows(read)))
    assert fw_skips == skips
    paths = [tmp_path / "openai-rft.jsonl", tmp_path / "fireworks-rft.jsonl"]
    write_jsonl(rows, paths[0])
    write_jsonl(fireworks, paths[1])
    loaded = run_anchor("eval-protocol", "load_rft.py", *paths)
    for file, exported in zip(loaded["files"], (rows, fireworks), strict=True):
        assert file["count"] == len(exported)
        for back, row in zip(file["rows"], exported, strict=True):
            assert back["messages"] == row["messages"] and back["last_role"] == "user"
            assert back["ground_truth"] == row["ground_truth"]
            assert back["tools"] == [tool["function"]["name"] for tool in row["tools"]]
    for back, row in zip(loaded["files"][1]["rows"], rows, strict=True):  # fireworks: ours in input_metadata
        assert back["row_id"] == row["trajectory_id"] and back["extra"] == {}
        assert back["dataset_info"] == {k: row[k] for k in ("task_id", "reward", "trajectory_id")}
    for back, row in zip(loaded["files"][0]["rows"], rows, strict=True):  # openai: EvaluationRow keeps extras
        assert back["extra"] == {k: row[k] for k in ("task_id", "reward", "trajectory_id")}
