"""Event codecs: Avro single-object encoding (default) or the Confluent wire format with a registry.

Both write with the newest schema version in ``schemas/`` and read any version they can resolve,
projecting it onto the newest (reader) version. fastavro does the work on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Protocol

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from trajstream_sdk.avro_prefix import PrefixReader
from trajstream_sdk.config import EmitterConfig, EmitterSettings
from trajstream_sdk.errors import (
    EncodeError,
    EventTooLargeError,
    MalformedEventError,
    UnexpectedEventTypeError,
    UnknownSchemaError,
)
from trajstream_sdk.limits import Limits
from trajstream_sdk.schema_registry import SchemaRegistryClient
from trajstream_sdk.schemas import SchemaCatalog, SchemaVersion

SINGLE_OBJECT_MARKER = b"\xc3\x01"
_SO_HEADER_LEN = 10  # marker (2) + CRC-64-AVRO fingerprint (8)
CONFLUENT_MAGIC = b"\x00"
_CF_HEADER_LEN = 5  # magic (1) + schema id (4, big-endian)

# Encoding failures fastavro reports for a record that does not fit its schema.
_ENCODE_FAILURES = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A decoded event: which record it is, which version wrote it, and its fields."""

    name: str
    writer_version: int
    record: dict[str, Any]


class EventCodec(Protocol):
    # The sizes it holds records to; a dead letter it writes keeps as much of its input as fits them.
    limits: Limits

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes, expect: str | None = None, fields: Projection | None = None) -> DecodedEvent: ...

    def peek(self, data: bytes, fields: Projection) -> DecodedEvent: ...


# Record name -> the only fields to read from it. fastavro still walks (and so checks the framing of)
# the whole body, but skipping a field costs less than building it: a turn reads 1.6 times faster.
Projection = Mapping[str, frozenset[str]]


def _projected(cache: dict[Any, _ReadPlan], key: Any, plan: _ReadPlan, catalog: SchemaCatalog,
               fields: frozenset[str]) -> _ReadPlan:  # fmt: skip
    """``plan`` reading only ``fields`` of the newest reader version, cached under ``key``."""
    projected = cache.get(key)
    if projected is None:
        import fastavro

        source = catalog.latest(plan.name).source
        kept = [f for f in source["fields"] if f["name"] in fields]
        missing = fields - {f["name"] for f in kept}
        if missing:
            raise ValueError(f"{source['name']} has no field(s) {sorted(missing)} to project")
        reader = fastavro.parse_schema({**source, "fields": kept}, named_schemas={})
        projected = cache[key] = _ReadPlan(plan.name, plan.writer_version, plan.writer, reader)
    return projected


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    name: str
    writer_version: int
    writer: Any
    reader: Any  # None when writer and reader are the same version: fastavro skips resolution
    prefix: PrefixReader | None = None  # set on a peek plan whose fields lead the writer's record


def _peek_plan(cache: dict[Any, _ReadPlan], key: Any, plan: _ReadPlan, catalog: SchemaCatalog,
               fields: frozenset[str]) -> _ReadPlan:  # fmt: skip
    """A plan reading only the leading ``fields``; the projected full read when they do not lead."""
    peek = cache.get(key)
    if peek is None:
        prefix = PrefixReader.build(plan.writer, fields)
        if prefix is None:
            peek = _projected(cache, ("projected", key), plan, catalog, fields)
        else:
            peek = _ReadPlan(plan.name, plan.writer_version, plan.writer, plan.reader, prefix)
        cache[key] = peek
    return peek


def _read(plan: _ReadPlan, data: bytes, offset: int, expect: str | None) -> DecodedEvent:
    if expect is not None and plan.name != expect:
        raise UnexpectedEventTypeError(f"expected a {expect} event, got {plan.name} (v{plan.writer_version})")
    if plan.prefix is not None:
        fields = plan.prefix.read(data, offset, f"{plan.name} v{plan.writer_version}")
        return DecodedEvent(plan.name, plan.writer_version, fields)
    stream = BytesIO(data)
    stream.seek(offset)
    try:
        # Plain dicts, no record names: a fifth faster, and content kinds are told apart by their
        # fields (trajstream.events.content_kind).
        record = schemaless_reader(stream, plan.writer, plan.reader)
    except Exception as exc:  # fastavro raises EOFError, UnicodeDecodeError, IndexError... on corrupt bodies
        raise MalformedEventError(
            f"corrupt {plan.name} v{plan.writer_version} body ({len(data)} bytes): {type(exc).__name__}: {exc}"
        ) from exc
    if stream.tell() != len(data):
        raise MalformedEventError(
            f"{len(data) - stream.tell()} trailing bytes after a {plan.name} v{plan.writer_version} body"
        )
    return DecodedEvent(plan.name, plan.writer_version, record)  # type: ignore[arg-type]


