"""The console's JSON against chDB: a corpus landed through real scoring and the real sink shows its numbers;
every query's limits become errors the page can show; the tokens and roles hold."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.support.console_corpus import Corpus, land_corpus
from tests.support.env import env_for, trajstream_bin
from trajstream.consumers.api import build_app
from trajstream.consumers.api_access import check_listen
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.consumers.console.routes import Console
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.errors import ConfigurationError
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for

pytestmark = pytest.mark.integration
POST = {"X-Trajstream-Console": "1"}


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[tuple[Settings, Any, Corpus]]:
    home = tmp_path_factory.mktemp("console-home")
    settings = Settings(home=home, clickhouse_dsn=f"chdb://{chdb_dir}", clickhouse_database=f"c{uuid.uuid4().hex[:10]}",
                        topic_prefix="console.")  # fmt: skip
    client = connect(settings)
    migrate(client, settings)
    yield settings, client, land_corpus(settings, client, codec_for(settings))


def _no_recall() -> Any:
    raise StoreUnavailableError("Milvus is not open in this test")


async def _client(settings: Settings, client: Any) -> TestClient[Any, Any]:
    console = Console(settings, lambda: client, _no_recall, lambda: 0, lambda: {})
    app = build_app(settings, _no_recall, lambda: client, lambda: {"status": "ok"}, console)
    http = TestClient(TestServer(app))
    await http.start_server()
    return http


@pytest.fixture
async def http(landed: tuple[Settings, Any, Corpus]) -> AsyncIterator[TestClient[Any, Any]]:
    settings, client, _ = landed
    http = await _client(settings, client)
    yield http
    await http.close()


async def _get(http: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await http.get(path)
    body = await response.json()
    assert response.status == status, body
    return body


async def test_overview_learning_tools_and_models_show_the_landed_numbers(
    http: TestClient[Any, Any], landed: tuple[Settings, Any, Corpus]
) -> None:
    _, _, corpus = landed
    overview = await _get(http, "/api/console/overview?range=1h&by=agent")
    assert overview["range"]["granularity"] == "minute"
    assert overview["totals"]["trajectories"] == 7
    assert overview["totals"]["success_rate"] == pytest.approx(4 / 7)
    by_agent = {row["key"]: row for row in overview["breakdown"]["agent"]}
    assert by_agent["agent-a"]["trajectories"] == 6 and by_agent["agent-b"]["success_rate"] == 0
    assert {s["key"] for s in overview["series"]} == {"agent-a", "agent-b"}
    assert sum(p["trajectories"] for p in overview["timeline"]) == 7
    assert (await _get(http, "/api/console/overview?range=30d"))["range"]["granularity"] == "day"

    learning = await _get(http, "/api/console/learning?range=1h")
    assert {v["version"] for v in learning["versions"]} == {"v1", ""}
    assert [(d["version"], d["event"]) for d in learning["deployments"]] == [("v1", "deployed")]

    tools = await _get(http, "/api/console/tools?range=1h")
    lookup = next(t for t in tools["tools"] if t["tool"] == "lookup")
    assert lookup["calls"] == 18 and lookup["error_rate"] == pytest.approx(4 / 18)  # 2 failing x 2 answered
    before = {b["tool"]: b for b in tools["before_failure"]}
    assert before["lookup"]["failures"] == 2 and before["search"]["failures"] == 1
    assert before["lookup"]["share"] == pytest.approx(2 / 3)
    assert tools["loops"] == [{"tool": "search", "loops": 1, "max_repeats": 3, "example": corpus.loop_id}]

    # The hour and day rollups (ranges past 2 hours and past 3 days) hold the same numbers.
    for wider in ("24h", "30d"):
        again = await _get(http, f"/api/console/tools?range={wider}")
        assert next(t for t in again["tools"] if t["tool"] == "lookup")["calls"] == 18, wider
        assert sum(p["calls"] for p in again["timeline"]) == sum(p["calls"] for p in tools["timeline"])
        tokens = (await _get(http, f"/api/console/models?range={wider}"))["models"]
        assert sum(m["tokens_in"] for m in tokens) == 1800, wider

    models = await _get(http, "/api/console/models?range=1h")
    row = next(m for m in models["models"] if m["model"] == "gpt-test")
    assert (row["turns"], row["tokens_in"], row["tokens_out"], row["cost"]) == (18, 1800, 180, None)
    assert models["priced"] is False


async def test_cost_comes_from_the_price_table(landed: tuple[Settings, Any, Corpus]) -> None:
    settings, client, _ = landed
    priced = settings.model_copy(update={"model_prices": {"gpt-test": {"input": 2.0, "output": 10.0}}})
    http = await _client(priced, client)
    try:
        models = await _get(http, "/api/console/models?range=1h")
    finally:
        await http.close()
    row = next(m for m in models["models"] if m["model"] == "gpt-test")
    assert row["cost"] == pytest.approx((1800 * 2.0 + 180 * 10.0) / 1e6)


async def test_the_list_filters_pages_and_the_detail_shows_one_trajectory_whole(
    http: TestClient[Any, Any], landed: tuple[Settings, Any, Corpus]
) -> None:
    _, _, corpus = landed
    for span in ("1h", "30d"):  # 30d: page 1 comes from the last day's window, page 2 from the whole range
        page = await _get(http, f"/api/console/trajectories?range={span}&page_size=4")
        assert len(page["rows"]) == 4 and page["has_more"] is True
        rest = await _get(http, f"/api/console/trajectories?range={span}&page_size=4&page=2")
        assert len(rest["rows"]) == 3 and rest["has_more"] is False
        assert {r["trajectory_id"] for r in page["rows"] + rest["rows"]} == set(corpus.outcomes)
        ended = [r["ended_at"] for r in page["rows"] + rest["rows"]]
        assert ended == sorted(ended, reverse=True)  # newest first across the pages
    failed = await _get(http, "/api/console/trajectories?range=1h&outcome=failure&agent=agent-a")
    assert {r["trajectory_id"] for r in failed["rows"]} == {
        t for t, o in corpus.outcomes.items() if o == "failure" and corpus.agents[t] == "agent-a"
    }
    assert len((await _get(http, "/api/console/trajectories?range=1h&tag=beta"))["rows"]) == 6
    assert [r["trajectory_id"] for r in (await _get(http, "/api/console/trajectories?range=1h&q=parcel"))["rows"]] == [
        corpus.loop_id
    ]
    assert page["facets"]["tag"] == ["beta"] and page["facets"]["agent"] == ["agent-a", "agent-b"]
    await _get(http, "/api/console/trajectories?range=1h&min_reward=x", 400)

    detail = await _get(http, f"/api/console/trajectory/{corpus.loop_id}")
    assert detail["trajectory"]["outcome"] == "failure" and len(detail["turns"]) == 3
    assert [c["tool"] for t in detail["turns"] for c in t["tool_calls"]] == ["search"] * 3
    assert detail["turns"][1]["messages"][0]["kind"] == "tool_response"
    assert detail["rewards"] and detail["versions"][0]["version"] == 1
    assert all(t["credit"] is not None for t in detail["turns"])
    await _get(http, "/api/console/trajectory/no-such-id", 404)


async def test_dead_letters_and_trainer(http: TestClient[Any, Any], landed: tuple[Settings, Any, Corpus]) -> None:
    _, _, corpus = landed
    letters = await _get(http, "/api/console/deadletters?range=1h")
    rows = {r["ref"]: r for r in letters["rows"]}
    assert set(rows) == set(corpus.letter_refs)
    assert rows[corpus.letter_refs[0]]["replayable"] is True
    assert rows[corpus.letter_refs[1]]["replayable"] is False and "file:" in rows[corpus.letter_refs[1]]["why_not"]
    assert letters["by_reason"] == [{"stage": "assembly", "error_type": "OrphanEvent", "reason": "no such trajectory",
                                     "count": 2}]  # fmt: skip
    trainer = await _get(http, "/api/console/trainer")
    assert trainer["deployed"] == "v1"
    (v1,) = trainer["versions"]
    assert (v1["gate"], v1["heldout_reward"], v1["kl"], v1["size_bytes"]) == ("deployed", 0.6, 0.01, 2_000_000.0)


async def test_a_query_past_its_limits_says_so(landed: tuple[Settings, Any, Corpus]) -> None:
    settings, client, _ = landed
    tight = settings.model_copy(update={"console_max_rows_to_read": 1})
    http = await _client(tight, client)
    try:
        body = await _get(http, "/api/console/tools?range=1h", 413)
    finally:
        await http.close()
    assert body["kind"] == "too_much" and "pick a shorter range" in body["error"]


async def test_ranges_are_checked(http: TestClient[Any, Any]) -> None:
    assert "unknown range" in (await _get(http, "/api/console/overview?range=2y", 400))["error"]
    assert "before it starts" in (await _get(http, "/api/console/overview?from=10&to=5", 400))["error"]
    assert (await _get(http, "/api/console/overview?by=colour", 400))["kind"] == "bad_request"


# --- access -------------------------------------------------------------------------------------
READ, OPERATOR = "read-" + uuid.uuid4().hex, "op-" + uuid.uuid4().hex


@pytest.fixture
async def guarded(landed: tuple[Settings, Any, Corpus]) -> AsyncIterator[TestClient[Any, Any]]:
    settings, client, _ = landed
    tokens = settings.model_copy(update={"api_read_token": SecretStr(READ), "api_operator_token": SecretStr(OPERATOR)})
    http = await _client(tokens, client)
    yield http
    await http.close()


async def test_tokens_give_roles_and_replay_needs_the_operator(guarded: TestClient[Any, Any]) -> None:
    assert (await guarded.get("/api/console/overview")).status == 401
    assert (await guarded.get("/api/console/overview", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await guarded.post("/sql", json={"query": "SELECT 1"})).status == 401
    read = {"Authorization": f"Bearer {READ}"}
    assert (await guarded.get("/api/console/overview", headers=read)).status == 200
    assert (await (await guarded.get("/api/console/whoami", headers=read)).json())["role"] == "read"
    refused = await guarded.post("/api/console/deadletters/replay", json={"refs": ["0:1"]}, headers={**read, **POST})
    assert refused.status == 403 and "operator" in (await refused.json())["error"]
    operator = {"Authorization": f"Bearer {OPERATOR}", **POST}
    bad = await guarded.post("/api/console/deadletters/replay", json={"refs": ["zero"]}, headers=operator)
    assert bad.status == 400 and "not a dead-letter ref" in (await bad.json())["error"]  # past the role check
    # The console's files and liveness are open; they hold no data.
    assert (await guarded.get("/console/")).status == 200 and (await guarded.get("/health")).status == 200


async def test_signing_in_sets_a_cookie_that_reads_but_cannot_post_without_the_header(
    guarded: TestClient[Any, Any],
) -> None:
    assert (await guarded.post("/console/login", json={"token": "wrong"}, headers=POST)).status == 401
    assert (await guarded.post("/console/login", json={"token": OPERATOR})).status == 403  # no header: not the page
    signed = await guarded.post("/console/login", json={"token": OPERATOR}, headers=POST)
    assert signed.status == 200
    assert (
        "httponly" in signed.headers["Set-Cookie"].lower() and "samesite=strict" in signed.headers["Set-Cookie"].lower()
    )
    assert (await guarded.get("/api/console/whoami")).status == 200  # the cookie alone reads
    # A form posted from another site carries the cookie but cannot add the header: refused.
    forged = await guarded.post("/api/console/deadletters/replay", json={"refs": ["0:1"]})
    assert forged.status == 403


def test_without_a_token_the_api_listens_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="TRAJSTREAM_API_READ_TOKEN"):
        check_listen(Settings(home=tmp_path, api_host="0.0.0.0"))
    check_listen(Settings(home=tmp_path, api_host="127.0.0.1"))
    check_listen(Settings(home=tmp_path, api_host="0.0.0.0", api_read_token=SecretStr("t")))
    # docker-compose hands an unset ${TRAJSTREAM_API_READ_TOKEN:-} over as "": no token, so still refused.
    with pytest.raises(ConfigurationError):
        check_listen(Settings(home=tmp_path, api_host="0.0.0.0", api_read_token="", api_operator_token=""))


def test_the_console_command_says_how_to_start_it_when_nothing_runs(tmp_path: Path) -> None:
    env = env_for(Settings(home=tmp_path))
    done = subprocess.run([str(trajstream_bin()), "console"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "trajstream up" in done.stderr, done.stdout + done.stderr
