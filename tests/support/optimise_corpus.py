"""The planted-defects corpus landed through the real scoring and the real ClickHouse sink, for the
optimisation reports' tests (the pattern of tests/corpus/test_read.py)."""

from __future__ import annotations

from typing import Any

from tests.support.scored_landing import land_events
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.optimise.planted import DEFECTS, PlantedCorpus, planted_corpus
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for


def land_planted(settings: Settings, defects: tuple[str, ...] = DEFECTS, seed: int = 7) -> tuple[Any, PlantedCorpus]:
    """A migrated database in ``settings`` holding the planted corpus; returns its client and the corpus."""
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    corpus = planted_corpus(codec, defects, seed)
    land_events(settings, client, codec, corpus.events)
    return client, corpus
