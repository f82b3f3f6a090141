"""Exports and reports through the data API as the data worker serves them (the corpus's routes added to
consumers/api.py's app), against the planted corpus landed in chDB through the real scoring and sink: an
export job's download holds the files `trajstream export` writes for the same filters; bad filters, a
second job and a read token are refused; a report made by POST is the latest one served."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from pydantic import SecretStr

from tests.support.optimise_corpus import land_planted
from trajstream.consumers.api import build_app
from trajstream.consumers.console.routes import Console
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.corpus.console.routes import add_corpus_routes
from trajstream.corpus.optimise.planted import PlantedCorpus
from trajstream.settings import Settings

pytestmark = pytest.mark.integration
READ = {"Authorization": "Bearer read-secret"}
OPERATOR = {"Authorization": "Bearer operator-secret"}
FILTERS = {"agent": ["support-bot"], "outcome": "success", "since": "1d"}
CLI_FILTERS = ["--agent", "support-bot", "--outcome", "success", "--since", "1d"]

Landed = tuple[Settings, Any, PlantedCorpus]


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Landed:
    settings = Settings(home=tmp_path_factory.mktemp("console-exports"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"ce{uuid.uuid4().hex[:10]}", api_read_token=SecretStr("read-secret"),
                        api_operator_token=SecretStr("operator-secret"))  # fmt: skip
    client, corpus = land_planted(settings)
    return settings, client, corpus


def _no_recall() -> Any:
    raise StoreUnavailableError("Milvus is not open in this test")


async def _serve(settings: Settings, clickhouse: Callable[[], Any]) -> TestClient[Any, Any]:
    console = Console(settings, clickhouse, _no_recall, lambda: 0, lambda: {})
    app = build_app(settings, _no_recall, clickhouse, lambda: {"status": "ok"}, console, (add_corpus_routes,))
    http = TestClient(TestServer(app))
    await http.start_server()
    return http


@pytest.fixture
async def http(landed: Landed, tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Settings]]:
    settings, client, _ = landed
    settings = settings.model_copy(update={"home": tmp_path})  # each test its own exports and reports
    served = await _serve(settings, lambda: client)
    yield served, settings
    await served.close()


async def _json(http: TestClient[Any, Any], method: str, path: str, status: int, body: Any = None,
                headers: dict[str, str] = OPERATOR) -> Any:  # fmt: skip
    response = await http.request(method, path, json=body, headers=headers)
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def _until(http: TestClient[Any, Any], path: str, done: Callable[[Any], bool], timeout_s: float = 240) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        answer = await _json(http, "GET", path, 200, headers=READ)
        if done(answer):
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} not done within {timeout_s} s")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(600)
async def test_an_export_job_downloads_what_the_cli_exports(
    http: tuple[TestClient[Any, Any], Settings], landed: Landed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    served, settings = http
    _, _, corpus = landed
    formats = await _json(served, "GET", "/api/console/exports/formats", 200, headers=READ)
    assert {"openai-sft", "trl-sft"} <= {f["name"] for f in formats["formats"]}
    assert all(f["summary"] for f in formats["formats"])

    job = await _json(served, "POST", "/api/console/exports", 202, {"format": "openai-sft", **FILTERS})
    assert job["state"] == "running" and job["format"] == "openai-sft"
    done = await _until(served, f"/api/console/exports/{job['id']}", lambda j: j["state"] != "running")
    assert done["state"] == "done", done["error"]
    wanted = corpus.ids(lambda p: p.agent == "support-bot" and p.outcome == "success")
    assert done["progress"] == {"read": len(wanted), "total": len(wanted)}
    manifest = done["manifest"]
    assert manifest["counts"]["read"] == len(wanted) and manifest["files"]
    assert (settings.home / "exports" / job["id"] / "manifest.json").is_file()
    listed = await _json(served, "GET", "/api/console/exports", 200, headers=READ)
    assert [e["id"] for e in listed["exports"]] == [job["id"]]

    response = await served.get(done["download"], headers=READ)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/gzip"
    root = f"trajstream-openai-sft-{job['id']}"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{root}.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(await response.read()), mode="r:gz") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert set(got) == {f"{root}/{f['path']}" for f in manifest["files"]} | {f"{root}/manifest.json"}
    assert json.loads(got[f"{root}/manifest.json"]) == manifest
    for f in manifest["files"]:
        assert _sha(got[f"{root}/{f['path']}"]) == f["sha256"] and len(got[f"{root}/{f['path']}"]) == f["bytes"]

    # `trajstream export` with the same filters (in this process: chDB allows one per data directory).
    from trajstream.cli import main

    out = tmp_path_factory.mktemp("cli-export") / "out"
    env = {"TRAJSTREAM_CLICKHOUSE_DSN": settings.clickhouse_dsn or "", "TRAJSTREAM_HOME": str(settings.home),
           "TRAJSTREAM_CLICKHOUSE_DATABASE": settings.clickhouse_database}  # fmt: skip
    result = CliRunner().invoke(main, ["export", "openai-sft", "--out", str(out), *CLI_FILTERS], env=env)
    assert result.exit_code == 0, result.output
    cli = json.loads((out / "manifest.json").read_text())
    assert [(f["path"], f["sha256"]) for f in cli["files"]] == [(f["path"], f["sha256"]) for f in manifest["files"]]
    assert cli["counts"] == manifest["counts"]
    assert {k: v for k, v in cli["filters"].items() if k != "since_ms"} == {
        k: v for k, v in manifest["filters"].items() if k != "since_ms"
    }  # "1d" is a moment apart


async def test_bad_exports_are_refused_naming_the_field(http: tuple[TestClient[Any, Any], Settings]) -> None:
    served, _ = http
    unknown = await _json(served, "POST", "/api/console/exports", 400, {"format": "nope"})
    assert unknown["field"] == "format" and "openai-sft" in unknown["error"] and "trl-sft" in unknown["error"]
    assert (await _json(served, "POST", "/api/console/exports", 400, {}))["field"] == "format"
    for body, field in (
        ({"min_reward": "high"}, "min_reward"), ({"since": "yesterday"}, "since"), ({"outcome": "great"}, "outcome"),
        ({"agent": 7}, "agent"), ({"latest_only": "yes"}, "latest_only"), ({"agnet": "support-bot"}, "agnet"),
        ({"min_reward": 0.9, "max_reward": 0.1}, "min_reward"),
    ):  # fmt: skip
        refused = await _json(served, "POST", "/api/console/exports", 400, {"format": "openai-sft", **body})
        assert refused["field"] == field and refused["kind"] == "bad_request", refused
    assert (await _json(served, "GET", "/api/console/exports/20250101T000000Z-0000", 404, headers=READ))["kind"]
    assert not (http[1].home / "exports").exists()  # nothing was started


async def test_one_export_at_a_time(landed: Landed, tmp_path: Path) -> None:
    settings, client, _ = landed
    release = threading.Event()

    def held() -> Any:  # the first job waits here, so the second certainly finds it running
        release.wait(60)
        return client

    served = await _serve(settings.model_copy(update={"home": tmp_path}), held)
    try:
        first = await _json(served, "POST", "/api/console/exports", 202, {"format": "openai-sft", **FILTERS})
        busy = await _json(served, "POST", "/api/console/exports", 409, {"format": "trl-sft"})
        assert busy["kind"] == "busy" and first["id"] in busy["error"] and "one export at a time" in busy["error"]
        pending = await _json(served, "GET", f"/api/console/exports/{first['id']}/download", 409, headers=READ)
        assert "running" in pending["error"]
        release.set()
        done = await _until(served, f"/api/console/exports/{first['id']}", lambda j: j["state"] != "running")
        assert done["state"] == "done"
        await _json(served, "POST", "/api/console/exports", 202, {"format": "trl-sft", **FILTERS})
        await _until(served, "/api/console/exports", lambda a: all(e["state"] != "running" for e in a["exports"]))
    finally:
        release.set()
        await served.close()


async def test_a_read_token_cannot_start_an_export_or_a_report(http: tuple[TestClient[Any, Any], Settings]) -> None:
    served, settings = http
    for path in ("/api/console/exports", "/api/console/reports/tools"):
        refused = await _json(served, "POST", path, 403, {"format": "openai-sft"}, headers=READ)
        assert refused["kind"] == "forbidden"
        assert (await _json(served, "POST", path, 401, {"format": "openai-sft"}, headers={}))["kind"] == "unauthorized"
    await _json(served, "GET", "/api/console/reports", 200, headers=READ)
    assert not (settings.home / "exports").exists() and not (settings.home / "reports").exists()


@pytest.mark.timeout(600)
async def test_a_report_made_by_post_is_the_latest(http: tuple[TestClient[Any, Any], Settings]) -> None:
    served, settings = http
    missing = await _json(served, "GET", "/api/console/reports/tools", 404, headers=READ)
    assert "trajstream optimise tools" in missing["error"] and "POST /api/console/reports/tools" in missing["error"]
    await _json(served, "GET", "/api/console/reports/tools/markdown", 404, headers=READ)
    await _json(served, "GET", "/api/console/reports/nope", 404, headers=READ)
    before = await _json(served, "GET", "/api/console/reports", 200, headers=READ)
    assert [(r["kind"], r["latest"]) for r in before["reports"]] == [(k, None) for k in ("tools", "skills",
                                                                                          "instructions")]  # fmt: skip
    assert (await _json(served, "POST", "/api/console/reports/tools", 400, {"agnet": "x"}))["field"] == "agnet"

    job = await _json(served, "POST", "/api/console/reports/tools", 202, {})
    assert (await _json(served, "POST", "/api/console/reports/skills", 409, {}))["kind"] == "busy"
    listed = await _until(served, "/api/console/reports", lambda a: a["reports"][0]["job"]["state"] != "running")
    tools = listed["reports"][0]
    assert tools["job"]["id"] == job["id"] and tools["job"]["state"] == "done", tools["job"]
    assert tools["latest"]["headline"].startswith("lookup_order fails when order_id~INT-#")
    report = await _json(served, "GET", "/api/console/reports/tools", 200, headers=READ)
    top = report["findings"][0]
    assert (top["tool"], top["feature"], top["headline"]) == (
        "lookup_order",
        "order_id~INT-#",
        tools["latest"]["headline"],
    )
    assert top["evidence"]["trajectory_ids"] and report["generated_at_ms"] == tools["latest"]["generated_at_ms"]
    markdown = await served.get("/api/console/reports/tools/markdown", headers=READ)
    assert markdown.status == 200 and "`lookup_order` fails when `order_id~INT-#`" in await markdown.text()

    # `trajstream optimise tools` without --out writes under the same root, and is then the latest.
    from trajstream.cli import main

    env = {"TRAJSTREAM_CLICKHOUSE_DSN": settings.clickhouse_dsn or "", "TRAJSTREAM_HOME": str(settings.home),
           "TRAJSTREAM_CLICKHOUSE_DATABASE": settings.clickhouse_database}  # fmt: skip
    result = CliRunner().invoke(main, ["optimise", "tools", "--agent", "kb-bot"], env=env)
    assert result.exit_code == 0, result.output
    assert str(settings.home / "reports" / "tools") in result.output
    again = await _json(served, "GET", "/api/console/reports/tools", 200, headers=READ)
    assert again["filter"]["agents"] == ["kb-bot"] and again["generated_at_ms"] > report["generated_at_ms"]
