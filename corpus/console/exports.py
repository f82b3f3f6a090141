"""/api/console/exports: the formats, an export run in the data worker as a job (written under
``<home>/exports/<job id>/``), its progress and manifest, and the result as a .tar.gz download."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from trajstream.consumers.api import RouteContext
from trajstream.consumers.api_access import need_operator
from trajstream.consumers.json_http import json_body, json_error, json_response
from trajstream.corpus.console.archive import stream_tar_gz
from trajstream.corpus.console.filters import FIELDS, FieldError, corpus_filter, refuse_unknown
from trajstream.corpus.console.jobs import BusyError, Job, Jobs, new_job_id
from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats import known_formats
from trajstream.corpus.export.run import export
from trajstream.corpus.export.writer import MANIFEST

JOB_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")  # what new_job_id makes: never a path of its own
BATCH = 500  # trajectories per page read, as `trajstream export`'s default


def exports_root(settings: Any) -> Path:
    return Path(settings.home) / "exports"


def _manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def add_export_routes(app: web.Application, context: RouteContext) -> None:
    settings = ExportSettings.extend(context.settings)
    root = exports_root(settings)
    jobs = Jobs("export")

    def described(job_id: str) -> dict[str, Any] | None:
        """A job this worker runs or ran, or one a previous worker finished (its manifest is on disk)."""
        job = jobs.get(job_id)
        manifest = job.result if job is not None else _manifest(root / job_id)
        if job is None and manifest is None:
            return None
        answer = job.as_json() if job is not None else {"id": job_id, "format": manifest["format"],  # type: ignore[index]
                                                        "state": "done", "error": None}  # fmt: skip
        answer["manifest"] = manifest
        answer["download"] = f"/api/console/exports/{job_id}/download" if manifest is not None else None
        return answer

    async def formats(request: web.Request) -> web.Response:
        return json_response({"formats": [{"name": n, "summary": c.summary} for n, c in known_formats().items()]})

    async def start(request: web.Request) -> web.Response:
        refused = need_operator(request)
        if refused is not None:
            return refused
        body = await json_body(request)
        name = body.get("format")
        known = known_formats()
        if not isinstance(name, str) or name not in known:
            what = f"unknown format {name!r}" if name else "missing"
            return json_response(FieldError("format", f"{what}; known: {', '.join(known)}").as_json(), 400)
        try:
            refuse_unknown(body, ("format", *FIELDS))
            filters = corpus_filter(body)
        except FieldError as exc:
            return json_response(exc.as_json(), 400)

        def work(job: Job) -> dict[str, Any]:
            def total(n: int) -> None:
                job.total = n

            def one() -> None:
                job.read += 1

            return export(settings, name, root / job.id, filters, BATCH, client=context.clickhouse(),
                          on_total=total, on_trajectory=one)  # fmt: skip

        try:
            job = jobs.start({"format": name, "filters": filters.as_json()}, work, new_job_id())
        except BusyError as exc:
            return json_error(str(exc), "busy", 409)
        return json_response(described(job.id), 202)

    async def listed(request: web.Request) -> web.Response:
        ids = {j.id for j in jobs.all()}
        if root.is_dir():
            ids |= {d.name for d in root.iterdir() if d.is_dir() and JOB_ID.match(d.name)}
        shown = [d for i in sorted(ids, reverse=True)[:20] if (d := described(i)) is not None]
        return json_response({"exports": shown})

    async def state(request: web.Request) -> web.Response:
        job_id = request.match_info["job"]
        found = described(job_id) if JOB_ID.match(job_id) else None
        if found is None:
            return json_error(f"no export {job_id!r}: start one with POST /api/console/exports", "not_found", 404)
        return json_response(found)

    async def download(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job"]
        found = described(job_id) if JOB_ID.match(job_id) else None
        if found is None:
            return json_error(f"no export {job_id!r}", "not_found", 404)
        manifest = found["manifest"]
        if manifest is None:
            return json_error(f"export {job_id} is {found['state']}: nothing to download "
                              f"{'yet' if found['state'] == 'running' else ''}".strip(), "not_ready", 409)  # fmt: skip
        files = [f["path"] for f in manifest["files"]] + [MANIFEST]
        name = f"trajstream-{manifest['format']}-{job_id}"
        return await stream_tar_gz(request, root / job_id, files, name, f"{name}.tar.gz")

    app.add_routes([
        web.get("/api/console/exports/formats", formats), web.get("/api/console/exports", listed),
        web.post("/api/console/exports", start), web.get("/api/console/exports/{job}", state),
        web.get("/api/console/exports/{job}/download", download),
    ])  # fmt: skip
