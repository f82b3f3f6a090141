"""Fuzz the data API's JSON bodies (consumers/api.py): any body to any POST route gets an answer, or an error
in the API's shape ({"error", "kind"}) with a 400 or 503; never a 500 (an exception the handler let out).

The API runs in-process as tests/consumers/test_sql_guard.py runs it: the module's chDB database, recall
unavailable (so the routes that need it answer 503 after their parameters are read).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from tests.consumers.test_sql_guard import store as store  # the module's database on the session chDB directory
from tests.fuzz.profiles import examples
from tests.fuzz.test_emit_lines import JSON
from trajstream.consumers.api import build_app
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.settings import Settings

pytestmark = pytest.mark.integration

# Each POST route with the fields it reads (consumers/api.py).
ROUTES = {
    "/sql": ["query"],
    "/recall": ["query", "k", "filters"],
    "/predict": ["state", "action", "k", "filters"],
    "/counterfactual": ["trajectory_id", "step", "alternative_action"],
    "/recommend": ["context", "k", "filters"],
    "/exists": ["ids"],
}


@pytest.fixture(scope="module")
async def http(store: tuple[Any, str]) -> AsyncIterator[TestClient[Any, Any]]:
    client, db = store

    def no_recall() -> Any:
        raise StoreUnavailableError("no recall in this test")

    app = build_app(Settings(clickhouse_database=db), no_recall, lambda: client, lambda: {})
    async with TestClient(TestServer(app), headers={"X-Trajstream-Console": "1"}) as http:
        yield http


async def _answers(http: TestClient[Any, Any], route: str, body: bytes) -> None:
    response = await http.post(route, data=body, headers={"Content-Type": "application/json"})
    text = await response.text()
    assert response.status in (200, 400, 503), f"{route} {body[:200]!r}: {response.status} {text[:300]}"
    answer = json.loads(text)
    if response.status != 200:
        assert answer["error"].strip() and answer["kind"] in ("bad_request", "unavailable"), answer


@examples(100)
@given(st.sampled_from(sorted(ROUTES)), st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
async def test_any_body(http: TestClient[Any, Any], route: str, body: bytes) -> None:
    await _answers(http, route, body)


def _body(route: str) -> st.SearchStrategy[dict[str, Any]]:
    """An object with some of the route's fields (the required ones usually present), each any JSON value."""
    fields = ROUTES[route]
    return st.fixed_dictionaries({}, optional={f: JSON for f in fields})


@examples(150)
@given(st.sampled_from(sorted(ROUTES)).flatmap(lambda r: st.tuples(st.just(r), _body(r))))
async def test_route_fields(http: TestClient[Any, Any], case: tuple[str, dict[str, Any]]) -> None:
    route, body = case
    await _answers(http, route, json.dumps(body).encode())


# 500s the fuzzing found (hypothesis: /exists with ids false), and the same int() of a field on every route
# that reads one: now a 400 that names the field.
REGRESSIONS = [
    ("/exists", {"ids": False}, "ids must be a list"),
    ("/exists", {"ids": 5}, "ids must be a list"),
    ("/recall", {"query": "q", "k": "many"}, "k must be an integer"),
    ("/predict", {"state": "s", "action": "a", "k": [3]}, "k must be an integer"),
    ("/recommend", {"context": "c", "k": 1e400}, "k must be an integer"),
    ("/counterfactual", {"trajectory_id": "t", "step": [], "alternative_action": "a"}, "step must be an integer"),
]


@pytest.mark.parametrize(("route", "body", "reason"), REGRESSIONS)
async def test_regression_is_a_400_naming_the_field(http: TestClient[Any, Any], route: str, body: dict[str, Any],
                                                    reason: str) -> None:  # fmt: skip
    response = await http.post(route, data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)


# The gateway's fuzzing found these 500s; the data API reads its bodies the same way (json_http.json_body).
@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"[" * 100_000, {}, "the body is not JSON: nested deeper than 100"),  # RecursionError
        (b"not gzip", {"Content-Encoding": "gzip"}, "the body cannot be read"),  # RequestPayloadError
    ],
)
async def test_regression_unreadable_bodies_are_a_400(http: TestClient[Any, Any], body: bytes,
                                                      headers: dict[str, str], reason: str) -> None:  # fmt: skip
    response = await http.post("/sql", data=body, headers={"Content-Type": "application/json", **headers})
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)
