"""Read a topic from the beginning up to its current end: for the demo, tests and inspection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from trajstream.errors import CodecError
from trajstream.settings import Settings
from trajstream_sdk.codec import DecodedEvent, EventCodec
from trajstream_sdk.kafka_security import start_client


@dataclass(frozen=True, slots=True)
class ReadRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: DecodedEvent | None
    error: CodecError | None


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions; a consumer that has not seen the topic yet asks the cluster once."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(partitions or ())]


async def read_topic(settings: Settings, topic: str, codec: EventCodec | None = None) -> AsyncIterator[ReadRecord]:
    """Every record now on ``topic``, in partition then offset order; decode failures are yielded, not raised."""
    consumer = AIOKafkaConsumer(
        **settings.consumer_options(), enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
    )
    await start_client(consumer, settings.kafka_client_options())
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        start = await consumer.beginning_offsets(tps)
        for tp in tps:
            position = start[tp]
            consumer.seek(tp, position)
            idle = 0
            while position < end[tp] and idle < 5:
                batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1000)
                for message in batch.get(tp, []):
                    if message.offset >= end[tp]:
                        break
                    position = message.offset + 1
                    event, error = None, None
                    if codec is not None:
                        try:
                            event = codec.decode(message.value)
                        except CodecError as exc:
                            error = exc
                    yield ReadRecord(tp.partition, message.offset, message.key, message.value, event, error)
                if batch:
                    idle = 0
                else:
                    # Transactional markers or compaction can leave gaps below the end offset.
                    idle += 1
                    position = await consumer.position(tp)
    finally:
        await consumer.stop()
