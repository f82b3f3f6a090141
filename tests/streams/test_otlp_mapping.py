"""map_trace on hand-built spans: each convention's names, the boundary rules, determinism, the usage rule,
partial traces and tool statuses. Every mapped trajectory is encoded with the codec and assembled."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, TracesData
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from tests.support.otlp_spans import Trace, any_value, assemble
from trajstream.errors import SpanError, TrajstreamError
from trajstream.streams.otlp.mapping import MappedTrajectory, map_trace
from trajstream.streams.otlp.spans import attribute_value, spans_of

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4"}
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}


def text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


def turns(t: MappedTrajectory) -> list[dict[str, Any]]:
    return [record for name, record in t.events if name == "turn"]


def event(t: MappedTrajectory, name: str) -> dict[str, Any]:
    return next(record for n, record in t.events if n == name)


def messages(turn: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m["role"], m["content"][0].rsplit(".", 1)[1], m["content"][1]) for m in turn["messages"]]


def weather_trace(**agent_attributes: Any) -> Trace:
    """An agent with two chat calls and a tool run between them, content as JSON strings."""
    first_in = [text("user", "Weather in Paris?")]
    first_out = [
        {
            "role": "assistant",
            "finish_reason": "tool_call",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"location": "Paris"}}],
        }
    ]
    second_in = [*first_in, *first_out, {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": "call_1", "response": "rainy, 57°F"}]}]  # fmt: skip
    return (
        Trace()
        .add("agent", None, {**AGENT, **agent_attributes}, start_ms=0, end_ms=100, span_name="invoke_agent helper")
        .add("chat1", "agent", {**CHAT, "gen_ai.input.messages": json.dumps(first_in),
                                "gen_ai.output.messages": json.dumps(first_out)}, start_ms=1, end_ms=10)
        .add("tool", "agent", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                               "gen_ai.tool.call.id": "call_1"}, start_ms=11, end_ms=12)
        .add("chat2", "agent", {**CHAT, "gen_ai.input.messages": json.dumps(second_in),
                                "gen_ai.output.messages": json.dumps([text("assistant", "It is rainy.")])},
             start_ms=13, end_ms=20)
    )  # fmt: skip


def test_attribute_value_decodes_every_anyvalue_recursively() -> None:
    value = any_value({"a": [1, 2.5, True, "s", b"\x00\x01"], "b": {"c": {"d": -(2**62)}}})
    assert attribute_value(value) == {"a": [1, 2.5, True, "s", b"\x00\x01"], "b": {"c": {"d": -(2**62)}}}
    assert attribute_value(AnyValue()) is None


def test_spans_without_valid_ids_are_refused_by_name() -> None:
    data = TracesData(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
        PbSpan(trace_id=b"\x00" * 16, span_id=b"\x01" * 8, name="chat nowhere")])])])  # fmt: skip
    with pytest.raises(SpanError, match="chat nowhere") as raised:
        spans_of(data)
    assert isinstance(raised.value, TrajstreamError)


def test_current_conventions_map_to_turns_that_assemble(codec: Any) -> None:
    trace = weather_trace(**{"gen_ai.conversation.id": "conv-1", "trajstream.reward": 0.75, "user.id": "u-9"})
    (t,) = map_trace(trace.read())
    assert t.complete and t.boundary_span_id == trace.hex("agent") and not t.skipped
    first, second = turns(t)
    assert messages(first) == [
        ("user", "TextContent", {"text": "Weather in Paris?"}),
        ("assistant", "ToolCall", {"name": "get_weather", "call_id": "call_1", "arguments": '{"location":"Paris"}'}),
    ]
    # The second call's input repeats the first turn: only the tool's answer is new.
    assert messages(second) == [
        ("tool", "ToolResponse", {"name": "get_weather", "call_id": "call_1", "status": "success",
                                  "result": json.dumps("rainy, 57°F")}),
        ("assistant", "TextContent", {"text": "It is rainy."}),
    ]  # fmt: skip
    assert first["model"]["finish_reason"] == "tool_call" and first["parent_span_id"] == trace.hex("agent")
    start, end = event(t, "trajectory_start"), event(t, "trajectory_end")
    assert (start["task_description"], start["agent_id"], start["conversation_id"]) == ("Weather in Paris?", "helper",
                                                                                         "conv-1")  # fmt: skip
    assert start["context"]["user"]["user_id"] == "u-9"
    assert (end["outcome"], end["final_reward"], end["turn_count"]) == ("success", 0.75, 2)
    assembled = assemble(codec, [t])[t.trajectory_id]
    assert assembled["reason"] == "ended" and len(assembled["turns"]) == 2 and assembled["final_reward"] == 0.75


def test_a_rewritten_conversation_sends_the_whole_input() -> None:
    trace = weather_trace()
    data = trace.data()
    second = data.resource_spans[0].scope_spans[0].spans[3]
    for kv in second.attributes:
        if kv.key == "gen_ai.input.messages":
            kv.value.string_value = json.dumps([text("user", "Summary so far: rainy."), text("user", "Thanks?")])
    (t,) = map_trace(spans_of(data))
    assert [m[2]["text"] for m in messages(turns(t)[1])] == ["Summary so far: rainy.", "Thanks?", "It is rainy."]


def test_structured_content_kvlists_reasoning_blobs_and_result(codec: Any) -> None:
    """Content as AnyValue arrays of kvlists, not JSON strings; roles in other spellings; int64 as strings."""
    inputs = [
        {"role": "developer", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "Human", "parts": [{"type": "text", "content": "Look at this"},
                                    {"type": "blob", "modality": "image", "mime_type": "image/png",
                                     "content": b"\x89PNG-bytes"}]},
        {"role": "AI", "parts": [{"type": "tool_call", "id": "c1", "name": "zoom", "arguments": {"x": 2}}]},
        {"role": "function", "parts": [{"type": "tool_call_response", "id": "c1", "result": {"ok": True}}]},
    ]  # fmt: skip
    outputs = [{"role": "model", "finish_reason": "stop", "parts": [
        {"type": "reasoning", "content": "The image is a chart."}, {"type": "text", "content": "A chart."},
        {"type": "uri", "modality": "image", "uri": "https://example.com/x.png"}]}]  # fmt: skip
    attributes = {**CHAT, "gen_ai.input.messages": inputs, "gen_ai.output.messages": outputs,
                  "gen_ai.usage.input_tokens": "97", "gen_ai.usage.output_tokens": "52"}  # fmt: skip
    (t,) = map_trace(Trace().add("chat", None, attributes, start_ms=0, end_ms=5).read())
    (turn,) = turns(t)
    got = messages(turn)
    assert [(role, kind) for role, kind, _ in got] == [
        ("system", "TextContent"), ("user", "TextContent"), ("user", "StructuredContent"),
        ("assistant", "ToolCall"), ("tool", "ToolResponse"), ("assistant", "TextContent"),
        ("assistant", "StructuredContent"),
    ]  # fmt: skip
    assert json.loads(got[2][2]["data"]) == {"type": "blob", "modality": "image", "mime_type": "image/png"}
    assert got[4][2]["name"] == "zoom" and json.loads(got[4][2]["result"]) == {"ok": True}
    assert turn["messages"][5]["reasoning"] == "The image is a chart."
    assert (turn["model"]["input_tokens"], turn["model"]["output_tokens"]) == (97, 52)
    assert event(t, "trajectory_start")["system_message"] == "Be brief."
    assert assemble(codec, [t])[t.trajectory_id]["reason"] == "ended"


def test_operation_details_event_and_system_instructions() -> None:
    details = {"gen_ai.input.messages": json.dumps([text("user", "hi")]),
               "gen_ai.output.messages": json.dumps([text("assistant", "hello")]),
               "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You greet."}])}  # fmt: skip
    trace = Trace().add("chat", None, CHAT, start_ms=0, end_ms=1,
                        events=[("gen_ai.client.inference.operation.details", details)])  # fmt: skip
    (t,) = map_trace(trace.read())
    assert [m[2]["text"] for m in messages(turns(t)[0])] == ["hi", "hello"]
    assert event(t, "trajectory_start")["system_message"] == "You greet."


def test_deprecated_event_conventions() -> None:
    calls = json.dumps([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}])
    trace = Trace().add("chat", None, CHAT, start_ms=0, end_ms=1, events=[
        ("gen_ai.system.message", {"content": "sys"}),
        ("gen_ai.user.message", {"content": "question"}),
        ("gen_ai.assistant.message", {"tool_calls": calls}),
        ("gen_ai.tool.message", {"content": "42", "id": "c1"}),
        ("gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": {"content": "answer"}}),
    ])  # fmt: skip
    (t,) = map_trace(trace.read())
    (turn,) = turns(t)
    assert [(r, k) for r, k, _ in messages(turn)] == [("system", "TextContent"), ("user", "TextContent"),
        ("assistant", "ToolCall"), ("tool", "ToolResponse"), ("assistant", "TextContent")]  # fmt: skip
    assert messages(turn)[3][2]["name"] == "f" and turn["model"]["finish_reason"] == "stop"


def test_flattened_prompt_and_completion_attributes() -> None:
    """Traceloop's legacy attributes (llm.request.type=chat, gen_ai.prompt.N.*, gen_ai.completion.N.*)."""
    attributes = {
        "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Add 2 and 3",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "c9", "gen_ai.completion.0.tool_calls.0.name": "add",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"a": 2, "b": 3}',
        "gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": "4",
    }  # fmt: skip
    (t,) = map_trace(Trace().add("openai.chat", None, attributes, start_ms=0, end_ms=1).read())
    (turn,) = turns(t)
    assert messages(turn) == [("user", "TextContent", {"text": "Add 2 and 3"}),
                              ("assistant", "ToolCall", {"name": "add", "call_id": "c9",
                                                         "arguments": '{"a": 2, "b": 3}'})]  # fmt: skip
    model = turn["model"]
    assert (model["provider"], model["input_tokens"], model["output_tokens"]) == ("openai", 11, 4)


