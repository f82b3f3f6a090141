"""`trajstream export`: filters, atomic files, the manifest, skips with reasons, and openai-sft rows that the
`openai` package's own types accept and that give back the emitted conversation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter

from tests.support.export_corpus import Emitted, emit
from tests.support.scored_landing import land_events
from trajstream.cli import main
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.export import run as export_run
from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats import known_formats, openai_sft
from trajstream.corpus.export.formats.base import PerTrajectory, Row, Skip
from trajstream.corpus.export.formats.openai_sft import NOTHING_LEARNED, REDACTED_CALL
from trajstream.corpus.read import CorpusFilter, Trajectory
from trajstream.errors import TrajstreamError
from trajstream.parts import pid_file
from trajstream_sdk.codec import codec_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Corpus:
    def __init__(self, settings: ExportSettings, client: Any, emitted: list[Emitted]):
        self.settings, self.client, self.emitted = settings, client, emitted
        self.by_marker = {e.marker: e for e in emitted}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Corpus:
    home = tmp_path_factory.mktemp("export-home")
    settings = ExportSettings(home=home, clickhouse_dsn=f"chdb://{chdb_dir}",
                              clickhouse_database=f"x{uuid.uuid4().hex[:10]}")  # fmt: skip
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    emitted, events = [], []
    plan: list[tuple[str, dict[str, Any]]] = [
        ("s1", {}),
        ("s2", {"agent": "agent-b"}),
        ("s3", {"domain": "billing", "tags": ("vip",)}),
        ("s4", {"task": "Cancel a subscription"}),
        ("f1", {"outcome": "failure"}),
        ("r1", {"redact_call": True}),
    ]
    for marker, kw in plan:
        e, ev = emit(codec, marker, **kw)
        emitted.append(e)
        events += ev
    land_events(settings, client, codec, events)
    return Corpus(settings, client, emitted)


def _export(corpus: Corpus, out: Path, filters: CorpusFilter | None = None, **kw: Any) -> dict[str, Any]:
    return export_run.export(
        corpus.settings, "openai-sft", out, filters or CorpusFilter(), batch=2, client=corpus.client, **kw
    )


def _rows(out: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for f in manifest["files"] for line in (out / f["path"]).read_text().splitlines()]


def _markers(rows: Iterable[dict[str, Any]]) -> set[str]:
    users = (m["content"] for r in rows for m in r["messages"] if m["role"] == "user")
    return {u.split()[2].rstrip(",") for u in users if u.startswith("Refund order ")}


def test_filters_select_the_right_trajectories(corpus: Corpus, tmp_path: Path) -> None:
    def exported(name: str, f: CorpusFilter) -> set[str]:
        out = tmp_path / name
        return _markers(_rows(out, _export(corpus, out, f)))

    assert exported("all", CorpusFilter()) == {"s1", "s2", "s3", "s4"}  # f1: nothing learned; r1: redacted call
    assert exported("agent", CorpusFilter(agents=("agent-b",))) == {"s2"}
    assert exported("domain", CorpusFilter(domains=("billing",))) == {"s3"}
    assert exported("tag", CorpusFilter(tags=("vip",))) == {"s3"}
    assert exported("fail", CorpusFilter(outcomes=("failure",))) == set()
    rows = corpus.client.query(
        f"SELECT task_key FROM {corpus.settings.clickhouse_database}.trajectories WHERE trajectory_id = "
        "{t:String}", parameters={"t": corpus.by_marker["s4"].trajectory_id}).result_rows  # fmt: skip
    assert exported("task", CorpusFilter(task_keys=(rows[0][0],))) == {"s4"}
    assert exported("min", CorpusFilter(min_reward=0.5)) == {"s1", "s2", "s3", "s4"}
    assert exported("max", CorpusFilter(max_reward=0.5)) == set()
    future = export_run.parse_time("2999-01-01T00:00")
    assert exported("until", CorpusFilter(until_ms=future, since_ms=export_run.parse_time("1h"))) == {
        "s1", "s2", "s3", "s4"}  # fmt: skip
    assert exported("since", CorpusFilter(since_ms=future)) == set()


def test_the_manifest_counts_skips_and_hashes_match_the_files(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "o"
    manifest = _export(corpus, out)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["format"] == "openai-sft" and manifest["filters"] == CorpusFilter().as_json()
    counts = manifest["counts"]
    assert counts == {"read": 6, "exported": 4, "skipped": {NOTHING_LEARNED: 1, REDACTED_CALL: 1}}
    assert manifest["skipped_examples"][REDACTED_CALL] == [f"{corpus.by_marker['r1'].trajectory_id}@1"]
    assert sum(f["rows"] for f in manifest["files"]) == counts["exported"]
    for f in manifest["files"]:
        data = (out / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        assert len(data.splitlines()) == f["rows"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f["path"] for f in manifest["files"]), "manifest.json"])
    with pytest.raises(TrajstreamError, match="not an empty directory"):
        _export(corpus, out)  # never mixed with another export's files


class _FailsOnThird(PerTrajectory):
    name = "fails-on-third"
    summary = "a format that raises on its third trajectory"
    kind = "jsonl"
    shard_rows = 1  # one file per row: two complete files exist when it fails

    def __init__(self, settings: ExportSettings | None = None):
        super().__init__(settings)
        self.seen = 0

    def row(self, trajectory: Trajectory) -> Row | Skip:
        self.seen += 1
        if self.seen == 3:
            raise RuntimeError("boom on the third")
        return {"id": trajectory.trajectory_id}


def test_a_run_failing_midway_leaves_no_file_and_no_manifest(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_run, "known_formats", lambda: {"fails-on-third": _FailsOnThird})
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="boom on the third"):
        export_run.export(corpus.settings, "fails-on-third", out, CorpusFilter(), batch=2, client=corpus.client)
    assert list(out.rglob("*")) == []


# The keys OpenAI's fine-tuning accepts in each role's message (TRL's tool name and reasoning are not among them).
OPENAI_KEYS = {"system": {"role", "content"}, "user": {"role", "content"}, "tool": {"role", "tool_call_id", "content"},
               "assistant": {"role", "content", "tool_calls", "weight"}}  # fmt: skip


def test_openai_sft_rows_are_the_openai_types_and_give_back_the_conversation(corpus: Corpus, tmp_path: Path) -> None:
    from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

    messages_type: TypeAdapter[Any] = TypeAdapter(ChatCompletionMessageParam)
    tool_type: TypeAdapter[Any] = TypeAdapter(ChatCompletionToolParam)
    out = tmp_path / "o"
    rows = _rows(out, _export(corpus, out))
    assert len(rows) == 4
    for row in rows:
        for message in row["messages"]:
            # accepted, and nothing dropped or coerced but the weight (a fine-tuning key the chat types lack)
            extra = {k: v for k, v in message.items() if k != "weight"}
            assert _plain(messages_type.validate_python(message)) == extra
            assert set(message) <= OPENAI_KEYS[message["role"]], message  # OpenAI refuses unknown keys
        for tool in row["tools"]:
            assert _plain(tool_type.validate_python(tool)) == tool
        assert [t["function"]["name"] for t in row["tools"]] == ["lookup_order", "issue_refund", "notify"]
        marker = _markers([row]).pop()
        assert _conversation(row["messages"]) == _expected(corpus.by_marker[marker])
        assert [m["weight"] for m in row["messages"] if m["role"] == "assistant"] == [1, 1, 1]


def _plain(value: Any) -> Any:
    """A validated value with pydantic's lazy iterators (Iterable fields of the TypedDicts) made lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    return [_plain(v) for v in value]


