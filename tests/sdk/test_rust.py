"""The Rust emitter (sdk/rust): cargo's own tests (the shared vectors both ways, the contract table, the
records), records byte-identical with the Python builders', and trajectories it emits to the real broker
that the platform assembles and lands whole in ClickHouse, each on the partition the Python producer picks.

cargo runs through sdk/rust/cargo.sh, which names the build cache `make sdk-rust` fills.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.support.env import env_for
from tests.support.landing import Landed, land, landing_settings
from tests.support.streams import read
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
from trajstream_sdk.schemas import FEEDBACK, TRAJECTORY_END, TRAJECTORY_START, TURN

pytestmark = pytest.mark.integration

RUST = PROJECT_ROOT / "sdk" / "rust"
CARGO = RUST / "cargo.sh"
# A cold build compiles librdkafka: minutes on this machine (`make sdk-rust` does it before the tests).
BUILD_TIMEOUT_S = 900


def _cargo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([str(CARGO), *args], env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert run.returncode == 0, f"cargo {' '.join(args)} failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return run


def _without_trajstream_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAJSTREAM_")}


@pytest.mark.timeout(BUILD_TIMEOUT_S + 60)
def test_cargo_test_passes_the_shared_vectors_and_the_contract() -> None:
    run = _cargo("test", "--locked", env=_without_trajstream_env())
    out = run.stdout
    for name in ("the_bytes_decode_to_the_value", "the_value_encodes_to_the_same_bytes",
                 "the_table_holds_every_schema_file_as_it_is_now"):  # fmt: skip
        assert f"test {name} ... ok" in out, out[-4000:]


def test_the_contract_table_is_what_the_generator_writes_now() -> None:
    run = subprocess.run([sys.executable, str(RUST / "gen_contract.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# The scenario of sdk/rust/tests/records.rs, built with the Python builders.
T0 = 1_760_000_000_123


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _scrub(text: str) -> str:
    return text.replace("secret", "[REDACTED]")


def _python_scenario() -> list[tuple[str, dict[str, Any]]]:
    def msg(i: int, role: Any, content: Any, **kw: Any) -> Message:
        return Message(role, content, message_id=f"m{i}", timestamp=_at(T0 + i), **kw)

    messages = [
        Message.text("system", "be brief, secret", reasoning="secret plan", message_id="m0", timestamp=_at(T0)),
        msg(
            1,
            "assistant",
            ToolCall("lookup", "c1", {"q": "secret é", "n": 2}),
            available_tools=["lookup"],
            active_entities=["secret corp"],
        ),
        msg(2, "tool", ToolResponse("lookup", "c1", "not json: secret", "error")),
        msg(3, "assistant", Widget("chart", '{"x": [1, 2]}'), send_to_user=False),
        msg(4, "assistant", Structured([1.5, None, True])),
        msg(5, "assistant", Redacted("pii", "text")),
        Message.text(
            "user", "my card is 4111 secret", reasoning="hidden", persist=False, message_id="m6", timestamp=_at(T0 + 6)
        ),
    ]
    model = ModelInfo(request_model="m", provider="openai", input_tokens=10, output_tokens=3,
                      logprobs=[TokenLogprob("hi", -0.25, 7)])  # fmt: skip
    return [
        (TRAJECTORY_START, start_record(
            "t1", "task with secret", agent_id="agent", domain="billing", agent_name="bot", conversation_id="conv",
            framework="rust", environment="staging", tags=["a", "b"], parent_trajectory_id="parent",
            parent_span_id="pspan", referrer="https://x", user_id="u1", user_attributes={"plan": "pro"},
            entities=[{"name": "secret corp", "entity_type": "company"}],
            resources=[{"uri": "file:///a", "kind": "file", "description": "d"}], custom_context={"k": "secret"},
            system_message="system secret", timestamp=_at(T0), scrub=_scrub)),
        (TURN, turn_record("t1", 0, messages, span_id="0123456789abcdef", timestamp=_at(T0 + 10), duration_ms=42,
                           error=True, error_type="Timeout", turn_reward=0.5, model=model, scrub=_scrub)),
        (TRAJECTORY_END, end_record("t1", "partial", final_reward=1.0, feedback_score=0.75, human_reviewed=True,
                                    turn_count=1, error_type="E", error_message="secret failure",
                                    timestamp=_at(T0 + 20), scrub=_scrub)),
        (FEEDBACK, feedback_record("t1", source="reviewer", reward=0.8, human_reviewed=True, reviewer="ann",
                                   comment="secret comment", timestamp=_at(T0 + 30), scrub=_scrub)),
    ]  # fmt: skip


@pytest.mark.timeout(BUILD_TIMEOUT_S + 60)
def test_rust_records_are_byte_identical_with_the_python_builders(codec: SingleObjectCodec, tmp_path: Path) -> None:
    out = tmp_path / "parity.json"
    _cargo("test", "--locked", "--test", "records", "records_for_parity",
           env={**_without_trajstream_env(), "TRAJSTREAM_PARITY_OUT": str(out)})  # fmt: skip
    rust = json.loads(out.read_text())
    python = _python_scenario()
    assert [e["record"] for e in rust] == [name for name, _ in python]
    for event, (name, record) in zip(rust, python, strict=True):
        data = bytes.fromhex(event["hex"])
        decoded = codec.decode(data, expect=name)
        assert uuid.UUID(decoded.record["event_id"]).version == 4
        # The event id is random on both sides: everything else must be the same bytes.
        expected = codec.encode(name, {**record, "event_id": decoded.record["event_id"]})
        assert data.hex() == expected.hex(), f"{name}: {decoded.record} != {codec.decode(expected).record}"


def _messages(landed: Landed) -> list[tuple[int, str, str, str]]:
    return [(m["turn_index"], m["role"], m["kind"], m["text"]) for m in landed.messages]


def _calls(landed: Landed) -> list[tuple[str, str, str]]:
    return [(c["tool"], c["call_id"], c["status"]) for c in landed.tool_calls]


@pytest.mark.timeout(BUILD_TIMEOUT_S + 240)
def test_rust_trajectories_land_whole_on_the_python_producers_partitions(
    topics: Settings, codec: SingleObjectCodec, chdb_dir: Path, tmp_path: Path
) -> None:
    settings = landing_settings(topics, chdb_dir)
    out = tmp_path / "ids.json"
    env = {**env_for(settings), "TRAJSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap, "TRAJSTREAM_E2E_OUT": str(out)}
    _cargo("test", "--locked", "--test", "e2e", env=env)
    ids = json.loads(out.read_text())

    landed = land(settings, codec, [ids["tools"], ids["private"], ids["many"], ids["dropped"]], tmp_path / "land.log")

    tools = landed[ids["tools"]]
    assert (tools.trajectory["agent_id"], tools.trajectory["outcome"], tools.trajectory["turn_count"]) == (
        "rust-e2e-tools", "success", 2)  # fmt: skip
    assert [t["turn_index"] for t in tools.turns] == [0, 1]
    assert _messages(tools) == [
        (0, "user", "text", "Refund order 42, the password is [REDACTED]"),  # the redaction hook ran
        (0, "assistant", "tool_call", '{"order":42}'),
        (1, "tool", "tool_response", '{"ok":true}'),
        (1, "assistant", "text", "Refunded."),
    ]
    assert _calls(tools) == [("issue_refund", "c1", "success")]

    private = landed[ids["private"]]
    assert (private.trajectory["agent_id"], private.trajectory["outcome"], private.trajectory["turn_count"]) == (
        "rust-e2e-private", "failure", 2)  # fmt: skip
    assert _messages(private) == [
        (0, "user", "redacted", "[redacted: persist=false]"),  # persist=false: only the placeholder left
        (0, "assistant", "tool_call", '{"last4":"1111"}'),
        (1, "tool", "tool_response", '"card service down"'),
        (1, "assistant", "text", "Sorry, try later."),
    ]
    assert not any("4111" in m["text"] for m in private.messages)
    assert _calls(private) == [("lookup_card", "c2", "error")]

    many = landed[ids["many"]]
    assert (many.trajectory["agent_id"], many.trajectory["outcome"], many.trajectory["turn_count"]) == (
        "rust-e2e-many", "partial", 3)  # fmt: skip
    assert [(m["turn_index"], m["kind"]) for m in many.messages] == [
        (i, kind) for i in range(3) for kind in ("tool_call", "tool_response")
    ]
    assert _calls(many) == [("search", "s0", "timeout"), ("search", "s1", "success"), ("search", "s2", "success")]

    dropped = landed[ids["dropped"]]  # dropped after a turn without end: it ended itself
    assert (dropped.trajectory["outcome"], dropped.trajectory["turn_count"]) == ("abandoned", 1)
    assert _messages(dropped) == [(0, "user", "text", "hello?")]

    # Every event sits on the partition aiokafka (and Java) would have picked for its key: murmur2.
    all_ids = {ids["tools"], ids["private"], ids["many"], ids["dropped"], *ids["probes"]}
    partitions = list(range(settings.topic_partitions))
    events = [r for r in asyncio.run(read(settings, codec, EVENTS_TOPIC))
              if r.event is not None and r.event.record["trajectory_id"] in all_ids]  # fmt: skip
    assert len(events) == 4 + 4 + 5 + 3 + 2 * len(ids["probes"])
    for r in events:
        assert r.key == r.event.record["trajectory_id"].encode()  # type: ignore[union-attr]
        assert r.partition == DefaultPartitioner()(r.key, partitions, partitions), r.event
    assert len({r.partition for r in events}) > 1, "every key on one partition: the check shows nothing"

    feedback = [r for r in asyncio.run(read(settings, codec, FEEDBACK_TOPIC))
                if r.event is not None and r.event.record["trajectory_id"] == ids["tools"]]  # fmt: skip
    assert len(feedback) == 1
    assert feedback[0].event is not None
    assert (feedback[0].event.record["reward"], feedback[0].event.record["human_reviewed"]) == (0.8, True)
    assert feedback[0].partition == DefaultPartitioner()(feedback[0].key, partitions, partitions)
