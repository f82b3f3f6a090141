"""The gateway in-process for fuzzing: its real app, routes and publisher, with a producer that acknowledges
every record at once and keeps it, so each answer can be checked against what was sent.

``check`` is what every request must satisfy, whatever its body: a 2xx or 4xx with a reason in the route's
error shape, never a 5xx; every refused item or span answered and dead-lettered with its reason; what was
accepted sent, and nothing sent for a request refused whole. The hypothesis tests (test_gateway_bodies.py)
and the atheris run (atheris_run.py) share it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from trajstream.gateway import otlp
from trajstream.gateway.context import Gateway
from trajstream.gateway.keys import KeyStore
from trajstream.gateway.publisher import Publisher, Record
from trajstream.gateway.server import build_app
from trajstream.settings import Settings
from trajstream.topics import DEAD_LETTER_TOPIC, OTLP_SPANS_TOPIC
from trajstream_sdk.codec import EventCodec, codec_for

JSON_ROUTES = ("/v1/events", "/v1/trajectories")


class AckingProducer:
    """Stands in for aiokafka's producer: every send is acknowledged at once, and kept in ``sent``."""

    def __init__(self) -> None:
        self.sent: list[Record] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        self.sent.append(Record(topic, key, value))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


@dataclass
class InProcessGateway:
    client: TestClient[Any, Any]
    producer: AckingProducer
    settings: Settings
    codec: EventCodec
    statuses: dict[int, int] = field(default_factory=dict)  # status -> requests, for the run's report

    async def post(self, route: str, body: bytes, content_type: str = "application/json") -> int:
        """Send one request and check its answer (``check``); returns the status."""
        self.producer.sent.clear()
        response = await self.client.post(route, data=body, headers={"Content-Type": content_type})
        answer = await response.read()
        check(self, route, body, content_type, response.status, answer)
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        return response.status


@asynccontextmanager
async def in_process_gateway(home: Path) -> AsyncIterator[InProcessGateway]:
    settings = Settings(home=home)
    codec = codec_for(settings)
    producer = AckingProducer()
    gateway = Gateway(settings, codec, Publisher(settings, producer), KeyStore(home / "keys.json"))
    async with TestClient(TestServer(build_app(gateway))) as client:
        yield InProcessGateway(client, producer, settings, codec)


def _sent(gw: InProcessGateway, topic: str) -> list[Record]:
    return [r for r in gw.producer.sent if r.topic == gw.settings.topic(topic)]


def _reasons(gw: InProcessGateway) -> list[str]:
    """The reasons of the dead letters the request sent, each checked to be one."""
    letters = [gw.codec.decode(r.value) for r in _sent(gw, DEAD_LETTER_TOPIC)]
    assert all(letter.name == "dead_letter" and letter.record["stage"] == "gateway" for letter in letters)
    return [str(letter.record["reason"]) for letter in letters]


def check(gw: InProcessGateway, route: str, body: bytes, content_type: str, status: int, answer: bytes) -> None:
    where = f"{route} {content_type} {body[:200]!r}: {status} {answer[:300]!r}"
    assert status < 500, f"a server error: {where}"
    if route == "/v1/traces":
        _check_traces(gw, body, content_type, status, answer, where)
    else:
        _check_batch(gw, status, answer, where)


def _check_batch(gw: InProcessGateway, status: int, answer: bytes, where: str) -> None:
    assert status in (200, 207, 400, 413), where
    doc = json.loads(answer)
    if status >= 400:  # the request refused whole: a reason, and nothing sent
        assert isinstance(doc["error"], str) and doc["error"].strip(), where
        assert gw.producer.sent == [], where
        return
    results = doc["results"]
    assert sorted(r["index"] for r in results) == list(range(len(results))), where
    refused = [r for r in results if r["status"] == 400]
    assert all(isinstance(r["error"], str) and r["error"].strip() for r in refused), where
    assert doc["accepted"] + len(refused) == len(results) and doc.get("refused", 0) == len(refused), where
    assert (status == 207) == bool(refused), where
    # Every refusal reaches the dead-letter topic with the reason the client was given.
    assert sorted(_reasons(gw)) == sorted(r["error"] for r in refused), where
    assert len(gw.producer.sent) - len(refused) >= doc["accepted"], where  # an accepted item sends its events


def _check_traces(gw: InProcessGateway, body: bytes, content_type: str, status: int, answer: bytes,
                  where: str) -> None:  # fmt: skip
    assert status in (200, 400, 413, 415), where
    if status == 415:
        assert json.loads(answer)["message"].strip() and gw.producer.sent == [], where
        return
    encoding = otlp.encoding_of(content_type)
    if status != 200:  # a google.rpc.Status in the request's encoding, and nothing sent
        message = json.loads(answer)["message"] if encoding == otlp.JSON else _status_message(answer)
        assert message.strip() and gw.producer.sent == [], where
        return
    response = ExportTraceServiceResponse()
    if encoding == otlp.JSON:
        json_format.Parse(answer, response)
    else:
        response.ParseFromString(answer)
    rejected = response.partial_success.rejected_spans
    reasons = _reasons(gw)
    assert len(reasons) == rejected and all(r.strip() for r in reasons), where
    assert (rejected > 0) == bool(response.partial_success.error_message), where
    spans = 0
    for record in _sent(gw, OTLP_SPANS_TOPIC):
        event = gw.codec.decode(record.value).record
        data = TracesData.FromString(event["traces_data"])
        assert record.key == event["trace_id"].encode(), where
        spans += sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans)
    # Counts reconcile: every span of the request is on the spans topic or dead-lettered.
    request = otlp.decode(body, encoding)
    assert spans + rejected == sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans), where


def _status_message(answer: bytes) -> str:
    """The message of a protobuf google.rpc.Status as otlp.status writes it (code, then message)."""
    assert answer[:1] == b"\x08", answer
    i = 1
    while answer[i] & 0x80:
        i += 1
    assert answer[i + 1 : i + 2] == b"\x12", answer
    j, length, shift = i + 2, 0, 0
    while True:
        byte = answer[j]
        length |= (byte & 0x7F) << shift
        j, shift = j + 1, shift + 7
        if not byte & 0x80:
            return answer[j : j + length].decode()
