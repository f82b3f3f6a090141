"""Hand-built OTLP spans for the mapping tests: Python values become AnyValues (dict -> kvlist, list ->
array), so the tests go through ``spans_of`` as the gateway's bytes would."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status, TracesData
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from trajstream.streams.otlp.spans import Span, spans_of

T0 = 1_760_000_000_000_000_000  # ns
MS = 1_000_000


def any_value(value: Any) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    return AnyValue(string_value=str(value))


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


@dataclass
class Trace:
    """Spans of one trace, ids from names: ``add("agent", None, ...)`` then ``add("chat1", "agent", ...)``."""

    trace_id: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    spans: list[PbSpan] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=lambda: {"service.name": "svc"})

    @staticmethod
    def sid(name: str) -> bytes:
        return uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes[:8]

    def add(
        self,
        name: str,
        parent: str | None,
        attributes: dict[str, Any],
        *,
        start_ms: int,
        end_ms: int,
        span_name: str | None = None,
        events: Iterable[tuple[str, dict[str, Any]]] = (),
        error: str | None = None,
    ) -> Trace:
        self.spans.append(
            PbSpan(
                trace_id=self.trace_id,
                span_id=self.sid(name),
                parent_span_id=self.sid(parent) if parent else b"",
                name=span_name or name,
                kind=PbSpan.SPAN_KIND_INTERNAL,
                start_time_unix_nano=T0 + start_ms * MS,
                end_time_unix_nano=T0 + end_ms * MS,
                attributes=key_values(attributes),
                events=[
                    PbSpan.Event(name=n, time_unix_nano=T0 + start_ms * MS, attributes=key_values(a)) for n, a in events
                ],
                status=Status(code=Status.STATUS_CODE_ERROR, message=error) if error is not None else Status(),
            )
        )
        return self

    def data(self) -> TracesData:
        rs = ResourceSpans(scope_spans=[ScopeSpans(spans=self.spans)])
        rs.resource.attributes.extend(key_values(self.resource))
        rs.scope_spans[0].scope.name, rs.scope_spans[0].scope.version = "test-scope", "0.1"
        return TracesData(resource_spans=[rs])

    def read(self) -> list[Span]:
        return spans_of(self.data())

    def hex(self, name: str) -> str:
        return self.sid(name).hex()


def assemble(codec: Any, mapped: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Encode every mapped event with the codec and fold them through the real assembly, in order; the last
    assembled record of each trajectory. Nothing may be dead-lettered."""
    from trajstream.settings import Settings
    from trajstream.streams.assembly import Assembler, Input
    from trajstream.topics import ASSEMBLED, ASSEMBLY_CONTROL_TOPIC, DEAD_LETTER_TOPIC, EVENTS_TOPIC

    settings = Settings()
    assembler = Assembler(settings, codec)
    states: dict[bytes, Any] = {}
    assembled: dict[str, dict[str, Any]] = {}
    queue = [
        (settings.topic(EVENTS_TOPIC), record["trajectory_id"].encode(), codec.encode(name, record))
        for trajectory in mapped
        for name, record in trajectory.events
    ]
    offset = 0
    while queue:
        topic, key, value = queue.pop(0)
        offset += 1
        result = assembler.handle(Input(topic, 0, offset, key, value, 0), states.get(key))
        if result.state is not None:
            states[key] = result.state
        for out in result.outputs:
            assert out.topic != settings.topic(DEAD_LETTER_TOPIC), codec.decode(out.value).record["reason"]
            if out.topic == settings.topic(ASSEMBLY_CONTROL_TOPIC):  # a child told its parent: assembly's input
                queue.append((out.topic, out.key or b"", out.value))
            elif out.topic == settings.topic(ASSEMBLED):
                body = codec.decode(out.value).record
                assembled[body["trajectory_id"]] = body
    return assembled
