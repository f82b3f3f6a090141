"""The trace stage without Kafka: spans arriving over several records make one publication after the grace;
a retried export changes nothing; a straggler after publication is dead-lettered; an idle trace whose
boundary span never came is published as abandoned."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.support.otlp_spans import Trace
from trajstream.settings import Settings
from trajstream.streams.assembly import Input, Result
from trajstream.streams.trace_stage import TraceStage
from trajstream.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, OTLP_SPANS_TOPIC
from trajstream_sdk.codec import SingleObjectCodec

SETTINGS = Settings(otlp_grace_s=2.0)
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}


def _chat(text: str) -> dict[str, Any]:
    said = [{"role": "user", "parts": [{"type": "text", "content": text}]}]
    answered = [{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}]
    return {**CHAT, "gen_ai.input.messages": said, "gen_ai.output.messages": answered}


class Stage:
    """The stage and its one trace's table entry, fed records as the Faust agent would."""

    def __init__(self, codec: SingleObjectCodec):
        self.codec = codec
        self.stage = TraceStage(SETTINGS, codec)
        self.state: Any = None
        self.offset = 0

    def _feed(self, trace_id: str, body: dict[str, Any], at_ms: int) -> Result:
        self.offset += 1
        value = self.codec.encode("otlp_spans", body)
        result = self.stage.handle(Input(SETTINGS.topic(OTLP_SPANS_TOPIC), 0, self.offset, trace_id.encode(), value,
                                         at_ms), self.state)  # fmt: skip
        if result.state is not None:
            self.state = self.stage.dump(result.state)
        return result

    def spans(self, trace: Trace, names: list[str], at_ms: int) -> Result:
        data = trace.data()
        keep = {trace.sid(n) for n in names}
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                kept = [s for s in ss.spans if s.span_id in keep]
                del ss.spans[:]
                ss.spans.extend(kept)
        body = {"kind": "spans", "trace_id": trace.trace_id.hex(), "received_at": at_ms, "key_id": None,
                "traces_data": TracesData.SerializeToString(data), "idle": False}  # fmt: skip
        return self._feed(trace.trace_id.hex(), body, at_ms)

    def flush(self, trace: Trace, at_ms: int, idle: bool = False) -> Result:
        out = self.stage.flush_message(trace.trace_id.hex(), at_ms, idle=idle)
        return self._feed(trace.trace_id.hex(), self.codec.decode(out.value).record, at_ms)


def _events(codec: SingleObjectCodec, result: Result) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, e.record) for e in (codec.decode(o.value) for o in result.outputs
                                        if o.topic == SETTINGS.topic(EVENTS_TOPIC))]  # fmt: skip


def _letters(codec: SingleObjectCodec, result: Result) -> list[dict[str, Any]]:
    return [codec.decode(o.value).record for o in result.outputs if o.topic == SETTINGS.topic(DEAD_LETTER_TOPIC)]


def _trace() -> Trace:
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bot"}
    return (Trace().add("agent", None, agent, start_ms=0, end_ms=100)
            .add("chat1", "agent", _chat("first"), start_ms=10, end_ms=20)
            .add("chat2", "agent", _chat("second"), start_ms=30, end_ms=40))  # fmt: skip


def test_spans_over_several_records_are_published_once_after_the_grace(codec: SingleObjectCodec) -> None:
    trace, stage = _trace(), Stage(codec)
    assert stage.spans(trace, ["chat1"], 1_000).outputs == []
    assert stage.spans(trace, ["agent"], 1_500).outputs == []  # the boundary arrived: wait for stragglers
    assert stage.spans(trace, ["chat2"], 2_000).outputs == []  # a child that came late, within the grace
    assert stage.stage.pending(stage.stage.load(stage.state, "", 0)).flush_due_ms == 3_500
    assert stage.flush(trace, 3_000).outputs == []  # too early: nothing
    published = _events(codec, stage.flush(trace, 3_600))
    assert [name for name, _ in published] == ["trajectory_start", "turn", "turn", "trajectory_end"]
    assert published[2][1]["messages"][0]["content"] == {"text": "second"}  # decoded: plain dicts
    assert _events(codec, stage.flush(trace, 9_000)) == []  # published once


def test_a_retried_export_changes_nothing(codec: SingleObjectCodec) -> None:
    trace, stage = _trace(), Stage(codec)
    stage.spans(trace, ["chat1", "chat2", "agent"], 1_000)
    before = stage.state
    retried = stage.spans(trace, ["chat1", "chat2", "agent"], 1_200)
    assert retried.state is None and retried.outputs == [] and stage.state == before


def test_a_span_after_publication_is_dead_lettered_with_the_reason(codec: SingleObjectCodec) -> None:
    trace, stage = _trace(), Stage(codec)
    trace.add("chat3", "agent", _chat("third"), start_ms=50, end_ms=60)
    stage.spans(trace, ["chat1", "chat2", "agent"], 1_000)
    assert len(_events(codec, stage.flush(trace, 3_001))) == 4
    late = stage.spans(trace, ["chat3"], 10_000)
    (letter,) = _letters(codec, late)
    assert letter["error_type"] == "LateSpan" and "after trajectory" in letter["reason"]
    assert _events(codec, late) == []


def test_an_idle_trace_without_its_boundary_span_is_published_as_abandoned(codec: SingleObjectCodec) -> None:
    trace, stage = _trace(), Stage(codec)
    stage.spans(trace, ["chat1", "chat2"], 1_000)  # the agent span never comes
    assert stage.flush(trace, 5_000).outputs == []  # not due: no boundary span, so no grace started
    published = _events(codec, stage.flush(trace, 400_000, idle=True))
    assert [name for name, _ in published] == ["trajectory_start", "turn", "turn", "trajectory_end"]
    assert published[-1][1]["outcome"] == "abandoned"
    assert stage.stage.load(stage.state, "", 0)["spans"] == []  # only the published ids are kept


def test_records_that_are_not_spans_are_dead_lettered(codec: SingleObjectCodec) -> None:
    stage = Stage(codec)
    bad = stage.stage.handle(Input(SETTINGS.topic(OTLP_SPANS_TOPIC), 0, 1, b"k", b"not avro", 0), None)
    assert bad.state is None and _letters(codec, bad)[0]["stage"] == "otlp"
    body = {"kind": "spans", "trace_id": "ab" * 16, "received_at": 0, "key_id": None, "traces_data": b"\xff\xff",
            "idle": False}  # fmt: skip
    broken = stage.stage.handle(Input(SETTINGS.topic(OTLP_SPANS_TOPIC), 0, 2, b"ab" * 16,
                                      codec.encode("otlp_spans", body), 0), None)  # fmt: skip
    assert _letters(codec, broken)[0]["error_type"] == "MalformedSpans"


def test_a_trace_past_the_trajectory_limit_takes_no_more_spans(codec: SingleObjectCodec) -> None:
    trace, stage = _trace(), Stage(codec)
    stage.stage = TraceStage(Settings(max_event_bytes=64 * 1024, assembly_max_bytes=64 * 1024), codec)
    trace.add("big", "agent", _chat("x" * 40_000), start_ms=50, end_ms=60)
    trace.add("bigger", "agent", _chat("y" * 40_000), start_ms=61, end_ms=70)
    assert _letters(codec, stage.spans(trace, ["big"], 1_000)) == []
    (letter,) = _letters(codec, stage.spans(trace, ["bigger"], 1_100))
    assert letter["error_type"] == "TraceTooLarge"
    assert len(stage.stage.load(stage.state, "", 0)["spans"]) == 1  # the state kept what it had
