"""The planted-defects corpus landed through the real scoring and the real ClickHouse sink, for the
optimisation reports' tests (the pattern of tests/corpus/test_read.py)."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord

from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.optimise.planted import DEFECTS, PlantedCorpus, planted_corpus
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream_sdk.codec import codec_for


def land_planted(settings: Settings, defects: tuple[str, ...] = DEFECTS, seed: int = 7) -> tuple[Any, PlantedCorpus]:
    """A migrated database in ``settings`` holding the planted corpus; returns its client and the corpus."""
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    corpus = planted_corpus(codec, defects, seed)
    scored = Pipeline(settings, codec).run(corpus.events)
    records = [ConsumerRecord(settings.topic("trajectories.scored"), 0, i, 0, 0, b"k", v, None, 0, len(v), [])
               for i, v in enumerate(scored)]  # fmt: skip
    rejected = ClickHouseSink(settings, client, codec).land(records)
    assert rejected == [], rejected
    return client, corpus