def test_vercel_ai_sdk_names(codec: Any) -> None:
    """ai.generateText is the agent, its doGenerate calls the turns, ai.toolCall the tool runs; the usage
    ai.generateText sums up is not added to the turns."""
    prompt = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Rome?"}]},
    ]
    second = [
        *prompt,
        {
            "role": "assistant",
            "content": [{"type": "tool-call", "toolCallId": "v1", "toolName": "weather", "input": {"city": "Rome"}}],
        },
        {
            "role": "tool",
            "content": [
                {
                    "type": "tool-result",
                    "toolCallId": "v1",
                    "toolName": "weather",
                    "output": {"type": "json", "value": {"error": "down"}},
                }
            ],
        },
    ]
    calls = json.dumps(
        [{"toolCallType": "function", "toolCallId": "v1", "toolName": "weather", "input": '{"city":"Rome"}'}]
    )
    trace = (
        Trace()
        .add("http", None, {"http.route": "/chat"}, start_ms=-5, end_ms=60, span_name="POST /chat")
        .add("gen", "http", {"ai.operationId": "ai.generateText", "ai.model.id": "gpt-4o",
                           "ai.usage.inputTokens": 900, "ai.usage.outputTokens": 900}, start_ms=0, end_ms=50,
             span_name="ai.generateText")
        .add("do1", "gen", {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o",
                            "ai.model.provider": "openai.chat", "ai.prompt.messages": json.dumps(prompt),
                            "ai.response.toolCalls": calls, "ai.response.finishReason": "tool-calls",
                            "ai.usage.inputTokens": "30", "ai.usage.outputTokens": 5},
             start_ms=1, end_ms=10, span_name="ai.generateText.doGenerate")
        .add("call", "gen", {"ai.operationId": "ai.toolCall", "ai.toolCall.name": "weather",
                             "ai.toolCall.id": "v1"}, start_ms=11, end_ms=12, span_name="ai.toolCall",
             error="weather service down")
        .add("do2", "gen", {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o",
                            "ai.prompt.messages": json.dumps(second), "ai.response.text": "No idea, sorry.",
                            "ai.usage.promptTokens": 40, "ai.usage.completionTokens": 6},
             start_ms=13, end_ms=20, span_name="ai.generateText.doGenerate")
    )  # fmt: skip
    (t,) = map_trace(trace.read())
    assert t.boundary_span_id == trace.hex("gen")  # the top-level AI SDK call, not the request around it
    first, last = turns(t)
    assert messages(first) == [
        ("system", "TextContent", {"text": "You are terse."}), ("user", "TextContent", {"text": "Weather in Rome?"}),
        ("assistant", "ToolCall", {"name": "weather", "call_id": "v1", "arguments": '{"city":"Rome"}'}),
    ]  # fmt: skip
    (tool, answer) = messages(last)
    response = dict(tool[2])
    assert tool[:2] == ("tool", "ToolResponse") and json.loads(response.pop("result")) == {"error": "down"}
    assert response == {"name": "weather", "call_id": "v1", "status": "error"}  # the ai.toolCall span failed
    assert answer == ("assistant", "TextContent", {"text": "No idea, sorry."})
    assert [(x["model"]["input_tokens"], x["model"]["output_tokens"]) for x in (first, last)] == [(30, 5), (40, 6)]
    assert (first["model"]["request_model"], first["model"]["provider"]) == ("gpt-4o", "openai.chat")
    assert assemble(codec, [t])[t.trajectory_id]["reason"] == "ended"


