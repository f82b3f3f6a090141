"""A full buffer: past its byte budget of unacknowledged records the gateway answers 503 with Retry-After,
sends nothing of the refused request, and loses nothing it accepted."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from tests.support.streams import read
from trajstream.gateway.context import Gateway
from trajstream.gateway.keys import KeyStore
from trajstream.gateway.publisher import Publisher
from trajstream.gateway.server import build_app
from trajstream.settings import Settings
from trajstream.topics import EVENTS_TOPIC
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, start_record, turn_record

pytestmark = pytest.mark.integration


def _batch(padding: int) -> tuple[str, dict[str, Any]]:
    tid = str(uuid.uuid4())
    start = start_record(tid, "task " + "x" * padding, agent_id="bot")
    turn = turn_record(tid, 0, [Message.text("user", "hi"), Message.text("assistant", "hello")])
    items = [{"type": "trajectory_start", "record": start}, {"type": "turn", "record": turn}]
    return tid, json.loads(json.dumps({"events": items}, default=lambda d: int(d.timestamp() * 1000)))


async def _serve(settings: Settings, codec: SingleObjectCodec, home: Path) -> tuple[TestServer, Publisher]:
    publisher = Publisher(settings)
    await publisher.start()
    server = TestServer(build_app(Gateway(settings, codec, publisher, KeyStore(home / "keys.json"))))
    await server.start_server()
    return server, publisher


def test_a_full_buffer_is_a_503_with_retry_after_and_nothing_sent(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"gateway_max_inflight_bytes": 64 * 1024, "gateway_retry_after_s": 3})

    async def main() -> tuple[httpx.Response, httpx.Response, str, str]:
        server, publisher = await _serve(settings, codec, tmp_path)
        try:
            url = str(server.make_url("/v1/events"))
            refused_tid, refused_body = _batch(100)
            taken_tid, taken_body = _batch(100)
            async with httpx.AsyncClient() as client:
                publisher.in_flight = settings.gateway_max_inflight_bytes  # the broker has yet to ack a full budget
                refused = await client.post(url, json=refused_body)
                publisher.in_flight = 0
                taken = await client.post(url, json=taken_body)
            return refused, taken, refused_tid, taken_tid
        finally:
            await server.close()
            await publisher.stop()

    refused, taken, _, taken_tid = asyncio.run(main())
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "3"
    assert "retry later" in refused.json()["error"]
    assert taken.status_code == 200
    on_topic = {r.event.record["trajectory_id"] for r in asyncio.run(read(settings, codec, EVENTS_TOPIC)) if r.event}
    assert on_topic == {taken_tid}


def test_under_concurrent_load_every_request_is_either_acknowledged_or_refused_whole(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    # A budget of about three requests, and 60 at once: some must wait for acks and be refused.
    settings = topics.model_copy(update={"gateway_max_inflight_bytes": 12 * 1024})

    async def main() -> list[tuple[str, int]]:
        server, publisher = await _serve(settings, codec, tmp_path)
        try:
            url = str(server.make_url("/v1/events"))
            bodies = [_batch(3000) for _ in range(60)]
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=60)) as client:
                answers = await asyncio.gather(*(client.post(url, json=body) for _, body in bodies))
            return [(tid, a.status_code) for (tid, _), a in zip(bodies, answers, strict=True)]
        finally:
            await server.close()
            await publisher.stop()

    results = asyncio.run(main())
    statuses = [status for _, status in results]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses, statuses
    records = [r.event.record for r in asyncio.run(read(settings, codec, EVENTS_TOPIC)) if r.event]
    per_trajectory: dict[str, int] = {}
    for record in records:
        per_trajectory[record["trajectory_id"]] = per_trajectory.get(record["trajectory_id"], 0) + 1
    # Counts reconcile: each acknowledged request's two events are there, nothing of a refused one is.
    assert per_trajectory == {tid: 2 for tid, status in results if status == 200}
