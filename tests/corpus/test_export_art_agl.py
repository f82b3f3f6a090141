"""The art and agent-lightning exports of a corpus landed through the real pipeline, read back by the platforms'
own code (anchors/art, anchors/agentlightning) and checked against what was emitted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.anchors import run_anchor
from tests.support.art_agl_corpus import ASSISTANT_TEXT, TURN_LOGPROBS, emit
from tests.support.scored_landing import land_events
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats.agent_lightning import AgentLightning
from trajstream.corpus.export.formats.art import ART
from trajstream.corpus.export.formats.base import Skip
from trajstream.corpus.read import CorpusFilter, CorpusReader, Trajectory
from trajstream.grouping import Sample, make_groups
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for

pytestmark = pytest.mark.integration

TASKS = ["Refund a broken order", "Cancel my subscription", "Refund a broken order", "Cancel my subscription",
         "Refund a broken order"]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[tuple[Settings, list[Trajectory]]]:
    settings = Settings(home=tmp_path_factory.mktemp("art"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"aa{uuid.uuid4().hex[:10]}")  # fmt: skip
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    events: list[tuple[str, bytes]] = []
    for i, task in enumerate(TASKS):
        events += emit(codec, task, "success" if i % 2 == 0 else "failure")[1]
    land_events(settings, client, codec, events)
    reader = CorpusReader(client, settings)
    trajectories = list(reader.trajectories(CorpusFilter()))
    assert len(trajectories) == len(TASKS) and reader.skipped == []
    yield settings, trajectories


def _groups_of(rows: list[Any]) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for row in rows:
        groups.setdefault(row["group_index"], []).append(json.loads(row["metadata"])["trajectory_id"])
    return [groups[i] for i in sorted(groups)]


def _trainer_groups(trajectories: list[Trajectory], by: Any, window: int) -> list[list[str]]:
    out = []
    for at in range(0, len(trajectories), window):
        samples = [Sample(t.trajectory_id, t.version, t.task_key, t.reward, frozenset(t.entities))
                   for t in trajectories[at : at + window]]  # fmt: skip
        out += [[m.trajectory_id for m in g.members] for g in make_groups(samples, by, 0.3)]
    return out


@pytest.mark.timeout(600)
def test_art_round_trips_through_arts_reader(corpus: tuple[Settings, list[Trajectory]], tmp_path: Path) -> None:
    settings, trajectories = corpus
    fmt = ART(ExportSettings.extend(settings))
    rows = list(fmt.rows(trajectories))
    assert not [r for r in rows if isinstance(r, Skip)]
    path = tmp_path / fmt.shard_name(0)
    path.parent.mkdir(parents=True)
    assert fmt.write_shard(rows, path) == len(trajectories)  # type: ignore[arg-type]
    out = run_anchor("art", "load.py", path)

    # ART's own writer, given the groups its models restored, writes the same flat columns.
    assert out["writer"] == {"rows": len(trajectories), "differences": []}
    # Groups: as the trainer forms them (trajstream.grouping), here by task over one window.
    expected = _trainer_groups(trajectories, "task", 64)
    assert [[t["metadata"]["trajectory_id"] for t in g["trajectories"]] for g in out["v2"]] == expected
    assert len(expected) == 2 and sorted(map(len, expected)) == [2, 3]
    by_id = {t.trajectory_id: t for t in trajectories}
    for group in out["v2"]:
        members = [by_id[t["metadata"]["trajectory_id"]] for t in group["trajectories"]]
        assert group["metadata"] == {"group_key": members[0].task_key, "group_by": "task"}
        assert {m.task_key for m in members} == {members[0].task_key}
        for read, t in zip(group["trajectories"], members, strict=True):
            assert read["reward"] == t.reward and read["metadata"]["agent_id"] == "agent-art"
            assert read["metadata"]["model_version"] == "v3" and read["metadata"]["version"] == t.version
            assert read["metrics"]["air/0"] == t.turns[0].air and read["metrics"]["turns"] == 3
            assert {k: v for k, v in read["metrics"].items() if k.startswith("reward/")} == {
                f"reward/{k}": v for k, v in t.components.items()
            }
            _check_art_messages(read["messages"], t)
    # ART 0.5.18's own (v1) reader reads the same conversation from the flat columns, without the Choices.
    v1 = [m for g in out["v1"] for t in g for m in t["messages"]]
    v2 = [m for g in out["v2"] for t in g["trajectories"] for m in t["messages"]]
    assert [(m["role"], m["content"]) for m in v1] == [(m["role"], m["content"]) for m in v2]
    assert "logprobs" not in json.dumps(out["v1"])  # the older layout's reader loses them (the known trap)


def _check_art_messages(messages: list[dict[str, Any]], t: Trajectory) -> None:
    roles = [(m["role"], m["trainable"]) for m in messages]
    assert roles == [("system", False), ("user", False), ("assistant", True), ("tool", False), ("user", False),
                     ("assistant", True), ("tool", False), ("assistant", True)]  # fmt: skip
    assert messages[0]["content"] == "You are a careful support agent." == t.system_message
    assert messages[1]["content"] == t.turns[0].messages[0].content["text"]
    assert messages[4]["content"] == "[redacted: pii]"  # stays redacted: no text invented
    assert messages[3]["content"] == t.turns[1].messages[0].content["result"] and messages[3]["tool_call_id"] == "c1"
    replies = [m for m in messages if m["trainable"]]
    assert [m["content"] for m in replies] == ASSISTANT_TEXT
    assert [c["function"]["name"] for c in replies[0]["tool_calls"]] == ["lookup_order"]
    assert json.loads(replies[1]["tool_calls"][0]["function"]["arguments"]) == {"order_id": 7, "amount": 12.5}
    # Log-probabilities: where recorded, as recorded; token ids as ART reads them (token_id:N) only where every
    # id was recorded; none where the turn recorded none.
    for reply, recorded in zip(replies, TURN_LOGPROBS, strict=True):
        if recorded is None:
            assert reply["logprobs"] is None
            continue
        all_ids = all(tok is not None for _, _, tok in recorded)
        assert reply["logprobs"] == [
            {"token": f"token_id:{tok}" if all_ids else text, "logprob": lp, "text": text} for text, lp, tok in recorded
        ]


def test_art_groups_follow_the_trainers_window_and_rule(corpus: tuple[Settings, list[Trajectory]]) -> None:
    settings, trajectories = corpus
    for by, window in (("task", 2), ("entities", 64), ("entities", 3)):
        fmt = ART(ExportSettings.extend(settings, export_group_by=by, export_group_window=window))
        rows = [r for r in fmt.rows(trajectories) if not isinstance(r, Skip)]
        assert _groups_of(rows) == _trainer_groups(trajectories, by, window), (by, window)
        assert [r["trajectory_index"] for r in rows if r["group_index"] == 0] == list(range(len(_groups_of(rows)[0])))


# Agent Lightning v1's shapes, from agentlightning/schemas.py at microsoft/agent-lightning c632d8dd (v1 is not
# installable here: PyPI has 0.3.0), and the route that serves them as triplets (server/routes/events.py).
class V1Event(BaseModel):
    event_type: str
    rollout_id: str
    attempt_id: str
    timestamp: float
    data: dict[str, Any]


class V1ModelRequestData(BaseModel):
    model: str
    model_version: int | None = None
    request: dict[str, Any]
    adjusted_params: dict[str, Any] | None = None
    response: dict[str, Any]
    latency_ms: float | None = None
    http_status: int | None = None
    status: str = "ok"
    retry_count: int = 0
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


class V1RewardData(BaseModel):
    value: float
    message: str | None = None
    source: str | None = None
    reason: str | None = None


class V1RolloutCreate(BaseModel):
    input: Any
    is_train: bool = True
    config: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    rollout_id: str | None = None


def v1_triplet_data(data: dict[str, Any]) -> dict[str, Any]:
    """What v1's ``GET /api/rollouts/{id}/events?format=triplet`` gives of a model_request (``_trim_model_request``
    and ``_extract_choice_log_probs``, non-streaming dict responses)."""
    response = data["response"]
    choice = response["choices"][0]
    lp = choice.get("logprobs")
    logprobs = [float(c["logprob"]) for c in lp["content"]] if isinstance(lp, dict) else None
    return {"prompt_token_ids": response.get("prompt_token_ids", []), "response_token_ids": choice.get("token_ids", []),
            "response_log_probs": logprobs, "server": data.get("server")}  # fmt: skip


@pytest.mark.timeout(600)
def test_agent_lightning_rollouts_validate_and_load(corpus: tuple[Settings, list[Trajectory]], tmp_path: Path) -> None:
    settings, trajectories = corpus
    rows = list(AgentLightning(ExportSettings.extend(settings)).rows(trajectories))
    assert not [r for r in rows if isinstance(r, Skip)]
    path = tmp_path / "agent-lightning.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    by_id = {t.trajectory_id: t for t in trajectories}
    for row in map(json.loads, path.read_text(encoding="utf-8").splitlines()):
        rollout = V1RolloutCreate.model_validate(row["rollout"])
        t = by_id[rollout.metadata["trajectory_id"]]  # type: ignore[index]
        assert row["state"] == ("succeeded" if t.outcome in ("success", "failure") else "failed")
        events = [V1Event.model_validate(e) for e in row["events"]]
        assert {e.rollout_id for e in events} == {rollout.rollout_id} and {e.attempt_id for e in events} == {"0"}
        requests = [V1ModelRequestData.model_validate(e.data) for e in events if e.event_type == "model_request"]
        rewards = [V1RewardData.model_validate(e.data) for e in events if e.event_type == "reward"]
        assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
        # Per turn: token ids only where every id was recorded, log-probabilities where recorded, nothing invented.
        served = [v1_triplet_data(e.data) for e in events if e.event_type == "model_request"]
        for triplet, recorded in zip(served, TURN_LOGPROBS, strict=True):
            ids = [tok for _, _, tok in recorded] if recorded is not None else []
            assert triplet["response_token_ids"] == (ids if None not in ids else [])
            assert triplet["response_log_probs"] == ([lp for _, lp, _ in recorded] if recorded is not None else None)
            assert triplet["prompt_token_ids"] == [] and triplet["server"] == {"model": "m", "version": "v3"}
        assert [r.response["choices"][0]["message"].get("content") for r in requests] == ASSISTANT_TEXT
        assert requests[1].request["messages"][-1] == {"role": "user", "content": "[redacted: pii]"}
        assert requests[0].request["messages"][0] == {"role": "system", "content": t.system_message}
        # AIR per turn, then the trajectory's reward last (v1's trainer gives a rollout's last reward to its last
        # triplet).
        assert [(r.source, r.value) for r in rewards[:-1]] == [("air", turn.air) for turn in t.turns]
        assert rewards[-1].value == t.reward and rewards[-1].source != "air" and rewards[-1].reason == t.outcome

    # agentlightning 0.3.0's own store and triplet adapter read the same rollouts.
    out = run_anchor("agentlightning", "load.py", path)
    assert len(out["rollouts"]) == len(trajectories)
    for loaded in out["rollouts"]:
        t = by_id[loaded["rollout_id"].rsplit(".v", 1)[0]]
        assert loaded["spans"] == 2 * len(t.turns) + 1
        triplets = loaded["triplets"]
        assert [tr["response_id"] for tr in triplets] == [f"{loaded['rollout_id']}.turn-{i}" for i in range(3)]
        assert [tr["reward"] for tr in triplets] == [turn.air for turn in t.turns]  # each AIR on its own call
        for tr, recorded in zip(triplets, TURN_LOGPROBS, strict=True):
            ids = [tok for _, _, tok in recorded] if recorded is not None else []
            assert tr["response_token_ids"] == (ids if None not in ids else [])
            logprobs = [(c["token"], c["logprob"]) for c in tr["logprobs"]] if tr["logprobs"] is not None else None
            assert logprobs == ([(text, lp) for text, lp, _ in recorded] if recorded is not None else None)