def test_agent_span_usage_is_never_added_to_turns() -> None:
    trace = weather_trace(**{"gen_ai.usage.input_tokens": 5000, "gen_ai.usage.output_tokens": 5000})
    data = trace.data()
    (t,) = map_trace(spans_of(data))
    assert [x["model"]["input_tokens"] for x in turns(t)] == [None, None]  # the chats report none of their own


def test_nested_agents_become_child_trajectories(codec: Any) -> None:
    trace = (
        Trace()
        .add("outer", None, {**AGENT, "gen_ai.agent.name": "planner"}, start_ms=0, end_ms=100)
        .add("plan", "outer", {**CHAT, "gen_ai.output.messages": json.dumps([text("assistant", "delegate")])},
             start_ms=1, end_ms=5)
        .add("delegate", "outer", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "researcher",
                                   "gen_ai.tool.call.id": "d1"}, start_ms=6, end_ms=60)
        .add("inner", "delegate", {**AGENT, "gen_ai.agent.name": "researcher"}, start_ms=7, end_ms=59)
        .add("research", "inner", {**CHAT, "gen_ai.output.messages": json.dumps([text("assistant", "found")])},
             start_ms=8, end_ms=50)
    )  # fmt: skip
    mapped = map_trace(trace.read())
    by_name = {event(t, "trajectory_start")["agent_id"]: t for t in mapped}
    outer, inner = by_name["planner"], by_name["researcher"]
    assert [m[2]["text"] for m in messages(turns(outer)[0])] == ["delegate"] and len(turns(outer)) == 1
    assert [m[2]["text"] for m in messages(turns(inner)[0])] == ["found"] and len(turns(inner)) == 1
    start = event(inner, "trajectory_start")
    assert (start["parent_trajectory_id"], start["parent_span_id"]) == (outer.trajectory_id, trace.hex("delegate"))
    assembled = assemble(codec, mapped)
    assert assembled[outer.trajectory_id]["children"] == [inner.trajectory_id]


