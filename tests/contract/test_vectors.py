"""The shared test vectors: up to date, and read and written byte for byte by the Python codec.

The TypeScript (sdk/typescript) and Rust (sdk/rust) emitters run the same checks on the same files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from trajstream.settings import PROJECT_ROOT
from trajstream.vectors import CASES, stale
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.schemas import SchemaCatalog

SCHEMAS = PROJECT_ROOT / "schemas"
VECTORS = sorted((SCHEMAS / "vectors").glob("*/v*/*.json"))


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.from_directory(SCHEMAS)


def _python_value(catalog: SchemaCatalog, doc: dict[str, Any]) -> Any:
    """The vector's Avro JSON value read into fastavro's form by fastavro's JSON reader."""
    version = next(v for v in catalog.versions(doc["record"]) if v.version == doc["version"])
    return next(iter(fastavro.json_reader(io.StringIO(json.dumps(doc["value"])), version.parsed)))


def test_every_version_has_every_case(catalog: SchemaCatalog) -> None:
    expected = {(n, v.version, c) for n in catalog.names for v in catalog.versions(n) for c in CASES}
    found = {(p.parts[-3], int(p.parts[-2][1:]), p.stem) for p in VECTORS}
    assert found == expected


def test_vectors_match_what_the_codec_writes_now(catalog: SchemaCatalog) -> None:
    assert stale(catalog, SCHEMAS / "vectors") == [], "run `trajstream schemas vectors`"


def test_a_full_turn_vector_carries_every_content_kind() -> None:
    doc = json.loads((SCHEMAS / "vectors/turn/v1/full.json").read_text())
    kinds = {next(iter(m["content"])).rsplit(".", 1)[1] for m in doc["value"]["messages"]}
    assert kinds == {"TextContent", "ToolCall", "ToolResponse", "Widget", "StructuredContent", "RedactedContent"}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: "/".join(p.parts[-3:]))
def test_codec_decodes_the_bytes_to_the_value(catalog: SchemaCatalog, path: Path) -> None:
    doc = json.loads(path.read_text())
    data = bytes.fromhex(doc["single_object_hex"])
    version = next(v for v in catalog.versions(doc["record"]) if v.version == doc["version"])
    assert data[2:10].hex() == doc["fingerprint_hex"] == version.fingerprint.hex()
    body = io.BytesIO(data[10:])
    decoded = fastavro.schemaless_reader(body, version.parsed, None, return_record_name=True)
    assert body.tell() == len(data) - 10
    expected = _python_value(catalog, doc)
    assert _untupled(decoded) == _untupled(expected)


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: "/".join(p.parts[-3:]))
def test_codec_encodes_the_value_to_the_bytes(catalog: SchemaCatalog, path: Path) -> None:
    doc = json.loads(path.read_text())
    if doc["version"] != catalog.latest(doc["record"]).version:
        pytest.skip("the codec writes only the newest version; older ones are checked by decoding")
    codec = SingleObjectCodec(catalog)
    assert codec.encode(doc["record"], _python_value(catalog, doc)).hex() == doc["single_object_hex"]


def _untupled(value: Any) -> Any:
    """fastavro reads a named union branch as (name, value); compare values, names checked by encoding."""
    if isinstance(value, tuple):
        return _untupled(value[1])
    if isinstance(value, dict):
        return {k: _untupled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untupled(v) for v in value]
    if hasattr(value, "timestamp"):
        return round(value.timestamp() * 1000)
    return value
