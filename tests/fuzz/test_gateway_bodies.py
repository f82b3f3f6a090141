"""Fuzz the gateway's request bodies in-process (gateway_harness.py: the real app and publisher, a producer
that acknowledges at once): every request gets a 2xx or a 4xx with a reason, never a 500; what it refuses
item by item or span by span is dead-lettered with the reason it answered; the counts reconcile.

The inputs: any bytes and any JSON value to each route; real event batches, emit-format trajectories and
OTLP/JSON requests with one field, anywhere, replaced by any JSON value, an extreme number or a deeply
nested array, or removed; OTLP protobuf requests with their bytes edited, and with attributes nested deep.
"""

from __future__ import annotations

import copy
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.gateway_harness import JSON_ROUTES, InProcessGateway, in_process_gateway
from tests.fuzz.profiles import examples
from tests.fuzz.test_codec import MUTATIONS
from tests.fuzz.test_emit_lines import DOCS, JSON, _paths, _replace
from trajstream.gateway import otlp
from trajstream_sdk.events import Message, end_record, feedback_record, start_record, turn_record

PROTOBUF, OTLP_JSON = otlp.PROTOBUF, otlp.JSON
DEEP = "\x00deep\x00"  # stands for a nested array, written into the text (json.dumps would recurse on it)
EXTREME = st.sampled_from([10**30, -(2**63) - 1, 2**64, 10**400, 1e308, -1e308, 5e-324, -0.0, "9" * 40, ""])
VALUE = JSON | EXTREME | st.just(DEEP)


def _text(doc: Any, depth: int) -> bytes:
    """``doc`` as JSON, each DEEP replaced by an array nested ``depth`` times."""
    return json.dumps(doc).replace(json.dumps(DEEP), "[" * depth + "]" * depth).encode()


@pytest.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def _jsonable(records: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    items = [{"type": name, "record": record} for name, record in records]
    loaded: list[dict[str, Any]] = json.loads(json.dumps(items, default=lambda d: int(d.timestamp() * 1000)))
    return loaded


_TID = str(uuid.uuid4())
EVENTS = _jsonable([
    ("trajectory_start", start_record(_TID, "Refund order 42", agent_id="support-bot", tags=["fuzz"])),
    ("turn", turn_record(_TID, 0, [Message.text("user", "Refund order 42"), Message.text("assistant", "Done.")])),
    ("trajectory_end", end_record(_TID, "success", turn_count=1, final_reward=1.0)),
    ("feedback", feedback_record(_TID, reward=0.5)),
])  # fmt: skip
BATCHES = {"/v1/events": {"events": EVENTS}, "/v1/trajectories": {"trajectories": DOCS[:3]}}


def _span(span_id: str, **extra: Any) -> dict[str, Any]:
    return {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "parentSpanId": "", "name": "chat m",
            "kind": 3, "startTimeUnixNano": "1760000000000000000", "endTimeUnixNano": 1760000001200000000,
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "97"}},
                           {"key": "m", "value": {"kvlistValue": {"values": [
                               {"key": "a", "value": {"arrayValue": {"values": [{"doubleValue": 1.5},
                                                                                {"boolValue": True}]}}},
                               {"key": "b", "value": {"bytesValue": "AAE="}}]}}}],
            "events": [{"timeUnixNano": "1760000000500000000", "name": "gen_ai.user.message",
                        "attributes": [{"key": "content", "value": {"stringValue": "hi"}}]}],
            "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}],
            "status": {"code": 2, "message": "boom"}, **extra}  # fmt: skip


OTLP_DOC: dict[str, Any] = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "support-bot"}}]},
    "scopeSpans": [{"scope": {"name": "fuzz", "version": "1"}, "spans": [_span("0102030405060708"),
                                                                        _span("1112131415161718")]}]}]}  # fmt: skip
OTLP_REQUEST = otlp.decode(json.dumps(OTLP_DOC).encode(), OTLP_JSON)
OTLP_PROTO = OTLP_REQUEST.SerializeToString()


