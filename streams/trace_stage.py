"""The trace stage: put the OTLP spans of each trace together and publish its trajectories as events.

The gateway writes each request's spans to ``otlp.spans`` keyed by trace id, so every span of a trace
reaches this one agent, whichever request or gateway replica brought it. The table keeps a trace's
spans; ``trajstream.streams.otlp.mapping`` says which trajectories they make and whether each one's
boundary span (its agent or root span) has arrived. A trajectory is published ``TRAJSTREAM_OTLP_GRACE_S``
after its boundary span arrived, to wait for children exported late by other services; a trace idle
for ``TRAJSTREAM_ASSEMBLY_INACTIVITY_TIMEOUT_S`` is published whatever it holds. The events go to the
``events`` topic, where assembly takes over; their ids are derived from the spans, so a retried export
or a replayed batch makes the same events, which assembly drops as duplicates.

A span that arrives after its trajectory was published, or that cannot be mapped, is dead-lettered
with the reason: nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from trajstream.errors import CodecError, TrajstreamError
from trajstream.settings import Settings
from trajstream.sink import Output, dead_letter
from trajstream.streams.assembly import Input, Result
from trajstream.streams.otlp.mapping import MappedTrajectory, map_trace
from trajstream.streams.otlp.spans import spans_of
from trajstream.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, OTLP_SPANS_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.schemas import OTLP_SPANS, OTLP_TRACE_STATE

log = logging.getLogger(__name__)
STAGE = "otlp"
State = dict[str, Any]


@dataclass(frozen=True)
class Pending:
    """What the sweep needs of a trace: when its next publication is due, and its last activity."""

    flush_due_ms: int | None
    last_seen_ms: int
    holds_spans: bool


def _one_span_each(data: TracesData) -> dict[str, bytes]:
    """Each span of ``data`` as a TracesData of its own (with its resource and scope), by span id."""
    out: dict[str, bytes] = {}
    for rs in data.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                single = TracesData()
                out_rs = single.resource_spans.add(resource=rs.resource, schema_url=rs.schema_url)
                out_rs.scope_spans.add(scope=ss.scope, schema_url=ss.schema_url, spans=[span])
                out[span.span_id.hex()] = single.SerializeToString()
    return out


class TraceStage:
    def __init__(self, settings: Settings, codec: EventCodec):
        self.settings = settings
        self.codec = codec
        self.events_topic = settings.topic(EVENTS_TOPIC)
        self.dlq_topic = settings.topic(DEAD_LETTER_TOPIC)
        self.spans_topic = settings.topic(OTLP_SPANS_TOPIC)
        self.grace_ms = int(settings.otlp_grace_s * 1000)
        self.idle_ms = int(settings.assembly_inactivity_timeout_s * 1000)

    # --- state ---------------------------------------------------------------------------------
    def load(self, data: bytes | State | None, trace_id: str, now_ms: int) -> State:
        if data is None:
            return {"trace_id": trace_id, "first_seen_ms": now_ms, "last_seen_ms": now_ms, "spans": [],
                    "published": [], "flush_due_ms": None}  # fmt: skip
        if isinstance(data, dict):
            return data
        return self.codec.decode(data, expect=OTLP_TRACE_STATE).record

    def dump(self, state: State) -> bytes:
        return self.codec.encode(OTLP_TRACE_STATE, state)

    def pending(self, state: State) -> Pending:
        return Pending(state["flush_due_ms"], state["last_seen_ms"], bool(state["spans"]))

    # --- entry point ---------------------------------------------------------------------------
    def handle(self, record: Input, state_data: bytes | State | None) -> Result:
        try:
            event = self.codec.decode(record.value, expect=OTLP_SPANS)
        except CodecError as exc:
            return self._reject(record, str(exc), type(exc).__name__)
        body = event.record
        trace_id = body["trace_id"]
        if record.key is None or record.key.decode(errors="replace") != trace_id:
            return self._reject(record, f"Kafka key {record.key!r} is not the trace id {trace_id!r}", "KeyMismatch")
        state = self.load(state_data, trace_id, record.timestamp_ms)
        if body["kind"] == "flush":
            return self._flush(state, record.timestamp_ms, idle=body["idle"], record=record)
        try:
            incoming = _one_span_each(TracesData.FromString(body["traces_data"]))
        except DecodeError as exc:
            return self._reject(record, f"traces_data is not an OTLP TracesData: {exc}", "MalformedSpans")
        return self._add(state, incoming, record)

    def _add(self, state: State, incoming: dict[str, bytes], record: Input) -> Result:
        held = self._held(state)
        new = {span_id: data for span_id, data in incoming.items() if span_id not in held}
        if not new:
            return Result(None)  # a retried export: every span is already here
        held_bytes = sum(len(data) for data in state["spans"])
        new_bytes = sum(len(data) for data in new.values())
        if held_bytes + new_bytes > self.settings.limits.max_trajectory_bytes:
            # The table entry must fit a changelog record: a trace past the trajectory limit takes no more.
            reason = (f"the trace would hold {held_bytes + new_bytes} bytes of spans, over "
                      f"{self.settings.limits.max_trajectory_bytes} (TRAJSTREAM_ASSEMBLY_MAX_BYTES)")  # fmt: skip
            return self._reject(record, reason, "TraceTooLarge")
        before = {tid: _event_ids(t) for tid, t in self._mapped(list(held.values()), record).items()
                  if tid in state["published"]} if state["published"] else {}  # fmt: skip
        spans = [*state["spans"], *new.values()]
        try:
            after = self._mapped(spans, record)
        except TrajstreamError as exc:
            return self._reject(record, f"the trace's spans cannot be mapped: {exc}", type(exc).__name__)
        changed = [tid for tid in state["published"] if tid in after and _event_ids(after[tid]) != before.get(tid)]
        if changed:
            reason = (f"span(s) arrived after trajectory {changed[0]} was published from this trace "
                      f"(TRAJSTREAM_OTLP_GRACE_S={self.settings.otlp_grace_s})")  # fmt: skip
            return self._reject(record, reason, "LateSpan", changed[0])
        state["spans"] = spans
        state["last_seen_ms"] = max(state["last_seen_ms"], record.timestamp_ms)
        ready = [t for t in after.values() if t.complete and t.trajectory_id not in state["published"]]
        if ready and state["flush_due_ms"] is None:
            state["flush_due_ms"] = record.timestamp_ms + self.grace_ms
        if ready and self.grace_ms == 0:
            return self._flush(state, record.timestamp_ms, idle=False, record=record)
        return Result(state)

    def _flush(self, state: State, now_ms: int, *, idle: bool, record: Input) -> Result:
        if not state["spans"]:
            return Result(None)
        due = state["flush_due_ms"]
        if not idle and (due is None or due > now_ms):
            return Result(None)  # a flush asked for early, or already done
        try:
            # Idle: a trajectory whose boundary span never came is closed as abandoned, at this time.
            mapped = self._mapped(state["spans"], record, now_ms if idle else None)
        except TrajstreamError as exc:
            return self._reject(record, f"the trace's spans cannot be mapped: {exc}", type(exc).__name__)
        outputs: list[Output] = []
        for trajectory in mapped.values():
            if trajectory.trajectory_id in state["published"] or not (trajectory.complete or idle):
                continue
            outputs += self._publish(trajectory, record)
            state["published"].append(trajectory.trajectory_id)
        remaining = [t for t in mapped.values() if t.trajectory_id not in state["published"]]
        state["flush_due_ms"] = None
        if any(t.complete for t in remaining):
            state["flush_due_ms"] = now_ms + self.grace_ms
        if idle:
            # Everything is out: keep only the published ids, which turn a straggler into a LateSpan letter.
            state["spans"] = []
        return Result(state, outputs)

    def _publish(self, trajectory: MappedTrajectory, record: Input) -> list[Output]:
        key = trajectory.trajectory_id.encode()
        outputs = []
        for name, body in trajectory.events:
            try:
                outputs.append(Output(self.events_topic, key, self.codec.encode(name, body)))
            except CodecError as exc:
                # One event that does not fit would leave a trajectory with a hole: none of it goes out.
                reason = f"trajectory {trajectory.trajectory_id}: its {name} does not fit the schema: {exc}"
                return [self._letter(record, reason, type(exc).__name__, trajectory.trajectory_id)]
        for span_id, reason in trajectory.skipped:
            outputs.append(self._letter(record, f"span {span_id} not mapped: {reason}", "SpanNotMapped",
                                        trajectory.trajectory_id))  # fmt: skip
        return outputs

    def _mapped(self, spans: list[bytes], record: Input, now_ms: int | None = None) -> dict[str, MappedTrajectory]:
        decoded = [s for data in spans for s in spans_of(TracesData.FromString(data))]
        return {t.trajectory_id: t for t in map_trace(decoded, now_ms=now_ms)}

    def _held(self, state: State) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for data in state["spans"]:
            out.update({span_id: data for span_id in _one_span_each(TracesData.FromString(data))})
        return out

    # --- the sweep -----------------------------------------------------------------------------
    def flush_message(self, trace_id: str, now_ms: int, *, idle: bool) -> Output:
        record = {"kind": "flush", "trace_id": trace_id, "received_at": now_ms, "key_id": None, "traces_data": b"",
                  "idle": idle}  # fmt: skip
        return Output(self.spans_topic, trace_id.encode(), self.codec.encode(OTLP_SPANS, record))

    # --- rejects -------------------------------------------------------------------------------
    def _letter(self, record: Input, reason: str, error_type: str, trajectory_id: str | None = None) -> Output:
        return dead_letter(self.codec, self.dlq_topic, STAGE, record, reason, error_type, trajectory_id)

    def _reject(self, record: Input, reason: str, error_type: str, trajectory_id: str | None = None) -> Result:
        log.warning("otlp: %s (%s:%d@%d)", reason, record.topic, record.partition, record.offset)
        return Result(None, [self._letter(record, reason, error_type, trajectory_id)])


def _event_ids(trajectory: MappedTrajectory) -> list[str]:
    return [body["event_id"] for _, body in trajectory.events]
