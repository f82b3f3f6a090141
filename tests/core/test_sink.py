"""The one consume -> write -> commit loop (trajstream.sink) against the real broker: retries with capped
back-off, dead letters with their reason, offsets committed only after a successful write."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support.streams import read
from trajstream.consumers.embedding import Embedder
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.sink import BatchSink, Record, Rejected, Written, fill_batch
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

TOPIC = "trajectories.scored"


class ScriptedSink(BatchSink):
    """Fails its first ``failures`` writes, rejects values starting with b"bad", keeps what it wrote."""

    stage = "test-sink"

    def __init__(
        self, settings: Settings, codec: SingleObjectCodec, failures: int = 0, commit_only_first: bool = False
    ):
        super().__init__(settings, codec, group=settings.consumer_group(f"test-{uuid.uuid4().hex[:6]}"),
                         topics=(settings.topic(TOPIC),), batch_rows=100, batch_seconds=0.2)  # fmt: skip
        self.failures = failures
        self.commit_only_first = commit_only_first
        self.written: list[bytes] = []
        self.attempts = 0

    async def write(self, batch: list[Record]) -> Written:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"store unavailable (attempt {self.attempts})")
        rejected = [Rejected(r, "starts with bad", "BadValue") for r in batch if r.value.startswith(b"bad")]
        self.written += [r.value for r in batch if not r.value.startswith(b"bad")]
        if self.commit_only_first:  # a stage that keeps records back commits what it is done with
            first = min(batch, key=lambda r: (r.partition, r.offset))
            return Written(rejected=rejected, commit={TopicPartition(first.topic, first.partition): first.offset + 1})
        return Written(rejected=rejected)


async def _publish(settings: Settings, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**settings.durable_producer_options())
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(settings.topic(TOPIC), v, key=b"k")  # one key: one partition, in order
    finally:
        await producer.stop()


async def _committed(settings: Settings, group: str) -> int:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic(TOPIC))
        total = 0
        for tp in tps:
            total += max(await consumer.committed(tp) or 0, 0)
        return total
    finally:
        await consumer.stop()


async def _run_until(sink: ScriptedSink, done: object, timeout_s: float = 30.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        for _ in range(int(timeout_s * 10)):
            if (callable(done) and done()) or task.done():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the commit after the write
    finally:
        stop.set()
        await task


async def test_a_failing_write_is_retried_and_the_batch_committed_once_it_succeeds(
    topics: Settings, codec: SingleObjectCodec
) -> None:
    settings = topics.model_copy(update={"sink_retry_backoff_s": 0.01, "sink_retry_max_backoff_s": 0.02})
    await _publish(settings, [b"one", b"two", b"bad three"])
    sink = ScriptedSink(settings, codec, failures=2)
    await _run_until(sink, lambda: len(sink.written) == 2)
    assert sink.written == [b"one", b"two"] and sink.loop_stats.retries == 2
    assert await _committed(settings, sink.group) == 3
    (letter,) = [r.event.record for r in await read(settings, codec, "deadletter") if r.event]
    assert (
        letter["stage"] == "test-sink" and letter["reason"] == "starts with bad" and letter["payload"] == b"bad three"
    )
    assert letter["source"] == settings.topic(TOPIC) and letter["source_offset"] == 2


async def test_a_write_that_keeps_failing_stops_the_loop_with_nothing_committed(
    topics: Settings, codec: SingleObjectCodec
) -> None:
    settings = topics.model_copy(update={"sink_retry_attempts": 3, "sink_retry_backoff_s": 0.01})
    await _publish(settings, [b"one", b"two"])
    sink = ScriptedSink(settings, codec, failures=10)
    with pytest.raises(ConnectionError, match="attempt 3"):
        await sink.run(asyncio.Event())
    assert sink.attempts == 3 and sink.written == []
    assert await _committed(settings, sink.group) == 0  # read again after a restart


async def test_a_stage_that_keeps_records_back_commits_only_what_it_is_done_with(
    topics: Settings, codec: SingleObjectCodec
) -> None:
    await _publish(topics, [b"one", b"two", b"three"])
    sink = ScriptedSink(topics, codec, commit_only_first=True)
    await _run_until(sink, lambda: len(sink.written) == 3)
    assert await _committed(topics, sink.group) == 1


def test_back_off_doubles_up_to_its_cap(codec: SingleObjectCodec) -> None:
    settings = Settings(sink_retry_backoff_s=0.5, sink_retry_max_backoff_s=3.0)
    delays = list(itertools.islice(ScriptedSink(settings, codec).backoff(), 6))
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


class StoreSink(BatchSink):
    """Writes to a pretend store that can be away (``up``) and that refuses values starting with b"poison"."""

    stage = "test-store-sink"

    def __init__(self, settings: Settings, codec: SingleObjectCodec):
        super().__init__(settings, codec, group=settings.consumer_group(f"test-{uuid.uuid4().hex[:6]}"),
                         topics=(settings.topic(TOPIC),), batch_rows=100, batch_seconds=0.2)  # fmt: skip
        self.up = True
        self.stored: list[bytes] = []
        self.asked = 0

    async def write(self, batch: list[Record]) -> Written:
        if not self.up:
            raise ConnectionError("connection refused")
        if any(r.value.startswith(b"poison") for r in batch):
            raise ValueError("cannot store a poison value")
        self.stored += [r.value for r in batch if r.value not in self.stored]  # idempotent, as a real sink
        return Written()

    async def store_answers(self) -> bool:
        self.asked += 1
        return self.up


async def test_a_record_no_write_takes_is_dead_lettered_while_the_rest_land(
    topics: Settings, codec: SingleObjectCodec
) -> None:
    settings = topics.model_copy(update={"sink_retry_attempts": 2, "sink_retry_backoff_s": 0.01})
    values = [f"v{i}".encode() for i in range(9)]
    await _publish(settings, [*values[:4], b"poison one", *values[4:]])
    sink = StoreSink(settings, codec)
    await _run_until(sink, lambda: len(sink.stored) == 9 and sink.loop_stats.dead_lettered == 1)
    assert sink.stored == values  # in order, each once
    assert await _committed(settings, sink.group) == 10
    (letter,) = [r.event.record for r in await read(settings, codec, "deadletter") if r.event]
    assert letter["payload"] == b"poison one" and letter["stage"] == "test-store-sink"
    assert letter["error_type"] == "StoreRejected" and "ValueError: cannot store a poison value" in letter["reason"]
    assert sink.loop_stats.poison == 1 and sink.loop_stats.outages == 0


async def test_a_store_outage_holds_the_batch_until_the_store_answers_and_loses_nothing(
    topics: Settings, codec: SingleObjectCodec
) -> None:
    settings = topics.model_copy(update={"sink_retry_attempts": 2, "sink_retry_backoff_s": 0.05,
                                         "sink_retry_max_backoff_s": 0.2})  # fmt: skip
    sink = StoreSink(settings, codec)
    sink.up = False
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        await _publish(settings, [b"one", b"two"])
        for _ in range(100):
            if sink.loop_stats.waiting_since is not None and sink.asked >= 4:
                break
            await asyncio.sleep(0.1)
        # Waiting, not stopped, not dead-lettering: the outage is the store's, not the records'.
        assert sink.loop_stats.state == "waiting for its store" and not task.done()
        assert sink.stored == [] and await _committed(settings, sink.group) == 0
        await _publish(settings, [b"three"])  # the lag grows meanwhile
        sink.up = True
        for _ in range(100):
            if len(sink.stored) == 3:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await task
    assert sink.stored == [b"one", b"two", b"three"]
    assert sink.loop_stats.outages == 1 and sink.loop_stats.waiting_since is None
    assert sink.loop_stats.dead_lettered == 0 and await _committed(settings, sink.group) == 3
    assert [r for r in await read(settings, codec, "deadletter")] == []


async def test_records_that_already_waited_their_linger_are_not_held_again(topics: Settings) -> None:
    """A batch lingers at most ``max_seconds`` from its oldest record's timestamp: records that queued up
    while the previous batch was written go at once, not after another full linger."""
    producer = AIOKafkaProducer(**topics.kafka_client_options())
    await producer.start()
    try:
        old = int(time.time() * 1000) - 60_000
        for i in range(3):
            await producer.send_and_wait(topics.topic(TOPIC), f"v{i}".encode(), key=b"k", timestamp_ms=old)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topics.topic(TOPIC), **topics.kafka_client_options(), group_id=None,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    try:
        started = time.monotonic()
        records = await fill_batch(consumer, asyncio.Event(), max_rows=100, max_seconds=60)
        took = time.monotonic() - started
    finally:
        await consumer.stop()
    assert [r.value for r in records] == [b"v0", b"v1", b"v2"]
    assert took < 30  # not the 60 s linger a fresh batch gets


def test_background_work_runs_on_one_thread_at_the_embedders_nice_value() -> None:
    embedder = Embedder(background_nice=7)

    def where() -> tuple[int, int]:
        return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    first, second = embedder.in_background(where), embedder.in_background(where)
    assert first == second and first[1] == 7
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 7  # the caller is left as it was
    with pytest.raises(ZeroDivisionError):
        embedder.in_background(lambda: 1 // 0)  # the work's error reaches the caller
