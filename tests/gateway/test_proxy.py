"""The recording proxy: the openai Python client and a fetch-based Node client, streaming and not, through
the gateway to the test upstream; each conversation lands whole in ClickHouse as one trajectory."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.env import PROJECT_ROOT
from tests.support.gateway import running_gateway
from tests.support.landing import Landed, land, landing_settings
from tests.support.openai_server import HttpError, OpenAIServer, Reply, openai_server_fixture  # noqa: F401
from trajstream.settings import Settings
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
                                                                                       "properties": {}}}}]  # fmt: skip
ANSWER = "It is rainy in Paris."


def _script(server: OpenAIServer) -> None:
    server.script([Reply(None, finish_reason="tool_calls", tool_calls=(("call_w", "get_weather", {"city": "Paris"}),)),
                   Reply(ANSWER, prompt_tokens=150, completion_tokens=12)])  # fmt: skip


def _python_conversation(base_url: str, tid: str, stream: bool) -> tuple[Any, str]:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0,
                           default_headers={"X-Trajstream-Trajectory-Id": tid, "X-Trajstream-Task": "Weather in Paris",
                                            "X-Trajstream-Agent": "py-weather-bot"})  # fmt: skip
    messages: list[Any] = [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "What is the weather in Paris?"}]  # fmt: skip
    if stream:
        calls: dict[int, dict[str, Any]] = {}
        for chunk in client.chat.completions.create(model="test-model", messages=messages, tools=TOOLS, stream=True):
            for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                slot = calls.setdefault(call.index, {"id": "", "type": "function",
                                                     "function": {"name": "", "arguments": ""}})  # fmt: skip
                slot["id"] = call.id or slot["id"]
                slot["function"]["name"] += (call.function and call.function.name) or ""
                slot["function"]["arguments"] += (call.function and call.function.arguments) or ""
        first: Any = {"role": "assistant", "content": None, "tool_calls": [calls[i] for i in sorted(calls)]}
    else:
        first = client.chat.completions.create(model="test-model", messages=messages, tools=TOOLS)
        first = first.choices[0].message.model_dump(exclude_none=True)
    messages += [first, {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": '{"sky": "rainy"}'}]
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="test-model", messages=messages, tools=TOOLS, stream=True,
            stream_options={"include_usage": True}) if c.choices)  # fmt: skip
    else:
        text = (
            client.chat.completions.create(model="test-model", messages=messages, tools=TOOLS)
            .choices[0]
            .message.content
            or ""
        )
    return first, text


def _check(landed: Landed, agent: str, system: bool) -> None:
    assert landed.trajectory["outcome"] == "success" and landed.trajectory["agent_id"] == agent
    rows = [(m["turn_index"], m["role"], m["kind"], m["tool_name"]) for m in landed.messages]
    expected = [(0, "user", "text", ""), (0, "assistant", "tool_call", "get_weather"),
                (1, "tool", "tool_response", "get_weather"), (1, "assistant", "text", "")]  # fmt: skip
    assert rows == ([(0, "system", "text", "")] if system else []) + expected
    assert landed.messages[-1]["text"] == ANSWER
    assert json.loads(next(m["text"] for m in landed.messages if m["kind"] == "tool_call")) == {"city": "Paris"}
    assert [(c["tool"], c["call_id"], c["status"]) for c in landed.tool_calls] == [("get_weather", "call_w", "success")]


@pytest.mark.timeout(600)
def test_python_and_node_clients_streaming_and_not_are_recorded_whole(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer, tmp_path: Path, chdb_dir: Path
) -> None:
    settings = landing_settings(topics, chdb_dir)
    ids = {name: str(uuid.uuid4()) for name in ("py-plain", "py-stream", "node-plain", "node-stream")}
    env = {"TRAJSTREAM_GATEWAY_UPSTREAM_URL": openai_server.base_url}
    with running_gateway(settings, tmp_path / "gw.log", **env) as gw:
        for name in ("py-plain", "py-stream"):
            _script(openai_server)
            first, text = _python_conversation(f"{gw.url}/v1", ids[name], stream=name.endswith("stream"))
            # What the client got is what the upstream sent, streamed or not.
            assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
            assert text == ANSWER
            ended = httpx.post(f"{gw.url}/v1/trajectories/{ids[name]}/end", json={"outcome": "success"})
            assert ended.status_code == 200
        for name in ("node-plain", "node-stream"):
            _script(openai_server)
            run = subprocess.run(["node", str(PROJECT_ROOT / "tests/node/proxy_client.mjs"), gw.url, ids[name],
                                  name.split("-")[1]], capture_output=True, text=True, timeout=60)  # fmt: skip
            assert run.returncode == 0, run.stderr
            answer = json.loads(run.stdout.strip().splitlines()[-1])
            assert answer["second"]["content"] == ANSWER
        # A retried call (same conversation so far) is recorded once: its turn's event id is the same.
        _script(openai_server)
        _python_conversation(f"{gw.url}/v1", ids["py-plain"], stream=False)
    # The upstream saw the requests as the clients sent them, without the gateway's own headers' key.
    assert all("authorization" not in r.headers or r.headers["authorization"] == "Bearer unused"
               for r in openai_server.requests)  # fmt: skip
    landed = land(settings, codec, ids.values(), tmp_path / "worker.log")
    _check(landed[ids["py-plain"]], "py-weather-bot", system=True)
    _check(landed[ids["py-stream"]], "py-weather-bot", system=True)
    _check(landed[ids["node-plain"]], "node-weather-bot", system=False)
    _check(landed[ids["node-stream"]], "node-weather-bot", system=False)
    assert landed[ids["py-stream"]].turns[1]["model"] == "test-model"


def test_an_upstream_error_is_passed_on_and_recorded_as_a_failed_turn(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.script([HttpError(500, "upstream broke")])
    tid = str(uuid.uuid4())
    with running_gateway(topics, tmp_path / "gw.log", TRAJSTREAM_GATEWAY_UPSTREAM_URL=openai_server.base_url) as gw:
        answer = httpx.post(f"{gw.url}/v1/chat/completions", headers={"X-Trajstream-Trajectory-Id": tid},
                            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        unnamed = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": []})
        bad_id = httpx.post(f"{gw.url}/v1/chat/completions", headers={"X-Trajstream-Trajectory-Id": "nope"},
                            json={"model": "m", "messages": []})  # fmt: skip
    assert answer.status_code == 500 and answer.json()["error"]["message"] == "upstream broke"
    assert answer.headers["X-Trajstream-Recorded"] == "true"
    assert unnamed.headers["X-Trajstream-Recorded"] == "false"  # forwarded, not recorded, and it says so
    assert bad_id.status_code == 400 and "not a UUID" in bad_id.json()["error"]
    from tests.support.streams import read
    from trajstream.topics import EVENTS_TOPIC

    events = [r.event for r in __import__("asyncio").run(read(topics, codec, EVENTS_TOPIC)) if r.event]
    turns = [e.record for e in events if e.name == "turn"]
    assert len(turns) == 1 and turns[0]["error"] and turns[0]["error_type"] == "upstream HTTP 500"
