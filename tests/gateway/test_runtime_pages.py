"""The runtime pages' Python examples (docs/runtimes/) run as written, against the real gateway with the
test OpenAI server as the model, and what they send arrives."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.support.env import PROJECT_ROOT
from tests.support.gateway import running_gateway
from tests.support.landing import land, landing_settings
from tests.support.openai_server import OpenAIServer, Reply, openai_server_fixture  # noqa: F401
from tests.support.streams import read
from trajstream.settings import Settings
from trajstream.topics import OTLP_SPANS_TOPIC
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration
PAGES = PROJECT_ROOT / "docs" / "runtimes"


def example(page: str) -> str:
    """The first Python block of a page."""
    match = re.search(r"```python\n(.*?)```", (PAGES / page).read_text(), re.S)
    assert match, f"{page} has no Python example"
    return match.group(1)


def run(code: str, env: dict[str, str], tmp_path: Path) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRAJSTREAM_", "OPENAI_"))}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(600)
def test_the_python_examples_of_the_runtime_pages_work(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer, tmp_path: Path, chdb_dir: Path
) -> None:
    settings = landing_settings(topics, chdb_dir)
    openai_server.script([], default=Reply("Order 42 is on its way."))
    with running_gateway(settings, tmp_path / "gw.log", TRAJSTREAM_GATEWAY_UPSTREAM_URL=openai_server.base_url) as gw:
        model = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "test", "MODEL": "test-model"}
        proxy_out = run(example("proxy.md"), {**model, "TRAJSTREAM_GATEWAY_URL": gw.url}, tmp_path)
        python_out = run(example("python.md"), {"TRAJSTREAM_GATEWAY_URL": gw.url}, tmp_path)
        otlp_env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{gw.url}/v1/traces",
                    "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}  # fmt: skip
        otlp_out = run(example("otlp.md"), {**model, **otlp_env}, tmp_path)
    assert proxy_out.splitlines()[0] == "Order 42 is on its way." and otlp_out.strip() == "Order 42 is on its way."
    assert python_out.startswith("200 ")
    proxied = proxy_out.split()[-1]
    line_id = python_out.split("'id': '")[1].split("'")[0]
    landed = land(settings, codec, [proxied, line_id], tmp_path / "worker.log")
    assert [m["text"] for m in landed[proxied].messages] == ["Where is my order 42?", "Order 42 is on its way."]
    assert landed[line_id].trajectory["outcome"] == "success"
    names = {span.name for r in asyncio.run(read(settings, codec, OTLP_SPANS_TOPIC)) if r.event
             for rs in TracesData.FromString(r.event.record["traces_data"]).resource_spans
             for ss in rs.scope_spans for span in ss.spans}  # fmt: skip
    assert "invoke_agent support-bot" in names and any(n.startswith("chat") for n in names), names