def test_an_explicit_trajectory_id_wins() -> None:
    tid = "3c9c1a57-0d7b-4c35-9b1e-3a3f2c1e0001"
    trace = (
        Trace()
        .add("wrapper", None, {"trajstream.trajectory.id": tid, "trajstream.task": "Book a table",
                               "trajstream.outcome": "partial"}, start_ms=0, end_ms=30)
        .add("agent", "wrapper", {**AGENT, "trajstream.trajectory.id": tid}, start_ms=1, end_ms=29)
        .add("chat", "agent", {**CHAT, "gen_ai.output.messages": json.dumps([text("assistant", "ok")])},
             start_ms=2, end_ms=3)
    )  # fmt: skip
    (t,) = map_trace(trace.read())
    assert (t.trajectory_id, t.boundary_span_id) == (tid, trace.hex("wrapper"))
    assert event(t, "trajectory_start")["task_description"] == "Book a table"
    assert event(t, "trajectory_end")["outcome"] == "partial"


def test_shuffled_and_repeated_spans_give_identical_events() -> None:
    trace = weather_trace()
    spans = trace.read()
    expected = map_trace(spans)
    for seed in range(5):
        shuffled = spans + trace.read()[:2]  # a retried export repeats spans
        random.Random(seed).shuffle(shuffled)
        assert map_trace(shuffled) == expected
    assert expected == map_trace(trace.read())  # and nothing comes from the clock or a random source


