"""The TypeScript emitter (sdk/typescript): its node tests pass (the shared vectors both ways, the builders,
the emitter), and what it sends to the real broker is assembled, scored and landed whole in ClickHouse, on the
partitions aiokafka's (Java's) murmur2 partitioner picks for the keys."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.support.env import env_for
from tests.support.landing import Landed, land, landing_settings
from tests.support.streams import read
from trajstream.reader import ReadRecord
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.topics import EVENTS_TOPIC, FEEDBACK_TOPIC
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Redacted,
    Structured,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    Widget,
    end_record,
    feedback_record,
    start_record,
    turn_record,
)
from trajstream_sdk.redaction import pattern_redactor

pytestmark = pytest.mark.integration

SDK = PROJECT_ROOT / "sdk" / "typescript"
AGENT = "ts-e2e"


def _node(args: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", *args], cwd=SDK, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built() -> Iterator[Path]:
    """The package's compiled JS, rebuilt from src/ so that a stale dist/ is never what is tested."""
    _require_installed(SDK)
    result = subprocess.run(["npm", "run", "--silent", "build"], cwd=SDK, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"tsc failed:\n{result.stdout}{result.stderr}"
    yield SDK / "dist"


def _failures(run: subprocess.CompletedProcess[str]) -> str:
    """The spec reporter ends with the failing tests, each with its assertion's diff: show those."""
    _, marker, failing = run.stdout.partition("✖ failing tests:")
    return (marker + failing if marker else run.stdout[-6000:])[:8000] + run.stderr[-2000:]


def _require_installed(sdk: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm (Node 20) are needed for the TypeScript SDK")
    if not all((sdk / "node_modules" / name).is_dir() for name in ("kafkajs", "avsc", "typescript")):
        pytest.fail(f"{sdk / 'node_modules'} is missing or incomplete: run make sdk-typescript")


def test_node_tests_pass(built: Path) -> None:
    """Vectors (every record and version, decode and encode, byte for byte), the contract table, builders, emitter."""
    run = _node(["--test", "--test-reporter=spec", str(built / "test")])
    assert run.returncode == 0, _failures(run)
    counts = dict(line[2:].split(" ", 1) for line in run.stdout.splitlines() if re.match(r"ℹ (pass|fail) \d+$", line))
    assert int(counts["pass"]) > 100 and counts["fail"] == "0", counts


_T = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1_760_000_000_123)


def _at(ms: int) -> datetime:
    return _T + timedelta(milliseconds=ms)


def _python_records() -> dict[str, tuple[str, dict[str, Any]]]:
    """What test-parity/records.ts builds, built by the Python SDK's builders from the same inputs."""
    scrub = pattern_redactor()
    return {
        "start_full": ("trajectory_start", start_record(
            "tid", "Réfund order 42 for a@b.example", agent_id="bot", domain="billing", agent_name="Bot",
            conversation_id="conv", framework="node", environment="prod", tags=["x", "y"], parent_trajectory_id="ptid",
            parent_span_id="pspan", referrer="web", user_id="u1", user_attributes={"plan": "pro"},
            entities=[{"name": "ACME a@b.example", "entity_type": "company"}, {"name": "B", "entity_id": "b1"}],
            resources=[{"uri": "file:///a"}, {"uri": "file:///b", "kind": "doc", "description": "d"}],
            custom_context={"k": "é", "n": [1, 2.5, None]}, system_message="sys a@b.example", timestamp=_T,
            scrub=scrub)),
        "start_minimal": ("trajectory_start", start_record("tid", "task", agent_id="bot", timestamp=_T)),
        "turn_full": ("turn", turn_record("tid", 3, [
            Message.text("user", "hi a@b.example", message_id="m0", timestamp=_T, active_entities=["a@b.example"],
                         available_tools=["t1"]),
            Message("assistant", ToolCall("refund", "c1", {"order": 42, "note": "ü"}), message_id="m1",
                    timestamp=_at(1), reasoning="why ✓"),
            Message("tool", ToolResponse("refund", "c1", "plain ✓", "timeout"), message_id="m2", timestamp=_at(2)),
            Message("tool", ToolResponse("refund", "c1", '{"ok": true}'), message_id="m3", timestamp=_at(3),
                    send_to_user=False),
            Message("assistant", Widget("card", {"title": "Refund"}), message_id="m4", timestamp=_at(4)),
            Message("assistant", Structured([1, 2.5, None, "x"]), message_id="m5", timestamp=_at(5)),
            Message("assistant", Redacted("pii", "text"), message_id="m6", timestamp=_at(6)),
            Message("assistant", ToolCall("secret", "c2", {"ssn": 1}), message_id="m7", timestamp=_at(7),
                    persist=False, reasoning="r", active_entities=["e"]),
        ], span_id="span-1", parent_span_id="parent", timestamp=_T, duration_ms=12.7, error=True,  # type: ignore[arg-type]
            error_type="X", turn_reward=0.25, model=ModelInfo(
                request_model="gpt", response_model="gpt-1", provider="openai", model_version="v3", input_tokens=10,
                output_tokens=20, response_id="r1", finish_reason="stop",
                logprobs=[TokenLogprob("a", -0.5, 7), TokenLogprob("b", -1.0)]),
            scrub=scrub)),
        "turn_minimal": ("turn", turn_record("tid", 0, [], span_id="span-0", timestamp=_T)),
        "end_full": ("trajectory_end", end_record(
            "tid", "partial", final_reward=0.5, feedback_score=0.25, human_reviewed=True, turn_count=4, error_type="E",
            error_message="failed for a@b.example", timestamp=_T, scrub=scrub)),
        "end_minimal": ("trajectory_end", end_record("tid", "success", timestamp=_T)),
        "feedback_full": ("feedback", feedback_record(
            "tid", source="reviewer", reward=0.5, score=0.75, human_reviewed=True, reviewer="ann",
            comment="call +1 415 555 0100", timestamp=_T, scrub=scrub)),
        "feedback_minimal": ("feedback", feedback_record("tid", timestamp=_T)),
    }  # fmt: skip


def test_the_builders_make_the_python_builders_records_byte_for_byte(built: Path, codec: SingleObjectCodec) -> None:
    run = _node([str(built / "test-parity" / "records.js")])
    assert run.returncode == 0, run.stderr
    typescript: dict[str, str] = json.loads(run.stdout.strip().splitlines()[-1])
    python = _python_records()
    assert sorted(typescript) == sorted(python)
    for key, (name, record) in python.items():
        expected = codec.encode(name, {**record, "event_id": "event-1"})
        if typescript[key] != expected.hex():  # show the records, not the bytes
            ts_record = codec.decode(bytes.fromhex(typescript[key])).record
            assert ts_record == codec.decode(expected).record, key
        assert typescript[key] == expected.hex(), key


@pytest.mark.timeout(420)
def test_typescript_trajectories_land_whole(
    built: Path, topics: Settings, codec: SingleObjectCodec, chdb_dir: Path, tmp_path: Path
) -> None:
    settings = landing_settings(topics, chdb_dir)
    ids_file = tmp_path / "ids.json"
    env = {**env_for(settings), "TRAJSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
           "TRAJSTREAM_E2E_IDS_FILE": str(ids_file)}  # fmt: skip
    run = _node(["--test", "--test-reporter=spec", str(built / "test-e2e")], env=env, timeout=180)
    assert run.returncode == 0, _failures(run)
    ids: dict[str, str] = json.loads(ids_file.read_text())

    events = asyncio.run(read(settings, codec, EVENTS_TOPIC))
    feedback = asyncio.run(read(settings, codec, FEEDBACK_TOPIC))
    _check_partitions(settings, [*events, *feedback], set(ids.values()))

    landed = land(settings, codec, ids.values(), tmp_path / "streams.log")

    refund = landed[ids["refund"]]
    _check_trajectory(refund, outcome="success", turns=2, domain="billing")
    assert refund.trajectory["task"] == "Refund order 42 for [REDACTED:EMAIL]"  # the redaction hook ran
    assert _messages(refund) == [
        (0, "user", "text", "Refund order 42 for [REDACTED:EMAIL]"),
        (0, "assistant", "tool_call", '{"order":42}'),
        (1, "tool", "tool_response", '{"ok":true}'),
        (1, "assistant", "widget", '{"order":42}'),
        (1, "assistant", "text", "Refunded order 42."),
    ]
    assert _tool_calls(refund) == [("c1", "issue_refund", "success", '{"order":42}')]
    assert [r["turn_index"] for r in refund.turns] == [0, 1] and refund.turns[0]["duration_ms"] == 40

    private = landed[ids["private"]]
    _check_trajectory(private, outcome="success", turns=2, domain="banking")
    assert _messages(private) == [
        (0, "user", "text", "What is my balance?"),
        (0, "assistant", "tool_call", '{"account":"A-1"}'),
        (1, "tool", "redacted", "[redacted: persist=false]"),  # the placeholder, never the balance
        (1, "assistant", "structured", '{"balance":"hidden"}'),
        (1, "assistant", "text", "Your balance is on screen."),
    ]
    assert "1234" not in json.dumps([m["text"] for m in private.messages])
    # The response was a placeholder: the call is counted as never answered.
    assert _tool_calls(private) == [("c2", "lookup_balance", "unanswered", '{"account":"A-1"}')]

    failing = landed[ids["failing"]]
    _check_trajectory(failing, outcome="error", turns=1, domain="reports")
    assert _messages(failing) == [
        (0, "user", "text", "Fetch the report"),
        (0, "assistant", "tool_call", '{"id":7}'),
        (0, "tool", "tool_response", '"no answer"'),
    ]
    assert _tool_calls(failing) == [("c3", "fetch", "timeout", '{"id":7}')]
    assert failing.trajectory["tool_errors"] == 1

    for i in range(5):
        batch = landed[ids[f"batch{i}"]]
        _check_trajectory(batch, outcome="success", turns=1, domain="batch")
        assert _messages(batch) == [(0, "user", "text", f"task {i}"), (0, "assistant", "text", f"done {i}")]

    # The feedback reached its topic whole, its free text through the redaction hook.
    [review] = [r.event.record for r in feedback if r.event is not None]
    assert review["trajectory_id"] == ids["refund"] and review["reward"] == 0.5 and review["source"] == "reviewer"
    assert review["comment"] == "ok, reach me at [REDACTED:EMAIL]"


def _check_partitions(settings: Settings, records: list[ReadRecord], ids: set[str]) -> None:
    """Every event decodes, is keyed by its trajectory id, and sits where aiokafka's murmur2 puts that key."""
    partitions = list(range(settings.topic_partitions))
    mine = [r for r in records if r.key is not None and r.key.decode() in ids]
    assert len(mine) == 8 * 2 + 2 + 2 + 1 + 5 + 1, len(mine)  # starts and ends, turns, one feedback
    for r in mine:
        assert r.event is not None, r.error
        assert r.event.record["trajectory_id"] == r.key.decode()  # type: ignore[union-attr]
        assert r.partition == DefaultPartitioner()(r.key, partitions, partitions), (r.key, r.partition)
    assert len({r.partition for r in mine}) > 1, "every key on one partition: the check would prove little"


def _check_trajectory(landed: Landed, *, outcome: str, turns: int, domain: str) -> None:
    t = landed.trajectory
    assert (t["agent_id"], t["outcome"], t["turn_count"], t["domain"]) == (AGENT, outcome, turns, domain), t
    assert len(landed.turns) == turns


def _messages(landed: Landed) -> list[tuple[Any, ...]]:
    return [(m["turn_index"], m["role"], m["kind"], m["text"]) for m in landed.messages]


def _tool_calls(landed: Landed) -> list[tuple[Any, ...]]:
    return [(c["call_id"], c["tool"], c["status"], c["arguments"]) for c in landed.tool_calls]


def test_without_node_modules_the_message_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="run make sdk-typescript"):
        _require_installed(tmp_path)
