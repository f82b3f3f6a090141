"""SIGKILL the streams worker in the middle of a stream and start it again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.streams import Worker, copies_by_key, latest_by_trajectory, publish, read, running_enricher, wait_for
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, end_record, start_record, turn_record

# 50 s on 2 cores: `make soak` runs it; `make chaos` kills the streams worker under load with the whole pipeline.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPLETE = 3000  # trajectories whose events all arrive before the kill
OPEN = 100  # trajectories whose end arrives only after the kill
TURNS = 5


@pytest.fixture
def crash_settings(broker_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = broker_settings.model_copy(update={"topic_prefix": f"k{uuid.uuid4().hex[:8]}."})
    asyncio.run(create_topics(settings))
    with running_enricher(settings, tmp_path / "enrich.log"):
        yield settings


def _trajectory(codec: SingleObjectCodec, tid: str) -> tuple[list[Any], Any]:
    key = tid.encode()
    events = [("events", key, codec.encode("trajectory_start", start_record(tid, f"task {tid}", agent_id="k")))]
    for i in range(TURNS):
        turn = turn_record(tid, i, [Message.text("user", f"q{i}"), Message.text("assistant", f"a{i} " * 20)])
        events.append(("events", key, codec.encode("turn", turn)))
    end = ("events", key, codec.encode("trajectory_end", end_record(tid, "success", turn_count=TURNS)))
    return events, end


def test_a_killed_worker_loses_nothing_and_repeats_nothing(
    crash_settings: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    settings = crash_settings
    complete = [str(uuid.uuid4()) for _ in range(COMPLETE)]
    open_ = [str(uuid.uuid4()) for _ in range(OPEN)]
    first: list[Any] = []
    ends_later: list[Any] = []
    for tid in open_:
        events, end = _trajectory(codec, tid)
        first += events
        ends_later.append(end)
    for tid in complete:
        events, end = _trajectory(codec, tid)
        first += [*events, end]

    worker = Worker(settings, tmp_path / "streams.log")
    worker.start()
    asyncio.run(publish(settings, first))

    async def some_emitted() -> int:
        return len(await read(settings, codec, "trajectories.assembled"))

    emitted_before_kill = wait_for(some_emitted, interval_s=0.05)
    worker.kill()  # SIGKILL, mid-stream: no shutdown, no final commit
    before = len(latest_by_trajectory(asyncio.run(read(settings, codec, "trajectories.assembled"))))
    assert before < COMPLETE, f"the worker finished ({before}) before it was killed: the test proved nothing"

    asyncio.run(publish(settings, ends_later))
    worker.start()
    try:

        async def all_scored() -> dict[str, Any] | None:
            scored = latest_by_trajectory(await read(settings, codec, "trajectories.scored"), "trajectory_version")
            return scored if len(scored) >= COMPLETE + OPEN else None

        try:
            wait_for(all_scored, timeout_s=120)
        except AssertionError:
            assembled_ids = set(latest_by_trajectory(asyncio.run(read(settings, codec, "trajectories.assembled"))))
            scored_ids = set(latest_by_trajectory(
                asyncio.run(read(settings, codec, "trajectories.scored")), "trajectory_version"))  # fmt: skip
            missing = (set(complete) | set(open_)) - assembled_ids
            enriched = {r.event.record["trajectory_id"]: r.partition
                        for r in asyncio.run(read(settings, codec, "enrichment.results")) if r.event}  # fmt: skip
            unscored = assembled_ids - scored_ids
            raise AssertionError(
                f"not assembled: {len(missing)} ({len(missing & set(open_))} of them ended after the kill), "
                f"assembled but not scored: {len(unscored)}, of which enriched: {len(unscored & set(enriched))} "
                f"(partitions {sorted(enriched.get(t, -1) for t in unscored)}); worker log: {worker.log}"
            ) from None
    finally:
        worker.stop()

    assembled = asyncio.run(read(settings, codec, "trajectories.assembled"))
    latest = latest_by_trajectory(assembled)
    assert set(latest) == set(complete) | set(open_)
    for tid, record in latest.items():
        assert record["version"] == 1, (tid, record["version"], record["reason"])
        assert len(record["turns"]) == TURNS and record["missing_turns"] == []
        assert record["outcome"] == "success"
    # At least once, never twice differently: any repeat of a (trajectory, version) is byte-identical,
    # and a downstream stage that drops repeats by (trajectory, version) sees each version once.
    for copies in copies_by_key(assembled, "version").values():
        decoded = [codec.decode(c).record for c in set(copies)]
        assert len(decoded) == 1, {k for k in decoded[0] if decoded[0][k] != decoded[1][k]}
    scored = asyncio.run(read(settings, codec, "trajectories.scored"))
    scored_copies = copies_by_key(scored, "trajectory_version")
    assert len(scored_copies) == COMPLETE + OPEN
    for copies in scored_copies.values():
        decoded = [codec.decode(c).record for c in set(copies)]
        assert len(decoded) == 1, {k for k in decoded[0] if decoded[0][k] != decoded[1][k]}
    print(f"emitted before the kill: {emitted_before_kill}; repeats after restart: {len(assembled) - len(latest)}")