@examples(100)
@given(st.sampled_from([*JSON_ROUTES, "/v1/traces"]), st.sampled_from([OTLP_JSON, PROTOBUF]),
       st.binary(max_size=256) | JSON.map(lambda v: json.dumps(v).encode()))  # fmt: skip
@example("/v1/events", OTLP_JSON, b"[" * 100_000)  # RecursionError in json.loads: was a 500
@example("/v1/traces", OTLP_JSON, b"[" * 100_000)  # the same in OTLP/JSON
@example("/v1/events", OTLP_JSON, b"[1" + b"0" * 5000 + b"]")  # an integer over Python's 4300 digits
async def test_any_body(gw: InProcessGateway, route: str, content_type: str, body: bytes) -> None:
    await gw.post(route, body, content_type)


@examples(150)
@given(st.data())
async def test_batches_with_one_field_replaced(gw: InProcessGateway, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(JSON_ROUTES))
    doc = BATCHES[route]
    path = data.draw(st.sampled_from(_paths(doc)))
    delete = data.draw(st.booleans())
    mutated = _replace(doc, path, None if delete else data.draw(VALUE), delete)
    await gw.post(route, _text(mutated, data.draw(st.integers(1, 5000))))


# A batch as JSON lines: the emit file format, each line checked on its own.
@example(b'{"task": "t", "messages": [1]}\n' + b"[" * 5000 + b"\n")  # RecursionError on the second line: was a 500
@examples(100)
@given(st.lists(st.sampled_from([json.dumps(d) for d in DOCS]) | st.text(max_size=40), min_size=2, max_size=4)
       .map(lambda lines: "\n".join(lines).encode()))  # fmt: skip
async def test_trajectory_lines(gw: InProcessGateway, body: bytes) -> None:
    await gw.post("/v1/trajectories", body)


