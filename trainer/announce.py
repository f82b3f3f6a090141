"""Publish a ModelVersion event on ``model.versions`` (keyed by model name)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from trajstream.topics import MODEL_VERSIONS
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import VersionInfo
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.kafka_security import start_client
from trajstream_sdk.schemas import MODEL_VERSION


def version_event(info: VersionInfo, event: str, reason: str, canary_share: float = 0.0) -> dict[str, Any]:
    return {
        "model_name": info.model_name, "version": info.version, "number": info.number, "parent": info.parent,
        "event": event, "at": int(time.time() * 1000), "path": info.path, "windows": info.windows,
        "metrics": info.metrics, "reason": reason, "base": info.base, "canary_share": canary_share,
    }  # fmt: skip


async def announce_async(settings: TrainerSettings, codec: EventCodec, producer: Any, info: VersionInfo, event: str,
                         reason: str, canary_share: float = 0.0) -> None:  # fmt: skip
    value = codec.encode(MODEL_VERSION, version_event(info, event, reason, canary_share))
    await producer.send_and_wait(settings.topic(MODEL_VERSIONS), value, key=info.model_name.encode())


def announce(settings: TrainerSettings, info: VersionInfo, event: str, reason: str) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(**settings.durable_producer_options(), request_timeout_ms=10_000)
        await start_client(producer, settings.kafka_client_options())
        try:
            await announce_async(settings, codec_for(settings), producer, info, event, reason)
        finally:
            await producer.stop()

    asyncio.run(run())