def _conversation(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The exported messages back as one entry per emitted message (an assistant reply splits into its parts)."""
    assert messages[0] == {"role": "system", "content": "You are a careful support agent."}
    got: list[tuple[Any, ...]] = []
    for m in messages[1:]:
        if m["role"] == "assistant":
            if "content" in m:
                got.append(("assistant", "text", m["content"]))
            for c in m.get("tool_calls", []):
                assert c["type"] == "function" and isinstance(c["function"]["arguments"], str)
                got.append(("assistant", "tool_call", c["function"]["name"], c["id"],
                            json.loads(c["function"]["arguments"])))  # fmt: skip
        elif m["role"] == "tool":
            got.append(("tool", "tool_response", m["tool_call_id"], json.loads(m["content"])))
        else:
            got.append((m["role"], "text", m["content"]))
    return got


def _expected(e: Emitted) -> list[tuple[Any, ...]]:
    want: list[tuple[Any, ...]] = []
    for r in e.records:
        c = r["content"][1]
        if "text" in c:
            want.append((r["role"], "text", c["text"]))
        elif "arguments" in c:
            want.append((r["role"], "tool_call", c["name"], c["call_id"], json.loads(c["arguments"])))
        elif "result" in c:
            want.append(("tool", "tool_response", c["call_id"], json.loads(c["result"])))
        else:  # redacted: still redacted, its reason only
            want.append((r["role"], "text", f"[redacted: {c['reason']}]"))
    return want


def test_weights_by_reward_or_credit() -> None:
    by_reward = ExportSettings(export_weight_by="reward")
    assert by_reward.learned(1.0, 0.0) and not by_reward.learned(0.4, 1.0)
    by_credit = ExportSettings(export_weight_by="credit")
    assert by_credit.learned(0.0, 0.2) and not by_credit.learned(1.0, 0.0)
    assert by_credit.learned(1.0, None)  # no recorded credit: the reward decides
    assert not ExportSettings(export_weight_by="credit", export_weight_threshold=0.3).learned(1.0, 0.2)
    assert openai_sft.OpenAISFT(by_credit).settings is by_credit


def test_export_refuses_embedded_chdb_while_a_data_worker_owns_it(tmp_path: Path) -> None:
    settings = ExportSettings(home=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    pid_file(settings, "data").parent.mkdir(parents=True)
    pid_file(settings, "data").write_text(str(os.getpid()))  # a live "data worker"
    with pytest.raises(TrajstreamError, match=r"Exports & reports page .* stop the pipeline"):
        export_run.export(settings, "openai-sft", tmp_path / "o", CorpusFilter())
    # the reports read the same way, and are refused the same way (they opened chDB under the worker's feet)
    env = {"TRAJSTREAM_HOME": str(tmp_path), "TRAJSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"}
    done = CliRunner().invoke(main, ["optimise", "tools", "--out", str(tmp_path / "r")], env=env)
    assert done.exit_code != 0 and "Exports & reports page" in done.output, done.output
    assert not (tmp_path / "ch").exists()


def test_the_command_in_its_own_process(tmp_path: Path) -> None:
    """The CLI end to end against a chDB directory no other process holds: an empty corpus, a whole manifest."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'sdk/python/src'}", "TRAJSTREAM_HOME": str(tmp_path / "h"),
           "TRAJSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"}  # fmt: skip
    cli = [sys.executable, "-c", "from trajstream.cli import main; main()", "export"]
    done = subprocess.run([*cli, "openai-sft", "--out", str(tmp_path / "o"), "--since", "7d", "--outcome", "success"],
                          env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["counts"] == {"read": 0, "exported": 0, "skipped": {}} and manifest["files"] == []
    assert manifest["filters"]["outcomes"] == ["success"] and "exported 0 rows" in done.stdout
    bad = subprocess.run([*cli, "no-such", "--out", str(tmp_path / "p")], env=env, capture_output=True, text=True,
                         timeout=240)  # fmt: skip
    assert bad.returncode != 0 and all(name in bad.stderr for name in known_formats())  # it lists them all


def test_pair_margin_and_kto_label_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from trajstream.corpus.export.formats.preferences import OpenAIDPO
    from trajstream.corpus.export.formats.trl import TrlDpo, TrlKto

    monkeypatch.setenv("TRAJSTREAM_EXPORT_PAIR_MARGIN", "0.6")
    monkeypatch.setenv("TRAJSTREAM_EXPORT_KTO_LABEL_BY", "outcome")
    settings = ExportSettings(home=tmp_path)
    assert OpenAIDPO(settings).margin == TrlDpo(settings).margin == 0.6 and TrlKto(settings).label_by == "outcome"
    monkeypatch.setenv("TRAJSTREAM_EXPORT_PAIR_MARGIN", "-1")
    with pytest.raises(ValidationError, match="export_pair_margin"):
        ExportSettings(home=tmp_path)
