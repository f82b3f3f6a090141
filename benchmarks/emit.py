"""Emit benchmark: the SDK against a raw aiokafka producer, and the codec against raw fastavro.

    python benchmarks/emit.py [--events 20000] [--repeat 3]

Both sides of each pair run in this process, on the same records, alternating, best of --repeat.
The publish comparison sends the same encoded bytes through the SDK's path (bounded buffer,
delivery tracking, idempotent acks=all producer) and through a raw aiokafka producer with the
same settings. The SDK's end-to-end rate (encoding included) is printed beside it.
Uses the local broker (started if needed) or TRAJSTREAM_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from io import BytesIO
from typing import Any

from aiokafka import AIOKafkaProducer
from fastavro import schemaless_reader, schemaless_writer

from trajstream.broker import LocalBroker
from trajstream.settings import Settings
from trajstream.topics import EVENTS_TOPIC, create_topics
from trajstream_sdk import AsyncEmitter
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ModelInfo, ToolCall, ToolResponse, turn_record
from trajstream_sdk.schemas import TURN, SchemaCatalog

SDK_TARGET = 0.70
CODEC_TARGET = 0.80


def make_turns(n: int, trajectories: int = 200) -> list[tuple[str, dict[str, Any]]]:
    """Realistic turns: a user message, a tool call, its result and an answer, with model info."""
    ids = [str(uuid.uuid4()) for _ in range(trajectories)]
    out = []
    for i in range(n):
        tid = ids[i % trajectories]
        messages = [
            Message.text("user", f"Please refund order {i}; it arrived broken and I want my money back."),
            Message("assistant", ToolCall("lookup_order", f"call_{i}", {"order_id": i, "fields": ["status"]})),
            Message("tool", ToolResponse("lookup_order", f"call_{i}", {"order_id": i, "status": "delivered"})),
            Message.text("assistant", f"Order {i} is refunded; you will see 49.90 in 3-5 days."),
        ]
        model = ModelInfo(request_model="gpt-4o-mini", response_model="gpt-4o-mini", input_tokens=320, output_tokens=40)
        out.append((tid, turn_record(tid, i // trajectories, messages, model=model, duration_ms=800)))
    return out


def best_rate(fn: Callable[[], float], repeat: int) -> float:
    return max(fn() for _ in range(repeat))


def codec_rates(records: list[dict[str, Any]], codec: SingleObjectCodec, repeat: int) -> dict[str, float]:
    parsed = codec.catalog.latest(TURN).parsed
    encoded = [codec.encode(TURN, r) for r in records]
    bodies = [e[10:] for e in encoded]
    n = len(records)

    def ours_encode() -> float:
        t0 = time.perf_counter()
        for r in records:
            codec.encode(TURN, r)
        return n / (time.perf_counter() - t0)

    def raw_encode() -> float:
        t0 = time.perf_counter()
        for r in records:
            buf = BytesIO()
            schemaless_writer(buf, parsed, r)
            buf.getvalue()
        return n / (time.perf_counter() - t0)

    def ours_decode() -> float:
        t0 = time.perf_counter()
        for data in encoded:
            codec.decode(data)
        return n / (time.perf_counter() - t0)

    def raw_decode() -> float:
        t0 = time.perf_counter()
        for body in bodies:
            schemaless_reader(BytesIO(body), parsed, None)
        return n / (time.perf_counter() - t0)

    rates: dict[str, float] = {}
    for _ in range(repeat):  # alternate so that both sides see the same machine state
        for name, fn in (("ours_encode", ours_encode), ("raw_encode", raw_encode),
                         ("ours_decode", ours_decode), ("raw_decode", raw_decode)):  # fmt: skip
            rates[name] = max(rates.get(name, 0.0), fn())
    return rates


async def sdk_rate(settings: Settings, payloads: list[tuple[bytes, bytes]], codec: SingleObjectCodec) -> float:
    """The SDK's publish path (back-pressure, delivery tracking, idempotent producer) on encoded events."""
    emitter = AsyncEmitter(settings, codec=codec, client_id="bench-sdk")
    await emitter.start()
    topic = settings.topic(EVENTS_TOPIC)
    try:
        for key, value in payloads[:500]:  # warm up connections and metadata
            await emitter.send_encoded(value, key=key, topic=topic)
        await emitter.flush()
        t0 = time.perf_counter()
        for key, value in payloads:
            await emitter.send_encoded(value, key=key, topic=topic)
        await emitter.flush()
        return len(payloads) / (time.perf_counter() - t0)
    finally:
        await emitter.close()


async def sdk_end_to_end_rate(
    settings: Settings, turns: list[tuple[str, dict[str, Any]]], codec: SingleObjectCodec
) -> float:
    """What an agent sees: records in, encoding included."""
    emitter = AsyncEmitter(settings, codec=codec, client_id="bench-sdk-e2e")
    await emitter.start()
    try:
        t0 = time.perf_counter()
        for tid, record in turns:
            await emitter.emit(TURN, record, key=tid)
        await emitter.flush()
        return len(turns) / (time.perf_counter() - t0)
    finally:
        await emitter.close()


async def raw_rate(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.producer_linger_ms,
        max_batch_size=settings.producer_max_batch_bytes,
    )
    await producer.start()
    topic = settings.topic(EVENTS_TOPIC)
    try:
        for key, value in payloads[:500]:
            await producer.send(topic, value, key=key)
        await producer.flush()
        t0 = time.perf_counter()
        for key, value in payloads:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return len(payloads) / (time.perf_counter() - t0)
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    base = Settings()
    if not base.uses_external_kafka:
        LocalBroker(base, progress=lambda m: print(f"# {m}", file=sys.stderr)).start()
    settings = base.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})
    asyncio.run(create_topics(settings))

    codec = SingleObjectCodec(SchemaCatalog.from_directory(settings.schemas_dir))
    turns = make_turns(args.events)
    payloads = [(tid.encode(), codec.encode(TURN, r)) for tid, r in turns]
    size = sum(len(v) for _, v in payloads) / len(payloads)
    print(f"# {args.events} turn events, {size:.0f} bytes each on average, best of {args.repeat}")

    rates = codec_rates([r for _, r in turns], codec, args.repeat)
    sdk = raw = 0.0
    for _ in range(args.repeat):
        sdk = max(sdk, asyncio.run(sdk_rate(settings, payloads, codec)))
        raw = max(raw, asyncio.run(raw_rate(settings, payloads)))
    e2e = asyncio.run(sdk_end_to_end_rate(settings, turns, codec))

    enc = rates["ours_encode"] / rates["raw_encode"]
    dec = rates["ours_decode"] / rates["raw_decode"]
    print(f"codec encode   ours {rates['ours_encode']:>10,.0f}/s   raw fastavro {rates['raw_encode']:>10,.0f}/s")
    print(f"codec decode   ours {rates['ours_decode']:>10,.0f}/s   raw fastavro {rates['raw_decode']:>10,.0f}/s")
    print(f"publish        SDK  {sdk:>10,.0f}/s   raw aiokafka {raw:>10,.0f}/s  (same encoded bytes)")
    print(f"SDK end to end {e2e:>10,.0f}/s   (records in, encoding included: bounded by the codec)")
    print(f"RESULT sdk_events_per_s ratio={sdk / raw:.2f} target={SDK_TARGET}")
    print(f"RESULT codec_encode_per_s ratio={enc:.2f} target={CODEC_TARGET}")
    print(f"RESULT codec_decode_per_s ratio={dec:.2f} target={CODEC_TARGET}")


if __name__ == "__main__":
    main()
