"""A real OpenAI-compatible HTTP server for tests, run in-process on 127.0.0.1 in a background thread.

It answers ``POST /v1/chat/completions`` from a script of behaviours, one per request in arrival order
(then ``default``, if set): a structured-output reply, malformed content, an HTTP error, or a stall
longer than the client's timeout. It records every request, and the most requests it ever held at
once, so tests can check what was sent and how many calls were in flight.

Use the ``openai_server`` fixture: ``from tests.openai_server import openai_server_fixture  # noqa: F401``
(importing it under its own name keeps ruff's F811 quiet where tests take ``openai_server`` as a parameter;
``from tests.openai_server import openai_server`` works too).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """Answer 200 with ``content`` as the assistant message: a dict or list as JSON text, a str as it is,
    None as no content (a reply that only calls tools).

    ``tool_calls`` are ``(call_id, name, arguments)``: the assistant asks for these tools (arguments a dict,
    sent as JSON text as OpenAI does).
    """

    content: Any
    prompt_tokens: int = 100
    completion_tokens: int = 20
    delay_s: float = 0.0
    finish_reason: str = "stop"
    tool_calls: tuple[tuple[str, str, dict[str, Any]], ...] = ()


@dataclass(frozen=True)
class HttpError:
    """Answer ``status`` with an OpenAI-style error body (and a Retry-After header when given)."""

    status: int
    message: str = "scripted failure"
    retry_after: float | None = None


@dataclass(frozen=True)
class Stall:
    """Hold the request ``seconds`` (longer than the client's timeout), then answer ``then`` or just hang up."""

    seconds: float
    then: Reply | HttpError | None = None


Behaviour = Reply | HttpError | Stall


def malformed(text: str = "this is not JSON {") -> Reply:
    """A reply whose content is not the JSON object asked for."""
    return Reply(text)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body, or the raw text when it is not JSON

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


@dataclass
class OpenAIServer:
    default: Behaviour | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, behaviours: Iterable[Behaviour], default: Behaviour | None = None) -> None:
        """Answer the next requests with ``behaviours`` in order, then with ``default`` (or HTTP 400)."""
        with self._lock:
            self._queue = deque(behaviours)
            self.default = default

    def start(self) -> OpenAIServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers so that none outlives the test
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- called from handler threads -------------------------------------------------------------

    def _enter(self, request: RecordedRequest) -> Behaviour | None:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._queue.popleft() if self._queue else self.default

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False when the server is stopping meanwhile."""
        return not self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    server_owner: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        owner = self.server_owner
        request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        behaviour = owner._enter(request)
        try:
            if self.path != COMPLETIONS_PATH:
                self._error(HttpError(404, f"no route {self.path}"))
            elif behaviour is None:
                self._error(HttpError(400, "the test server has no scripted behaviour left for this request"))
            else:
                self._perform(behaviour, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timed out) before the answer: that is what stalls are for
        finally:
            owner._leave()

    def _perform(self, behaviour: Behaviour, body: Any) -> None:
        if isinstance(behaviour, Stall):
            if self.server_owner._wait(behaviour.seconds) and behaviour.then is not None:
                self._perform(behaviour.then, body)
        elif isinstance(behaviour, HttpError):
            self._error(behaviour)
        elif self.server_owner._wait(behaviour.delay_s):
            self._reply(behaviour, body)

    def _reply(self, reply: Reply, body: Any) -> None:
        content = (
            reply.content if reply.content is None or isinstance(reply.content, str) else json.dumps(reply.content)
        )
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
                for call_id, name, arguments in reply.tool_calls
            ]
        model = body.get("model", "unknown") if isinstance(body, dict) else "unknown"
        number = len(self.server_owner.requests)
        if isinstance(body, dict) and body.get("stream"):
            self._stream(reply, content, f"chatcmpl-test-{number}", model, bool((body.get("stream_options") or {})
                                                                                 .get("include_usage")))  # fmt: skip
            return
        self._send(
            200,
            {
                "id": f"chatcmpl-test-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            },
        )

    def _stream(self, reply: Reply, content: str | None, completion_id: str, model: str, usage: bool) -> None:
        """Server-sent events as OpenAI streams them: a role chunk, content in pieces, each tool call's name
        then its arguments in two pieces, the finish reason, the usage when asked for, then [DONE]."""
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        chunks = [chunk({"role": "assistant", "content": ""})]
        text = content or ""
        chunks += [chunk({"content": text[i : i + 7]}) for i in range(0, len(text), 7)]
        for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
            encoded = json.dumps(arguments)
            half = len(encoded) // 2
            opening = {"index": index, "id": call_id, "type": "function",
                       "function": {"name": name, "arguments": encoded[:half]}}  # fmt: skip
            chunks.append(chunk({"tool_calls": [opening]}))
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": encoded[half:]}}]}))
        chunks.append(chunk({}, reply.finish_reason))
        if usage:
            chunks.append({**base, "choices": [], "usage": {
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens}})  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for c in chunks:
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def _error(self, error: HttpError) -> None:
        kind = "rate_limit_exceeded" if error.status == 429 else "server_error" if error.status >= 500 else "invalid"
        headers = {"retry-after": f"{error.retry_after:g}"} if error.retry_after is not None else {}
        self._send(error.status, {"error": {"message": error.message, "type": kind, "code": None}}, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(name="openai_server")
def openai_server_fixture() -> Iterator[OpenAIServer]:
    """A started server; stopped (stalled requests released) after the test."""
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


openai_server = openai_server_fixture
