"""A Node agent traced by the OpenTelemetry JS SDK exports through the real OTLP/HTTP exporters, JSON and
protobuf, to the gateway; both trajectories land whole in ClickHouse."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.env import PROJECT_ROOT
from tests.support.gateway import running_gateway
from tests.support.landing import land, landing_settings
from trajstream.settings import Settings
from trajstream.streams.otlp.boundaries import NAMESPACE
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration
NODE = PROJECT_ROOT / "tests" / "node"


@pytest.mark.timeout(600)
def test_the_node_otlp_exporters_json_and_protobuf_land_whole(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path, chdb_dir: Path
) -> None:
    assert (NODE / "node_modules" / "@opentelemetry").is_dir(), "run `make node-tests` (npm ci in tests/node)"
    settings = landing_settings(topics, chdb_dir)
    ids = {}
    with running_gateway(settings, tmp_path / "gw.log") as gw:
        for encoding in ("json", "proto"):
            run = subprocess.run(["node", str(NODE / "otlp_agent.mjs"), f"{gw.url}/v1/traces", encoding],
                                 capture_output=True, text=True, timeout=60, cwd=NODE)  # fmt: skip
            assert run.returncode == 0, run.stderr
            sent = json.loads(run.stdout.strip().splitlines()[-1])
            ids[encoding] = str(uuid.uuid5(NAMESPACE, f"{sent['trace_id']}:{sent['agent_span_id']}"))
    landed = land(settings, codec, ids.values(), tmp_path / "worker.log")
    for encoding, tid in ids.items():
        got = landed[tid]
        assert got.trajectory["agent_id"] == "node-weather-1" and got.trajectory["outcome"] == "success", encoding
        rows = [(m["turn_index"], m["role"], m["kind"], m["tool_name"], m["text"]) for m in got.messages]
        assert rows == [
            (0, "user", "text", "", "Weather in Paris?"),
            (0, "assistant", "tool_call", "get_weather", '{"city":"Paris"}'),
            (1, "tool", "tool_response", "get_weather", '{"error":"down"}'),
            (1, "assistant", "text", "", "I could not get the weather."),
        ], encoding  # fmt: skip
        assert [(c["tool"], c["status"]) for c in got.tool_calls] == [("get_weather", "error")]
        assert [t["model"] for t in got.turns] == ["gpt-4o-2024-08-06", "gpt-4o"]
