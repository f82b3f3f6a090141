"""The Pipeline page: each part's state, consumer lag per group and partition, and flow per minute.

Flow comes from the broker's own offsets: a sampler in the data worker reads, every few seconds, the end
offsets of the events topic (what came in) and of the scored topic (what came out of the streams), and the
ClickHouse sink's count of landed trajectories; a minute's flow is the difference across it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from trajstream.parts import PARTS
from trajstream.pipeline import status
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.topics import (
    CLICKHOUSE_SINK_GROUP,
    EVENTS_TOPIC,
    MILVUS_DECISION_GROUP,
    MILVUS_TRAJECTORY_GROUP,
    SCORED,
)
from trajstream_sdk.kafka_security import start_client

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 5.0
KEEP_S = 3 * 3600


def consumer_groups(settings: Settings) -> list[tuple[str, tuple[str, ...]]]:
    """Every consumer group of the pipeline with the topics it reads."""
    groups = [(part.group(settings), part.topics) for part in PARTS if part.topics]
    milvus = (MILVUS_TRAJECTORY_GROUP, MILVUS_DECISION_GROUP)  # two sinks, one group each
    groups += [(settings.consumer_group(group), (SCORED,)) for group in milvus]
    return groups


@dataclass(frozen=True)
class Sample:
    at: float
    events_in: int  # end offsets of the events topic, summed
    scored_out: int  # end offsets of the scored topic, summed
    landed: int  # trajectories the ClickHouse sink landed since this worker started


async def _ends(consumer: AIOKafkaConsumer, topic: str) -> int:
    tps = await topic_partitions(consumer, topic)
    return sum((await consumer.end_offsets(tps)).values()) if tps else 0


class FlowSampler:
    """Samples the broker's offsets and the sink's count in the background; answers per-minute flow."""

    def __init__(self, settings: Settings, landed: Callable[[], int]):
        self.settings = settings
        self.landed = landed
        self.samples: deque[Sample] = deque(maxlen=int(KEEP_S / SAMPLE_EVERY_S) + 1)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
        try:
            await start_client(consumer, self.settings.kafka_client_options())
            while not stop.is_set():
                try:
                    events = await _ends(consumer, self.settings.topic(EVENTS_TOPIC))
                    scored = await _ends(consumer, self.settings.topic(SCORED))
                    self.samples.append(Sample(time.time(), events, scored, self.landed()))
                except Exception as exc:  # the broker away: a gap in the chart, the page says the lag is unknown
                    log.debug("flow sample failed: %s", exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=SAMPLE_EVERY_S)
        except Exception as exc:  # never take the data worker down for a chart
            log.warning("the console's flow sampler stopped: %s", exc)
        finally:
            await consumer.stop()

    def per_minute(self) -> list[dict[str, Any]]:
        """Flow per whole minute, from the last sample at or before each minute's start to the next's."""
        by_minute: dict[int, Sample] = {}
        for s in self.samples:
            by_minute.setdefault(int(s.at // 60), s)  # the first sample of each minute
        minutes = sorted(by_minute)
        out = []
        for a, b in itertools.pairwise(minutes):
            x, y = by_minute[a], by_minute[b]
            scale = 60.0 / max(1e-6, y.at - x.at)  # samples are a few seconds off the minute: per 60 s
            out.append({"t": a * 60_000, "events_in": round((y.events_in - x.events_in) * scale),
                        "trajectories_out": round((y.scored_out - x.scored_out) * scale),
                        "landed": round((y.landed - x.landed) * scale)})  # fmt: skip
        return out


async def partition_lag(settings: Settings) -> list[dict[str, Any]]:
    """Committed offset, end offset and lag per group, topic and partition (one admin client, one consumer)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
    rows: list[dict[str, Any]] = []
    try:
        await start_client(admin, settings.kafka_client_options())
        await start_client(consumer, settings.kafka_client_options())
        for group, topics in consumer_groups(settings):
            committed = await admin.list_consumer_group_offsets(group)
            tps: list[TopicPartition] = [
                tp for t in topics for tp in await topic_partitions(consumer, settings.topic(t))
            ]
            ends = await consumer.end_offsets(tps) if tps else {}
            for tp in tps:
                done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
                rows.append({"group": group, "topic": tp.topic, "partition": tp.partition, "end": ends[tp],
                             "committed": done, "lag": max(0, ends[tp] - done)})  # fmt: skip
    finally:
        await consumer.stop()
        await admin.close()
    return rows


def landed_fraction(lag: list[dict[str, Any]], settings: Settings) -> float | None:
    """Scored records the ClickHouse sink has committed, over the scored records published."""
    group, topic = settings.consumer_group(CLICKHOUSE_SINK_GROUP), settings.topic(SCORED)
    rows = [r for r in lag if r["group"] == group and r["topic"] == topic]
    end = sum(r["end"] for r in rows)
    return sum(min(r["committed"], r["end"]) for r in rows) / end if end else None


async def pipeline(settings: Settings, sampler: FlowSampler | None, sinks: dict[str, Any]) -> dict[str, Any]:
    parts = await asyncio.to_thread(status, settings, False)
    try:
        lag: list[dict[str, Any]] | None = await asyncio.wait_for(partition_lag(settings), timeout=10)
    except Exception as exc:  # the broker away: the page says the lag is unknown
        log.info("lag unknown: %s", exc)
        lag = None
    return {
        "parts": [{"name": p.name.strip(), "pid": p.pid, "state": p.detail.split(";")[0], "detail": p.detail}
                  for p in parts],
        "lag": lag, "throughput": sampler.per_minute() if sampler else [],
        "landed_fraction": landed_fraction(lag, settings) if lag is not None else None,
        "sinks": sinks,
    }  # fmt: skip
