"""Gateway benchmark: events per second through the gateway, next to the Python SDK; the time to a 2xx.

    python benchmarks/gateway.py [--events 20000] [--batch 500] [--rate 2000] [--seconds 15]

In one run, against the local broker (started if needed) and a real `trajstream gateway` subprocess:
  * baseline: the Python SDK (AsyncEmitter: idempotent, acks=all) encodes and publishes N turn events, timed
    until flush() returns, when the broker has acknowledged all of them;
  * JSON: the same N turn records POSTed to /v1/events in batches, up to 8 requests at once, timed until
    every answer is back; a 2xx means the broker acknowledged its records, anything else is a failure;
  * OTLP: N GenAI chat spans carrying the same messages (gen_ai.input/output.messages), as protobuf
    ExportTraceServiceRequests to /v1/traces, likewise;
  * ack latency: an open-loop load of --rate events/s (requests of 20 events every 10 ms at the default),
    each request timed from when it was due to when its 2xx came; an error or a timeout counts as infinitely
    late. p99 over --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from trajstream.broker import LocalBroker
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream_sdk.emitter import AsyncEmitter
from trajstream_sdk.events import Message, ToolCall, ToolResponse, turn_record
from trajstream_sdk.schemas import TURN

CONCURRENCY = 8


def _turns(n: int) -> list[dict[str, Any]]:
    turns = []
    for i in range(n):
        tid = str(uuid.UUID(int=i // 10 + 1))
        messages = [Message("tool", ToolResponse("lookup", f"c{i - 1}", {"status": "delivered", "order": i})),
                    Message("assistant", ToolCall("lookup", f"c{i}", {"order_id": i, "page": i % 10}))]  # fmt: skip
        turns.append(turn_record(tid, i % 10, messages, duration_ms=300))
    return turns


def _json_turn(record: dict[str, Any]) -> dict[str, Any]:
    return {"type": TURN, "record": json.loads(json.dumps(record, default=lambda d: int(d.timestamp() * 1000)))}


def _span_request(first: int, count: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "bench-agent"
    ss = rs.scope_spans.add()
    ss.scope.name = "bench"
    for i in range(first, first + count):
        span = ss.spans.add(trace_id=(i // 10 + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                            name="chat gpt-4o", kind=3, start_time_unix_nano=1_760_000_000_000_000_000 + i * 1000,
                            end_time_unix_nano=1_760_000_000_300_000_000 + i * 1000)  # fmt: skip
        answer = {"type": "tool_call_response", "id": f"c{i - 1}", "response": {"status": "delivered", "order": i}}
        call = {"type": "tool_call", "id": f"c{i}", "name": "lookup", "arguments": {"order_id": i, "page": i % 10}}
        attrs = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": json.dumps([{"role": "tool", "parts": [answer]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [call],
                                                   "finish_reason": "tool_call"}]),
        }  # fmt: skip
        for key, value in attrs.items():
            span.attributes.add(key=key).value.string_value = value
    return bytes(request.SerializeToString())


async def sdk_rate(settings: Settings, turns: list[dict[str, Any]]) -> float:
    async with AsyncEmitter(settings) as emitter:
        started = time.perf_counter()
        for record in turns:
            await emitter.emit(TURN, record, key=record["trajectory_id"])
        await emitter.flush()
        return len(turns) / (time.perf_counter() - started)


async def _post_all(url: str, bodies: list[tuple[bytes, str, int]]) -> tuple[float, int, int]:
    """POST every (body, content type, items) with CONCURRENCY in flight; (seconds, items taken, failures)."""
    queue = list(reversed(bodies))
    taken = failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal taken, failures
        while queue:
            body, content_type, items = queue.pop()
            try:
                answer = await client.post(url, content=body, headers={"Content-Type": content_type})
                ok = 200 <= answer.status_code < 300 and "rejectedSpans" not in answer.text
            except httpx.HTTPError:
                ok = False
            taken, failures = (taken + items, failures) if ok else (taken, failures + items)

    async with httpx.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        return time.perf_counter() - started, taken, failures


async def ack_latencies(url: str, rate: int, seconds: float, per_request: int) -> list[float]:
    bodies = [json.dumps({"events": [_json_turn(t) for t in _turns(per_request)]}).encode() for _ in range(8)]
    interval = per_request / rate
    count = int(seconds / interval)
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, due: float, body: bytes) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        try:
            answer = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            ok = 200 <= answer.status_code < 300
        except httpx.HTTPError:
            ok = False
        latencies.append((time.perf_counter() - due) * 1000 if ok else math.inf)

    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter() + 0.5
        await asyncio.gather(*(one(client, start + k * interval, bodies[k % len(bodies)]) for k in range(count)))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _start_gateway(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "TRAJSTREAM_TOPIC_PREFIX": settings.topic_prefix, "TRAJSTREAM_GATEWAY_PORT": "4399",
           "TRAJSTREAM_HOME": str(settings.home)}  # fmt: skip
    trajstream = Path(sys.executable).parent / "trajstream"
    proc = subprocess.Popen([str(trajstream), "gateway"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = "http://127.0.0.1:4399"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"the gateway did not start: {log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="events (or spans) per request")
    parser.add_argument("--rate", type=int, default=2000, help="events/s for the ack latency")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    base = Settings()
    if not base.uses_external_kafka:
        LocalBroker(base, progress=lambda m: print(f"# {m}", file=sys.stderr)).start()
    settings = base.model_copy(update={"topic_prefix": f"bgateway{uuid.uuid4().hex[:8]}."})
    asyncio.run(create_topics(settings))
    turns = _turns(args.events)
    sdk = max(asyncio.run(sdk_rate(settings, turns)) for _ in range(2))
    print(f"Python SDK (AsyncEmitter), {args.events} turn events            {sdk:>10,.0f} events/s")

    log = settings.home / "logs" / "bench-gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc, url = _start_gateway(settings, log)
    try:
        json_bodies = [(json.dumps({"events": [_json_turn(t) for t in turns[i : i + args.batch]]}).encode(),
                        "application/json", len(turns[i : i + args.batch]))
                       for i in range(0, len(turns), args.batch)]  # fmt: skip
        seconds, taken, failed = asyncio.run(_post_all(f"{url}/v1/events", json_bodies))
        json_rate = taken / seconds
        print(f"gateway /v1/events (JSON, {args.batch}/request, {CONCURRENCY} at once) {json_rate:>10,.0f} events/s"
              f"  ({failed} failed)")  # fmt: skip
        span_bodies = [(_span_request(i, min(args.batch, args.events - i)), "application/x-protobuf",
                        min(args.batch, args.events - i)) for i in range(0, args.events, args.batch)]  # fmt: skip
        seconds, taken, failed_spans = asyncio.run(_post_all(f"{url}/v1/traces", span_bodies))
        otlp_rate = taken / seconds
        print(f"gateway /v1/traces (OTLP protobuf, {args.batch} spans/request)   {otlp_rate:>10,.0f} spans/s"
              f"  ({failed_spans} failed)")  # fmt: skip
        latencies = asyncio.run(ack_latencies(f"{url}/v1/events", args.rate, args.seconds, 20))
        p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
        misses = sum(1 for v in latencies if math.isinf(v))
        print(f"ack latency at {args.rate} events/s (20/request, {len(latencies)} requests): p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms, {misses} failed")  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"RESULT gateway_events ratio={json_rate / sdk:.2f} target=0.5")
    print(f"RESULT gateway_otlp_spans ratio={otlp_rate / sdk:.2f} target=0.5")
    print(f"RESULT gateway_ack_p99 value={p99:.1f} target=250")


if __name__ == "__main__":
    main()
