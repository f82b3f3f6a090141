"""`trajstream up` end to end: SDK -> Kafka -> streams -> ClickHouse and Milvus -> recall and prediction."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.env import env_for, free_port, trajstream_bin
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream_sdk import AsyncEmitter
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ToolCall, ToolResponse

# The header the data API asks of every POST (no tokens in the tests: loopback).
API_HEADERS = {"X-Trajstream-Console": "1"}

pytestmark = pytest.mark.integration

# A corpus where recall must find the refund trajectory from a paraphrase that shares few words,
# and where refunding works but closing the ticket does not.
TASKS = [
    "Reset the password for user alice in the admin console",
    "Book a flight from Paris to Rome next Tuesday",
    "Summarise the quarterly sales report for the board",
    "Refund order {n} because the parcel arrived damaged",
    "Translate the onboarding guide into German",
]


@pytest.fixture(scope="module")
def pipeline(broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    home = tmp_path_factory.mktemp("e2e-home")
    settings = broker_settings.model_copy(update={
        "topic_prefix": f"e{uuid.uuid4().hex[:8]}.", "home": home, "api_port": free_port(), "gateway_port": free_port(),
        "milvus_server_port": free_port(),
        "kafka_bootstrap": broker_settings.bootstrap, "assembly_inactivity_timeout_s": 30.0,
    })  # fmt: skip
    asyncio.run(create_topics(settings))
    env = env_for(settings)
    env.update({"TRAJSTREAM_API_PORT": str(settings.api_port), "TRAJSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap})
    up = subprocess.run([str(trajstream_bin()), "up", "--timeout", "240"], env=env, capture_output=True, text=True,
                        timeout=300)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield settings, f"http://127.0.0.1:{settings.api_port}"
    finally:
        subprocess.run([str(trajstream_bin()), "down", "--timeout", "10"], env=env, capture_output=True, timeout=120)
        _dump_logs(home)


def _dump_logs(home: Path) -> None:
    for log in sorted((home / "logs").glob("*.log")):
        print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-1500:]}")


async def _emit_corpus(settings: Settings, codec: SingleObjectCodec) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {"refund": [], "other": [], "good": [], "bad": []}
    async with AsyncEmitter(settings, codec=codec) as emitter:
        for n, task in enumerate(TASKS):
            async with emitter.trajectory(task.format(n=4100 + n), agent_id="e2e", domain="support") as t:
                await t.turn([Message.text("user", task.format(n=4100 + n)),
                              Message("assistant", ToolCall("lookup", "c0", {"q": n}))])  # fmt: skip
                await t.turn([Message("tool", ToolResponse("lookup", "c0", {"found": True}, "success")),
                              Message.text("assistant", "Done.")])  # fmt: skip
            ids["refund" if "Refund" in task else "other"].append(t.trajectory_id)
        for n in range(6):
            good = n % 2 == 0
            action = "issue_refund" if good else "close_ticket"
            outcome = "success" if good else "failure"
            task = f"Customer asks for a refund of order {5000 + n}"
            async with emitter.trajectory(task, agent_id="e2e", domain="support", default_outcome=outcome) as t:
                await t.turn([Message.text("user", f"I want my money back for order {5000 + n}"),
                              Message("assistant", ToolCall(action, "c1", {"order_id": 5000 + n}))])  # fmt: skip
                await t.turn([Message("tool", ToolResponse(action, "c1", {"ok": good}, "success" if good else "error")),
                              Message.text("assistant", "Refunded." if good else "Closed.")])  # fmt: skip
            ids["good" if good else "bad"].append(t.trajectory_id)
    return ids


def _post(url: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(url + path, json=body, headers=API_HEADERS, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def _wait_landed(url: str, expected: int, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = httpx.get(url + "/health", timeout=10).json()
        sinks = health["sinks"]
        if min(sinks[name]["trajectories"] for name in ("clickhouse", "milvus", "milvus_decisions")) >= expected:
            return health
        time.sleep(0.5)
    raise AssertionError(f"not landed in {timeout_s}s: {health}")


def test_emitted_trajectories_reach_clickhouse_and_milvus_and_recall_finds_them(
    pipeline: tuple[Settings, str], codec: SingleObjectCodec
) -> None:
    settings, url = pipeline
    ids = asyncio.run(_emit_corpus(settings, codec))
    emitted = sum(len(v) for v in ids.values())
    health = _wait_landed(url, emitted)
    db = settings.clickhouse_database
    rows = _post(url, "/sql", {"query": f"SELECT count(), uniqExact(trajectory_id) FROM {db}.trajectories"})["rows"]
    letters = _post(url, "/sql", {"query": f"SELECT count() FROM {db}.dead_letters"})["rows"][0][0]
    assert rows[0] == [emitted, emitted] and letters == 0  # emitted - dead letters, one version each
    assert health["sinks"]["milvus_decisions"]["decision_points"] >= emitted
    # Read-only means read-only.
    refused = httpx.post(url + "/sql", json={"query": f"DROP TABLE {db}.turns"}, headers=API_HEADERS, timeout=10)
    assert refused.status_code == 400

    # Recall: a paraphrase that shares almost no words with the task.
    found = _post(url, "/recall", {"query": "my package came broken and I want my money back", "k": 1,
                                   "filters": {"outcome": "any"}})  # fmt: skip
    assert found["trajectories"][0]["trajectory_id"] in ids["refund"] + ids["good"], found["trajectories"]
    assert found["messages"][0]["role"] == "user" and "Steps taken" in found["messages"][1]["content"]

    # Prediction: refunding worked in these situations, closing the ticket did not.
    state = "Customer asks for a refund of order 5100"
    good = _post(url, "/predict", {"state": state, "action": "issue_refund(order_id=5100)"})
    bad = _post(url, "/predict", {"state": state, "action": "close_ticket(order_id=5100)"})
    assert good["p_success"] > bad["p_success"], (good, bad)
    tools = _post(url, "/recommend", {"context": state})
    assert tools[0]["tool"] == "issue_refund", tools
    what_if = _post(url, "/counterfactual", {"trajectory_id": ids["bad"][0], "step": 0,
                                             "alternative_action": "issue_refund(order_id=5001)"})  # fmt: skip
    assert what_if["delta_p_success"] > 0, what_if

    # Bad requests get a clear 400.
    assert httpx.post(url + "/recall", json={"k": 3}, headers=API_HEADERS, timeout=10).status_code == 400
    bad_filter = {"query": "x", "filters": {"colour": "red"}}
    assert httpx.post(url + "/recall", json=bad_filter, headers=API_HEADERS, timeout=10).status_code == 400


def test_the_cli_reads_the_running_pipeline(pipeline: tuple[Settings, str]) -> None:
    """`trajstream sql` resolves unqualified tables in the project's database, and `status` closes its
    Kafka clients (it printed "Unclosed AIOKafkaConsumer" before)."""
    settings, url = pipeline
    env = env_for(settings)
    env.update({"TRAJSTREAM_API_PORT": str(settings.api_port), "TRAJSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap})
    db = settings.clickhouse_database
    expected = _post(url, "/sql", {"query": f"SELECT count() FROM {db}.trajectories"})["rows"][0][0]
    sql = subprocess.run([str(trajstream_bin()), "sql", "--json", "SELECT count() AS n FROM trajectories"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert sql.returncode == 0, sql.stderr
    assert json.loads(sql.stdout)["rows"] == [[expected]] and expected > 0

    status = subprocess.run([str(trajstream_bin()), "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "data" in status.stdout and "trajectories landed" in status.stdout, status.stdout
    assert "Unclosed" not in status.stdout + status.stderr, status.stderr


def test_the_gateway_started_by_up_takes_json_and_otlp(pipeline: tuple[Settings, str]) -> None:
    """`trajstream up` runs the gateway: a trajectory line and an OTLP trace sent to it land in ClickHouse."""
    settings, url = pipeline
    gateway = f"http://127.0.0.1:{settings.gateway_port}"
    tid = str(uuid.uuid4())
    messages = [{"role": "user", "content": "Reset my password"}, {"role": "assistant", "content": "Done."}]
    line = {"id": tid, "task": "Reset my password", "agent_id": "gateway-e2e", "messages": messages}
    assert httpx.post(f"{gateway}/v1/trajectories", json=line, timeout=30).status_code == 200
    trace_id, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    now_ns = time.time_ns()  # rows older than the tables' TTL would be dropped
    at = [str(now_ns + k * 1_000_000) for k in range(4)]
    chat = {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}
    said = {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]}])}}  # fmt: skip
    answered = {"key": "gen_ai.output.messages", "value": {"stringValue": json.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": "Snow."}]}])}}  # fmt: skip
    spans = [{"traceId": trace_id, "spanId": root, "name": "invoke_agent oslo", "startTimeUnixNano": at[0],
              "endTimeUnixNano": at[3], "attributes": [{"key": "gen_ai.operation.name",
                                                      "value": {"stringValue": "invoke_agent"}}]},
             {"traceId": trace_id, "spanId": uuid.uuid4().hex[:16], "parentSpanId": root, "name": "chat",
              "startTimeUnixNano": at[1], "endTimeUnixNano": at[2], "attributes": [chat, said, answered]}]  # fmt: skip
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "oslo"}}]},
                               "scopeSpans": [{"spans": spans}]}]}  # fmt: skip
    assert httpx.post(f"{gateway}/v1/traces", json=body, timeout=30).status_code == 200
    db = settings.clickhouse_database
    deadline = time.monotonic() + 120
    rows: list[Any] = []
    while time.monotonic() < deadline and len(rows) < 2:
        query = f"SELECT agent_id, task_key FROM {db}.trajectories WHERE agent_id IN ('gateway-e2e', 'oslo')"
        rows = _post(url, "/sql", {"query": query})["rows"]
        time.sleep(1)
    assert sorted(r[0] for r in rows) == ["gateway-e2e", "oslo"], rows
