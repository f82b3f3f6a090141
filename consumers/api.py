"""The data API of `trajstream up`: recall, simulation, tool recommendations, read-only SQL, health, and the
web console (consumers/console), behind the tokens of consumers/api_access.py.

It runs in the process that owns the embedded stores (chDB and milvus-lite take one process per data
directory), so the CLI, tests and dashboards reach the data through it while the pipeline runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web

from trajstream.consumers.api_access import guard
from trajstream.consumers.clickhouse_store import read_only_query, sql_limits
from trajstream.consumers.console.routes import Console, add_console
from trajstream.consumers.json_http import bad_request, json_body, json_error, json_response
from trajstream.consumers.milvus_store import DECISIONS, TRAJECTORIES, loaded, quote
from trajstream.consumers.recall import Recall, RecallError
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RouteContext:
    """What routes added from a later stage get of the data worker: its settings and its open stores."""

    settings: Settings
    clickhouse: Callable[[], Any]  # the worker's client; raises StoreUnavailableError while ClickHouse is away
    embedder: Any = None  # the worker's embedding model (consumers.embedding.Embedder), or None


class RouteAdder(Protocol):
    """Adds routes to the data API. A stage above the consumers (the corpus's exports and reports) serves
    through the data worker this way: the layers forbid the consumers to import it, and embedded chDB lets
    only the worker's process read the data directory while it runs."""

    def __call__(self, app: web.Application, context: RouteContext) -> None: ...


def _need(body: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise bad_request(f"missing field(s): {', '.join(missing)}")
    return [body[n] for n in names]


def _integer(body: dict[str, Any], name: str, default: int | None = None) -> int:
    """``body[name]`` as an integer (as int() reads it: 5, "5", 5.0; null or absent: ``default``), or a 400
    that names the field."""
    value: Any = body.get(name)
    value = default if value is None else value
    try:
        if isinstance(value, bool):
            raise TypeError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"{name} must be an integer, got {str(value)[:40]!r}") from None


def build_app(settings: Settings, recall: Callable[[], Recall], clickhouse: Callable[[], Any],
              health: Callable[[], dict[str, Any]], console: Console | None = None,
              routes: Sequence[RouteAdder] = (), embedder: Any = None) -> web.Application:  # fmt: skip
    """``recall`` and ``clickhouse`` give what a request needs, or raise StoreUnavailableError (503);
    ``routes`` add a later stage's routes, given ``clickhouse`` and ``embedder`` (see RouteAdder)."""
    database = settings.clickhouse_database

    async def run(fn: Callable[[], Any]) -> web.Response:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(fn)
        except StoreUnavailableError as exc:
            return json_error(str(exc), "unavailable", 503)
        except (RecallError, TrajstreamError) as exc:
            return json_error(str(exc), "bad_request", 400)
        return json_response({"result": result, "took_ms": round((time.perf_counter() - started) * 1000, 2)})

    async def do_health(request: web.Request) -> web.Response:
        return json_response(health())

    async def do_sql(request: web.Request) -> web.Response:
        (query,) = _need(await json_body(request), "query")
        return await run(lambda: read_only_query(clickhouse(), str(query), database, **sql_limits(settings)))

    async def do_recall(request: web.Request) -> web.Response:
        body = await json_body(request)
        (query,) = _need(body, "query")
        k = _integer(body, "k", 3)
        return await run(lambda: recall().recall(str(query), k, body.get("filters")))

    async def do_predict(request: web.Request) -> web.Response:
        body = await json_body(request)
        state, action = _need(body, "state", "action")
        k, filters = _integer(body, "k", 20), body.get("filters")
        return await run(lambda: asdict(recall().predict_outcome(str(state), str(action), k, filters)))

    async def do_counterfactual(request: web.Request) -> web.Response:
        body = await json_body(request)
        tid, _, alternative = _need(body, "trajectory_id", "step", "alternative_action")
        step = _integer(body, "step")
        return await run(lambda: recall().counterfactual(str(tid), step, str(alternative)))

    async def do_recommend(request: web.Request) -> web.Response:
        body = await json_body(request)
        (context,) = _need(body, "context")
        k = _integer(body, "k", 50)
        return await run(lambda: recall().recommend_tools(str(context), k, body.get("filters")))

    async def do_exists(request: web.Request) -> web.Response:
        """Which of these trajectory ids are queryable in ClickHouse and searchable in Milvus now (their vector,
        and their decision points)."""
        (ids,) = _need(await json_body(request), "ids")
        if not isinstance(ids, list):
            raise bad_request(f"ids must be a list of trajectory ids, got {type(ids).__name__}")
        wanted = [str(i) for i in ids]

        def check() -> dict[str, list[str] | None]:
            where = "trajectory_id IN {ids:Array(String)}"
            sql = f"SELECT DISTINCT trajectory_id FROM {database}.trajectories WHERE {where}"
            rows = clickhouse().query(sql, parameters={"ids": wanted})
            try:  # one store away leaves the other's answer standing
                milvus = recall().milvus
                rows_mv = loaded(
                    milvus, TRAJECTORIES, lambda: milvus.query(TRAJECTORIES, ids=wanted, output_fields=["id"])
                )
                found: list[str] | None = [v["id"] for v in rows_mv]
                # Decision points come from their own sink, after the trajectory's vector: those with any.
                expr = f"trajectory_id in [{', '.join(quote(i) for i in wanted)}]"
                points = loaded(milvus, DECISIONS, lambda: milvus.query(DECISIONS, filter=expr,
                                                                        output_fields=["trajectory_id"]))  # fmt: skip
                decided: list[str] | None = sorted({p["trajectory_id"] for p in points})
            except StoreUnavailableError:
                found = decided = None
            return {"clickhouse": [r[0] for r in rows.result_rows], "milvus": found, "milvus_decisions": decided}

        return await run(check)

    app = web.Application(middlewares=[guard(settings)])
    if console is not None:
        add_console(app, console)
    for add in routes:
        add(app, RouteContext(settings, clickhouse, embedder))
    app.add_routes([
        web.get("/health", do_health), web.post("/sql", do_sql), web.post("/recall", do_recall),
        web.post("/predict", do_predict), web.post("/counterfactual", do_counterfactual),
        web.post("/recommend", do_recommend), web.post("/exists", do_exists),
    ])  # fmt: skip
    return app