def test_turns_follow_their_spans_start_times() -> None:
    trace = Trace().add("root", None, {}, start_ms=0, end_ms=100)
    for n in range(8):
        out = json.dumps([text("assistant", f"answer {n}")])
        trace.add(f"chat-{n}", "root", {**CHAT, "gen_ai.output.messages": out}, start_ms=10 * n + 1, end_ms=10 * n + 5)
    (t,) = map_trace(trace.read())
    assert [messages(x)[0][2]["text"] for x in turns(t)] == [f"answer {n}" for n in range(8)]
    assert [x["turn_index"] for x in turns(t)] == list(range(8))


def test_a_trace_whose_root_has_not_arrived_is_incomplete() -> None:
    trace = weather_trace()
    partial = [s for s in trace.read() if s.span_id != trace.hex("agent")]
    (t,) = map_trace(partial)
    assert not t.complete and t.boundary_span_id is None
    assert [n for n, _ in t.events] == ["trajectory_start", "turn", "turn"]  # no end: the caller may wait
    (flushed,) = map_trace(partial, now_ms=1_760_000_000_500)
    end = event(flushed, "trajectory_end")
    assert (end["outcome"], end["turn_count"]) == ("abandoned", 2)
    assert flushed.events[:3] == t.events


def test_tool_statuses_from_execute_tool_spans() -> None:
    def status(**tool: Any) -> str:
        trace = weather_trace()
        data = trace.data()
        span = data.resource_spans[0].scope_spans[0].spans[2]
        if "error" in tool:
            span.status.code, span.status.message = span.status.STATUS_CODE_ERROR, tool["error"]
        if "error_type" in tool:
            span.attributes.add(key="error.type", value=any_value(tool["error_type"]))
        (t,) = map_trace(spans_of(data))
        return str(turns(t)[1]["messages"][0]["content"][1]["status"])

    assert status() == "success"
    assert status(error="boom", error_type="ValueError") == "error"
    assert status(error="slow", error_type="ToolTimeoutError") == "timeout"


def test_failed_turns_and_agents() -> None:
    trace = weather_trace(**{"error.type": "AgentCrashed"})
    data = trace.data()
    spans = data.resource_spans[0].scope_spans[0].spans
    spans[0].status.code, spans[0].status.message = spans[0].status.STATUS_CODE_ERROR, "ran out of budget"
    spans[3].status.code = spans[3].status.STATUS_CODE_ERROR
    spans[3].attributes.add(key="error.type", value=any_value("RateLimitError"))
    (t,) = map_trace(spans_of(data))
    assert [(x["error"], x["error_type"]) for x in turns(t)] == [(False, None), (True, "RateLimitError")]
    end = event(t, "trajectory_end")
    assert (end["outcome"], end["error_type"], end["error_message"]) == ("error", "AgentCrashed", "ran out of budget")


def test_unreadable_content_and_stray_spans_are_reported_not_dropped() -> None:
    trace = weather_trace().add("bad", "agent", {**CHAT, "gen_ai.input.messages": "[{not json"}, start_ms=21,
                                end_ms=22)  # fmt: skip
    trace.add("router", None, {}, start_ms=-10, end_ms=200)
    trace.spans[0].parent_span_id = trace.sid("router")
    trace.add("route", "router", {**CHAT, "gen_ai.output.messages": json.dumps([text("assistant", "go")])},
              start_ms=-9, end_ms=-8)  # fmt: skip
    (t,) = map_trace(trace.read())
    assert len(turns(t)) == 2
    reasons = dict(t.skipped)
    assert "not valid JSON" in reasons[trace.hex("bad")]
    assert "outside every trajectory boundary" in reasons[trace.hex("route")]
