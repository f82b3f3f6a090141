"""The asyncio emitter: encodes events and publishes them with an idempotent aiokafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.config import EVENTS_TOPIC, FEEDBACK_TOPIC, EmitterConfig, EmitterSettings
from trajstream_sdk.errors import DeliveryError
from trajstream_sdk.events import Redactor, feedback_record
from trajstream_sdk.kafka_security import as_security_error, start_client
from trajstream_sdk.schemas import FEEDBACK

if TYPE_CHECKING:
    from trajstream_sdk.trajectory import Trajectory


def _no_redaction(text: str) -> str:
    return text


@dataclass
class EmitterStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    max_in_flight: int = 0


class AsyncEmitter:
    """Publishes trajectory events. Use as ``async with AsyncEmitter(settings) as emitter:``.

    Every event of a trajectory is keyed by its id, so a trajectory's events stay in order on one
    partition. At most ``settings.sdk_max_buffered_events`` events are accepted and not yet
    acknowledged: past that, ``emit`` waits (back-pressure) instead of buffering without limit.
    Delivery failures (after the producer's own retries) are raised by ``flush`` and ``close``.
    """

    def __init__(
        self,
        settings: EmitterSettings | None = None,
        *,
        codec: EventCodec | None = None,
        redactor: Redactor | None = None,
        client_id: str = "trajstream-sdk",
    ):
        self.settings: EmitterSettings = settings or EmitterConfig.from_env()
        self.codec = codec or codec_for(self.settings)
        self.redactor: Redactor = redactor or _no_redaction
        self.stats = EmitterStats()
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._slots = asyncio.Semaphore(self.settings.sdk_max_buffered_events)
        self._in_flight = 0
        self._failures: list[BaseException] = []
        self.events_topic = self.settings.topic(EVENTS_TOPIC)
        self.feedback_topic = self.settings.topic(FEEDBACK_TOPIC)

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._producer is not None:
            return
        s = self.settings
        self._producer = AIOKafkaProducer(
            **s.kafka_client_options(),
            client_id=self._client_id,
            enable_idempotence=True,  # retries never duplicate or reorder
            acks="all",
            linger_ms=s.producer_linger_ms,
            max_batch_size=s.producer_max_batch_bytes,
            max_request_size=s.limits.message_bytes,  # the largest record any topic takes
            compression_type=None if s.producer_compression == "none" else s.producer_compression,
            request_timeout_ms=s.producer_request_timeout_ms,
        )
        await start_client(self._producer, s.kafka_client_options())

    async def flush(self) -> None:
        """Wait until every accepted event is acknowledged; raise if any could not be delivered."""
        if self._producer is not None:
            await self._producer.flush()
        if self._failures:
            failures, self._failures = self._failures, []
            refused = as_security_error(failures[0], self.settings.kafka_client_options())
            if refused is not failures[0]:  # the ACLs refused the topic: say which setting or grant is missing
                raise refused
            raise DeliveryError(f"{len(failures)} event(s) were not delivered; first error: {failures[0]!r}")

    async def close(self) -> None:
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> AsyncEmitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- publishing ------------------------------------------------------------------------
    async def emit(self, name: str, record: Mapping[str, Any], *, key: str, topic: str | None = None) -> None:
        """Encode one event (raises EncodeError if it does not fit its schema) and hand it to the producer."""
        data = self.codec.encode(name, record)
        await self.send_encoded(data, key=key.encode(), topic=topic or self.events_topic)

    async def send_encoded(self, data: bytes, *, key: bytes | None, topic: str) -> None:
        if self._producer is None:
            raise RuntimeError("emitter is not started: use `async with AsyncEmitter(...)` or await start()")
        await self._slots.acquire()
        self._in_flight += 1
        if self._in_flight > self.stats.max_in_flight:
            self.stats.max_in_flight = self._in_flight
        try:
            future = await self._producer.send(topic, value=data, key=key)
        except BaseException as exc:
            self._release()
            refused = as_security_error(exc, self.settings.kafka_client_options())
            if refused is not exc:  # the ACLs refused the topic (found when its metadata was asked for)
                raise refused from None
            raise
        self.stats.sent += 1
        future.add_done_callback(self._on_delivery)

    def _release(self) -> None:
        self._in_flight -= 1
        self._slots.release()

    def _on_delivery(self, future: asyncio.Future[Any]) -> None:
        self._release()
        if future.cancelled():
            self.stats.failed += 1
            self._failures.append(asyncio.CancelledError())
        elif future.exception() is not None:
            self.stats.failed += 1
            self._failures.append(future.exception())  # type: ignore[arg-type]
        else:
            self.stats.delivered += 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # --- conveniences ----------------------------------------------------------------------
    def trajectory(self, task_description: str, *, agent_id: str, **kwargs: Any) -> Trajectory:
        """A trajectory handle; ``async with emitter.trajectory(...) as t:`` sends start and end."""
        from trajstream_sdk.trajectory import Trajectory

        return Trajectory(self, task_description, agent_id=agent_id, **kwargs)

    async def feedback(self, trajectory_id: str, **kwargs: Any) -> None:
        """Publish a late reward or review for a finished trajectory."""
        record = feedback_record(trajectory_id, scrub=self.redactor, **kwargs)
        await self.emit(FEEDBACK, record, key=trajectory_id, topic=self.feedback_topic)
