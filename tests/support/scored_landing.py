"""Events scored in process by the real streams code, then landed in ClickHouse by the real sink."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord

from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream_sdk.codec import EventCodec


def land_events(settings: Settings, client: Any, codec: EventCodec, events: list[tuple[str, bytes]],
                pipeline: Pipeline | None = None) -> None:  # fmt: skip
    """Score ``events`` (topic, value) in process and land every scored record; none may be rejected. Pass the
    same ``pipeline`` again to land later events (feedback) against the state the earlier ones left."""
    scored = (pipeline or Pipeline(settings, codec)).run(events)
    records = [ConsumerRecord(settings.topic("trajectories.scored"), 0, i, 0, 0, b"k", v, None, 0, len(v), [])
               for i, v in enumerate(scored)]  # fmt: skip
    rejected = ClickHouseSink(settings, client, codec).land(records)
    assert rejected == [], rejected


def scored_by_id(settings: Settings, codec: EventCodec, tasks: list[str]) -> dict[str, bytes]:
    """One successful tool-calling trajectory per task, scored in process: trajectory id -> scored record."""
    pipeline = Pipeline(settings, codec)
    out: dict[str, bytes] = {}
    for task in tasks:
        tid, events = tool_trajectory(codec, task, "lookup", "success", "success")
        (out[tid],) = pipeline.run(events)
    return out
