"""The codec: single-object encoding, schema resolution, typed errors, and the Confluent format."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.env import SCHEMAS
from tests.support.samples import CONTENT_KINDS, as_decoded, sample_records
from trajstream.errors import (
    EncodeError,
    EventTooLargeError,
    MalformedEventError,
    UnexpectedEventTypeError,
    UnknownSchemaError,
)
from trajstream_sdk.codec import ConfluentCodec, SingleObjectCodec
from trajstream_sdk.events import content_from_record, content_kind
from trajstream_sdk.limits import Limits
from trajstream_sdk.schema_registry import SchemaRegistryClient
from trajstream_sdk.schemas import SchemaCatalog


@pytest.mark.parametrize("name", ["trajectory_start", "turn", "trajectory_end", "feedback", "dead_letter"])
def test_every_schema_round_trips(codec: SingleObjectCodec, name: str) -> None:
    record = sample_records()[name]
    data = codec.encode(name, record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.catalog.latest(name).fingerprint
    decoded = codec.decode(data)
    assert decoded.name == name and decoded.writer_version == codec.catalog.latest(name).version
    assert decoded.record == as_decoded(record)


def test_every_content_branch_round_trips(codec: SingleObjectCodec) -> None:
    turn = sample_records()["turn"]
    decoded = codec.decode(codec.encode("turn", turn)).record
    assert {content_kind(m["content"]) for m in decoded["messages"]} == CONTENT_KINDS
    contents = [content_from_record(m["content"]) for m in decoded["messages"]]
    assert contents[1].arguments == {"order_id": 42, "nested": {"a": [1, 2]}}  # type: ignore[union-attr]
    assert [getattr(c, "status", None) for c in contents[2:5]] == ["success", "error", "timeout"]
    assert contents[5].data == {"order_id": 42, "total": 9.5}  # type: ignore[union-attr]


def test_persist_false_is_a_placeholder_in_the_record(codec: SingleObjectCodec) -> None:
    data = codec.encode("turn", sample_records()["turn"])
    assert b"4111" not in data and b"secret" not in data
    private = codec.decode(data).record["messages"][-1]
    assert private["content"] == {"reason": "persist=false", "original_kind": "text"}
    assert private["reasoning"] is None and private["visibility"]["persist"] is False


@pytest.mark.parametrize(
    ("mangle", "error", "match"),
    [
        (lambda b: b[:5], MalformedEventError, "10-byte header"),
        (lambda b: b"\x00\x01" + b[2:], MalformedEventError, "bad marker"),
        (lambda b: b[:10] + b[10:-7], MalformedEventError, "corrupt turn v1 body"),
        (lambda b: b + b"\x00\x00", MalformedEventError, "trailing bytes"),
        (lambda b: b[:2] + b"\x01" * 8 + b[10:], UnknownSchemaError, "0101010101010101"),
        (lambda b: b"", MalformedEventError, "0 bytes"),
    ],
)
def test_bad_bytes_raise_typed_errors(codec: SingleObjectCodec, mangle: Any, error: type, match: str) -> None:
    data = codec.encode("turn", sample_records()["turn"])
    with pytest.raises(error, match=match):
        codec.decode(mangle(data))


def test_garbage_never_escapes_as_an_untyped_error(codec: SingleObjectCodec) -> None:
    import random

    rng = random.Random(1)
    good = codec.encode("turn", sample_records()["turn"])
    for _ in range(500):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(10, len(data))] = rng.randrange(256)
        with contextlib.suppress(MalformedEventError, UnknownSchemaError):
            codec.decode(bytes(data))


def test_expect_checks_the_record_type(codec: SingleObjectCodec) -> None:
    data = codec.encode("feedback", sample_records()["feedback"])
    assert codec.decode(data, expect="feedback").name == "feedback"
    with pytest.raises(UnexpectedEventTypeError, match="expected a turn event, got feedback"):
        codec.decode(data, expect="turn")


def test_records_that_do_not_fit_are_refused(codec: SingleObjectCodec) -> None:
    record = sample_records()["trajectory_end"]
    with pytest.raises(EncodeError, match="outcome"):
        codec.encode("trajectory_end", {**record, "outcome": "exploded"})
    with pytest.raises(EncodeError, match="missing"):
        codec.encode("trajectory_end", {k: v for k, v in record.items() if k != "trajectory_id"})
    with pytest.raises(EncodeError, match="unknown record schema"):
        codec.encode("nope", record)
    small = SingleObjectCodec(codec.catalog, Limits(max_event_bytes=1024, max_trajectory_bytes=1024))
    big = {**sample_records()["feedback"], "comment": "x" * 5000}
    with pytest.raises(EventTooLargeError, match="over the limit of 1024"):
        small.encode("feedback", big)


def test_a_projection_reads_only_the_named_fields_and_still_checks_the_body(codec: SingleObjectCodec) -> None:
    record = sample_records()["turn"]
    data = codec.encode("turn", record)
    wanted = frozenset({"event_id", "turn_index"})
    decoded = codec.decode(data, fields={"turn": wanted})
    assert decoded.name == "turn" and set(decoded.record) == wanted
    assert decoded.record["turn_index"] == record["turn_index"]
    # Other record types are read whole.
    start = codec.decode(
        codec.encode("trajectory_start", sample_records()["trajectory_start"]), fields={"turn": wanted}
    )
    assert "task_description" in start.record
    # The skipped fields are still walked: a cut body or trailing bytes are errors, as without a projection.
    with pytest.raises(MalformedEventError):
        codec.decode(data[:-3], fields={"turn": wanted})
    with pytest.raises(MalformedEventError, match="trailing"):
        codec.decode(data + b"\x00", fields={"turn": wanted})
    with pytest.raises(ValueError, match="no field"):
        codec.decode(data, fields={"turn": frozenset({"no_such_field"})})


def test_peek_reads_leading_fields_as_decode_does(codec: SingleObjectCodec) -> None:
    wanted = {"turn": frozenset({"event_id", "trajectory_id", "turn_index", "timestamp"})}
    for n in range(20):
        record = {**sample_records()["turn"], "turn_index": n * 1000 - 7 if n else 0, "trajectory_id": f"t-{n}-é"}
        data = codec.encode("turn", record)
        peeked = codec.peek(data, wanted)
        assert peeked.name == "turn" and peeked.record == codec.decode(data, fields=wanted).record
    # Other record types are read whole, as decode reads them.
    end = codec.encode("trajectory_end", sample_records()["trajectory_end"])
    assert codec.peek(end, wanted).record == codec.decode(end).record


def test_peek_reads_only_the_front_but_still_rejects_a_broken_front(codec: SingleObjectCodec) -> None:
    data = codec.encode("turn", sample_records()["turn"])
    wanted = {"turn": frozenset({"event_id", "turn_index"})}
    # What follows the wanted fields is not read: a cut tail passes here and fails the full decode.
    assert codec.peek(data[:-3], wanted).record["turn_index"] == sample_records()["turn"]["turn_index"]
    with pytest.raises(MalformedEventError):
        codec.decode(data[:-3])
    for cut in (10, 11, 14, 30):
        with pytest.raises(MalformedEventError, match="corrupt turn v1 body"):
            codec.peek(data[:cut], wanted)
    with pytest.raises(MalformedEventError, match="corrupt turn v1 body"):
        codec.peek(data[:10] + b"\xff" * 12, wanted)  # a varint that never ends


def test_peek_falls_back_to_the_full_projection_when_fields_do_not_lead(codec: SingleObjectCodec) -> None:
    data = codec.encode("turn", sample_records()["turn"])
    wanted = {"turn": frozenset({"event_id", "messages"})}  # messages: an array, past which nothing is simple
    assert codec.peek(data, wanted).record == codec.decode(data, fields=wanted).record
    with pytest.raises(MalformedEventError, match="trailing"):
        codec.peek(data + b"\x00", wanted)  # the fallback walks the whole body


def test_prefix_reader_handles_simple_types_and_refuses_complex_ones() -> None:
    import io

    import fastavro

    from trajstream_sdk.avro_prefix import PrefixReader

    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "f", "type": "float"}, {"name": "d", "type": "double"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["x", "y", "z"]}},
        {"name": "u", "type": ["null", "long", "string"]}, {"name": "raw", "type": "bytes"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "tail", "type": {"type": "array", "items": "int"}},
    ]})  # fmt: skip
    record = {"b": True, "f": 1.5, "d": -2.25, "e": "z", "u": "s", "raw": b"\x00\x01", "ts": 1_700_000_000_123_456,
              "tail": [1, 2]}  # fmt: skip
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    body = out.getvalue()
    leading = frozenset({"b", "f", "d", "e", "u", "raw", "ts"})
    reader = PrefixReader.build(schema, leading)
    assert reader is not None
    full = fastavro.schemaless_reader(io.BytesIO(body), schema, None)
    assert isinstance(full, dict)
    assert reader.read(body, 0, "R") == {k: v for k, v in full.items() if k != "tail"}
    assert PrefixReader.build(schema, frozenset({"tail"})) is None  # an array: use fastavro
    assert PrefixReader.build(schema, frozenset({"nope"})) is None  # not in the writer: reader defaults apply
    with pytest.raises(MalformedEventError, match="enum index"):
        reader.read(body[:13] + b"\x0a" + body[14:], 0, "R")


def test_old_writer_is_read_with_the_new_reader_schema(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, root)
    v2 = json.loads((root / "feedback" / "v1.avsc").read_text())
    v2["trajstream.version"] = 2
    v2["fields"].append({"name": "channel", "type": "string", "default": "web", "doc": "new in v2"})
    (root / "feedback" / "v2.avsc").write_text(json.dumps(v2))

    old_catalog = SchemaCatalog.from_directory(SCHEMAS)
    new_codec = SingleObjectCodec(SchemaCatalog.from_directory(root))
    old_bytes = SingleObjectCodec(old_catalog).encode("feedback", sample_records()["feedback"])

    decoded = new_codec.decode(old_bytes)
    assert decoded.writer_version == 1
    assert decoded.record["channel"] == "web"
    assert decoded.record["comment"] == "good"
    new_bytes = new_codec.encode("feedback", {**sample_records()["feedback"], "channel": "app"})
    assert new_codec.decode(new_bytes).writer_version == 2
    # An old reader does not know v2's fingerprint: a typed error, not a crash.
    with pytest.raises(UnknownSchemaError):
        SingleObjectCodec(old_catalog).decode(new_bytes)


# --- Confluent wire format against a registry speaking the Confluent REST API -------------------
class _Registry(BaseHTTPRequestHandler):
    schemas: ClassVar[dict[int, str]] = {}
    subjects: ClassVar[dict[str, list[int]]] = {}

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
            return self._send(404, {"error_code": 404})
        text = body["schema"]
        sid = next((i for i, existing in self.schemas.items() if existing == text), len(self.schemas) + 1)
        self.schemas[sid] = text
        self.subjects.setdefault(parts[1], []).append(sid)
        self._send(200, {"id": sid})

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts[:2] == ["schemas", "ids"] and int(parts[2]) in self.schemas:
            return self._send(200, {"schema": self.schemas[int(parts[2])]})
        self._send(404, {"error_code": 40403, "message": "Schema not found"})


@pytest.fixture
def registry() -> Iterator[str]:
    _Registry.schemas, _Registry.subjects = {}, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_confluent_wire_format_round_trips(catalog: SchemaCatalog, registry: str) -> None:
    writer = ConfluentCodec(catalog, SchemaRegistryClient(registry))
    reader = ConfluentCodec(catalog, SchemaRegistryClient(registry))  # a separate process's cold caches
    for name, record in sample_records().items():
        data = writer.encode(name, record)
        assert data[0] == 0
        decoded = reader.decode(data)
        assert decoded.name == name and decoded.record == as_decoded(record)
        if name == "turn":
            assert reader.decode(data, fields={"turn": frozenset({"event_id"})}).record == {
                "event_id": record["event_id"]
            }
    assert set(_Registry.subjects) == {catalog.latest(n).full_name for n in sample_records()}

    with pytest.raises(UnknownSchemaError, match="schema id 999"):
        reader.decode(b"\x00" + (999).to_bytes(4, "big") + b"\x00")
    with pytest.raises(MalformedEventError, match="bad magic byte"):
        reader.decode(b"\xc3\x01" + b"\x00" * 12)
