"""`trajstream enrich --since DATE`: new extraction requests for trajectories already assembled."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from trajstream.errors import CodecError
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.topics import ASSEMBLED, ENRICHMENT_REQUESTS
from trajstream_sdk.codec import codec_for
from trajstream_sdk.events import new_id, utcnow
from trajstream_sdk.kafka_security import start_client
from trajstream_sdk.schemas import ASSEMBLED_TRAJECTORY, ENRICHMENT_REQUEST


async def request_reenrichment(settings: Settings, since: datetime, prompt_version: str | None) -> int:
    codec = codec_for(settings)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    topic = settings.topic(ASSEMBLED)
    consumer = AIOKafkaConsumer(**settings.consumer_options(), enable_auto_commit=False, group_id=None)
    await start_client(consumer, settings.kafka_client_options())
    latest: dict[str, tuple[int, bytes]] = {}
    try:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            if found is None:
                continue
            consumer.seek(tp, found.offset)
            position = found.offset
            while position < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                if not batch:
                    break
                for message in batch.get(tp, []):
                    position = message.offset + 1
                    try:
                        record = codec.decode(message.value, expect=ASSEMBLED_TRAJECTORY).record
                    except CodecError:
                        continue  # the assembly stage only writes what it can read; nothing to redo
                    tid = record["trajectory_id"]
                    if tid not in latest or record["version"] > latest[tid][0]:
                        latest[tid] = (record["version"], message.value)
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(**settings.durable_producer_options())
    await start_client(producer, settings.kafka_client_options())
    try:
        for tid, (version, data) in latest.items():
            request = {
                "request_id": new_id(),
                "trajectory_id": tid,
                "trajectory_version": version,
                "requested_at": utcnow(),
                "requested_by": "reenrich",
                "prompt_version": prompt_version,
                "trajectory": data,
            }
            await producer.send(settings.topic(ENRICHMENT_REQUESTS), codec.encode(ENRICHMENT_REQUEST, request),
                                key=tid.encode())  # fmt: skip
        await producer.flush()
    finally:
        await producer.stop()
    return len(latest)
