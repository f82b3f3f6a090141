"""The assembly table's retention sweep against the real broker: closed trajectories leave the table through
tombstones on its changelog, open ones stay, a restarted worker does not bring them back, and a late event
after the sweep makes a new version that scoring takes. The scoring table keeps only the swept trajectories'
version counts, on its changelog too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.streams import Worker, latest_by_trajectory, publish, read, running_enricher, wait_for
from trajstream.settings import Settings
from trajstream.topics import ASSEMBLY_TABLE, SCORING_TABLE, changelog_topic, create_topics
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, end_record, start_record, turn_record

pytestmark = pytest.mark.integration

RETENTION_S = 3.0
# Long enough that the open trajectory stays open through the test: the sweep must leave it alone.
INACTIVITY_S = 120.0
ENV = {
    "TRAJSTREAM_ASSEMBLY_RETENTION_S": str(RETENTION_S),
    "TRAJSTREAM_ASSEMBLY_INACTIVITY_TIMEOUT_S": str(INACTIVITY_S),
    "TRAJSTREAM_ASSEMBLY_SWEEP_INTERVAL_S": "0.5",
}


@pytest.fixture
def retention_settings(broker_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = broker_settings.model_copy(update={"topic_prefix": f"r{uuid.uuid4().hex[:8]}."})
    asyncio.run(create_topics(settings))
    with running_enricher(settings, tmp_path / "enrich.log", **ENV):
        yield settings


def _events(codec: SingleObjectCodec, tid: str, turns: int, end: bool) -> list[Any]:
    key = tid.encode()
    out = [("events", key, codec.encode("trajectory_start", start_record(tid, f"task {tid[:6]}", agent_id="r")))]
    out += [("events", key, codec.encode("turn", _turn(tid, i))) for i in range(turns)]
    if end:
        out.append(("events", key, codec.encode("trajectory_end", end_record(tid, "success", turn_count=turns))))
    return out


def _turn(tid: str, index: int) -> dict[str, Any]:
    return turn_record(tid, index, [Message.text("assistant", f"step {index}")])


async def _changelog(settings: Settings, table: str = ASSEMBLY_TABLE) -> list[tuple[str, bytes | None]]:
    """Every record of a table's changelog, in order per partition: (key, value or None)."""
    topic = changelog_topic(settings, table)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[str, bytes | None]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    out.append((record.key.decode(), record.value))
        return out
    finally:
        await consumer.stop()


def _tombstoned(records: list[tuple[str, bytes | None]]) -> set[str]:
    return {key for key, value in records if value is None}


async def _scoring(settings: Settings, codec: SingleObjectCodec) -> dict[str, dict[str, Any]]:
    """The latest scoring state per trajectory, as a restarted worker restores it from the changelog."""
    latest = dict(await _changelog(settings, SCORING_TABLE))
    return {key: codec.decode(value).record for key, value in latest.items() if value is not None}


def _slim(state: dict[str, Any], version: int) -> bool:
    """Slimmed by the sweep: the version counts and nothing else (no copy of what was sent)."""
    return (
        state["scored_version"] == state["assembled_version"] == version
        and state["emitted"] == []
        and (state["assembled"] is None and state["enrichment"] is None)
    )


def _assembled(settings: Settings, codec: SingleObjectCodec, tid: str, version: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = latest_by_trajectory(await read(settings, codec, "trajectories.assembled")).get(tid)
        return found if found and found["version"] >= version else None

    return wait_for(probe, timeout_s=60)  # type: ignore[no-any-return]


def test_closed_trajectories_leave_the_table_and_come_back_as_new_versions(
    retention_settings: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    settings = retention_settings
    closed = [str(uuid.uuid4()) for _ in range(3)]
    open_ = str(uuid.uuid4())
    events = [e for tid in closed for e in _events(codec, tid, 2, end=True)] + _events(codec, open_, 1, end=False)
    worker = Worker(settings, tmp_path / "streams.log", **ENV)
    worker.start()
    try:
        asyncio.run(publish(settings, events))
        for tid in closed:
            assert _assembled(settings, codec, tid, 1)["reason"] == "ended"

        # The sweep removes exactly the closed trajectories: a tombstone each, and none for the open one.
        async def swept() -> set[str] | None:
            gone = _tombstoned(await _changelog(settings))
            return gone if gone >= set(closed) else None

        wait_for(swept, timeout_s=30)

        # Scoring's state of each swept trajectory is slimmed, on its changelog.
        async def slimmed() -> bool | None:
            states = await _scoring(settings, codec)
            return all(tid in states and _slim(states[tid], 1) for tid in closed) or None

        wait_for(slimmed, timeout_s=30)
        asyncio.run(asyncio.sleep(RETENTION_S + 1))  # a further retention: the open one is still not swept
        records = asyncio.run(_changelog(settings))
        assert _tombstoned(records) == set(closed)
        assert [value is not None for key, value in records if key == open_][-1]
        log = worker.log.read_text()
        assert "retention sweep: removed" in log and all(tid in log for tid in closed)
    finally:
        worker.stop()

    # A restarted worker restores the table from the changelog: the swept trajectories are not in it, so a
    # late turn starts from nothing but goes on counting versions (scoring would drop a second version 1).
    late = closed[0]
    restarted = Worker(settings, tmp_path / "streams.log", **ENV)
    restarted.start()
    try:
        asyncio.run(publish(settings, [("events", late.encode(), codec.encode("turn", _turn(late, 2)))]))
        v2 = _assembled(settings, codec, late, 2)
        assert v2["version"] == 2 and v2["reason"] == "late_turn"
        assert [codec.decode(t).record["turn_index"] for t in v2["turns"]] == [2]  # not resurrected

        async def scored() -> dict[str, Any] | None:
            scored = await read(settings, codec, "trajectories.scored")
            found = latest_by_trajectory(scored, "trajectory_version").get(late)
            return found if found and found["trajectory_version"] == 2 else None

        wait_for(scored, timeout_s=60)  # downstream took the new version: nothing lost
        # The open trajectory outlives the restart and more sweeps too.
        asyncio.run(asyncio.sleep(RETENTION_S + 1))
        assert open_ not in _tombstoned(asyncio.run(_changelog(settings)))

        # Version 2 is swept in turn, and its scoring state slimmed, keeping version 2's counts.
        async def slimmed_again() -> bool:
            return _slim((await _scoring(settings, codec)).get(late) or {"scored_version": 0}, 2)

        wait_for(slimmed_again, timeout_s=30)
    finally:
        restarted.stop()
