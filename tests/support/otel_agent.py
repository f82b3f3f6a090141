"""A small tool-using agent traced by a real OpenAI instrumentation; writes its spans as OTLP ``TracesData``.

Run as ``python -m tests.support.otel_agent INSTRUMENTATION BASE_URL OUT [--agent-span] [--endpoint URL]`` in a
process of its own (``--endpoint``: also export each span, as it ends, with the OTLP/HTTP protobuf exporter).
The instrumentations patch ``openai`` globally and read their conventions' environment variables once per
process (``OTEL_SEMCONV_STABILITY_OPT_IN``), so each configuration gets a fresh interpreter.

The agent asks the model, which (as scripted by the test server) calls ``get_weather`` and ``get_time``;
it runs both inside ``execute_tool`` spans (``get_time`` fails), answers the model, and gets the final text.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

SYSTEM = "You are a weather assistant."
QUESTION = "What is the weather in Paris, and what time is it there?"
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
    for name in ("get_weather", "get_time")
]
WEATHER = {"sky": "rainy", "temperature_f": 57}


def instrumentor(name: str) -> Any:
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        return OpenAIInstrumentor()
    if name == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

        return OpenInferenceInstrumentor()
    if name == "traceloop":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as TraceloopInstrumentor

        return TraceloopInstrumentor()
    raise SystemExit(f"unknown instrumentation {name!r}")


def run_tool(tracer: trace.Tracer, call: Any, body: Callable[[dict[str, Any]], Any]) -> str:
    """One ``execute_tool`` span, as an agent framework would open it; a raised error sets its status."""
    name = call.function.name
    with tracer.start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL) as span:
        span.set_attributes(
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.call.id": call.id}
        )
        try:
            return json.dumps(body(json.loads(call.function.arguments)))
        except TimeoutError as exc:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute("error.type", "TimeoutError")
            return json.dumps({"error": str(exc)})


def clock(arguments: dict[str, Any]) -> Any:
    raise TimeoutError("the time service did not answer")


def converse(base_url: str, tracer: trace.Tracer) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    first = client.chat.completions.create(model="test-model", messages=messages, tools=TOOLS)
    reply = first.choices[0].message
    messages.append(reply.model_dump(exclude_none=True))
    tools = {"get_weather": lambda arguments: WEATHER, "get_time": clock}
    for call in reply.tool_calls or []:
        result = run_tool(tracer, call, tools[call.function.name])
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    client.chat.completions.create(model="test-model", messages=messages, tools=TOOLS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("instrumentation")
    parser.add_argument("base_url")
    parser.add_argument("out")
    parser.add_argument("--agent-span", action="store_true", help="run inside a manual invoke_agent span")
    parser.add_argument("--endpoint", default=None, help="an OTLP/HTTP traces URL to export to as well")
    args = parser.parse_args()

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-service"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if args.endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # One export request per span, as it ends: the gateway and the trace stage put the trace together.
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint)))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("weather-agent", "1.2.3")
    inst = instrumentor(args.instrumentation)
    inst.instrument(tracer_provider=provider)
    try:
        if args.agent_span:
            with tracer.start_as_current_span("invoke_agent weather", kind=SpanKind.INTERNAL) as agent:
                agent.set_attributes(
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "weather",
                        "gen_ai.agent.id": "agent-weather-1",
                        "gen_ai.conversation.id": "conv-42",
                        # What an agent span reports: the whole run's usage, never to be added to the turns'.
                        "gen_ai.usage.input_tokens": 999_999,
                        "gen_ai.usage.output_tokens": 999_999,
                    }
                )
                converse(args.base_url, tracer)
        else:
            with tracer.start_as_current_span("handle_request"):
                converse(args.base_url, tracer)
    finally:
        inst.uninstrument()
    provider.force_flush()
    request = encode_spans(exporter.get_finished_spans())
    with open(args.out, "wb") as out:
        out.write(TracesData(resource_spans=request.resource_spans).SerializeToString())


if __name__ == "__main__":
    main()