def _write(version: SchemaVersion, header: bytes, record: Mapping[str, Any], limits: Limits) -> bytes:
    stream = BytesIO()
    stream.write(header)
    try:
        schemaless_writer(stream, version.parsed, record, strict_allow_default=True)
    except _ENCODE_FAILURES as exc:
        raise EncodeError(
            f"{version.name} record does not fit schema v{version.version}: {_explain(version, record, exc)}"
        ) from exc
    data = stream.getvalue()
    # Nothing larger than its limit reaches a producer: the stage that encodes it hears of it instead.
    max_bytes, knob = limits.encoded_bytes(version.name)
    if len(data) > max_bytes:
        raise EventTooLargeError(f"{version.name} event is {len(data)} bytes, over the limit of {max_bytes} ({knob})")
    return data


def _explain(version: SchemaVersion, record: Mapping[str, Any], exc: Exception) -> str:
    """fastavro's writer errors rarely name the field; its validator does (only run on failure)."""
    try:
        validate(record, version.parsed, raise_errors=True)
    except ValidationError as verr:
        return "; ".join([*(str(e).split(" expected ")[0] for e in verr.errors), str(exc)])
    except Exception:  # the validator chokes on some shapes the writer rejects: keep the writer's words
        pass
    return str(exc)


class _Reader:
    """decode and peek over a subclass's framing: ``_writer_plan`` parses the header (of ``_header_len``
    bytes) and returns the key that identifies the writer schema, with its read plan."""

    _header_len: int
    catalog: SchemaCatalog

    def __init__(self) -> None:
        self._projections: dict[Any, _ReadPlan] = {}
        self._peeks: dict[Any, _ReadPlan] = {}

    def _writer_plan(self, data: bytes) -> tuple[Any, _ReadPlan]:
        raise NotImplementedError

    def decode(self, data: bytes, expect: str | None = None, fields: Projection | None = None) -> DecodedEvent:
        writer, plan = self._writer_plan(data)
        if fields is not None and plan.name in fields:
            wanted = fields[plan.name]
            plan = _projected(self._projections, (writer, wanted), plan, self.catalog, wanted)
        return _read(plan, data, self._header_len, expect)

    def peek(self, data: bytes, fields: Projection) -> DecodedEvent:
        """Like ``decode(data, fields=fields)``, but reads only as far as the last wanted field when the
        wanted fields lead the record: the rest of the body is neither read nor checked."""
        writer, plan = self._writer_plan(data)
        if plan.name in fields:
            wanted = fields[plan.name]
            plan = _peek_plan(self._peeks, (writer, wanted), plan, self.catalog, wanted)
        return _read(plan, data, self._header_len, None)


class SingleObjectCodec(_Reader):
    """Avro single-object encoding: C3 01, the writer schema's CRC-64-AVRO fingerprint, the body."""

    _header_len = _SO_HEADER_LEN

    def __init__(self, catalog: SchemaCatalog, limits: Limits | None = None):
        self.catalog = catalog
        self.limits = limits or Limits()
        super().__init__()
        self._plans: dict[bytes, _ReadPlan] = {}
        self._headers = {name: SINGLE_OBJECT_MARKER + catalog.latest(name).fingerprint for name in catalog.names}

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        header = self._headers.get(name)
        if header is None:
            raise EncodeError(f"unknown record schema {name!r}; known: {', '.join(self.catalog.names)}")
        return _write(self.catalog.latest(name), header, record, self.limits)

    def _writer_plan(self, data: bytes) -> tuple[bytes, _ReadPlan]:
        if len(data) < _SO_HEADER_LEN:
            raise MalformedEventError(f"event is {len(data)} bytes; a single-object encoded event has a 10-byte header")
        if data[:2] != SINGLE_OBJECT_MARKER:
            raise MalformedEventError(
                f"bad marker {bytes(data[:2]).hex()}: not Avro single-object encoding (expected c301)"
            )
        fp = bytes(data[2:_SO_HEADER_LEN])
        plan = self._plans.get(fp)
        return fp, plan if plan is not None else self._plan(fp)

    def _plan(self, fp: bytes) -> _ReadPlan:
        writer = self.catalog.by_fingerprint(fp)
        if writer is None:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {fp.hex()}: no schema in {self.catalog_dir()} has it"
            )
        reader = self.catalog.latest(writer.name)
        plan = _ReadPlan(
            writer.name, writer.version, writer.parsed, None if reader.fingerprint == fp else reader.parsed
        )
        self._plans[fp] = plan
        return plan

    def catalog_dir(self) -> str:
        first = self.catalog.latest(self.catalog.names[0]).path
        return str(first.parent.parent)


