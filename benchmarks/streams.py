"""Streams benchmark: turn events per second through the assembly worker, next to a plain consumer.

    python benchmarks/streams.py [--trajectories 2000] [--turns 10]

The same events (on a fresh topic prefix) are read twice in one run:
  * baseline: a plain aiokafka consumer doing the worker's reading: the worker's fetch settings (bytes per
    partition, records per poll, fetch wait: streams.app) and its decoding depth (a turn's envelope only,
    a start or end event whole: ``codec.peek`` with the assembly's ENVELOPE_FIELDS);
  * ours: `trajstream worker streams` (Faust; its scoring agent runs too), from "worker ready" to the Kafka
    timestamp of the last assembled trajectory it wrote.
Uses the local broker (started if needed) or TRAJSTREAM_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from trajstream.broker import LocalBroker
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.streams.app import FETCH_MAX_WAIT_MS, MAX_POLL_RECORDS, fetch_bytes
from trajstream.streams.assembly import ENVELOPE_FIELDS
from trajstream.topics import ASSEMBLED, EVENTS_TOPIC, create_topics
from trajstream_sdk.codec import codec_for
from trajstream_sdk.events import Message, ToolCall, ToolResponse, end_record, start_record, turn_record

TARGET = 0.50


def build_events(settings: Settings, trajectories: int, turns: int) -> list[tuple[bytes, bytes]]:
    codec = codec_for(settings)
    out = []
    for n in range(trajectories):
        tid = str(uuid.uuid4())
        key = tid.encode()
        out.append((key, codec.encode("trajectory_start", start_record(tid, f"Refund order {n}", agent_id="bench"))))
        for i in range(turns):
            messages = [
                Message("tool", ToolResponse("lookup", f"c{i - 1}", {"status": "delivered", "order": n})),
                Message("assistant", ToolCall("lookup", f"c{i}", {"order_id": n, "page": i})),
            ]
            out.append((key, codec.encode("turn", turn_record(tid, i, messages, duration_ms=300))))
        out.append((key, codec.encode("trajectory_end", end_record(tid, "success", turn_count=turns))))
    return out


async def produce(settings: Settings, events: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        for key, value in events:
            await producer.send(settings.topic(EVENTS_TOPIC), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def plain_consumer_rate(settings: Settings, expected: int) -> float:
    codec = codec_for(settings)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=fetch_bytes(settings), max_poll_records=MAX_POLL_RECORDS,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )  # fmt: skip
    await consumer.start()
    topic = settings.topic(EVENTS_TOPIC)
    try:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        t0 = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for message in records:
                    codec.peek(message.value, ENVELOPE_FIELDS)
                    seen += 1
        return seen / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def wait_for_assembled(settings: Settings, expected: int, proc: subprocess.Popen[bytes], log: Path) -> int:
    """Kafka timestamp of the newest assembled record, once `expected` trajectories are there.

    One consumer polls the end offsets: a new client per poll cost the 2 cores the worker runs on.
    """
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    topic = settings.topic(ASSEMBLED)
    try:
        tps = await topic_partitions(consumer, topic)
        deadline = time.monotonic() + 600
        while True:
            ends = await consumer.end_offsets(tps)
            if sum(ends.values()) >= expected:
                break
            if proc.poll() is not None:
                raise RuntimeError("worker exited:\n" + log.read_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not assemble every trajectory in time")
            await asyncio.sleep(1.0)
        consumer.assign(tps)
        newest = 0
        for tp in tps:
            if ends[tp] == 0:
                continue
            consumer.seek(tp, ends[tp] - 1)
            batch = await consumer.getmany(tp, timeout_ms=2000)
            for message in batch.get(tp, []):
                newest = max(newest, message.timestamp)
        return newest
    finally:
        await consumer.stop()


def ready_time(log: Path) -> float:
    """The worker's "Ready" log line, as a UNIX time."""
    match = re.search(
        r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[\d+\] \[INFO\] \[\^Worker\]: Ready", log.read_text()
    )
    if not match:
        raise RuntimeError("worker never became ready:\n" + log.read_text()[-2000:])
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()


def worker_rate(settings: Settings, events: int, trajectories: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJSTREAM_")}
    env.update({"TRAJSTREAM_HOME": str(settings.home), "TRAJSTREAM_TOPIC_PREFIX": settings.topic_prefix,
                "TRAJSTREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
                "TRAJSTREAM_BROKER_PORT": str(settings.broker_port)})  # fmt: skip
    if settings.kafka_bootstrap:
        env["TRAJSTREAM_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    binary = Path(sys.executable).parent / "trajstream"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([str(binary), "worker", "streams", "--loglevel", "info"],
                                env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        newest = asyncio.run(wait_for_assembled(settings, trajectories, proc, log))
        return events / (newest / 1000 - ready_time(log))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=5000)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()

    base = Settings()
    if not base.uses_external_kafka:
        LocalBroker(base, progress=lambda m: print(f"# {m}", file=sys.stderr)).start()
    settings = base.model_copy(update={"topic_prefix": f"bstreams{uuid.uuid4().hex[:8]}."})
    asyncio.run(create_topics(settings))
    events = build_events(settings, args.trajectories, args.turns)
    turn_events = args.trajectories * args.turns
    asyncio.run(produce(settings, events))
    print(f"# {len(events)} events ({turn_events} turn events) in {args.trajectories} trajectories, "
          f"{settings.topic_partitions} partitions")  # fmt: skip

    plain = max(asyncio.run(plain_consumer_rate(settings, len(events))) for _ in range(3))
    ours = worker_rate(settings, len(events), args.trajectories)
    print(f"plain aiokafka consumer, same fetches and decoding depth  {plain:>10,.0f} events/s")
    print(f"assembly worker (Faust)           {ours:>10,.0f} events/s  (every trajectory assembled and emitted)")
    print(f"RESULT assembly_events_per_s ratio={ours / plain:.2f} target={TARGET}")


if __name__ == "__main__":
    main()
