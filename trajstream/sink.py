"""The one consume -> write -> commit loop, under every stage that is not a Faust agent (as quix-streams'
``sinks/base``): the ClickHouse sink, the Milvus sink, the enrichment worker and the trainer.

A stage implements ``write(batch)`` and says what came of it (``Written``): records to produce, records it
rejects with their reason, and, when it keeps some records back (the trainer's open windows), the offsets
it is done with. The base owns the rest:

- the consumer (its group, its topics, no auto-commit) and a durable producer;
- batches by count and by time;
- retries of a failed ``write`` with capped, doubling back-off (stages write idempotently, so a whole
  batch can be written again);
- for a stage that writes to a store it can ask (``store_answers``), what to do once the tries are
  spent: while the store does not answer, the batch waits with capped back-off as long as the outage
  lasts (its partitions paused, the consumer still in its group, the lag growing); while the store
  answers, the batch is split in halves until the records that fail on their own are found, and
  those are dead-lettered with the store's error (a poison record must not stop the stage forever);
  while the store refuses every write for a condition of its own that waiting cures (``outage``: its
  disk full), the batch waits whole with capped back-off and is written again, never split;
- dead letters with their reason, stage and source, never sent back for a record read from the
  dead-letter topic itself (that would loop);
- offsets committed only after the write succeeded and everything it produced was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from trajstream.settings import Settings
from trajstream.topics import DEAD_LETTER_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import dead_letter_record
from trajstream_sdk.kafka_security import KafkaAuthorizationErrors, authorization_error, start_client
from trajstream_sdk.schemas import DEAD_LETTER

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Output:
    """A record a stage produces: topic (full name), key, encoded value."""

    topic: str
    key: bytes
    value: bytes


class Source(Protocol):
    """Where an input was read: a Kafka record, or a stream's input."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Received:
    """An input no longer held as a Kafka record (the trainer's window items), by where it was read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def dead_letter(codec: EventCodec, dlq_topic: str, stage: str, source: Source, reason: str, error_type: str,
                trajectory_id: str | None = None) -> Output:  # fmt: skip
    """The dead letter of one input: its bytes (the first ones of a record larger than a dead letter may
    carry, with its size and hash) and key, the reason, the stage, where it was read."""
    letter = dead_letter_record(
        stage=stage, reason=reason, error_type=error_type, source=source.topic, source_partition=source.partition,
        source_offset=source.offset, trajectory_id=trajectory_id, key=source.key, payload=source.value,
        max_payload_bytes=codec.limits.dead_letter_payload_bytes,
    )  # fmt: skip
    return Output(dlq_topic, source.key or b"", codec.encode(DEAD_LETTER, letter))


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record a stage cannot take, and why: it goes to the dead-letter topic."""

    record: Record
    reason: str
    error_type: str
    trajectory_id: str | None = None


@dataclass
class Written:
    """What came of a write: records to produce, records rejected, and (when the stage keeps records back)
    the offsets it is done with; ``commit=None`` commits the whole batch."""

    outputs: list[Output] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    commit: dict[TopicPartition, int] | None = None


@dataclass
class LoopStats:
    batches: int = 0
    records: int = 0
    dead_lettered: int = 0
    retries: int = 0
    unreadable_dead_letters: int = 0  # read from the dead-letter topic and not sent back to it
    outages: int = 0  # times the store stopped answering
    waiting_since: float | None = None  # UNIX time the current outage began; None while the store answers
    poison: int = 0  # records dead-lettered because their write failed on its own while the store answered
    last_error: str = ""
    cause: str = ""  # while it waits out a condition of the store (``BatchSink.outage``): which ("disk full")

    @property
    def state(self) -> str:
        if self.waiting_since is None:
            return "writing"
        return f"waiting for its store ({self.cause})" if self.cause else "waiting for its store"


