"""The gateway's one producer: idempotent, acks=all, and a byte budget that turns overload into 503s.

``publish`` returns only after the broker acknowledged every record, so a 2xx the gateway sends on
top of it means the records are durable. Records accepted and not yet acknowledged count against
``gateway_max_inflight_bytes``; a request that would go past it is refused whole (``Overloaded``)
before anything of it is sent, so a client's retry never duplicates half a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from trajstream.errors import DeliveryError, TrajstreamError
from trajstream.settings import Settings
from trajstream_sdk.kafka_security import start_client


class Overloaded(TrajstreamError):
    """The gateway holds as many unacknowledged bytes as it may: the client should retry later."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str  # the full name, prefix included
    key: bytes | None
    value: bytes


@dataclass
class PublisherStats:
    records: int = 0
    bytes: int = 0
    refused_overload: int = 0
    failed: int = 0


class Publisher:
    def __init__(self, settings: Settings, producer: Any | None = None):
        self.settings = settings
        self.budget = settings.gateway_max_inflight_bytes
        self.in_flight = 0
        self.stats = PublisherStats()
        self._producer: Any = producer

    async def start(self) -> None:
        if self._producer is None:
            options = self.settings.durable_producer_options()
            self._producer = AIOKafkaProducer(**options, client_id="trajstream-gateway", linger_ms=2,
                                              max_batch_size=1024 * 1024)  # fmt: skip
        await start_client(self._producer, self.settings.kafka_client_options())

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, records: Sequence[Record]) -> None:
        """Send ``records`` and wait for the broker's acknowledgement of every one.

        Raises ``Overloaded`` (nothing sent) past the byte budget, ``DeliveryError`` if any record
        was not acknowledged after the producer's retries.
        """
        size = sum(len(r.value) + len(r.key or b"") for r in records)
        # One request larger than the whole budget still goes through alone, or it could never be sent.
        if self.in_flight and self.in_flight + size > self.budget:
            self.stats.refused_overload += 1
            raise Overloaded(f"{self.in_flight} bytes awaiting the broker's acknowledgement (budget {self.budget})")
        self.in_flight += size
        try:
            futures = [await self._producer.send(r.topic, value=r.value, key=r.key) for r in records]
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            self.in_flight -= size
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            self.stats.failed += len(failures)
            raise DeliveryError(f"{len(failures)} of {len(records)} records were not acknowledged: {failures[0]!r}")
        self.stats.records += len(records)
        self.stats.bytes += size
