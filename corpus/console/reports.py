"""/api/console/reports: the latest optimisation report of each kind (as `trajstream optimise` leaves them
under ``<home>/reports/<kind>/``), and a new one made in the data worker as a job."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from trajstream.consumers.api import RouteContext
from trajstream.consumers.api_access import need_operator
from trajstream.consumers.json_http import json_body, json_error, json_response
from trajstream.corpus.console.filters import FieldError, corpus_filter, refuse_unknown, strings
from trajstream.corpus.console.jobs import BusyError, Job, Jobs
from trajstream.corpus.optimise.generate import make_report
from trajstream.corpus.optimise.latest import KINDS, Latest, how_to_make, latest_report, new_report_dir

FILTERS = ("since", "until", "agent", "domain", "task_key")  # `trajstream optimise`'s filters
OPTIONS = {"skills": ("skill",), "instructions": ("embedding",)}  # each kind's own fields


def _read(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def add_report_routes(app: web.Application, context: RouteContext) -> None:
    settings = context.settings
    jobs = Jobs("report")

    def summary(kind: str) -> dict[str, Any]:
        latest = latest_report(settings, kind)
        job = next((j for j in jobs.all() if j.what["kind"] == kind), None)
        shown: dict[str, Any] = {"kind": kind, "latest": None, "job": job.as_json() if job is not None else None}
        if latest is not None:
            report = _read(latest.json_path)
            findings = report.get("findings") or []
            shown["latest"] = {
                "generated_at_ms": report.get("generated_at_ms"), "trajectories": report.get("trajectories"),
                "findings": len(findings), "headline": findings[0].get("headline") if findings else None,
                "directory": str(latest.directory),
            }  # fmt: skip
        return shown

    def unknown(kind: str) -> web.Response:
        return json_error(f"no report kind {kind!r}; known: {', '.join(KINDS)}", "not_found", 404)

    async def listed(request: web.Request) -> web.Response:
        return json_response({"reports": [summary(k) for k in KINDS]})

    def latest_of(request: web.Request) -> Latest | web.Response:
        """The request's kind's latest report, or the 404 to answer (an unknown kind, or none made yet)."""
        kind = request.match_info["kind"]
        if kind not in KINDS:
            return unknown(kind)
        latest = latest_report(settings, kind)
        return latest or json_error(f"no {kind} report yet: {how_to_make(kind)}", "not_found", 404)

    async def latest_json(request: web.Request) -> web.Response:
        latest = latest_of(request)
        return latest if isinstance(latest, web.Response) else json_response(_read(latest.json_path))

    async def latest_markdown(request: web.Request) -> web.Response:
        latest = latest_of(request)
        if isinstance(latest, web.Response):
            return latest
        return web.Response(text=latest.markdown_path.read_text(encoding="utf-8"), content_type="text/markdown",
                            charset="utf-8")  # fmt: skip

    async def regenerate(request: web.Request) -> web.Response:
        refused = need_operator(request)
        if refused is not None:
            return refused
        kind = request.match_info["kind"]
        if kind not in KINDS:
            return unknown(kind)
        body = await json_body(request) if request.can_read_body else {}
        own = OPTIONS.get(kind, ())
        try:
            refuse_unknown(body, (*FILTERS, *own))
            filters = corpus_filter(body, FILTERS)
            skills = strings("skill", body.get("skill", []))
            embedding = body.get("embedding", True)
            if not isinstance(embedding, bool):
                raise FieldError("embedding", "true or false")
        except FieldError as exc:
            return json_response(exc.as_json(), 400)
        embedder = context.embedder if embedding else None

        def work(job: Job) -> dict[str, Any]:
            def progress(done: int, total: int) -> None:
                job.read, job.total = done, total

            out = new_report_dir(settings, kind)
            report, _ = make_report(settings, kind, context.clickhouse(), filters, out, skills, embedder, progress)
            return {"directory": str(out), "findings": len(report["findings"])}

        try:
            job = jobs.start({"kind": kind, "filters": filters.as_json()}, work)
        except BusyError as exc:
            return json_error(str(exc), "busy", 409)
        return json_response(job.as_json(), 202)

    app.add_routes([
        web.get("/api/console/reports", listed), web.get("/api/console/reports/{kind}", latest_json),
        web.get("/api/console/reports/{kind}/markdown", latest_markdown),
        web.post("/api/console/reports/{kind}", regenerate),
    ])  # fmt: skip