async def fill_batch(consumer: AIOKafkaConsumer, stop: asyncio.Event, max_rows: int, max_seconds: float,
                     eager: bool = False) -> list[Record]:  # fmt: skip
    """Records until ``max_rows``, or until the oldest record in hand has waited ``max_seconds`` (by its Kafka
    timestamp; at most ``max_seconds`` after the call), whichever comes first. A record that arrived while
    the previous batch was being written has waited already: it does not linger again (at 50 trajectories/s
    that second wait was a fifth of the ClickHouse sink's latency). ``eager`` returns with the first fetch
    that brings any (a stage that waits on others, like an LLM, wants no linger)."""
    records: list[Record] = []
    deadline = time.time() + max_seconds
    while len(records) < max_rows and not stop.is_set():
        left = deadline - time.time()
        if left <= 0:
            break
        batch = await consumer.getmany(timeout_ms=int(left * 1000), max_records=max_rows - len(records))
        fetched = [m for msgs in batch.values() for m in msgs]
        if fetched:
            records.extend(fetched)
            # Clocks of other machines may run ahead: never later than the call's own deadline.
            deadline = min(deadline, min(m.timestamp for m in fetched) / 1000 + max_seconds)
        if eager and records:
            break
    return records


def capped_backoff(first: float, cap: float) -> Iterator[float]:
    """Waits that start at ``first`` and double up to ``cap``."""
    delay = first
    while True:
        yield min(delay, cap)
        delay *= 2


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _merge(into: Written, part: Written) -> None:
    into.outputs += part.outputs
    into.rejected += part.rejected


