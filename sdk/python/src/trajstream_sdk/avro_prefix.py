"""Read the leading fields of an Avro record body without walking the rest of it.

A record's fields are encoded one after another in writer order, so the fields a stage routes on
(ids, an index, a timestamp), when they come first and are of simple types, can be read straight
from the front of the body. fastavro has to walk the whole body even to skip a field; for a turn that
walk costs most of the decode, and assembly needs four fields of it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from trajstream_sdk.errors import MalformedEventError

# A field reader: (body, position) -> (value, next position).
_FieldReader = Callable[[bytes, int], tuple[Any, int]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _long(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    pos += 1
    if byte < 0x80:  # most lengths and small numbers: one byte
        return (byte >> 1) ^ -(byte & 1), pos
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size = data[pos]
    if size < 0x80:
        size, pos = (size >> 1) ^ -(size & 1), pos + 1
    else:
        size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError(f"string of {size} bytes runs past the body")
    return data[pos:end].decode(), end


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError(f"bytes of {size} run past the body")
    return bytes(data[pos:end]), end


def _boolean(data: bytes, pos: int) -> tuple[bool, int]:
    value = data[pos]
    if value > 1:
        raise ValueError(f"boolean byte {value}")
    return value == 1, pos + 1


def _null(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _fixed_width(fmt: str) -> _FieldReader:
    size = struct.calcsize(fmt)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        if pos + size > len(data):
            raise ValueError("number runs past the body")
        return struct.unpack_from(fmt, data, pos)[0], pos + size

    return read


def _timestamp(unit_per_ms: int) -> _FieldReader:
    def read(data: bytes, pos: int) -> tuple[datetime, int]:
        value, pos = _long(data, pos)
        return _EPOCH + timedelta(milliseconds=value / unit_per_ms), pos

    return read


_PRIMITIVES: dict[str, _FieldReader] = {
    "null": _null,
    "boolean": _boolean,
    "int": _long,
    "long": _long,
    "float": _fixed_width("<f"),
    "double": _fixed_width("<d"),
    "bytes": _bytes,
    "string": _string,
}
# Logical types whose value fastavro turns into something else; the rest read as their base type.
_LOGICAL: dict[tuple[str, str], _FieldReader] = {
    ("long", "timestamp-millis"): _timestamp(1),
    ("long", "timestamp-micros"): _timestamp(1000),
}
_UNSUPPORTED_LOGICAL = {"decimal", "date", "time-millis", "time-micros", "local-timestamp-millis",
                        "local-timestamp-micros"}  # fmt: skip


def _reader_for(schema: Any) -> _FieldReader | None:
    """A reader for a simple type or a union of simple types; None for anything else."""
    if isinstance(schema, str):
        return _PRIMITIVES.get(schema)
    if isinstance(schema, list):
        branches = [_reader_for(branch) for branch in schema]
        if any(b is None for b in branches):
            return None
        table: list[_FieldReader] = [b for b in branches if b is not None]

        def union(data: bytes, pos: int) -> tuple[Any, int]:
            index, pos = _long(data, pos)
            if not 0 <= index < len(table):
                raise ValueError(f"union branch {index} of {len(table)}")
            return table[index](data, pos)

        return union
    if isinstance(schema, dict):
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical in _UNSUPPORTED_LOGICAL:
            return None
        if isinstance(kind, str) and isinstance(logical, str) and (kind, logical) in _LOGICAL:
            return _LOGICAL[(kind, logical)]
        if kind == "enum":
            symbols = list(schema["symbols"])

            def enum(data: bytes, pos: int) -> tuple[str, int]:
                index, pos = _long(data, pos)
                if not 0 <= index < len(symbols):
                    raise ValueError(f"enum index {index} of {len(symbols)}")
                return symbols[index], pos

            return enum
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
    return None


class PrefixReader:
    """Reads ``wanted`` fields of records written with one writer schema, when they lead the record.

    Only the leading fields are read, so the rest of the body is not checked here: the stage that
    decodes the whole record (and dead-letters it when it does not decode) is where that happens.
    """

    def __init__(self, steps: list[tuple[str | None, _FieldReader]]):
        self._steps = steps

    @classmethod
    def build(cls, writer: Mapping[str, Any], wanted: frozenset[str]) -> PrefixReader | None:
        """The reader, or None when a wanted field is missing or follows a field of a complex type."""
        steps: list[tuple[str | None, _FieldReader]] = []
        left = set(wanted)
        for field in writer.get("fields", []):
            if not left:
                break
            read = _reader_for(field["type"])
            if read is None:
                return None
            name = field["name"]
            steps.append((name if name in left else None, read))
            left.discard(name)
        return None if left else cls(steps)

    def read(self, data: bytes, offset: int, what: str) -> dict[str, Any]:
        record: dict[str, Any] = {}
        pos = offset
        try:
            for name, read in self._steps:
                value, pos = read(data, pos)
                if name is not None:
                    record[name] = value
        except (IndexError, ValueError, UnicodeDecodeError, OverflowError, struct.error) as exc:
            raise MalformedEventError(f"corrupt {what} body ({len(data)} bytes): {type(exc).__name__}: {exc}") from exc
        return record
