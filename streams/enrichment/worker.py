"""The enrichment worker: enrichment requests in, enrichment results (or dead letters) out.

An asyncio consumer rather than a Faust agent: extraction waits on an LLM for seconds, so requests
are handled concurrently (bounded by the extractor's own limit) and offsets are committed only after
a whole batch's results are acknowledged. Delivery is at least once; results are keyed by
(trajectory_id, trajectory_version), which is how downstream drops a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from trajstream.assembled import TrajectoryView
from trajstream.errors import CodecError, TrajstreamError
from trajstream.settings import Settings
from trajstream.streams.assembly import Output
from trajstream.streams.enrichment.llm import EnrichmentError, Extractor, build_extractor
from trajstream.streams.enrichment.model import failed_result_record, to_result_record
from trajstream.topics import DEAD_LETTER_TOPIC, ENRICHMENT_GROUP, ENRICHMENT_REQUESTS, ENRICHMENT_RESULTS
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.events import dead_letter_record
from trajstream_sdk.schemas import DEAD_LETTER, ENRICHMENT_REQUEST, ENRICHMENT_RESULT

log = logging.getLogger(__name__)


class EnrichmentWorker:
    def __init__(self, settings: Settings, codec: EventCodec | None = None, extractor: Extractor | None = None):
        self.settings = settings
        self.codec = codec or codec_for(settings)
        self.extractor = extractor or build_extractor(settings)
        self._variants: dict[str, Extractor] = {}
        self.results_topic = settings.topic(ENRICHMENT_RESULTS)
        self.dlq_topic = settings.topic(DEAD_LETTER_TOPIC)

    async def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> list[Output]:
        """The outputs for one request; never raises for bad input."""

        def letter(reason: str, error_type: str, tid: str | None) -> Output:
            record = dead_letter_record(
                stage="enrichment", reason=reason, error_type=error_type, source=topic, source_partition=partition,
                source_offset=offset, trajectory_id=tid, key=key, payload=value,
            )  # fmt: skip
            return Output(self.dlq_topic, key or b"", self.codec.encode(DEAD_LETTER, record))

        try:
            request = self.codec.decode(value, expect=ENRICHMENT_REQUEST).record
        except CodecError as exc:
            return [letter(str(exc), type(exc).__name__, None)]
        tid, version = request["trajectory_id"], request["trajectory_version"]
        started = time.monotonic()
        try:
            extractor = self._extractor_for(request["prompt_version"])
        except TrajstreamError as exc:
            return [letter(str(exc), type(exc).__name__, tid)]
        try:
            view = TrajectoryView.from_bytes(request["trajectory"], self.codec)
            extraction = await extractor.extract(view)
        except (EnrichmentError, CodecError) as exc:
            attempts = getattr(exc, "attempts", 1)
            latency = getattr(exc, "latency_ms", int((time.monotonic() - started) * 1000))
            failed = failed_result_record(
                tid, version, extractor.name, extractor.prompt_version, str(exc), attempts, latency
            )
            result = Output(self.results_topic, tid.encode(), self.codec.encode(ENRICHMENT_RESULT, failed))
            # The failure is dead-lettered for a person, and a failed result lets scoring go on without it.
            return [letter(f"enrichment failed: {exc}", type(exc).__name__, tid), result]
        record = to_result_record(extraction, tid, version)
        return [Output(self.results_topic, tid.encode(), self.codec.encode(ENRICHMENT_RESULT, record))]

    def _extractor_for(self, prompt_version: str | None) -> Extractor:
        """`trajstream enrich --since --prompt-version V` asks for another prompt than the worker's."""
        if (
            prompt_version is None
            or prompt_version == self.extractor.prompt_version
            or not self.settings.llm_configured
        ):
            return self.extractor
        if prompt_version not in self._variants:
            variant = self.settings.model_copy(update={"enrichment_prompt_version": prompt_version})
            self._variants[prompt_version] = build_extractor(variant)  # raises for an unknown version
        return self._variants[prompt_version]

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.topic(ENRICHMENT_REQUESTS),
            **s.kafka_client_options(),
            group_id=s.consumer_group(ENRICHMENT_GROUP),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max(4, s.llm_concurrency * 4),
        )
        producer = AIOKafkaProducer(**s.durable_producer_options(), linger_ms=5)
        await consumer.start()
        await producer.start()
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                messages = [m for records in batch.values() for m in records]
                if not messages:
                    continue
                results = await asyncio.gather(
                    *(self.handle(m.topic, m.partition, m.offset, m.key, m.value) for m in messages)
                )
                futures: list[Any] = []
                for outputs in results:
                    for o in outputs:
                        futures.append(await producer.send(o.topic, o.value, key=o.key))
                await asyncio.gather(*futures)  # acknowledged before the offsets move
                await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()
            for extractor in (self.extractor, *self._variants.values()):
                await extractor.aclose()


def run_enrichment_worker(settings: Settings) -> None:
    """Run in the foreground until SIGTERM or SIGINT."""
    from trajstream.foreground import run_until_signalled

    async def work(stop: asyncio.Event) -> None:
        worker = EnrichmentWorker(settings)
        log.warning(
            "enrichment worker: extractor %s, prompt %s", worker.extractor.name, worker.extractor.prompt_version
        )
        await worker.run(stop)

    run_until_signalled(work)
