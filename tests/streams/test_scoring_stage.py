"""The scoring stage on its own (no Kafka): a replayed input of the scored version re-sends what was sent;
a swept trajectory keeps only its version counts."""

from __future__ import annotations

import asyncio
import uuid

from trajstream.settings import Settings
from trajstream.sink import Output
from trajstream.streams.assembly import Assembler, Input
from trajstream.streams.enrichment.worker import EnrichmentWorker
from trajstream.streams.scoring.stage import Scorer
from trajstream.topics import ASSEMBLED, ENRICHMENT_REQUESTS, ENRICHMENT_RESULTS, EVENTS_TOPIC, SCORING_CONTROL_TOPIC
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, end_record, start_record, turn_record


def _assembled_and_enriched(settings: Settings, codec: SingleObjectCodec) -> tuple[bytes, bytes]:
    tid = str(uuid.uuid4())
    events = [codec.encode("trajectory_start", start_record(tid, "Refund order 7", agent_id="unit"))]
    events += [
        codec.encode("turn", turn_record(tid, i, [Message.text("user", f"q{i}"), Message.text("assistant", f"a{i}")]))
        for i in range(3)
    ]
    events.append(codec.encode("trajectory_end", end_record(tid, "success", turn_count=3)))
    assembler = Assembler(settings, codec)
    state, outputs = None, []
    for offset, value in enumerate(events):
        result = assembler.handle(
            Input(settings.topic(EVENTS_TOPIC), 0, offset, tid.encode(), value, 1_700_000_000_000), state
        )
        state = result.state if result.state is not None else state
        outputs += result.outputs
    assembled = next(o.value for o in outputs if o.topic == settings.topic(ASSEMBLED))
    request = next(o for o in outputs if o.topic == settings.topic(ENRICHMENT_REQUESTS))
    worker = EnrichmentWorker(settings, codec)
    results = asyncio.run(worker.handle(Input(request.topic, 0, 0, request.key, request.value, 0)))
    enriched = next(o.value for o in results if o.topic == settings.topic(ENRICHMENT_RESULTS))
    return assembled, enriched


def _feed(
    scorer: Scorer, settings: Settings, topic: str, value: bytes, state: bytes | None
) -> tuple[bytes | None, list[Output]]:
    result = asyncio.run(scorer.handle(Input(settings.topic(topic), 0, 0, None, value, 0), state))
    return (scorer.dump(result.state) if result.state is not None else state), result.outputs


def test_a_replayed_input_of_the_scored_version_sends_the_same_records_again(codec: SingleObjectCodec) -> None:
    settings = Settings(topic_prefix="unit.")
    assembled, enriched = _assembled_and_enriched(settings, codec)
    scorer = Scorer(settings, codec)
    state, first = _feed(scorer, settings, ASSEMBLED, assembled, None)
    assert first == []  # waiting for the enrichment
    state, scored = _feed(scorer, settings, ENRICHMENT_RESULTS, enriched, state)
    assert {o.topic for o in scored} == {settings.topic("rewards"), settings.topic("trajectories.scored")}
    # The crash case: the state reached the changelog, the outputs did not; either input comes again.
    for topic, value in ((ENRICHMENT_RESULTS, enriched), (ASSEMBLED, assembled)):
        after, again = _feed(scorer, settings, topic, value, state)
        assert again == scored, topic
        assert after == state  # nothing new is stored


def _late_version(settings: Settings, codec: SingleObjectCodec, assembled: bytes) -> tuple[bytes, bytes]:
    """Version 2 of a swept trajectory: a late turn on the resumed state, as ``resumed`` in streams.app does."""
    assembler = Assembler(settings, codec)
    tid = codec.decode(assembled).record["trajectory_id"]
    late = codec.encode("turn", turn_record(tid, 3, [Message.text("assistant", "late")]))
    result = assembler.handle(
        Input(settings.topic(EVENTS_TOPIC), 0, 9, tid.encode(), late, 1_700_000_100_000),
        assembler.resumed_state(tid, 1),
    )
    v2 = next(o.value for o in result.outputs if o.topic == settings.topic(ASSEMBLED))
    request = next(o for o in result.outputs if o.topic == settings.topic(ENRICHMENT_REQUESTS))
    enriched = asyncio.run(
        EnrichmentWorker(settings, codec).handle(Input(request.topic, 0, 0, request.key, request.value, 0))
    )
    return v2, next(o.value for o in enriched if o.topic == settings.topic(ENRICHMENT_RESULTS))


def test_a_swept_trajectory_keeps_only_its_versions_and_goes_on_scoring(codec: SingleObjectCodec) -> None:
    settings = Settings(topic_prefix="unit.")
    assembled, enriched = _assembled_and_enriched(settings, codec)
    tid = codec.decode(assembled).record["trajectory_id"]
    scorer = Scorer(settings, codec)
    state, _ = _feed(scorer, settings, ASSEMBLED, assembled, None)
    state, _ = _feed(scorer, settings, ENRICHMENT_RESULTS, enriched, state)
    assert state is not None
    # The assembly agent forwards its expire to scoring (here the branch where its state is already gone).
    assembler = Assembler(settings, codec)
    asked = assembler.expire_message(tid, 1_700_000_000_000, 1_700_000_050_000)
    [expire] = assembler.handle(Input(asked.topic, 0, 0, asked.key, asked.value, 0), None).outputs
    assert expire.topic == settings.topic(SCORING_CONTROL_TOPIC)
    slim, outputs = _feed(scorer, settings, SCORING_CONTROL_TOPIC, expire.value, state)
    assert outputs == [] and slim is not None
    assert scorer.load(slim, tid) == {"trajectory_id": tid, "assembled_version": 1, "assembled": None,
                                      "enrichment_version": 1, "enrichment": None, "scored_version": 1,
                                      "emitted": []}  # fmt: skip
    assert len(slim) * 10 < len(state)  # the scored record it kept was nearly all of it
    # Asked again: nothing to write. A replayed input of the slimmed version: nothing sent, nothing stored.
    assert _feed(scorer, settings, SCORING_CONTROL_TOPIC, expire.value, slim) == (slim, [])
    for topic, value in ((ENRICHMENT_RESULTS, enriched), (ASSEMBLED, assembled)):
        assert _feed(scorer, settings, topic, value, slim) == (slim, []), topic
    # A late event after the sweep: version 2 is scored.
    v2, enriched2 = _late_version(settings, codec, assembled)
    state2, _ = _feed(scorer, settings, ASSEMBLED, v2, slim)
    state2, scored2 = _feed(scorer, settings, ENRICHMENT_RESULTS, enriched2, state2)
    records = [codec.decode(o.value).record for o in scored2 if o.topic == settings.topic("trajectories.scored")]
    assert [r["trajectory_version"] for r in records] == [2]