class ConfluentCodec(_Reader):
    """Confluent wire format (magic 0, 4-byte schema id, body) with schemas kept in a registry.

    Subjects follow the record-name strategy (the record's full name): one topic carries
    several record types, so the topic-name strategy does not fit.
    """

    _header_len = _CF_HEADER_LEN

    def __init__(self, catalog: SchemaCatalog, registry: SchemaRegistryClient, limits: Limits | None = None):
        self.catalog = catalog
        self.registry = registry
        self.limits = limits or Limits()
        self._headers: dict[str, bytes] = {}
        super().__init__()
        self._plans: dict[int, _ReadPlan] = {}

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        header = self._headers.get(name)
        if header is None:
            version = self.catalog.latest(name)
            schema_id = self.registry.register(version.full_name, version.source)
            header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            self._headers[name] = header
        return _write(self.catalog.latest(name), header, record, self.limits)

    def _writer_plan(self, data: bytes) -> tuple[int, _ReadPlan]:
        if len(data) < _CF_HEADER_LEN:
            raise MalformedEventError(f"event is {len(data)} bytes; the Confluent wire format has a 5-byte header")
        if data[:1] != CONFLUENT_MAGIC:
            raise MalformedEventError(f"bad magic byte {data[0]:#04x}: not the Confluent wire format (expected 0x00)")
        schema_id = int.from_bytes(data[1:_CF_HEADER_LEN], "big")
        plan = self._plans.get(schema_id)
        return schema_id, plan if plan is not None else self._plan(schema_id)

    def _plan(self, schema_id: int) -> _ReadPlan:
        import fastavro

        source = self.registry.schema_by_id(schema_id)  # raises UnknownSchemaError
        writer = fastavro.parse_schema(source)
        full_name = f"{source.get('namespace', '')}.{source.get('name')}".lstrip(".")
        reader = self.catalog.by_full_name(full_name)
        if reader is None:
            raise UnknownSchemaError(f"registry schema id {schema_id} is {full_name}, which this reader does not know")
        version = next((v.version for v in self.catalog.versions(reader.name) if v.fingerprint == _fp(writer)), 0)
        plan = _ReadPlan(reader.name, version, writer, reader.parsed)
        self._plans[schema_id] = plan
        return plan


def _fp(parsed: Any) -> bytes:
    from trajstream_sdk.schemas import _fingerprint

    return _fingerprint(parsed)


def codec_for(settings: EmitterSettings | None = None) -> EventCodec:
    """The codec the settings ask for (default: ``TRAJSTREAM_*``), over the schemas in TRAJSTREAM_SCHEMAS_DIR."""
    settings = settings or EmitterConfig.from_env()
    return build_codec(
        SchemaCatalog.from_directory(settings.schemas_dir),
        settings.schema_registry_url,
        settings.limits,
        username=settings.schema_registry_username,
        password=settings.schema_registry_secret(),
    )


def build_codec(catalog: SchemaCatalog, registry_url: str | None, limits: Limits, **auth: Any) -> EventCodec:
    """The single-object codec, or the Confluent one when a registry URL is configured."""
    if registry_url:
        return ConfluentCodec(catalog, SchemaRegistryClient(registry_url, **auth), limits)
    return SingleObjectCodec(catalog, limits)
