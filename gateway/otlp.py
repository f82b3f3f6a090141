"""OTLP/HTTP traces: decode a request (protobuf or JSON), check each span, split the spans by trace.

The rules followed (opentelemetry-proto docs/specification.md, OTLP/HTTP):
- ``application/x-protobuf`` or ``application/json``; the response uses the request's encoding;
- JSON has hex ids, integer enums, int64 values that may be strings, and unknown fields are ignored;
- a request that cannot be decoded is a 400, never retried; spans refused one by one are counted in
  ``partial_success`` (a 200, never retried), and the rest are accepted.

Nothing is mapped here: the spans of one trace arrive across requests and gateway replicas, so the
trace stage (streams) puts them together, from the ``otlp.spans`` topic keyed by trace id.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

from trajstream import json_input
from trajstream.errors import TrajstreamError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class RequestError(TrajstreamError):
    """The request as a whole cannot be taken: the HTTP status and why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Rejected:
    trace_id: str
    span_id: str
    name: str
    reason: str
    data: bytes  # the span as protobuf, for its dead letter


@dataclass
class SplitRequest:
    traces: dict[str, TracesData] = field(default_factory=dict)  # trace id (hex) -> its spans
    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def encoding_of(content_type: str | None) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if kind == JSON:
        return JSON
    raise RequestError(415, f"unsupported content type {kind or '(none)'!r}: send {PROTOBUF} or {JSON}")


def decode(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    if encoding == PROTOBUF:
        try:
            parsed: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(body)
            return parsed
        except DecodeError as exc:
            raise RequestError(400, f"not an OTLP ExportTraceServiceRequest protobuf: {exc}") from exc
    try:
        doc = json_input.loads(body)
    except json_input.JSONInputError as exc:
        raise RequestError(400, f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RequestError(400, "an OTLP/JSON request is an object with resourceSpans")
    for other, signal in (("resourceLogs", "logs"), ("resourceMetrics", "metrics")):
        if other in doc and "resourceSpans" not in doc:
            raise RequestError(400, f"this is an OTLP {signal} payload: /v1/traces takes traces (resourceSpans)")
    _ids_to_base64(doc)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise RequestError(400, f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def _ids_to_base64(doc: dict[str, Any]) -> None:
    """OTLP/JSON writes ids in hex where protobuf's JSON mapping expects base64; an id that is not hex is
    emptied, so that its span is refused on its own instead of failing the request. A level of the wrong
    type is left as it is: ParseDict refuses it with a ParseError that names the field (a 400)."""
    for rs in _objects(doc, "resourceSpans"):
        for ss in _objects(rs, "scopeSpans"):
            for span in _objects(ss, "spans"):
                for key in _ID_FIELDS:
                    span[key] = _hex_to_base64(span.get(key))
                for link in _objects(span, "links"):
                    for key in ("traceId", "spanId"):
                        link[key] = _hex_to_base64(link.get(key))


def _objects(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects in the list ``parent[key]``; nothing when it is not a list."""
    children = parent.get(key)
    return [c for c in children if isinstance(c, dict)] if isinstance(children, list) else []


def _hex_to_base64(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return ""


def _valid_id(raw: bytes, size: int) -> bool:
    return len(raw) == size and any(raw)


def split(request: ExportTraceServiceRequest, max_span_bytes: int) -> SplitRequest:
    """The request's spans grouped by trace, each group a TracesData keeping its resource and scope."""
    out = SplitRequest()
    groups: dict[str, dict[tuple[int, int], tuple[ResourceSpans, ScopeSpans, list[Span]]]] = defaultdict(dict)
    for r_index, rs in enumerate(request.resource_spans):
        for s_index, ss in enumerate(rs.scope_spans):
            for span in ss.spans:
                reason = _refusal(span, max_span_bytes)
                if reason:
                    out.rejected.append(Rejected(_hex(span.trace_id), _hex(span.span_id), span.name, reason,
                                                 span.SerializeToString()))  # fmt: skip
                    continue
                slot = groups[_hex(span.trace_id)].setdefault((r_index, s_index), (rs, ss, []))
                slot[2].append(span)
                out.accepted += 1
    for trace_id, slots in groups.items():
        data = TracesData()
        for rs, ss, spans in slots.values():
            out_rs = data.resource_spans.add(resource=rs.resource, schema_url=rs.schema_url)
            out_rs.scope_spans.add(scope=ss.scope, schema_url=ss.schema_url, spans=spans)
        out.traces[trace_id] = data
    return out


def _refusal(span: Span, max_span_bytes: int) -> str:
    if not _valid_id(span.trace_id, 16):
        return "the span has no valid trace id (16 bytes, not all zero)"
    if not _valid_id(span.span_id, 8):
        return "the span has no valid span id (8 bytes, not all zero)"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "the span's parent span id is not 8 bytes"
    size = span.ByteSize()
    if size > max_span_bytes:
        return f"the span is {size} bytes, over the limit of {max_span_bytes} (TRAJSTREAM_MAX_EVENT_BYTES)"
    return ""


def _hex(raw: bytes) -> str:
    return binascii.hexlify(raw).decode()


def response(encoding: str, rejected: list[Rejected]) -> bytes:
    """An ExportTraceServiceResponse, with partial_success when spans were refused."""
    message = ExportTraceServiceResponse()
    if rejected:
        message.partial_success.rejected_spans = len(rejected)
        reasons = sorted({r.reason for r in rejected})
        message.partial_success.error_message = f"{len(rejected)} span(s) refused: " + "; ".join(reasons)
    if encoding == PROTOBUF:
        return bytes(message.SerializeToString())
    return str(json_format.MessageToJson(message, indent=None)).encode()


def status(encoding: str, code: int, message: str) -> bytes:
    """A google.rpc.Status body (what OTLP/HTTP puts in a 4xx/5xx): code and message."""
    if encoding == PROTOBUF:
        # Status{int32 code = 1; string message = 2}: written by hand, to need no googleapis protos.
        text = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}).encode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _text_attribute(attributes: Any, *names: str) -> str | None:
    for name in names:
        for kv in attributes:
            if kv.key == name and kv.value.WhichOneof("value") == "string_value":
                return str(kv.value.string_value)
    return None


def environment_of(value: str | None) -> str | None:
    """deployment.environment(.name) as the trajectory's environment: prod, staging or dev."""
    if value is None:
        return None
    lowered = value.lower()
    return "prod" if lowered in ("prod", "production") else "staging" if lowered == "staging" else "dev"


def scopes(request: ExportTraceServiceRequest) -> list[tuple[str | None, str | None]]:
    """(agent, environment) each span writes for, as the key check sees them: the span's gen_ai.agent.id or
    gen_ai.agent.name, else its service.name; the resource's deployment environment."""
    out: list[tuple[str | None, str | None]] = []
    for rs in request.resource_spans:
        service = _text_attribute(rs.resource.attributes, "service.name")
        if service is not None and service.startswith("unknown_service"):
            service = None  # the SDK's default name says nothing about the agent
        environment = environment_of(
            _text_attribute(rs.resource.attributes, "deployment.environment.name", "deployment.environment")
        )
        for ss in rs.scope_spans:
            for span in ss.spans:
                agent = _text_attribute(span.attributes, "gen_ai.agent.id", "gen_ai.agent.name") or service
                out.append((agent, environment))
    return out
