"""The console's routes on the data API: its pages at /console/, their JSON at /api/console/, and the stream
that tells an open page new data has landed (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from trajstream.consumers.api_access import COOKIE, ROLE, need_operator, role_of, tokens_configured
from trajstream.consumers.clickhouse_store import ClickHouseError
from trajstream.consumers.console import pipeline_view
from trajstream.consumers.console.pages import NotFoundError, Pages
from trajstream.consumers.console.queries import QueryLimitError
from trajstream.consumers.console.timerange import RangeError, TimeRange
from trajstream.consumers.json_http import bad_request, json_body, json_error, json_response
from trajstream.consumers.recall import Recall, RecallError
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.dlq import letters_at, replay
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for

STATIC = Path(str(resources.files("trajstream.consumers.console") / "static"))
LIST_FILTERS = ("outcome", "min_reward", "max_reward", "agent", "domain", "model_version", "tag", "q")
LANDED_POLL_S = 0.2  # how often the stream looks at the sink's count: well inside the 2 s the page promises
PING_S = 15.0
TRAINER_RANGE = "90d"


@dataclass
class Console:
    settings: Settings
    clickhouse: Callable[[], Any]  # raises StoreUnavailableError while ClickHouse is away
    recall: Callable[[], Recall]
    landed: Callable[[], int]  # trajectories the ClickHouse sink has landed (since this worker started)
    sinks: Callable[[], dict[str, Any]]
    sampler: pipeline_view.FlowSampler | None = None


async def _answer(fn: Callable[[], Any]) -> web.Response:
    """Run a page's queries in a thread; every failure becomes a JSON error with a kind the page shows."""
    started = time.perf_counter()
    try:
        data = await asyncio.to_thread(fn)
    except QueryLimitError as exc:
        return json_error(str(exc), exc.kind, 504 if exc.kind == "timeout" else 413)
    except StoreUnavailableError as exc:
        return json_error(str(exc), "unavailable", 503)
    except NotFoundError as exc:
        return json_error(str(exc), "not_found", 404)
    except (RangeError, RecallError, ClickHouseError, TrajstreamError, ValueError) as exc:
        return json_error(str(exc), "bad_request", 400)
    if isinstance(data, dict):
        data["took_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return json_response(data)


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise bad_request(f"{name}= is a whole number") from None
    return max(low, min(high, value))


def add_console(app: web.Application, console: Console) -> None:
    s = console.settings

    def pages() -> Pages:
        return Pages(console.clickhouse(), s)

    def range_of(request: web.Request) -> TimeRange:
        return TimeRange.of(request.query)

    async def whoami(request: web.Request) -> web.Response:
        auth = "token" if tokens_configured(s) else "loopback"
        return json_response({"role": request[ROLE], "auth": auth})

    async def overview(request: web.Request) -> web.Response:
        return await _answer(lambda: pages().overview(range_of(request), request.query.get("by", "agent")))

    async def learning(request: web.Request) -> web.Response:
        return await _answer(lambda: pages().learning(range_of(request)))

    async def tools(request: web.Request) -> web.Response:
        return await _answer(lambda: pages().tools(range_of(request)))

    async def models(request: web.Request) -> web.Response:
        return await _answer(lambda: pages().models(range_of(request)))

    async def trajectories(request: web.Request) -> web.Response:
        filters = {k: request.query[k] for k in LIST_FILTERS if request.query.get(k)}
        page, size = _int(request, "page", 1, 1, 10_000), _int(request, "page_size", 50, 1, 500)
        return await _answer(lambda: pages().trajectories(range_of(request), filters, page, size))

    async def trajectory(request: web.Request) -> web.Response:
        return await _answer(lambda: pages().trajectory(request.match_info["id"]))

    async def search(request: web.Request) -> web.Response:
        body = await json_body(request)
        query, k = str(body.get("query") or ""), int(body.get("k") or 10)

        def run() -> dict[str, Any]:
            hits = console.recall().similar(query, max(1, min(k, 50)), {"outcome": "any"}, default_outcome=None)
            return {"results": [{**h, "score": h.pop("similarity")} for h in hits]}

        return await _answer(run)

    async def dead_letters(request: web.Request) -> web.Response:
        page, size = _int(request, "page", 1, 1, 10_000), _int(request, "page_size", 100, 1, 500)
        stage = request.query.get("stage") or None
        return await _answer(lambda: pages().dead_letters(range_of(request), stage, page, size))

    async def replay_letters(request: web.Request) -> web.Response:
        refused = need_operator(request)
        if refused is not None:
            return refused
        refs = (await json_body(request)).get("refs")
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            return json_error('the body is {"refs": ["partition:offset", ...]}', "bad_request", 400)
        try:
            letters = await letters_at(s, codec_for(s), list(dict.fromkeys(refs)))
            sent = await replay(s, letters)  # refuses all of them if any cannot go back (nothing half done)
        except TrajstreamError as exc:
            return json_error(str(exc), "bad_request", 400)
        return json_response({"replayed": sent, "refs": [letter.ref for letter in letters]})

    async def pipeline(request: web.Request) -> web.Response:
        return json_response(await pipeline_view.pipeline(s, console.sampler, console.sinks()))

    async def trainer(request: web.Request) -> web.Response:
        return await _answer(lambda: pages().trainer(TimeRange.last(TRAINER_RANGE)))

    async def stream(request: web.Request) -> web.StreamResponse:
        """``landed`` whenever the ClickHouse sink's count moves: the open page fetches again."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        await response.prepare(request)
        seen, pinged = console.landed(), time.monotonic()
        await response.write(f"event: hello\ndata: {json.dumps({'trajectories': seen})}\nretry: 1000\n\n".encode())
        try:
            while True:
                await asyncio.sleep(LANDED_POLL_S)
                now = console.landed()
                if now != seen:
                    seen = now
                    data = json.dumps({"trajectories": now, "at": int(time.time() * 1000)})
                    await response.write(f"event: landed\ndata: {data}\n\n".encode())
                elif time.monotonic() - pinged > PING_S:
                    pinged = time.monotonic()
                    await response.write(b"event: ping\ndata: {}\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away
        return response

    async def login(request: web.Request) -> web.Response:
        """Sign in: a valid token becomes an HttpOnly, same-site session cookie (EventSource sends no headers)."""
        if "X-Trajstream-Console" not in request.headers:
            return json_error("sign in from the console page", "forbidden", 403)
        token = str((await json_body(request)).get("token") or "")
        role = role_of(s, token) if tokens_configured(s) else None
        if role is None:
            return json_error(
                "that token is neither TRAJSTREAM_API_READ_TOKEN nor _OPERATOR_TOKEN", "unauthorized", 401
            )
        response = json_response({"role": role})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)  # fmt: skip
        return response

    async def index(request: web.Request) -> web.StreamResponse:
        # The pages load nothing from elsewhere, and this says so to the browser too.
        policy = "default-src 'self'; img-src 'self' data:"
        return web.FileResponse(STATIC / "index.html",
                                headers={"Cache-Control": "no-cache", "Content-Security-Policy": policy})  # fmt: skip

    async def to_console(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    app.add_routes([
        web.get("/", to_console), web.get("/console", to_console), web.get("/console/", index),
        web.post("/console/login", login),
        web.get("/api/console/whoami", whoami), web.get("/api/console/overview", overview),
        web.get("/api/console/learning", learning), web.get("/api/console/tools", tools),
        web.get("/api/console/models", models), web.get("/api/console/trajectories", trajectories),
        web.get("/api/console/trajectory/{id}", trajectory), web.post("/api/console/search", search),
        web.get("/api/console/deadletters", dead_letters),
        web.post("/api/console/deadletters/replay", replay_letters),
        web.get("/api/console/pipeline", pipeline), web.get("/api/console/trainer", trainer),
        web.get("/api/console/stream", stream),
    ])  # fmt: skip
    app.router.add_static("/console/", STATIC, follow_symlinks=False, append_version=False)
