"""Real OpenAI instrumentations -> OTLP spans -> map_trace -> the codec -> the real assembly.

Each configuration runs the agent of tests/support/otel_agent.py in a process of its own against the test
OpenAI server (the instrumentations patch ``openai`` globally and read their environment once per process);
the spans come back as the OTLP exporter encodes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.support.env import PROJECT_ROOT as REPO
from tests.support.openai_server import OpenAIServer, Reply, openai_server_fixture  # noqa: F401
from tests.support.otel_agent import QUESTION, SYSTEM, WEATHER
from tests.support.otlp_spans import assemble
from trajstream.streams.otlp.mapping import MappedTrajectory, map_trace
from trajstream.streams.otlp.spans import Span, spans_of

LATEST = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
ANSWER = "It is rainy, 57F; the time service is down."


def run_agent(server: OpenAIServer, tmp_path: Path, instrumentation: str, env: dict[str, str], *,
              agent_span: bool = True) -> list[Span]:  # fmt: skip
    server.script(
        [
            Reply(None, finish_reason="tool_calls",
                  tool_calls=(("call_w", "get_weather", {"city": "Paris"}), ("call_t", "get_time", {"city": "Paris"}))),
            Reply(ANSWER, prompt_tokens=150, completion_tokens=12),
        ]
    )  # fmt: skip
    out = tmp_path / "spans.pb"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    command = [sys.executable, "-m", "tests.support.otel_agent", instrumentation, server.base_url, str(out)]
    done = subprocess.run(
        command + (["--agent-span"] if agent_span else []),
        env={**clean, **env, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sdk/python/src")])},
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = TracesData()
    data.ParseFromString(out.read_bytes())
    return spans_of(data)


def contents(turn: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m["role"], m["content"][0].rsplit(".", 1)[1], m["content"][1]) for m in turn["messages"]]


def check_whole(mapped: list[MappedTrajectory], codec: Any, *, agent: bool) -> dict[str, Any]:
    """One trajectory, every message and tool call in it, that assembles closed with both turns."""
    assert len(mapped) == 1
    (trajectory,) = mapped
    assert trajectory.complete and not trajectory.skipped
    names = [name for name, _ in trajectory.events]
    assert names == ["trajectory_start", "turn", "turn", "trajectory_end"]
    start, first, second, end = (record for _, record in trajectory.events)
    assert contents(first) == [
        ("system", "TextContent", {"text": SYSTEM}),
        ("user", "TextContent", {"text": QUESTION}),
        ("assistant", "ToolCall", {"name": "get_weather", "call_id": "call_w", "arguments": first_args(first, 2)}),
        ("assistant", "ToolCall", {"name": "get_time", "call_id": "call_t", "arguments": first_args(first, 3)}),
    ]
    assert [json.loads(first_args(first, i)) for i in (2, 3)] == [{"city": "Paris"}] * 2
    (weather, clock, answer) = contents(second)
    assert weather[:2] == ("tool", "ToolResponse") and json.loads(weather[2]["result"]) == WEATHER
    assert (weather[2]["name"], weather[2]["call_id"], weather[2]["status"]) == ("get_weather", "call_w", "success")
    # get_time's execute_tool span ended in ERROR with error.type TimeoutError.
    assert (clock[2]["name"], clock[2]["call_id"], clock[2]["status"]) == ("get_time", "call_t", "timeout")
    assert answer == ("assistant", "TextContent", {"text": ANSWER})
    # The turns' usage is their own; the agent span's 999999 is never added.
    assert (first["model"]["input_tokens"], second["model"]["input_tokens"]) == (100, 150)
    assert second["model"]["output_tokens"] == 12 and second["model"]["finish_reason"] == "stop"
    assert start["task_description"] == QUESTION and start["system_message"] == SYSTEM
    if agent:
        assert (start["agent_id"], start["agent_name"], start["conversation_id"]) == ("agent-weather-1", "weather",
                                                                                      "conv-42")  # fmt: skip
    assert end["outcome"] == "success" and end["turn_count"] == 2

    assembled = assemble(codec, mapped)[trajectory.trajectory_id]
    assert assembled["reason"] == "ended" and assembled["outcome"] == "success"
    assert len(assembled["turns"]) == 2 and assembled["missing_turns"] == []
    assert assembled["task_description"] == QUESTION
    return assembled


def first_args(turn: dict[str, Any], index: int) -> str:
    return str(turn["messages"][index]["content"][1]["arguments"])


def test_openai_v2_latest_conventions_content_on_spans(openai_server: OpenAIServer, tmp_path: Path, codec: Any) -> None:
    env = {**LATEST, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}
    check_whole(map_trace(run_agent(openai_server, tmp_path, "openai-v2", env)), codec, agent=True)


def test_openai_v2_without_an_agent_span_maps_the_root(openai_server: OpenAIServer, tmp_path: Path,
                                                       codec: Any) -> None:  # fmt: skip
    env = {**LATEST, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}
    mapped = map_trace(run_agent(openai_server, tmp_path, "openai-v2", env, agent_span=False))
    check_whole(mapped, codec, agent=False)
    start = mapped[0].events[0][1]
    assert start["agent_id"] == "weather-service"  # no agent span: the resource's service.name


@pytest.mark.parametrize("capture", ["EVENT_ONLY", ""])
def test_openai_v2_content_not_on_spans(openai_server: OpenAIServer, tmp_path: Path, codec: Any, capture: str) -> None:
    """openai-v2 2.4b0 writes EVENT_ONLY content as log records (the Logs API), and without the opt-in it
    still uses the latest conventions (util-genai 1.1b0): the spans carry no content. The trajectory still
    lands, with its turns' model calls and no messages."""
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": capture} | (LATEST if capture else {})
    (trajectory,) = map_trace(run_agent(openai_server, tmp_path, "openai-v2", env))
    turns = [record for name, record in trajectory.events if name == "turn"]
    assert [t["messages"] for t in turns] == [[], []]
    assert [t["model"]["finish_reason"] for t in turns] == ["tool_calls", "stop"]
    assembled = assemble(codec, [trajectory])[trajectory.trajectory_id]
    assert assembled["reason"] == "ended" and len(assembled["turns"]) == 2


def test_openinference(openai_server: OpenAIServer, tmp_path: Path, codec: Any) -> None:
    spans = run_agent(openai_server, tmp_path, "openinference", {})
    check_whole(map_trace(spans), codec, agent=True)
    # Its flattened llm.input_messages / llm.output_messages alone are enough (input.value is a fallback).
    raw = ("input.value", "output.value")
    only_flattened = [replace(s, attributes={k: v for k, v in s.attributes.items() if k not in raw}) for s in spans]
    check_whole(map_trace(only_flattened), codec, agent=True)


def test_openinference_with_messages_hidden_reads_the_raw_values(openai_server: OpenAIServer, tmp_path: Path,
                                                                 codec: Any) -> None:  # fmt: skip
    hide = {"OPENINFERENCE_HIDE_INPUT_MESSAGES": "true", "OPENINFERENCE_HIDE_OUTPUT_MESSAGES": "true"}
    spans = run_agent(openai_server, tmp_path, "openinference", hide)
    assert not any(k.startswith("llm.input_messages") for s in spans for k in s.attributes)
    check_whole(map_trace(spans), codec, agent=True)


def test_traceloop(openai_server: OpenAIServer, tmp_path: Path, codec: Any) -> None:
    check_whole(map_trace(run_agent(openai_server, tmp_path, "traceloop", {})), codec, agent=True)
