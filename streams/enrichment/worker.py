"""The enrichment worker: enrichment requests in, enrichment results (or dead letters) out.

A ``BatchSink`` (trajstream.sink) rather than a Faust agent: extraction waits on an LLM for seconds, so
a batch's requests are handled concurrently (bounded by the extractor's own limit), and the base commits
offsets only after the whole batch's results are acknowledged. Delivery is at least once; results are keyed by
(trajectory_id, trajectory_version), which is how downstream drops a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time

from trajstream.assembled import TrajectoryView
from trajstream.errors import CodecError, TrajstreamError
from trajstream.parts import mark_ready
from trajstream.settings import Settings
from trajstream.sink import BatchSink, Output, Record, Source, Written
from trajstream.streams.enrichment.llm import EnrichmentError, Extractor, build_extractor
from trajstream.streams.enrichment.model import failed_result_record, to_result_record
from trajstream.topics import ENRICHMENT_GROUP, ENRICHMENT_REQUESTS, ENRICHMENT_RESULTS
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.schemas import ENRICHMENT_REQUEST, ENRICHMENT_RESULT

log = logging.getLogger(__name__)


class EnrichmentWorker(BatchSink):
    stage = "enrichment"

    def __init__(self, settings: Settings, codec: EventCodec | None = None, extractor: Extractor | None = None):
        # Eager batches: a request should not wait for others to arrive, the LLM call is the slow part.
        super().__init__(
            settings, codec or codec_for(settings), group=settings.consumer_group(ENRICHMENT_GROUP),
            topics=(settings.topic(ENRICHMENT_REQUESTS),), batch_rows=max(4, settings.llm_concurrency * 4),
            batch_seconds=0.5, eager=True,
        )  # fmt: skip
        self.extractor = extractor or build_extractor(settings)
        self._variants: dict[str, Extractor] = {}
        self.results_topic = settings.topic(ENRICHMENT_RESULTS)

    async def write(self, batch: list[Record]) -> Written:
        results = await asyncio.gather(*(self.handle(record) for record in batch))
        return Written(outputs=[o for outputs in results for o in outputs])

    async def handle(self, source: Source) -> list[Output]:
        """The outputs for one request; never raises for bad input."""

        def letter(reason: str, error_type: str, tid: str | None) -> Output:
            return self.dead_letter(source, reason, error_type, tid)

        try:
            request = self.codec.decode(source.value, expect=ENRICHMENT_REQUEST).record
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
            # Encoded here, so that a result over the event limit is a failure like the others, not a crash.
            encoded = self.codec.encode(ENRICHMENT_RESULT, to_result_record(extraction, tid, version))
        except (EnrichmentError, CodecError) as exc:
            attempts = getattr(exc, "attempts", 1)
            latency = getattr(exc, "latency_ms", int((time.monotonic() - started) * 1000))
            failed = failed_result_record(
                tid, version, extractor.name, extractor.prompt_version, str(exc), attempts, latency
            )
            result = Output(self.results_topic, tid.encode(), self.codec.encode(ENRICHMENT_RESULT, failed))
            # The failure is dead-lettered for a person, and a failed result lets scoring go on without it.
            return [letter(f"enrichment failed: {exc}", type(exc).__name__, tid), result]
        return [Output(self.results_topic, tid.encode(), encoded)]

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

    async def close(self) -> None:
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
        ready = asyncio.Event()

        async def mark_when_ready() -> None:
            await ready.wait()
            mark_ready(settings, "enrich")  # `trajstream up` waits for this process's mark

        marked = asyncio.create_task(mark_when_ready())
        try:
            await worker.run(stop, ready)
        finally:
            marked.cancel()

    run_until_signalled(work)
