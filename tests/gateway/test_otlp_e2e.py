"""Real instrumentations into the real gateway: each agent run exports its spans one request per span
(OTLP/HTTP protobuf, the OTel SDK's exporter) to `trajstream gateway`; the streams worker's trace stage
puts each trace together and the trajectory lands whole in ClickHouse, every message and tool call in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.support.env import PROJECT_ROOT as REPO
from tests.support.gateway import running_gateway
from tests.support.landing import Landed, land, landing_settings
from tests.support.openai_server import OpenAIServer, Reply, openai_server_fixture  # noqa: F401
from tests.support.otel_agent import QUESTION, SYSTEM, WEATHER
from trajstream.settings import Settings
from trajstream.streams.otlp.boundaries import NAMESPACE
from trajstream.streams.otlp.mapping import map_trace
from trajstream.streams.otlp.spans import spans_of
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

ANSWER = "It is rainy, 57F; the time service is down."
LATEST = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
          "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}  # fmt: skip
RUNS = {"openai-v2": LATEST, "openinference": {}, "traceloop": {}}


def _run(server: OpenAIServer, tmp_path: Path, instrumentation: str, env: dict[str, str], endpoint: str) -> str:
    """Run the agent under ``instrumentation``, exporting to ``endpoint``; the trajectory id its spans map to."""
    server.script([
        Reply(None, finish_reason="tool_calls",
              tool_calls=(("call_w", "get_weather", {"city": "Paris"}), ("call_t", "get_time", {"city": "Paris"}))),
        Reply(ANSWER, prompt_tokens=150, completion_tokens=12),
    ])  # fmt: skip
    out = tmp_path / f"{instrumentation}.pb"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRAJSTREAM_"))}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.otel_agent", instrumentation, server.base_url, str(out), "--agent-span",
         "--endpoint", endpoint],
        env={**clean, **env, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sdk/python/src")])},
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (trajectory,) = map_trace(spans_of(TracesData.FromString(out.read_bytes())))
    return trajectory.trajectory_id


def _check_whole(landed: Landed, instrumentation: str) -> None:
    assert landed.trajectory["outcome"] == "success", instrumentation
    assert landed.trajectory["agent_id"] == "agent-weather-1"
    assert [t["turn_index"] for t in landed.turns] == [0, 1]
    rows = [(m["turn_index"], m["role"], m["kind"], m["tool_name"], m["call_id"]) for m in landed.messages]
    assert rows == [
        (0, "system", "text", "", ""), (0, "user", "text", "", ""),
        (0, "assistant", "tool_call", "get_weather", "call_w"), (0, "assistant", "tool_call", "get_time", "call_t"),
        (1, "tool", "tool_response", "get_weather", "call_w"), (1, "tool", "tool_response", "get_time", "call_t"),
        (1, "assistant", "text", "", ""),
    ], instrumentation  # fmt: skip
    texts = [m["text"] for m in landed.messages]
    assert texts[0] == SYSTEM and texts[1] == QUESTION and texts[-1] == ANSWER
    assert json.loads(texts[2]) == {"city": "Paris"} and json.loads(texts[4]) == WEATHER
    calls = {c["call_id"]: (c["tool"], c["status"]) for c in landed.tool_calls}
    assert calls == {"call_w": ("get_weather", "success"), "call_t": ("get_time", "timeout")}


@pytest.mark.timeout(600)
def test_three_python_instrumentations_land_whole_through_the_gateway(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer, tmp_path: Path, chdb_dir: Path
) -> None:
    settings = landing_settings(topics, chdb_dir)
    ids: dict[str, str] = {}
    with running_gateway(settings, tmp_path / "gw.log") as gw:
        for instrumentation, env in RUNS.items():
            ids[instrumentation] = _run(openai_server, tmp_path, instrumentation, env, f"{gw.url}/v1/traces")
    assert len(set(ids.values())) == 3
    landed = land(settings, codec, ids.values(), tmp_path / "worker.log")
    for instrumentation, tid in ids.items():
        _check_whole(landed[tid], instrumentation)


def test_spans_of_one_trace_split_across_two_gateway_replicas_make_one_trajectory(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path, chdb_dir: Path
) -> None:
    """Two gateways, each taking part of a trace in requests of their own (the children first, the agent span
    last, as exporters send them): the trace stage puts it together, and one whole trajectory lands."""
    settings = landing_settings(topics, chdb_dir)
    trace_id, agent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    now = time.time_ns()

    def span(span_id: str, name: str, start: int, end: int, attributes: dict[str, str], parent: str | None) -> Any:
        doc = {"traceId": trace_id, "spanId": span_id, "name": name, "startTimeUnixNano": str(now + start * 10**6),
               "endTimeUnixNano": str(now + end * 10**6),
               "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()]}  # fmt: skip
        if parent:
            doc["parentSpanId"] = parent
        return doc

    def chat(question: str, answer: str) -> dict[str, str]:
        asked = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        said = [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
        return {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(asked),
                "gen_ai.output.messages": json.dumps(said)}  # fmt: skip

    def body(spans: list[Any]) -> dict[str, Any]:
        return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                                "value": {"stringValue": "replicas"}}]},
                                   "scopeSpans": [{"spans": spans}]}]}  # fmt: skip

    first = span(uuid.uuid4().hex[:16], "chat", 10, 20, chat("One?", "Yes."), agent_id)
    second = span(uuid.uuid4().hex[:16], "chat", 30, 40, chat("Two?", "No."), agent_id)
    agent = span(agent_id, "invoke_agent replicas", 0, 50, {"gen_ai.operation.name": "invoke_agent"}, None)
    with running_gateway(settings, tmp_path / "a.log") as a, running_gateway(settings, tmp_path / "b.log") as b:
        assert httpx.post(f"{a.url}/v1/traces", json=body([first])).status_code == 200
        assert httpx.post(f"{b.url}/v1/traces", json=body([second])).status_code == 200
        assert httpx.post(f"{b.url}/v1/traces", json=body([agent])).status_code == 200
        assert httpx.post(f"{a.url}/v1/traces", json=body([first])).status_code == 200  # a retried export
    tid = str(uuid.uuid5(NAMESPACE, f"{trace_id}:{agent_id}"))
    landed = land(settings, codec, [tid], tmp_path / "worker.log")[tid]
    assert [(m["turn_index"], m["role"], m["text"]) for m in landed.messages] == [
        (0, "user", "One?"), (0, "assistant", "Yes."), (1, "user", "Two?"), (1, "assistant", "No.")]  # fmt: skip
    assert landed.trajectory["agent_id"] == "replicas" and landed.trajectory["outcome"] == "success"