async def _idle_poll(consumer: AIOKafkaConsumer, stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` (or until ``stop``) inside ``getmany`` on paused partitions: a consumer that does
    not poll for max.poll.interval.ms leaves its group. A record that arrives all the same (a partition
    assigned by a rebalance since the pause) is not taken: its partition is sought back to it."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        got = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
        for tp, records in got.items():
            consumer.seek(tp, records[0].offset)
            consumer.pause(tp)


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last record: what to commit once the batch is written."""
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets


class BatchSink(ABC):
    """Consume ``topics`` in consumer group ``group``, ``write`` each batch, produce, dead-letter, commit.

    ``retry_attempts`` tries of a failing write (default ``TRAJSTREAM_SINK_RETRY_ATTEMPTS``), the first
    back-off ``TRAJSTREAM_SINK_RETRY_BACKOFF_S``, doubling up to ``TRAJSTREAM_SINK_RETRY_MAX_BACKOFF_S``.
    Then a stage with a store to ask (``store_answers``) waits out an outage or dead-letters the records
    no write takes; any other stage stops, with the batch uncommitted (it is read again after a restart).
    """

    stage: str  # names the stage in its dead letters

    def __init__(
        self,
        settings: Settings,
        codec: EventCodec,
        *,
        group: str,
        topics: Sequence[str],
        batch_rows: int,
        batch_seconds: float,
        eager: bool = False,
        retry_attempts: int | None = None,
        auto_offset_reset: str = "earliest",
    ):
        self.settings = settings
        self.codec = codec
        self.group = group
        self.topics = tuple(topics)
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.eager = eager
        self.retry_attempts = retry_attempts or settings.sink_retry_attempts
        self.auto_offset_reset = auto_offset_reset
        self.dlq_topic = settings.topic(DEAD_LETTER_TOPIC)
        self.loop_stats = LoopStats()
        self.producer: AIOKafkaProducer | None = None  # set while run() runs

    # --- what a stage implements --------------------------------------------------------------
    @abstractmethod
    async def write(self, batch: list[Record]) -> Written:
        """Write one batch (idempotently: after a failure the same batch is written again)."""

    async def idle(self) -> Written | None:
        """Called when a batch wait brought nothing: a stage that holds records back may finish them."""
        return None

    def done(self) -> bool:
        """True to end the loop (the trainer's window limit)."""
        return False

    async def close(self) -> None:  # noqa: B027 (a hook: most stages hold nothing to release)
        """Release what the stage holds, after the loop."""

    async def store_answers(self) -> bool | None:
        """Whether the store this stage writes to answers now. None (the default): the stage has no store
        to ask, and a write that keeps failing stops the loop (the trainer, the enrichment worker)."""
        return None

    def outage(self, error: BaseException) -> str | None:
        """What ``error`` says of the store itself when it refuses every write for a condition of its own that
        waiting cures, such as its disk full ("disk full"); None (the default) when it is not one. Such a
        batch is not split and dead-lettered: it waits whole, its partitions paused, and is written again."""
        return None

    async def store_back(self) -> None:  # noqa: B027 (a hook: most stores need nothing)
        """Called once the store answers again after an outage, before the batch is written again."""

    @property
    def store(self) -> str:
        """The store's name in logs and dead letters."""
        return "its store"

    # --- what the base provides ---------------------------------------------------------------
    def dead_letter(self, source: Source, reason: str, error_type: str, trajectory_id: str | None = None) -> Output:
        """The dead letter of ``source``, from this stage."""
        return dead_letter(self.codec, self.dlq_topic, self.stage, source, reason, error_type, trajectory_id)

    async def send(self, outputs: Sequence[Output]) -> None:
        """Produce ``outputs`` and wait until the broker acknowledged every one of them."""
        assert self.producer is not None, "send() runs inside run()"
        try:
            futures = [await self.producer.send(o.topic, o.value, key=o.key) for o in outputs]
            await asyncio.gather(*futures)
        except KafkaAuthorizationErrors as exc:  # a topic outside this stage's ACLs: name it, and the user
            raise authorization_error(exc, self.settings.kafka_client_options()) from None

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            *self.topics, **s.consumer_options(), group_id=self.group, enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset, max_poll_records=self.batch_rows,
        )  # fmt: skip
        self.producer = AIOKafkaProducer(**s.durable_producer_options())
        try:
            await start_client(consumer, s.kafka_client_options())
            await start_client(self.producer, s.kafka_client_options())
            if ready is not None:
                ready.set()
            while not stop.is_set() and not self.done():
                try:
                    batch = await fill_batch(consumer, stop, self.batch_rows, self.batch_seconds, self.eager)
                except KafkaAuthorizationErrors as exc:  # a topic or group this stage may not read
                    raise authorization_error(exc, s.kafka_client_options()) from None
                written = await self._write(batch, consumer, stop) if batch else await self.idle()
                if written is None:
                    continue  # nothing written (idle, or stopped while the store was away): nothing to commit
                await self.send([*written.outputs, *self._dead_letters(written.rejected)])
                offsets = next_offsets(batch) if written.commit is None else written.commit
                if offsets:
                    await consumer.commit(offsets)  # only after the write and its outputs
        finally:
            await consumer.stop()
            await self.producer.stop()
            self.producer = None
            await self.close()

    async def _write(self, batch: list[Record], consumer: AIOKafkaConsumer, stop: asyncio.Event) -> Written | None:
        self.loop_stats.batches += 1
        self.loop_stats.records += len(batch)
        try:
            return await self._tries(batch, self.retry_attempts)
        except Exception as exc:  # stores raise types with no useful common base
            if await self.store_answers() is None:
                raise
            self.loop_stats.last_error = _describe(exc)
            error: BaseException = exc
        return await self._recover(batch, consumer, stop, error)

    async def _tries(self, batch: list[Record], attempts: int) -> Written:
        """``write(batch)``, tried up to ``attempts`` times with back-off; the last error is raised."""
        delays = self.backoff()
        for attempt in range(1, attempts + 1):
            try:
                return await self.write(batch)
            except Exception as exc:
                if attempt == attempts:
                    raise
                self.loop_stats.retries += 1
                delay = next(delays)
                log.warning("%s: writing %d records failed (try %d of %d), again in %.1fs: %s",
                            self.stage, len(batch), attempt, attempts, delay, exc)  # fmt: skip
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _recover(self, batch: list[Record], consumer: AIOKafkaConsumer, stop: asyncio.Event,
                       error: BaseException) -> Written | None:  # fmt: skip
        """A batch whose tries are spent: wait out the store's outage, or find the records no write takes.

        Parts are written again whole after an outage (the store not answering, or refusing every write:
        ``outage``), split in halves while the store answers; a single record that fails all its tries
        while the store answers is dead-lettered."""
        written = Written()
        parts = [batch]
        first = True  # the whole batch just failed all its tries: go straight to asking the store
        refusing: Iterator[float] | None = None  # the back-off while the store refuses every write
        try:
            while parts:
                if stop.is_set():
                    return None  # nothing committed: the batch is read again after a restart
                part = parts.pop()
                if not first:
                    try:
                        _merge(written, await self._tries(part, self.retry_attempts if len(part) == 1 else 1))
                        if refusing is not None:
                            refusing = None
                            self._accepting(consumer)
                        continue
                    except Exception as exc:
                        self.loop_stats.last_error = _describe(exc)
                        error = exc
                first = False
                if (cause := self.outage(error)) is not None:
                    if refusing is None:
                        refusing = self.backoff()
                        self._refusing(consumer, cause)
                    delay = next(refusing)
                    log.error("%s: %s %s; the %d records wait (nothing is committed), written again in %.1fs: %s",
                              self.stage, self.store, cause, len(part), delay, self.loop_stats.last_error)  # fmt: skip
                    await _idle_poll(consumer, stop, delay)
                    parts.append(part)
                    continue
                if refusing is not None:
                    refusing = None
                    self._accepting(consumer)
                if await self._wait_for_store(consumer, stop):
                    if stop.is_set():
                        return None
                    parts.append(part)  # the store is back: the same part, whole, again
                elif len(part) == 1:
                    self.loop_stats.poison += 1
                    reason = (f"writing this record to {self.store} failed {self.retry_attempts} times while the "
                              f"store answered: {self.loop_stats.last_error}")  # fmt: skip
                    log.error("%s: %s:%d:%d dead-lettered: %s", self.stage, part[0].topic, part[0].partition,
                              part[0].offset, reason)  # fmt: skip
                    written.rejected.append(Rejected(part[0], reason, "StoreRejected"))
                else:
                    middle = len(part) // 2
                    parts += [part[middle:], part[:middle]]  # the first half is written first
            return written
        finally:
            if refusing is not None:  # stopped while the store refused: nothing came back, only the pause ends
                self._accepting(consumer, back=False)

    def _refusing(self, consumer: AIOKafkaConsumer, cause: str) -> None:
        """The store began refusing every write (``cause``): take nothing more until it accepts again."""
        self.loop_stats.outages += 1
        self.loop_stats.waiting_since = time.time()
        self.loop_stats.cause = cause
        consumer.pause(*consumer.assignment())

    def _accepting(self, consumer: AIOKafkaConsumer, back: bool = True) -> None:
        since = self.loop_stats.waiting_since
        if back:
            log.warning("%s: %s takes writes again after %.1fs (it was %s)", self.stage, self.store,
                        time.time() - (since or time.time()), self.loop_stats.cause)  # fmt: skip
        consumer.resume(*consumer.assignment())
        self.loop_stats.waiting_since = None
        self.loop_stats.cause = ""

    async def _wait_for_store(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
        """Return False at once when the store answers. Else wait (partitions paused, back-off capped)
        until it does or ``stop`` is set, and return True."""
        if await self.store_answers():
            return False
        self.loop_stats.outages += 1
        self.loop_stats.waiting_since = time.time()
        paused = consumer.assignment()
        consumer.pause(*paused)
        delays = self.backoff()
        try:
            while not stop.is_set():
                delay = next(delays)
                log.warning("%s: %s does not answer (%s); the batch waits, again in %.1fs", self.stage,
                            self.store, self.loop_stats.last_error, delay)  # fmt: skip
                await _idle_poll(consumer, stop, delay)
                if await self.store_answers():
                    log.warning("%s: %s answers again after %.1fs", self.stage, self.store,
                                time.time() - self.loop_stats.waiting_since)  # fmt: skip
                    try:
                        await self.store_back()
                    except Exception as exc:  # not back after all: wait on
                        self.loop_stats.last_error = _describe(exc)
                        continue
                    break
        finally:
            consumer.resume(*(tp for tp in paused if tp in consumer.assignment()))
            self.loop_stats.waiting_since = None
        return True

    def backoff(self) -> Iterator[float]:
        """The waits between tries: the first back-off, doubling, capped."""
        return capped_backoff(self.settings.sink_retry_backoff_s, self.settings.sink_retry_max_backoff_s)

    def _dead_letters(self, rejected: Sequence[Rejected]) -> list[Output]:
        out = []
        for r in rejected:
            if r.record.topic == self.dlq_topic:
                # A dead letter that cannot be read is not sent back to where it came from (that would loop).
                log.error("%s: unreadable dead letter at %s:%d:%d left out: %s", self.stage, r.record.topic,
                          r.record.partition, r.record.offset, r.reason)  # fmt: skip
                self.loop_stats.unreadable_dead_letters += 1
                continue
            out.append(self.dead_letter(r.record, r.reason, r.error_type, r.trajectory_id))
        self.loop_stats.dead_lettered += len(out)
        return out
