"""Shared test vectors: for every record schema version, values with their exact single-object bytes.

Written by the Python codec (fastavro) into ``schemas/vectors/<record>/v<N>/<case>.json``; the Python,
TypeScript and Rust emitters each check that they decode the bytes to the value and encode the value
to the same bytes. A value is kept in the Avro JSON encoding (unions wrapped as ``{"type name": value}``),
which every Avro library reads, so no language has to guess which branch of a union was meant.

Cases, per version:
- ``full``: every optional field set; an array holds one item per branch of its item union (a turn's
  messages carry every content kind), a map holds one key (map order is not fixed across libraries).
- ``minimal``: every optional field null, every array and map empty.
The values are made up by walking the schema, so a new field or version gets vectors without edits.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from trajstream_sdk.codec import SINGLE_OBJECT_MARKER
from trajstream_sdk.schemas import SchemaCatalog, SchemaVersion

CASES = ("full", "minimal")
_TIMESTAMP = 1_760_000_000_123  # 2025-10-09, in milliseconds: beyond 32 bits, within 2^53


@dataclass(frozen=True)
class Vector:
    record: str
    version: int
    case: str
    fingerprint_hex: str
    single_object_hex: str
    value: Any  # Avro JSON encoding

    def document(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "version": self.version,
            "case": self.case,
            "fingerprint_hex": self.fingerprint_hex,
            "single_object_hex": self.single_object_hex,
            "value": self.value,
        }


class _Sampler:
    """Builds one value (fastavro's Python form, unions in tuple notation) for a schema and a case."""

    def __init__(self, case: str):
        self.full = case == "full"
        self.named: dict[str, Any] = {}

    def value(self, schema: Any, field: str, pick: int = 0) -> Any:
        if isinstance(schema, str):
            return self._named_or_primitive(schema, field, pick)
        if isinstance(schema, list):
            return self._union(schema, field, pick)
        kind = schema["type"]
        if kind == "record":
            self._remember(schema)
            # An array item's position picks the branch of each union (and enum) among its fields.
            return {f["name"]: self.value(f["type"], f["name"], pick) for f in schema["fields"]}
        if kind == "enum":
            self._remember(schema)
            return schema["symbols"][pick % len(schema["symbols"])]
        if kind == "array":
            if not self.full:
                return []
            count = max(2, self._branches(schema["items"]))
            return [self.value(schema["items"], field, i) for i in range(count)]
        if kind == "map":
            return {f"{field}-key": self.value(schema["values"], field)} if self.full else {}
        if kind == "fixed":
            self._remember(schema)
            return bytes(range(schema["size"]))
        if schema.get("logicalType") in ("timestamp-millis", "local-timestamp-millis"):
            return _TIMESTAMP + pick
        return self._named_or_primitive(kind, field, pick)

    def _remember(self, schema: dict[str, Any]) -> None:
        self.named[schema["name"]] = schema

    def _branches(self, schema: Any, depth: int = 0) -> int:
        """How many items an array needs for its items to show every branch of their unions."""
        if isinstance(schema, str):
            schema = self.named.get(schema, schema)
        if isinstance(schema, list):
            return len([b for b in schema if b != "null"])
        if not isinstance(schema, dict):
            return 1
        if schema["type"] == "enum":
            return len(schema["symbols"])
        if schema["type"] == "record" and depth == 0:
            self._remember(schema)
            return max([1, *(self._branches(f["type"], 1) for f in schema["fields"])])
        return 1

    def _union(self, branches: list[Any], field: str, pick: int) -> Any:
        non_null = [b for b in branches if b != "null"]
        if not self.full and "null" in branches:
            return None
        chosen = non_null[pick % len(non_null)]
        value = self.value(chosen, field)
        name = _type_name(chosen)
        # Tuple notation names the branch: fastavro would otherwise take the first record that fits.
        return (name, value) if len(non_null) > 1 and isinstance(value, dict) else value

    def _named_or_primitive(self, name: str, field: str, pick: int) -> Any:
        if name in self.named:
            return self.value(self.named[name], field, pick)
        if name == "string":
            return f"{field}-{pick} é ✓"  # multi-byte UTF-8 in every string
        if name == "int":
            return -1234 - pick  # negative: zig-zag encoding is checked too
        if name == "long":
            return 9_876_543_210 + pick
        if name == "double":
            return 0.15625 + pick  # exact in binary
        if name == "float":
            return 0.5
        if name == "boolean":
            return True
        if name == "bytes":
            return b"\x00\xc3\x01\xff"
        if name == "null":
            return None
        raise ValueError(f"no sample for Avro type {name!r} (field {field})")


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if schema.get("type") in ("record", "enum", "fixed"):
        return str(schema["name"])
    return str(schema["type"])


def _avro_json(version: SchemaVersion, value: Any) -> Any:
    out = io.StringIO()
    fastavro.json_writer(out, version.parsed, [value])
    return json.loads(out.getvalue())


def build(version: SchemaVersion, case: str) -> Vector:
    # fastavro's parsed form names every type in full, its enclosing namespace applied.
    value = _Sampler(case).value(version.parsed, version.name)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, version.parsed, value)
    data = SINGLE_OBJECT_MARKER + version.fingerprint + body.getvalue()
    fingerprint = version.fingerprint.hex()
    return Vector(version.name, version.version, case, fingerprint, data.hex(), _avro_json(version, value))


def all_vectors(catalog: SchemaCatalog) -> list[Vector]:
    return [build(v, case) for name in catalog.names for v in catalog.versions(name) for case in CASES]


def path_of(directory: Path, vector: Vector) -> Path:
    return directory / vector.record / f"v{vector.version}" / f"{vector.case}.json"


def render(vector: Vector) -> str:
    return json.dumps(vector.document(), indent=2, ensure_ascii=False) + "\n"


def write(catalog: SchemaCatalog, directory: Path) -> list[Path]:
    written = []
    for vector in all_vectors(catalog):
        path = path_of(directory, vector)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(vector))
        written.append(path)
    return written


def stale(catalog: SchemaCatalog, directory: Path) -> list[Path]:
    """Vector files that are missing or differ from what the codec writes now."""
    return [
        path_of(directory, v)
        for v in all_vectors(catalog)
        if not path_of(directory, v).is_file() or path_of(directory, v).read_text() != render(v)
    ]
