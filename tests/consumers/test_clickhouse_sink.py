"""The ClickHouse sink against the real broker and chDB: rows land once, whatever Kafka re-delivers."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tests.support.env import SCHEMAS
from tests.support.streams import publish, read
from trajstream.consumers import clickhouse_store
from trajstream.consumers.clickhouse_rows import COLUMNS, scored_rows
from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.consumers.clickhouse_store import ClickHouseError, connect, migrate, migrations, stored_bytes
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import feedback, tool_trajectory
from trajstream.topics import CLICKHOUSE_SINK_GROUP
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, dead_letter_record, end_record, start_record, turn_record
from trajstream_sdk.schemas import SchemaCatalog

pytestmark = pytest.mark.integration


@pytest.fixture
def sink_settings(topics: Settings, chdb_dir: Path) -> Iterator[Settings]:
    yield topics.model_copy(update={"clickhouse_dsn": f"chdb://{chdb_dir}",
                                    "clickhouse_database": f"t{uuid.uuid4().hex[:10]}",
                                    "sink_batch_seconds": 0.2})  # fmt: skip


def _scored_corpus(settings: Settings, codec: SingleObjectCodec) -> tuple[list[bytes], dict[str, str]]:
    """Six trajectories (two failures with tool errors), one of which gets a second version."""
    pipeline = Pipeline(settings, codec)
    outcomes: dict[str, str] = {}
    scored: list[bytes] = []
    for n in range(6):
        ok = n % 3 != 2
        tid, events = tool_trajectory(codec, f"Refund order {n}", "lookup", "success" if ok else "error",
                                      "success" if ok else "failure", turns=3, tags=("beta", f"n{n}"),
                                      model="gpt-test", tokens=(100 + n, 10))  # fmt: skip
        outcomes[tid] = "success" if ok else "failure"
        scored += pipeline.run(events)
    first = next(iter(outcomes))
    scored += pipeline.run([feedback(codec, first, 0.25)])  # version 2 of the first trajectory
    return scored, outcomes


async def _drain(settings: Settings, sink: ClickHouseSink, expected_records: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        for _ in range(300):
            if sink.stats.records >= expected_records:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # let the commit of the last batch happen
    finally:
        stop.set()
        await task
    assert sink.stats.records >= expected_records, sink.stats


def _counts(client: Any, db: str) -> dict[str, Any]:
    def one(sql: str) -> Any:
        return client.query(sql).result_rows[0][0]

    return {
        "trajectories": one(f"SELECT count() FROM {db}.trajectories"),
        "latest": one(f"SELECT count() FROM (SELECT trajectory_id FROM {db}.trajectories GROUP BY trajectory_id)"),
        "turns": one(f"SELECT count() FROM {db}.turns"),
        "tool_calls": one(f"SELECT count() FROM {db}.tool_calls"),
        "rollup_trajectories": one(f"SELECT sum(trajectories) FROM {db}.trajectory_metrics_minute"),
        "rollup_successes": one(f"SELECT sum(successes) FROM {db}.trajectory_metrics_minute"),
        "tool_errors": one(f"SELECT sum(errors) + sum(timeouts) FROM {db}.tool_stats_minute"),
        "tool_calls_rollup": one(f"SELECT sum(calls) FROM {db}.tool_stats_minute"),
        "model_turns": one(f"SELECT sum(turns) FROM {db}.model_metrics_minute"),
        "tokens": one(f"SELECT (sum(input_tokens), sum(output_tokens)) FROM {db}.model_metrics_minute"),
        "model_versions": one(f"SELECT count() FROM {db}.model_versions"),
        "last_tool": one(
            f"SELECT (last_tool, sum(trajectories), sum(failures)) FROM {db}.last_tool_minute GROUP BY last_tool"
        ),
        "dead_letters": one(f"SELECT count() FROM {db}.dead_letters"),
        "decisions": one(f"SELECT count() FROM {db}.decisions"),
    }


def test_scored_trajectories_land_once_and_rollups_count_each_trajectory_once(
    sink_settings: Settings, codec: SingleObjectCodec
) -> None:
    settings = sink_settings
    scored, outcomes = _scored_corpus(settings, codec)
    assert len(scored) == 7
    letter = dead_letter_record(stage="assembly", reason="test", error_type="Test", source="x", source_partition=0,
                                source_offset=1, trajectory_id=None, key=None, payload=b"bad",
                                max_payload_bytes=codec.limits.dead_letter_payload_bytes)  # fmt: skip
    messages = [("trajectories.scored", b"k", v) for v in scored]
    messages += [
        ("model.versions", b"policy", codec.encode("model_version", _version_event("v1", "created"))),
        ("model.versions", b"policy", codec.encode("model_version", _version_event("v1", "deployed"))),
        ("trajectories.scored", b"garbage", b"not avro"),
        ("deadletter", None, codec.encode("dead_letter", letter)),
    ]
    asyncio.run(publish(settings, messages))

    client = connect(settings)
    migrate(client, settings)
    sink = ClickHouseSink(settings, client, codec)
    asyncio.run(_drain(settings, sink, len(messages)))
    counts = _counts(client, settings.clickhouse_database)
    assert counts["trajectories"] == 7 and counts["latest"] == 6
    assert counts["rollup_trajectories"] == 6  # version 2 replaced version 1 in the rollup
    assert counts["rollup_successes"] == sum(o == "success" for o in outcomes.values())
    assert counts["turns"] == 6 * 3  # turns land once, not once per version
    assert counts["tool_calls"] == 6 * 3  # two answered calls and one never answered per trajectory
    assert counts["tool_errors"] == 2 * 2 and counts["tool_calls_rollup"] == 6 * 3
    # Tokens, tags and the trainer's model versions, for the console's Models and Trainer pages.
    assert counts["model_turns"] == 18 and counts["tokens"] == (3 * sum(100 + n for n in range(6)), 18 * 10)
    assert counts["model_versions"] == 2
    assert counts["last_tool"] == ("lookup", 6, 2)  # each trajectory once, whatever its versions
    db = settings.clickhouse_database
    tags = client.query(f"SELECT DISTINCT arrayJoin(tags) FROM {db}.trajectories").result_rows
    assert {t for (t,) in tags} == {"beta", *(f"n{n}" for n in range(6))}
    assert counts["decisions"] > 0
    sizes = stored_bytes(client, settings.clickhouse_database)
    assert sizes["trajectories"][0] == 7 and sizes["turns"][0] == 18 and sizes["turns"][1] > 0
    # Rows copy the trajectory's attributes: no join needed to slice turns by agent and outcome.
    assert client.query(f"SELECT uniqExact(agent_id), uniqExact(outcome) FROM {settings.clickhouse_database}.turns"
                        ).result_rows[0] == (1, 2)  # fmt: skip
    # The record that is not Avro went to the dead-letter topic, with the reason; the letter landed in ClickHouse.
    letters = [r.event.record for r in asyncio.run(read(settings, codec, "deadletter")) if r.event]
    assert any(d["stage"] == "sink-clickhouse" and d["payload"] == b"not avro" for d in letters)
    assert counts["dead_letters"] >= 1
    assert sink.stats.rejected == 1

    # Re-delivery: the same records again (a producer retry, a replay) change nothing.
    asyncio.run(publish(settings, messages[:9]))
    again = ClickHouseSink(settings, client, codec)
    asyncio.run(_drain(settings, again, 9))
    assert _counts(client, settings.clickhouse_database) == counts
    assert again.stats.repeats == 7


def test_a_sink_killed_between_insert_and_commit_counts_nothing_twice(
    sink_settings: Settings, codec: SingleObjectCodec
) -> None:
    settings = sink_settings
    scored, _ = _scored_corpus(settings, codec)
    asyncio.run(publish(settings, [("trajectories.scored", b"k", v) for v in scored]))
    client = connect(settings)
    migrate(client, settings)

    async def insert_without_commit() -> int:
        consumer = AIOKafkaConsumer(settings.topic("trajectories.scored"), **settings.kafka_client_options(),
                                    group_id=settings.consumer_group(CLICKHOUSE_SINK_GROUP), enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            records: list[Any] = []
            for _ in range(50):
                batch = await consumer.getmany(timeout_ms=200)
                records += [m for msgs in batch.values() for m in msgs]
                if len(records) >= len(scored):
                    break
            ClickHouseSink(settings, client, codec).land(records[:4])  # part of it: then the process "dies"
            return len(records)
        finally:
            await consumer.stop()

    assert asyncio.run(insert_without_commit()) == len(scored)
    partial = _counts(client, settings.clickhouse_database)
    assert 0 < partial["trajectories"] < 7
    sink = ClickHouseSink(settings, client, codec)
    asyncio.run(_drain(settings, sink, len(scored)))
    counts = _counts(client, settings.clickhouse_database)
    assert counts["trajectories"] == 7 and counts["rollup_trajectories"] == 6 and counts["turns"] == 18
    assert sink.stats.repeats == 4


def test_migrations_are_recorded_and_an_edited_one_is_refused(sink_settings: Settings) -> None:
    client = connect(sink_settings)
    assert [m.version for m in migrate(client, sink_settings)] == [m.version for m in migrations()]
    assert migrate(client, sink_settings) == []  # applied once
    db = sink_settings.clickhouse_database
    client.command(f"ALTER TABLE {db}.schema_migrations UPDATE checksum = 'edited' WHERE version = 1")
    with pytest.raises(ClickHouseError, match="changed after it was applied"):
        migrate(client, sink_settings)


def test_turns_carry_the_air_that_scoring_computed_not_the_sinks_settings(
    sink_settings: Settings, codec: SingleObjectCodec
) -> None:
    """Scoring runs with its own AIR values; the sink, with the defaults, lands those and recomputes nothing."""
    scoring = sink_settings.model_copy(update={"air_tool_success": 0.7, "air_tool_error": -0.9})
    tid, events = tool_trajectory(codec, "Refund order 7", "lookup", "error", "failure", turns=3)
    scored = Pipeline(scoring, codec).run(events)
    assert codec.decode(scored[-1]).record["turn_air"] == [0.0, -0.9, -0.9]  # results arrive in the next turn
    client = connect(sink_settings)
    migrate(client, sink_settings)
    sink = ClickHouseSink(sink_settings, client, codec)
    records = [_record(sink_settings.topic("trajectories.scored"), 0, i, value) for i, value in enumerate(scored)]
    assert sink.land(records) == []
    db = sink_settings.clickhouse_database
    sql = f"SELECT turn_index, air FROM {db}.turns WHERE trajectory_id = {{t:String}} ORDER BY turn_index"
    rows = client.query(sql, parameters={"t": tid}).result_rows
    assert [(int(i), round(float(a), 6)) for i, a in rows] == [(0, 0.0), (1, -0.9), (2, -0.9)]


def _version_event(version: str, event: str) -> dict[str, Any]:
    return {"model_name": "policy", "version": version, "number": int(version[1:]), "parent": None, "event": event,
            "at": datetime(2026, 11, 29, 9, 0, tzinfo=UTC), "path": "/models/policy/v1", "windows": ["w1"],
            "metrics": {"heldout_reward": 0.5, "size_bytes": 1024.0}, "reason": "gate: better", "base": None,
            "canary_share": 0.0}  # fmt: skip


def _record(topic: str, partition: int, offset: int, value: bytes) -> Any:
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord(topic, partition, offset, 0, 0, b"k", value, None, 0, len(value), [])


def test_a_scored_record_whose_air_does_not_fit_its_turns_is_refused(codec: SingleObjectCodec) -> None:
    """A v3 record with AIR for the wrong number of turns cannot become rows (the sink dead-letters it);
    a record from before v3, without AIR, lands with AIR 0."""
    _, events = tool_trajectory(codec, "Refund order 8", "lookup", "success", "success", turns=2)
    scored = codec.decode(Pipeline(Settings(), codec).run(events)[-1]).record
    with pytest.raises(ValueError, match="turn_air has 1 values for 2 turns"):
        scored_rows({**scored, "turn_air": [0.5]}, codec, 0, 0)
    rows, _ = scored_rows({**scored, "turn_air": []}, codec, 0, 0)
    air = COLUMNS["turns"].index("air")
    assert [row[air] for row in rows.tables["turns"]] == [0.0, 0.0]


def test_a_record_whose_insert_always_fails_is_dead_lettered_and_the_rest_land(
    sink_settings: Settings, codec: SingleObjectCodec
) -> None:
    """A turn with a negative duration (an agent's clock went back) cannot be written to the UInt64 column:
    every insert of a batch holding it fails, the same way, while ClickHouse answers."""
    settings = sink_settings.model_copy(update={"sink_retry_attempts": 2, "sink_retry_backoff_s": 0.05})
    scored, _ = _scored_corpus(settings, codec)
    pipeline = Pipeline(settings, codec)
    poison_id = str(uuid.uuid4())
    turn = turn_record(poison_id, 0, [Message.text("user", "Refund order 77"), Message.text("assistant", "Done.")],
                       duration_ms=-5)  # fmt: skip
    poison = pipeline.run([
        ("events", codec.encode("trajectory_start", start_record(poison_id, "Refund order 77", agent_id="agent-a"))),
        ("events", codec.encode("turn", turn)),
        ("events", codec.encode("trajectory_end", end_record(poison_id, "success", turn_count=1))),
    ])  # fmt: skip
    assert len(poison) == 1
    messages = [("trajectories.scored", b"k", v) for v in scored[:3] + poison + scored[3:]]
    asyncio.run(publish(settings, messages))

    client = connect(settings)
    migrate(client, settings)
    sink = ClickHouseSink(settings, client, codec)
    asyncio.run(_drain(settings, sink, len(messages) - 1))
    counts = _counts(client, settings.clickhouse_database)
    assert counts["trajectories"] == 7 and counts["latest"] == 6  # every other trajectory landed
    db = settings.clickhouse_database
    assert client.query(f"SELECT count() FROM {db}.trajectories WHERE trajectory_id = '{poison_id}'").result_rows == [
        (0,)
    ]
    (letter,) = [r.event.record for r in asyncio.run(read(settings, codec, "deadletter")) if r.event]
    assert letter["stage"] == "sink-clickhouse" and letter["error_type"] == "StoreRejected"
    assert letter["trajectory_id"] is None or letter["trajectory_id"] == poison_id
    assert "duration_ms" in letter["reason"] and letter["payload"] == poison[0]
    assert sink.loop_stats.poison == 1 and sink.loop_stats.outages == 0


def test_a_trajectory_of_an_end_event_alone_lands_with_no_duration(
    sink_settings: Settings, codec: SingleObjectCodec
) -> None:
    """Its start and turns never came (written without a key, they went to other partitions): it has no
    start time. It lands, as having started when it ended, instead of failing every insert."""
    settings = sink_settings
    tid = str(uuid.uuid4())
    (scored,) = Pipeline(settings, codec).run([("events", codec.encode("trajectory_end", end_record(tid, "success")))])
    asyncio.run(publish(settings, [("trajectories.scored", tid.encode(), scored)]))
    client = connect(settings)
    migrate(client, settings)
    sink = ClickHouseSink(settings, client, codec)
    asyncio.run(_drain(settings, sink, 1))
    db = settings.clickhouse_database
    rows = client.query(
        f"SELECT duration_ms, started_at = ended_at FROM {db}.trajectories WHERE trajectory_id = '{tid}'"
    )
    assert rows.result_rows == [(0, True)] and sink.stats.rejected == 0


def test_dead_letters_land_with_the_size_of_their_whole_input(
    sink_settings: Settings, codec: SingleObjectCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A letter that keeps only the first bytes of its input lands with the input's size and cut; a letter
    written before dead_letter v2, and a row landed before migration 0002, carried their input whole."""
    client = connect(sink_settings)
    db = sink_settings.clickhouse_database
    every = migrations()
    monkeypatch.setattr(clickhouse_store, "migrations", lambda: every[:1])
    migrate(client, sink_settings)  # a database as the first migration left it, with a letter landed then
    old_columns = [c for c in COLUMNS["dead_letters"] if c not in ("input_bytes", "payload_cut")]
    client.insert(f"{db}.dead_letters", [[datetime.now(UTC), "emit", "Old", "landed before", "x", -1, 1, "", 5, 0, 0]],
                  column_names=old_columns)  # fmt: skip
    monkeypatch.undo()
    assert [m.version for m in migrate(client, sink_settings)] == [m.version for m in every[1:]]

    def letter(payload: bytes) -> dict[str, Any]:
        return dead_letter_record(stage="sink", reason="r", error_type="Test", source="x", payload=payload,
                                  max_payload_bytes=codec.limits.dead_letter_payload_bytes)  # fmt: skip

    big = b"b" * (3 * 1024 * 1024)
    old_schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, old_schemas)
    (old_schemas / "dead_letter" / "v2.avsc").unlink()
    old_codec = SingleObjectCodec(SchemaCatalog.from_directory(old_schemas))
    v1 = {k: v for k, v in letter(b"old!").items() if k not in ("payload_size", "payload_sha256", "payload_cut")}
    topic = sink_settings.topic("deadletter")
    records = [_record(topic, 0, 1, codec.encode("dead_letter", letter(big))),
               _record(topic, 0, 2, old_codec.encode("dead_letter", v1))]  # fmt: skip
    assert ClickHouseSink(sink_settings, client, codec).land(records) == []
    rows = client.query(f"SELECT payload_bytes, input_bytes, payload_cut FROM {db}.dead_letters ORDER BY dlq_offset")
    assert [tuple(r) for r in rows.result_rows] == [
        (5, 5, False),
        (codec.limits.dead_letter_payload_bytes, len(big), True),
        (4, 4, False),
    ]
