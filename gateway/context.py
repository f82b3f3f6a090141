"""What every route of the gateway shares, kept on the aiohttp application under ``GATEWAY``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from trajstream.gateway.keys import KeyStore
from trajstream.gateway.publisher import Publisher, Record
from trajstream.settings import Settings
from trajstream.topics import DEAD_LETTER_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import dead_letter_record
from trajstream_sdk.schemas import DEAD_LETTER

STAGE = "gateway"


@dataclass
class Gateway:
    settings: Settings
    codec: EventCodec
    publisher: Publisher
    keys: KeyStore

    def letter(self, source: str, reason: str, payload: bytes, key: str | None, error_type: str) -> Record:
        record = dead_letter_record(stage=STAGE, reason=reason, error_type=error_type, source=f"http:{source}",
                                    trajectory_id=None, key=key.encode() if key else None, payload=payload,
                                    max_payload_bytes=self.codec.limits.dead_letter_payload_bytes)  # fmt: skip
        data = self.codec.encode(DEAD_LETTER, record)
        return Record(self.settings.topic(DEAD_LETTER_TOPIC), key.encode() if key else None, data)

    def retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(self.settings.gateway_retry_after_s)}


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
