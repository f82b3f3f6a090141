"""Dead letters: list them, and send the (fixed) originals back to where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from trajstream.errors import TrajstreamError
from trajstream.reader import read_topic
from trajstream.settings import Settings
from trajstream.topics import DEAD_LETTER_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.kafka_security import start_client
from trajstream_sdk.schemas import DEAD_LETTER


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    record: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


async def list_letters(
    settings: Settings, codec: EventCodec, stage: str | None = None, error_type: str | None = None
) -> list[Letter]:
    letters = []
    async for rec in read_topic(settings, settings.topic(DEAD_LETTER_TOPIC), codec):
        if rec.event is None or rec.event.name != DEAD_LETTER:
            continue  # an undecodable dead letter cannot be replayed; `list` shows only readable ones
        body = rec.event.record
        if (stage and body["stage"] != stage) or (error_type and body["error_type"] != error_type):
            continue
        letters.append(Letter(rec.partition, rec.offset, body))
    return letters


async def replay(settings: Settings, letters: list[Letter], payloads: dict[str, bytes] | None = None) -> int:
    """Send each letter's payload (or a corrected one from ``payloads`` by ref) back to its source topic."""
    payloads = payloads or {}
    # Every letter is checked before any is sent, so that a refusal leaves nothing half done.
    for letter in letters:
        _check_replayable(letter, letter.ref in payloads)
    producer = AIOKafkaProducer(**settings.durable_producer_options())
    await start_client(producer, settings.kafka_client_options())
    sent = 0
    try:
        for letter in letters:
            source = letter.record["source"]
            value = payloads.get(letter.ref, letter.record["payload"])
            await producer.send_and_wait(source, value, key=letter.record["key"])
            sent += 1
    finally:
        await producer.stop()
    return sent


def why_not_replayable(source: str, payload_cut: bool) -> str:
    """Why a letter cannot be replayed as it is ("" if it can): the rule `dlq replay` and the console share."""
    if source.startswith(("file:", "http:")) or source == "assembly-state":
        return f"it came from {source}, not a topic: fix the input and emit it again"
    if payload_cut:
        return "it keeps only the first bytes of its input: replay it with the whole input (--payload FILE)"
    return ""


async def letters_at(settings: Settings, codec: EventCodec, refs: list[str]) -> list[Letter]:
    """The dead letters at these ``partition:offset`` refs, read from the topic (an unknown ref is an error)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    wanted: dict[tuple[int, int], str] = {}
    for ref in refs:
        p_text, _, o_text = ref.partition(":")
        if not (p_text.isdigit() and o_text.isdigit()):
            raise TrajstreamError(f"{ref!r} is not a dead-letter ref (partition:offset)")
        wanted[(int(p_text), int(o_text))] = ref
    topic = settings.topic(DEAD_LETTER_TOPIC)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
    found: list[Letter] = []
    try:
        await start_client(consumer, settings.kafka_client_options())
        for partition, offset in sorted(wanted):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            records = [r for r in batch.get(tp, []) if r.offset == offset]
            if not records or records[0].value is None:
                raise TrajstreamError(f"no dead letter at {partition}:{offset} of {topic} (retention may have "
                                      "removed it)")  # fmt: skip
            event = codec.decode(records[0].value, expect=DEAD_LETTER)
            found.append(Letter(partition, offset, event.record))
    finally:
        await consumer.stop()
    return found


def _check_replayable(letter: Letter, replaced: bool) -> None:
    """Refuse a letter that has no topic to go back to, or whose stored payload is not the whole input."""
    record = letter.record
    source = record["source"]
    if why_not_replayable(source, payload_cut=False):
        raise TrajstreamError(f"dead letter {letter.ref} came from {source}, not a topic: fix the input and emit it "
                              "again")  # fmt: skip
    if record["payload_cut"] and not replaced:
        raise TrajstreamError(
            f"dead letter {letter.ref} keeps only the first {len(record['payload'])} of its input's "
            f"{record['payload_size']} bytes (sha256 {record['payload_sha256']}): replaying it would send a cut "
            "record; give the whole input with --payload FILE"
        )