# OTLP/JSON levels of the wrong type: the id rewrite walked them as objects (AttributeError, TypeError: 500s).
@example(("resourceSpans",), "x", False)
@example(("resourceSpans",), 5, False)
@example(("resourceSpans", 0, "scopeSpans"), "ab", False)
@example(("resourceSpans", 0, "scopeSpans", 0, "spans"), 7, False)
@example(("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "links"), 3, False)
@example(("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "startTimeUnixNano"), 10**30, False)
@examples(300)
@given(st.sampled_from(_paths(OTLP_DOC)), VALUE, st.booleans())
async def test_otlp_json_with_one_field_replaced(gw: InProcessGateway, path: tuple[Any, ...], value: Any,
                                                 delete: bool) -> None:  # fmt: skip
    mutated = _replace(OTLP_DOC, path, value, delete)
    body = _text(mutated, 3000 if value == DEEP else 1)
    await gw.post("/v1/traces", body, OTLP_JSON)
    try:  # the same request as protobuf, where the JSON mapping takes it
        proto = otlp.decode(body, OTLP_JSON).SerializeToString()
    except otlp.RequestError:
        return
    await gw.post("/v1/traces", proto, PROTOBUF)


@examples(200)
@given(st.lists(st.tuples(st.sampled_from(sorted(MUTATIONS)), st.integers(0, 10_000), st.integers(0, 255),
                          st.binary(min_size=1, max_size=16)), min_size=1, max_size=4))  # fmt: skip
async def test_otlp_protobuf_with_bytes_edited(gw: InProcessGateway, edits: list[tuple[str, int, int, bytes]]) -> None:
    data = OTLP_PROTO
    for name, at, bits, extra in edits:
        data = MUTATIONS[name](data, at, bits, extra) or b"\x00"
    await gw.post("/v1/traces", data, PROTOBUF)


@examples(30)
@given(st.integers(1, 400), st.sampled_from([OTLP_JSON, PROTOBUF]))
async def test_otlp_attributes_nested_deep(gw: InProcessGateway, depth: int, content_type: str) -> None:
    """An attribute map inside a map, ``depth`` times: protobuf's decoder stops at 100, ours refuses the JSON."""
    if content_type == PROTOBUF:
        # Written field by field: the protobuf runtime itself refuses to build a message this deep.
        value = _field(1, b"leaf")  # AnyValue.string_value
        for _ in range(depth):  # AnyValue.kvlist_value = KeyValueList{values: [KeyValue{key, value}]}
            value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
        span = OTLP_REQUEST.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
        span += _field(9, _field(1, b"deep") + _field(2, value))  # one more attribute
        await gw.post("/v1/traces", _field(1, _field(2, _field(2, span))), PROTOBUF)
    else:
        doc = copy.deepcopy(OTLP_DOC)
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"].append({"key": "deep", "value": DEEP})
        # Written as text: json.dumps would recurse as deep as the value.
        attribute = '{"kvlistValue": {"values": [{"key": "k", "value": ' * depth + '{"stringValue": "leaf"}'
        attribute += "}]}}" * depth
        await gw.post("/v1/traces", json.dumps(doc).replace(json.dumps(DEEP), attribute).encode())


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    size, length = bytearray(), len(payload)
    while length > 0x7F:
        size.append(length & 0x7F | 0x80)
        length >>= 7
    return bytes([number << 3 | 2, *size, length]) + payload


def test_the_seeds_are_taken() -> None:
    """The mutations start from requests the gateway takes whole: else they would only ever test refusals."""
    assert sum(len(ss.spans) for rs in otlp.decode(OTLP_PROTO, PROTOBUF).resource_spans for ss in rs.scope_spans) == 2


async def test_seed_requests_are_accepted_whole(gw: InProcessGateway) -> None:
    for route, doc in BATCHES.items():
        assert await gw.post(route, json.dumps(doc).encode()) == 200, route
    assert await gw.post("/v1/traces", json.dumps(OTLP_DOC).encode(), OTLP_JSON) == 200
    assert await gw.post("/v1/traces", OTLP_PROTO, PROTOBUF) == 200


@pytest.mark.parametrize("route", [*JSON_ROUTES, "/v1/traces"])
async def test_bad_and_oversize_compressed_bodies_are_4xx(gw: InProcessGateway, route: str, tmp_path: Path) -> None:
    """Content-Encoding: bytes that are not gzip, and a gzip bomb past the request limit after decompression."""
    for body in (b"not gzip at all", gzip.compress(b" " * (gw.settings.gateway_max_request_bytes + 1))):
        response = await gw.client.post(route, data=body, headers={"Content-Type": OTLP_JSON,
                                                                   "Content-Encoding": "gzip"})  # fmt: skip
        assert 400 <= response.status < 500, (route, body[:20], response.status, await response.text())


# The 500s the fuzzing found, each now a 400 with its reason (the @example lines above keep them in the fuzzing).
REGRESSIONS = [
    ("/v1/events", b"[" * 100_000, "nested deeper than 100"),  # RecursionError in json.loads
    ("/v1/trajectories", b"[" * 100_000, "nested deeper than 100"),
    ("/v1/traces", b"[" * 100_000, "nested deeper than 100"),
    ("/v1/traces", b'{"resourceSpans": 5}', "resourceSpans"),  # TypeError in the id rewrite
    ("/v1/traces", b'{"resourceSpans": [{"scopeSpans": "ab"}]}', "scopeSpans"),  # AttributeError
    ("/v1/traces", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"links": 3}]}]}]}', "links"),  # TypeError
]


@pytest.mark.parametrize(("route", "body", "reason"), REGRESSIONS)
async def test_regression_is_a_400_with_its_reason(gw: InProcessGateway, route: str, body: bytes, reason: str) -> None:
    response = await gw.client.post(route, data=body, headers={"Content-Type": OTLP_JSON})
    answer = await response.json()
    assert response.status == 400
    assert reason in answer.get("error", answer.get("message", "")), answer
