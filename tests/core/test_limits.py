"""Record sizes: one derivation (``trajstream_sdk.limits``), read by every client, the broker, the topics and
the stages, so that whatever assembly accepts can be written."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from trajstream.broker import LocalBroker
from trajstream.consumers.clickhouse_rows import dead_letter_row
from trajstream.dlq import Letter, replay
from trajstream.errors import ConfigurationError, TrajstreamError
from trajstream.settings import Settings
from trajstream.sink import Received, dead_letter
from trajstream.streams.app import create_app
from trajstream.streams.assembly import Assembler, Input
from trajstream.streams.enrichment.worker import EnrichmentWorker
from trajstream.streams.in_process import Pipeline
from trajstream.streams.scoring.stage import Scorer
from trajstream.topics import (
    ASSEMBLED,
    DEAD_LETTER_TOPIC,
    ENRICHMENT_REQUESTS,
    ENRICHMENT_RESULTS,
    EVENTS_TOPIC,
    SCORED,
    TOPICS,
    internal_topics,
    topic_config,
)
from trajstream_sdk import emitter as sdk_emitter
from trajstream_sdk.codec import SingleObjectCodec, codec_for
from trajstream_sdk.config import EmitterConfig
from trajstream_sdk.emitter import AsyncEmitter
from trajstream_sdk.events import (
    Message,
    ToolCall,
    ToolResponse,
    dead_letter_record,
    end_record,
    start_record,
    turn_record,
)
from trajstream_sdk.limits import DEAD_LETTER_REASON_CHARS, FRAMING_BYTES, Limits
from trajstream_sdk.schemas import SchemaCatalog

KiB = 1024
MiB = 1024 * KiB


def test_the_numbers_at_the_defaults() -> None:
    limits = Settings().limits
    assert limits == EmitterConfig().limits == Limits(1 * MiB, 8 * MiB)
    assert limits.dead_letter_payload_bytes == 2 * MiB
    assert limits.dead_letter_bytes == 2 * MiB + 64 * KiB
    assert limits.record_bytes == 10 * MiB + 64 * KiB
    assert limits.message_bytes == 10 * MiB + 68 * KiB


@pytest.mark.parametrize(("event", "trajectory"), [(1 * KiB, 1 * KiB), (64 * KiB, 1 * MiB), (4 * MiB, 4 * MiB)])
def test_each_limit_holds_what_it_carries(catalog: SchemaCatalog, event: int, trajectory: int) -> None:
    limits = Limits(event, trajectory)
    assert limits.dead_letter_payload_bytes >= 2 * event  # an event refused for its size is kept whole
    assert limits.dead_letter_bytes >= limits.dead_letter_payload_bytes + FRAMING_BYTES
    assert limits.record_bytes >= trajectory + 2 * event + FRAMING_BYTES
    assert limits.record_bytes >= limits.dead_letter_bytes
    assert limits.message_bytes > limits.record_bytes
    assert max(limits.encoded_bytes(name)[0] for name in catalog.names) == limits.record_bytes


def test_knobs_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="TRAJSTREAM_ASSEMBLY_MAX_BYTES=1024 is below"):
        Limits(2 * KiB, 1 * KiB)
    with pytest.raises(ConfigurationError, match="below TRAJSTREAM_MAX_EVENT_BYTES"):
        EmitterConfig.from_env({"TRAJSTREAM_MAX_EVENT_BYTES": str(16 * MiB)})
    with pytest.raises(ConfigurationError, match="below TRAJSTREAM_MAX_EVENT_BYTES"):
        Settings(max_event_bytes=16 * MiB)


def test_every_producer_consumer_topic_and_the_broker_take_the_largest_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path, max_event_bytes=256 * KiB, assembly_max_bytes=3 * MiB)
    message = settings.limits.message_bytes
    assert codec_for(settings).limits == settings.limits
    assert settings.durable_producer_options()["max_request_size"] == message
    consumer = settings.consumer_options()
    assert consumer["max_partition_fetch_bytes"] == message and consumer["fetch_max_bytes"] >= message
    for spec in TOPICS + internal_topics(settings):
        assert topic_config(spec, settings)["max.message.bytes"] == str(message), spec.name
    broker = LocalBroker(settings)
    broker._write_config()
    assert f"message.max.bytes={message}\n" in broker.properties.read_text()
    app, _ = create_app(settings)
    assert app.conf.producer_max_request_size == message and app.conf.consumer_max_fetch_size >= message

    made: list[dict[str, Any]] = []

    class Producer:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        async def start(self) -> None:
            pass

    monkeypatch.setattr(sdk_emitter, "AIOKafkaProducer", Producer)
    sdk = EmitterConfig(max_event_bytes=256 * KiB, assembly_max_bytes=3 * MiB)
    for emitter_settings in (settings, sdk):
        asyncio.run(AsyncEmitter(emitter_settings).start())
    assert [m["max_request_size"] for m in made] == [message, message]


def _turn(tid: str, index: int, text_bytes: int) -> dict[str, Any]:
    """A turn of about ``text_bytes``: a tool call, its result and an answer, so that enrichment and credit
    have steps to work on."""
    return turn_record(tid, index, [
        Message.text("user", f"question {index}"),
        Message("assistant", ToolCall("lookup", f"c{index}", {"n": index})),
        Message("tool", ToolResponse("lookup", f"c{index}", {"rows": index}, "success")),
        Message.text("assistant", "y" * text_bytes),
    ])  # fmt: skip


def _full_trajectory(codec: SingleObjectCodec, limits: Limits) -> tuple[str, list[tuple[str, bytes]]]:
    """Events of exactly ``max_trajectory_bytes``: turns near the event limit, the last one filling the rest."""
    tid = str(uuid.uuid4())
    system = "s" * (limits.max_event_bytes // 2)
    start = codec.encode(
        "trajectory_start", start_record(tid, "fill the limit", agent_id="unit", system_message=system)
    )
    events = [start, codec.encode("trajectory_end", end_record(tid, "success"))]
    text = limits.max_event_bytes - 2 * KiB
    while sum(map(len, events)) < limits.max_trajectory_bytes:
        room = limits.max_trajectory_bytes - sum(map(len, events))
        turn = codec.encode("turn", _turn(tid, len(events) - 2, text))
        if len(turn) > room:  # the last turn: its text shrinks by what the turn is over
            turn = codec.encode("turn", _turn(tid, len(events) - 2, text - (len(turn) - room)))
        events.insert(-1, turn)
    assert sum(map(len, events)) == limits.max_trajectory_bytes
    return tid, [(EVENTS_TOPIC, e) for e in events]


def test_a_trajectory_at_the_limit_fits_every_record_that_carries_it(catalog: SchemaCatalog) -> None:
    settings = Settings(topic_prefix="unit.", max_event_bytes=256 * KiB, assembly_max_bytes=1 * MiB)
    limits = settings.limits
    codec = SingleObjectCodec(catalog, limits)
    tid, events = _full_trajectory(codec, limits)
    pipeline = Pipeline(settings, codec)
    scored = pipeline.run(events)  # the codec refuses any record over its limit, and assembly would dead-letter
    assert len(scored) == 1
    key = tid.encode()
    event_bytes = sum(len(e) for _, e in events)
    record = codec.decode(scored[0]).record
    assembled = record["trajectory"]
    sizes = {
        "assembled": len(assembled),
        "enrichment request": len(codec.encode("enrichment_request", {
            "request_id": "r", "trajectory_id": tid, "trajectory_version": 1, "requested_at": 0,
            "requested_by": "assembly", "prompt_version": None, "trajectory": assembled})),
        "assembly state": len(pipeline.assembler.dump(pipeline.assembly[key])),
        "scored": len(scored[0]),
        "scoring state": len(pipeline.scorer.dump(pipeline.scoring[key])),
    }  # fmt: skip
    for name, size in sizes.items():  # each carries the trajectory (less the start's and end's event ids)
        assert event_bytes - 1 * KiB < size <= limits.record_bytes, (name, size, event_bytes)
    # And as a dead letter (a sink that cannot land it): its first bytes, its size and hash.
    letter = dead_letter(codec, "unit.deadletter", "sink", Received("unit.trajectories.scored", 0, 9, key, scored[0]),
                         "cannot land it", "Test", tid)  # fmt: skip
    assert len(letter.value) <= limits.dead_letter_bytes
    body = codec.decode(letter.value).record
    assert body["payload_cut"] and body["payload_size"] == len(scored[0])
    assert body["payload"] == scored[0][: limits.dead_letter_payload_bytes]
    assert body["payload_sha256"] == hashlib.sha256(scored[0]).hexdigest()


def test_assembly_dead_letters_a_trajectory_whose_assembled_record_would_not_fit(catalog: SchemaCatalog) -> None:
    # Belt and braces: a start event's context is re-encoded as JSON, which outgrows its Avro bytes many
    # times over for many small entities; the trajectory is under its limit, its assembled record is not.
    settings = Settings(topic_prefix="unit.", max_event_bytes=64 * KiB, assembly_max_bytes=128 * KiB)
    codec = SingleObjectCodec(catalog, settings.limits)
    tid = str(uuid.uuid4())
    start = codec.encode("trajectory_start", start_record(tid, "many entities", agent_id="unit",
                                                          entities=[{"name": "a"}] * 12_000))  # fmt: skip
    end = codec.encode("trajectory_end", end_record(tid, "success"))
    assert len(start) + len(end) <= settings.assembly_max_bytes
    assembler = Assembler(settings, codec)
    state: Any = None
    outputs = []
    for offset, value in enumerate((start, end)):
        result = assembler.handle(Input(settings.topic(EVENTS_TOPIC), 0, offset, tid.encode(), value, 1), state)
        state = result.state if result.state is not None else state
        outputs += result.outputs
    assert {o.topic for o in outputs} == {settings.topic(DEAD_LETTER_TOPIC)}
    letters = [codec.decode(o.value).record for o in outputs]
    assert [letter["payload"] for letter in letters] == [start, end]
    assert all("its assembled record would not fit" in letter["reason"] for letter in letters)
    assert state["dead_lettered"] and state["version"] == 0
    assert len(assembler.dump(state)) <= settings.limits.record_bytes


def _assembled_and_enriched(settings: Settings, codec: SingleObjectCodec) -> tuple[bytes, bytes]:
    tid = str(uuid.uuid4())
    events = [codec.encode("trajectory_start", start_record(tid, "t", agent_id="unit"))]
    events += [codec.encode("turn", _turn(tid, i, 12 * KiB)) for i in range(16)]
    events.append(codec.encode("trajectory_end", end_record(tid, "success", turn_count=16)))
    assembler = Assembler(settings, codec)
    state: Any = None
    outputs = []
    for offset, value in enumerate(events):
        result = assembler.handle(Input(settings.topic(EVENTS_TOPIC), 0, offset, tid.encode(), value, 1), state)
        state = result.state if result.state is not None else state
        outputs += result.outputs
    assembled = next(o.value for o in outputs if o.topic == settings.topic(ASSEMBLED))
    request = next(o for o in outputs if o.topic == settings.topic(ENRICHMENT_REQUESTS))
    results = asyncio.run(EnrichmentWorker(settings, codec).handle(
        Input(request.topic, 0, 0, request.key, request.value, 0)))  # fmt: skip
    return assembled, next(o.value for o in results if o.topic == settings.topic(ENRICHMENT_RESULTS))


def _score(settings: Settings, codec: SingleObjectCodec, assembled: bytes, enriched: bytes) -> list[Any]:
    scorer = Scorer(settings, codec)
    first = asyncio.run(scorer.handle(Input(settings.topic(ASSEMBLED), 0, 0, None, assembled, 0), None))
    return asyncio.run(scorer.handle(Input(settings.topic(ENRICHMENT_RESULTS), 0, 1, None, enriched, 0),
                                     first.state)).outputs  # fmt: skip


def test_scoring_dead_letters_outputs_its_state_could_not_keep(catalog: SchemaCatalog) -> None:
    # Belt and braces: limits under which the scored record itself just fits, but not with the credits
    # the state keeps beside it.
    roomy = Settings(topic_prefix="unit.", max_event_bytes=16 * KiB, assembly_max_bytes=1 * MiB)
    codec = SingleObjectCodec(catalog, roomy.limits)
    assembled, enriched = _assembled_and_enriched(roomy, codec)
    outputs = _score(roomy, codec, assembled, enriched)
    scored = next(o.value for o in outputs if o.topic == roomy.topic(SCORED))
    tight_trajectory = len(scored) - 2 * roomy.max_event_bytes - FRAMING_BYTES  # record_bytes == the scored record
    tight = roomy.model_copy(update={"assembly_max_bytes": tight_trajectory})
    assert tight.limits.record_bytes == len(scored)
    outputs = _score(tight, SingleObjectCodec(catalog, tight.limits), assembled, enriched)
    assert [o.topic for o in outputs] == [tight.topic(DEAD_LETTER_TOPIC)]
    assert "would not fit a scoring state" in codec.decode(outputs[0].value).record["reason"]


def test_a_dead_letter_keeps_its_input_whole_or_its_first_bytes_size_and_hash(catalog: SchemaCatalog) -> None:
    limits = Limits(1 * KiB, 4 * KiB)
    codec = SingleObjectCodec(catalog, limits)
    keep = limits.dead_letter_payload_bytes

    def letter(payload: bytes, reason: str = "r") -> dict[str, Any]:
        return dead_letter_record(stage="unit", reason=reason, error_type="Test", source="unit.events",
                                  payload=payload, max_payload_bytes=keep)  # fmt: skip

    whole = letter(b"w" * keep)
    assert whole["payload"] == b"w" * keep and not whole["payload_cut"] and whole["payload_size"] == keep
    data = bytes(range(256)) * 40
    cut = letter(data, reason="x" * 100_000)  # a reason quoting a large input is clipped too
    assert cut["payload"] == data[:keep] and cut["payload_cut"] and cut["payload_size"] == len(data)
    assert cut["payload_sha256"] == hashlib.sha256(data).hexdigest()
    assert len(cut["reason"]) == DEAD_LETTER_REASON_CHARS and cut["reason"].endswith(" chars]")
    encoded = codec.encode("dead_letter", cut)
    assert len(encoded) <= limits.dead_letter_bytes
    # The largest message any topic carries still makes a letter within the limit.
    assert len(codec.encode("dead_letter", letter(b"m" * limits.message_bytes))) <= limits.dead_letter_bytes

    # Where letters land in ClickHouse: the whole input's size, and whether it was cut; a letter written
    # before dead_letter v2 (no size) carried its input whole.
    row = dead_letter_row(codec.decode(encoded).record, 0, 1)
    assert (row["payload_bytes"], row["input_bytes"], row["payload_cut"]) == (keep, len(data), True)
    v1 = {**codec.decode(codec.encode("dead_letter", letter(b"abc"))).record, "payload_size": None,
          "payload_sha256": None, "payload_cut": False}  # fmt: skip
    assert (dead_letter_row(v1, 0, 2)["input_bytes"], dead_letter_row(v1, 0, 2)["payload_cut"]) == (3, False)

    # A cut letter is not replayed as it is: nothing is sent, not even the whole letters before it.
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    letters = [Letter(0, 6, letter(b"fine")), Letter(0, 7, cut)]
    with pytest.raises(TrajstreamError, match=r"dead letter 0:7 keeps only the first 2048 of its input's 10240 bytes"):
        asyncio.run(replay(settings, letters))
