"""The streams stages in one process, without Kafka: events in, scored trajectory records out.

Assembly, heuristic enrichment and scoring run as they do in the workers, each with its state in a dict;
tests and benchmarks use it to make scored records without a broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from trajstream.settings import Settings
from trajstream.sink import Output
from trajstream.streams.assembly import Assembler, Input
from trajstream.streams.enrichment.worker import EnrichmentWorker
from trajstream.streams.scoring.stage import Scorer
from trajstream.topics import ASSEMBLED, ENRICHMENT_REQUESTS, ENRICHMENT_RESULTS, SCORED
from trajstream_sdk.codec import EventCodec


class Pipeline:
    """Assembly, heuristic enrichment and scoring, each with its state in a dict."""

    def __init__(self, settings: Settings, codec: EventCodec):
        self.settings = settings
        self.assembler = Assembler(settings, codec)
        self.enricher = EnrichmentWorker(settings, codec)
        self.scorer = Scorer(settings, codec)
        self.assembly: dict[bytes, Any] = {}
        self.scoring: dict[bytes, Any] = {}
        self.offset = 0

    def run(self, events: list[tuple[str, bytes]]) -> list[bytes]:
        """The scored trajectory records these events lead to, in order."""
        return asyncio.run(self._run(events))

    async def _run(self, events: list[tuple[str, bytes]]) -> list[bytes]:
        scored: list[bytes] = []
        pending: list[Output] = []
        for topic, value in events:
            tid = self.assembler.codec.decode(value).record["trajectory_id"].encode()
            pending += self._assemble(Input(self.settings.topic(topic), 0, self._next(), tid, value, 0))
        while pending:
            o = pending.pop(0)
            if o.topic == self.settings.topic(ENRICHMENT_REQUESTS):
                pending += await self.enricher.handle(Input(o.topic, 0, self._next(), o.key, o.value, 0))
            elif o.topic in (self.settings.topic(ASSEMBLED), self.settings.topic(ENRICHMENT_RESULTS)):
                result = await self.scorer.handle(Input(o.topic, 0, self._next(), o.key, o.value, 0),
                                                  self.scoring.get(o.key))  # fmt: skip
                if result.state is not None:
                    self.scoring[o.key] = result.state
                pending += result.outputs
            elif o.topic == self.settings.topic(SCORED):
                scored.append(o.value)
        return scored

    def _assemble(self, record: Input) -> list[Output]:
        result = self.assembler.handle(record, self.assembly.get(record.key or b""))
        if result.state is not None:
            self.assembly[record.key or b""] = result.state
        return result.outputs

    def _next(self) -> int:
        self.offset += 1
        return self.offset
