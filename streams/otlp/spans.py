"""OTLP protobuf ``TracesData`` to the plain ``Span`` objects the mapping reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from trajstream.errors import SpanError

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    events: tuple[SpanEvent, ...]
    resource: dict[str, Any]
    scope_name: str
    scope_version: str


def attribute_value(value: common_pb2.AnyValue) -> Any:
    """An AnyValue as Python: kvlist -> dict, array -> list (recursively), bytes stay bytes, unset -> None."""
    which = value.WhichOneof("value")
    if which == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    if which == "array_value":
        return [attribute_value(v) for v in value.array_value.values]
    if which is None:
        return None
    return getattr(value, which)


def attributes_of(pairs: Any) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict; a repeated key keeps its last value, as the SDKs do."""
    return {kv.key: attribute_value(kv.value) for kv in pairs}


def _span_id(raw: bytes) -> str | None:
    """A non-zero 8-byte id as hex; None for an absent (empty or all-zero) one."""
    return raw.hex() if raw and any(raw) else None


def _span(span: trace_pb2.Span, resource: dict[str, Any], scope: common_pb2.InstrumentationScope) -> Span:
    trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
    if not (len(span.trace_id) == 16 and any(span.trace_id) and len(span.span_id) == 8 and any(span.span_id)):
        raise SpanError(f"span {span.name!r} has no valid ids (trace_id={trace_id!r}, span_id={span_id!r})")
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_span_id(span.parent_span_id),
        name=span.name,
        kind=int(span.kind),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=int(span.status.code),
        status_message=span.status.message,
        attributes=attributes_of(span.attributes),
        events=tuple(SpanEvent(e.name, e.time_unix_nano, attributes_of(e.attributes)) for e in span.events),
        resource=resource,
        scope_name=scope.name,
        scope_version=scope.version,
    )


def spans_of(data: trace_pb2.TracesData) -> list[Span]:
    """Every span of ``data``, flattened out of its resource and scope groups, in the order they came."""
    out: list[Span] = []
    for resource_spans in data.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            out.extend(_span(s, resource, scope_spans.scope) for s in scope_spans.spans)
    return out
