"""trajstream's own records over HTTP: ``POST /v1/events`` (a JSON batch of Avro records) and
``POST /v1/trajectories`` (the ``trajstream emit`` line format, one trajectory per item).

Each item is checked and encoded on its own. Good items are sent; a bad one is answered in a 207
with its index and reason and goes to the dead-letter topic. Nothing is dropped without a word.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trajstream import json_input
from trajstream.emit_file import parse_line
from trajstream.errors import CodecError, InputRecordError
from trajstream.gateway.publisher import Record
from trajstream.settings import Settings
from trajstream.topics import EVENTS_TOPIC, FEEDBACK_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.schemas import FEEDBACK, TRAJECTORY_END, TRAJECTORY_START, TURN

EVENT_TYPES = (TRAJECTORY_START, TURN, TRAJECTORY_END, FEEDBACK)
_CONTENT_NAMESPACE = "dev.trajstream.events."
_CONTENT_KINDS = ("TextContent", "ToolCall", "ToolResponse", "Widget", "StructuredContent", "RedactedContent")
_ERROR_CHARS = 600
_ID_NAMESPACE = uuid.UUID("6f1f1c7e-8a52-5d0e-9d0a-0c6c3b1d7a10")


@dataclass
class ItemResult:
    index: int
    status: int  # 200 accepted, 400 refused (dead-lettered)
    id: str | None = None  # event id or trajectory id
    error: str | None = None

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.id is not None:
            doc["id"] = self.id
        if self.error is not None:
            doc["error"] = self.error
        return doc


@dataclass
class Batch:
    """What a request turned into: records to send, and per item whether it was taken."""

    records: list[Record] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    refused: list[tuple[ItemResult, bytes, str | None]] = field(default_factory=list)  # result, input, key
    scope: list[tuple[str | None, str | None]] = field(default_factory=list)  # (agent id, environment) per item

    def refuse(self, index: int, error: str, item: Any, key: str | None = None) -> None:
        """Answer item ``index`` with a 400; its input (re-serialised if it was parsed) is dead-lettered."""
        raw = item if isinstance(item, bytes) else item.encode() if isinstance(item, str) else _dumps(item)
        result = ItemResult(index, 400, key, error)
        self.results.append(result)
        self.refused.append((result, raw, key))


def _items(body: bytes, field_name: str) -> list[Any]:
    """The request's items: a JSON object holding a list under ``field_name``, a JSON list, or JSON lines."""
    text = body.decode("utf-8")
    try:
        doc = json_input.loads(text)
    except json_input.JSONInputError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        return lines  # one object per line (the emit file format); each is checked on its own
    if isinstance(doc, dict) and isinstance(doc.get(field_name), list):
        return list(doc[field_name])
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and field_name == "trajectories":
        return [doc]
    raise ValueError(f"expected a JSON object with a list '{field_name}', or a JSON list")


def events_batch(body: bytes, settings: Settings, codec: EventCodec) -> Batch:
    """``{"events": [{"type": "turn", "record": {...}}, ...]}``: records as the SDK's builders make them."""
    batch = Batch()
    for index, item in enumerate(_items(body, "events")):
        if (
            not isinstance(item, dict)
            or item.get("type") not in EVENT_TYPES
            or not isinstance(item.get("record"), dict)
        ):
            batch.refuse(index, f'an item is {{"type": one of {", ".join(EVENT_TYPES)}, "record": {{...}}}}', item)
            batch.scope.append((None, None))
            continue
        name, record = item["type"], item["record"]
        key = record.get("trajectory_id")
        if name == TRAJECTORY_START:
            batch.scope.append((_text(record.get("agent_id")), _text(record.get("environment", "dev"))))
        else:
            batch.scope.append((None, None))
        if not isinstance(key, str) or not key:
            batch.refuse(index, "the record has no trajectory_id (its Kafka key)", item)
            continue
        try:
            data = codec.encode(name, _named_content(record) if name == TURN else record)
        except CodecError as exc:
            batch.refuse(index, _short(f"does not fit the {name} schema: {exc}"), item, key)
            continue
        topic = FEEDBACK_TOPIC if name == FEEDBACK else EVENTS_TOPIC
        batch.records.append(Record(settings.topic(topic), key.encode(), data))
        batch.results.append(ItemResult(index, 200, _text(record.get("event_id"))))
    return batch


def trajectories_batch(body: bytes, settings: Settings, codec: EventCodec, scrub: Callable[[str], str]) -> Batch:
    """Trajectories in the ``trajstream emit`` line format; each is sent whole or not at all."""
    batch = Batch()
    for index, item in enumerate(_items(body, "trajectories")):
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        raw = text.encode()
        doc = item if isinstance(item, dict) else None
        if doc is None:
            try:
                doc = json_input.loads(text)
            except json_input.JSONInputError:
                doc = None
        agent = _text(doc.get("agent_id")) if isinstance(doc, dict) else None
        environment = _text(doc.get("environment", "dev")) if isinstance(doc, dict) else None
        batch.scope.append((agent or "unknown", environment))
        try:
            trajectory_id, events = parse_line(text, scrub)
            if isinstance(doc, dict) and doc.get("id"):
                # A retried request must not make the trajectory twice: its events get ids of their own.
                for n, (name, record) in enumerate(events):
                    record["event_id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{trajectory_id}:{name}:{n}"))
            encoded = [codec.encode(name, record) for name, record in events]
        except InputRecordError as exc:
            batch.refuse(index, str(exc), raw)
            continue
        except CodecError as exc:
            batch.refuse(index, _short(f"does not fit the schema: {exc}"), raw)
            continue
        key = trajectory_id.encode()
        batch.records.extend(Record(settings.topic(EVENTS_TOPIC), key, data) for data in encoded)
        batch.results.append(ItemResult(index, 200, trajectory_id))
    return batch


def _named_content(record: dict[str, Any]) -> dict[str, Any]:
    """A message's content may name its kind the Avro JSON way ({"TextContent": {...}}, the namespace
    optional) or as [name, value] (what the Python builders' records look like in JSON); a plain object is
    told apart by its fields, as the codec does."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        return record
    named = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        kind: str | None = None
        value: Any = None
        if isinstance(content, list) and len(content) == 2 and isinstance(content[0], str):
            kind, value = content
        elif isinstance(content, dict) and len(content) == 1:
            only = next(iter(content))
            if only.removeprefix(_CONTENT_NAMESPACE) in _CONTENT_KINDS:
                kind, value = only, content[only]
        if kind is not None:
            full = kind if kind.startswith(_CONTENT_NAMESPACE) else _CONTENT_NAMESPACE + kind
            message = {**message, "content": (full, value)}
        named.append(message)
    return {**record, "messages": named}


def _dumps(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, default=str).encode()


def _short(reason: str) -> str:
    return reason if len(reason) <= _ERROR_CHARS else reason[: _ERROR_CHARS - 20] + f"... [{len(reason)} chars]"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
