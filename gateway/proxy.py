"""The recording proxy: an OpenAI-compatible ``/v1/chat/completions`` that forwards each call to the
configured upstream and records it as a turn. Any runtime captures trajectories by changing its base URL.

- The trajectory is named by the ``X-Trajstream-Trajectory-Id`` header (or ``trajstream.trajectory_id``
  in the body, which is removed before forwarding). Its task and agent come from ``X-Trajstream-Task`` and
  ``X-Trajstream-Agent`` (or ``trajstream.task`` / ``trajstream.agent_id``). A call that names none is
  forwarded and not recorded, and says so in ``X-Trajstream-Recorded: false``.
- ``POST /v1/trajectories/{id}/end`` with ``{"outcome": "success", "reward": 1.0}`` closes it.
- The proxy keeps no state, so any replica may take any call: a call's turn index is the number of
  assistant messages in its request (clients send the whole conversation), its new messages are those
  after the last assistant message, and its event ids derive from the trajectory id and the turn index,
  so a retried call is recorded once.
- A streamed response is passed on chunk by chunk and recorded whole when it ends; the final
  ``data: [DONE]`` goes out after the broker acknowledged the turn.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from trajstream import json_input
from trajstream.gateway.access import API_KEY, authorize
from trajstream.gateway.context import GATEWAY
from trajstream.gateway.publisher import Record
from trajstream.topics import EVENTS_TOPIC
from trajstream_sdk.events import ENVIRONMENTS, OUTCOMES, end_record, start_record, turn_record
from trajstream_sdk.openai_chat import ChatRecorder
from trajstream_sdk.schemas import TRAJECTORY_END, TRAJECTORY_START, TURN

log = logging.getLogger(__name__)
_NS = uuid.UUID("0f4c3c52-3d1a-5b7e-8e4a-6a1f6e2b9c31")
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "authorization", "accept-encoding"}


@dataclass
class Naming:
    trajectory_id: str
    task: str
    agent_id: str
    environment: str


def event_id(trajectory_id: str, what: str) -> str:
    return str(uuid.uuid5(_NS, f"{trajectory_id}:{what}"))


def _naming(request: web.Request, body: dict[str, Any]) -> Naming | None:
    extra = body.pop("trajstream", None)
    extra = extra if isinstance(extra, dict) else {}
    tid = request.headers.get("X-Trajstream-Trajectory-Id") or extra.get("trajectory_id")
    if not tid:
        return None
    key = request[API_KEY]
    default_agent = key.value if key is not None and key.scope == "agent" else "proxy"
    environment = request.headers.get("X-Trajstream-Environment") or extra.get("environment") or "dev"
    if environment not in ENVIRONMENTS:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"environment must be one of {', '.join(ENVIRONMENTS)}"}),
                                 content_type="application/json")  # fmt: skip
    try:
        uuid.UUID(str(tid))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"trajectory id {tid!r} is not a UUID"}),
                                 content_type="application/json") from None  # fmt: skip
    task = request.headers.get("X-Trajstream-Task") or extra.get("task") or ""
    agent = request.headers.get("X-Trajstream-Agent") or extra.get("agent_id") or default_agent
    return Naming(str(tid), str(task), str(agent), str(environment))


def _upstream(request: web.Request) -> tuple[str, dict[str, str]]:
    gw = request.app[GATEWAY]
    settings = gw.settings
    if not settings.gateway_upstream_url:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "the recording proxy has no upstream: set TRAJSTREAM_GATEWAY_UPSTREAM_URL"}),
            content_type="application/json",
        )
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
    if settings.gateway_upstream_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.gateway_upstream_api_key.get_secret_value()}"
    elif not gw.keys.configured and "Authorization" in request.headers:
        # With no gateway key, the caller's own credentials are the upstream's.
        headers["Authorization"] = request.headers["Authorization"]
    return settings.gateway_upstream_url.rstrip("/") + "/chat/completions", headers


def turn_records(naming: Naming, request_body: dict[str, Any], completion: dict[str, Any] | None,
                 duration_ms: int, error_type: str | None, topic: str, codec: Any) -> list[Record]:  # fmt: skip
    """The start (on the first call) and the turn of one proxied call, with ids a retry repeats."""
    messages = list(request_body.get("messages") or [])
    assistant_at = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
    index = len(assistant_at)
    recorder = ChatRecorder()
    for m in messages:  # tool names of earlier calls, for the tool results this call carries
        for call in (m.get("tool_calls") or []) if isinstance(m, dict) else []:
            recorder.tool_names[str(call.get("id"))] = str((call.get("function") or {}).get("name") or "unknown")
    recorder.recorded = assistant_at[-1] + 1 if assistant_at else 0
    key = naming.trajectory_id.encode()
    out: list[Record] = []
    system = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"), None)
    if index == 0:
        start = start_record(
            naming.trajectory_id,
            naming.task or _first_user_text(messages),
            agent_id=naming.agent_id,
            environment=naming.environment,  # type: ignore[arg-type]
            framework="trajstream-proxy",
            system_message=system if isinstance(system, str) else None,
        )
        start["event_id"] = event_id(naming.trajectory_id, "start")
        out.append(Record(topic, key, codec.encode(TRAJECTORY_START, start)))
    tools = _tool_names(request_body)
    ctx: dict[str, Any] = {"available_tools": tools, "active_entities": (), "persist": True}
    if completion is not None:
        turn_messages, model = recorder.convert(
            messages, completion, request_model=request_body.get("model"), provider="openai", model_version=None,
            tool_statuses={}, available_tools=tools, active_entities=(), persist=True,
        )  # fmt: skip
    else:
        turn_messages = [m for raw in messages[recorder.recorded :] for m in recorder.message(raw, {}, ctx)]
        model = None
    turn = turn_record(naming.trajectory_id, index, turn_messages, model=model, duration_ms=duration_ms,
                       error=error_type is not None, error_type=error_type)  # fmt: skip
    turn["event_id"] = event_id(naming.trajectory_id, f"turn:{index}")
    out.append(Record(topic, key, codec.encode(TURN, turn)))
    return out


def _first_user_text(messages: list[Any]) -> str:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return str(m["content"])[:500]
    return "(proxied chat)"


def _tool_names(body: dict[str, Any]) -> tuple[str, ...]:
    names = []
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            names.append(str(fn["name"]))
    return tuple(names)


@dataclass
class StreamedCompletion:
    """A streamed chat completion put back together from its chunks."""

    id: str | None = None
    model: str | None = None
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.reasoning.append(str(reasoning))
            for call in delta.get("tool_calls") or []:
                empty = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                slot = self.tool_calls.setdefault(int(call.get("index", 0)), empty)
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return {"id": self.id, "model": self.model, "usage": self.usage,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}]}  # fmt: skip


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    try:
        body = json_input.loads(await request.read())
    except json_input.JSONInputError as exc:
        return web.json_response({"error": f"not JSON: {exc}"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "a chat completion request is a JSON object"}, status=400)
    naming = _naming(request, body)
    if naming is not None:
        authorize(request[API_KEY], [(naming.agent_id, naming.environment)])
    url, headers = _upstream(request)
    topic = gw.settings.topic(EVENTS_TOPIC)
    started = time.monotonic()
    client: httpx.AsyncClient = request.app[CLIENT]
    if body.get("stream"):
        return await _stream(request, client, url, headers, body, naming, topic, started)
    upstream = await client.post(url, json=body, headers=headers)
    duration_ms = int((time.monotonic() - started) * 1000)
    recorded = "false"
    if naming is not None:
        completion = upstream.json() if upstream.status_code == 200 else None
        error = None if upstream.status_code == 200 else f"upstream HTTP {upstream.status_code}"
        await gw.publisher.publish(turn_records(naming, body, completion, duration_ms, error, topic, gw.codec))
        recorded = "true"
    return web.Response(status=upstream.status_code, body=upstream.content,
                        content_type=upstream.headers.get("content-type", "application/json").split(";")[0],
                        headers={"X-Trajstream-Recorded": recorded})  # fmt: skip


async def _stream(request: web.Request, client: httpx.AsyncClient, url: str, headers: dict[str, str],
                  body: dict[str, Any], naming: Naming | None, topic: str,
                  started: float) -> web.StreamResponse:  # fmt: skip
    gw = request.app[GATEWAY]
    async with client.stream("POST", url, json=body, headers=headers) as upstream:
        if upstream.status_code != 200:
            content = await upstream.aread()
            if naming is not None:
                duration_ms = int((time.monotonic() - started) * 1000)
                error = f"upstream HTTP {upstream.status_code}"
                await gw.publisher.publish(turn_records(naming, body, None, duration_ms, error, topic, gw.codec))
            return web.Response(status=upstream.status_code, body=content, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Trajstream-Recorded": "true" if naming else "false"})  # fmt: skip
        await response.prepare(request)
        assembled = StreamedCompletion()
        done = False
        async for line in upstream.aiter_lines():
            if line.startswith("data:"):
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue  # sent once the turn is acknowledged
                try:
                    assembled.add(json.loads(data))
                except (ValueError, AttributeError, TypeError):
                    log.warning("proxy: a stream chunk that is not JSON was passed on unrecorded")
            await response.write((line + "\n").encode())
        if naming is not None:
            duration_ms = int((time.monotonic() - started) * 1000)
            await gw.publisher.publish(turn_records(naming, body, assembled.completion(), duration_ms, None, topic,
                                                    gw.codec))  # fmt: skip
        if done:
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def end_trajectory(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tid = request.match_info["trajectory_id"]
    try:
        uuid.UUID(tid)
        doc = json_input.loads(await request.read() or b"{}")
    except ValueError as exc:
        return web.json_response({"error": f"bad request: {exc}"}, status=400)
    outcome = doc.get("outcome", "success") if isinstance(doc, dict) else None
    if outcome not in OUTCOMES:
        return web.json_response({"error": f"outcome must be one of {', '.join(OUTCOMES)}"}, status=400)
    reward = doc.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
        return web.json_response({"error": "reward must be a number"}, status=400)
    turn_count = doc.get("turn_count")
    record = end_record(tid, outcome, final_reward=None if reward is None else float(reward),
                        turn_count=turn_count if isinstance(turn_count, int) else None,
                        error_type=doc.get("error_type"), error_message=doc.get("error_message"))  # fmt: skip
    record["event_id"] = event_id(tid, "end")
    await gw.publisher.publish(
        [Record(gw.settings.topic(EVENTS_TOPIC), tid.encode(), gw.codec.encode(TRAJECTORY_END, record))]
    )
    return web.json_response({"trajectory_id": tid, "outcome": outcome})


CLIENT: web.AppKey[httpx.AsyncClient] = web.AppKey("proxy_client", httpx.AsyncClient)


async def _client(app: web.Application) -> AsyncIterator[None]:
    app[CLIENT] = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
    yield
    await app[CLIENT].aclose()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_client)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/trajectories/{trajectory_id}/end", end_trajectory)
