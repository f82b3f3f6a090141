"""Sink batches from Kafka: fill one by size and time, and the offsets that commit it."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition


async def fill_batch(consumer: AIOKafkaConsumer, stop: asyncio.Event, max_rows: int,
                     max_seconds: float) -> list[ConsumerRecord[bytes, bytes]]:  # fmt: skip
    """Records until ``max_rows`` or ``max_seconds`` after the call, whichever comes first."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + max_seconds
    while len(records) < max_rows and not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        batch = await consumer.getmany(timeout_ms=int(left * 1000), max_records=max_rows - len(records))
        records.extend(m for msgs in batch.values() for m in msgs)
    return records


def next_offsets(records: list[ConsumerRecord[bytes, bytes]]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last record: what to commit once the batch has landed."""
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets
