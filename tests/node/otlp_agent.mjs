// A Node agent traced with the real OpenTelemetry JS SDK and OTLP/HTTP exporter (JSON or protobuf): one
// invoke_agent span around two chat spans and an execute_tool span, with the GenAI conventions' attributes
// (content as JSON text: JS span attributes hold no nested values), each span exported as it ends.
//   node tests/node/otlp_agent.mjs TRACES_URL json|proto
// Prints {"trace_id", "agent_span_id"} on its last line.
import { ROOT_CONTEXT, trace, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";

const [url, encoding] = process.argv.slice(2);
const Exporter = encoding === "proto" ? ProtoExporter : JsonExporter;
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-weather-service", "deployment.environment.name": "staging" }),
  spanProcessors: [new SimpleSpanProcessor(new Exporter({ url }))],
});
const tracer = provider.getTracer("node-weather-agent", "0.1.0");
const t0 = Date.now();
const at = (ms) => new Date(t0 + ms);

const agent = tracer.startSpan("invoke_agent node-weather", { kind: SpanKind.INTERNAL, startTime: at(0), attributes: {
  "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "node-weather", "gen_ai.agent.id": "node-weather-1",
  "gen_ai.usage.input_tokens": 999999,
} });
const context = trace.setSpan(ROOT_CONTEXT, agent);
const system = [{ type: "text", content: "You are a weather assistant." }];
const question = { role: "user", parts: [{ type: "text", content: "Weather in Paris?" }] };
const call = { role: "assistant", parts: [{ type: "tool_call", id: "call_1", name: "get_weather", arguments: { city: "Paris" } }] };

const chat1 = tracer.startSpan("chat gpt-4o", { kind: SpanKind.CLIENT, startTime: at(10), attributes: {
  "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
  "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 9,
  "gen_ai.system_instructions": JSON.stringify(system),
  "gen_ai.input.messages": JSON.stringify([question]),
  "gen_ai.output.messages": JSON.stringify([{ ...call, finish_reason: "tool_call" }]),
} }, context);
chat1.end(at(300));

const tool = tracer.startSpan("execute_tool get_weather", { kind: SpanKind.INTERNAL, startTime: at(310), attributes: {
  "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather", "gen_ai.tool.call.id": "call_1",
} }, context);
tool.setStatus({ code: SpanStatusCode.ERROR, message: "weather service down" });
tool.end(at(320));

const chat2 = tracer.startSpan("chat gpt-4o", { kind: SpanKind.CLIENT, startTime: at(330), attributes: {
  "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
  "gen_ai.usage.input_tokens": 60, "gen_ai.usage.output_tokens": 12,
  "gen_ai.input.messages": JSON.stringify([question, call,
    { role: "tool", parts: [{ type: "tool_call_response", id: "call_1", result: { error: "down" } }] }]),
  "gen_ai.output.messages": JSON.stringify([{ role: "assistant", parts: [{ type: "text", content: "I could not get the weather." }], finish_reason: "stop" }]),
} }, context);
chat2.end(at(600));
agent.end(at(610));
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ trace_id: agent.spanContext().traceId, agent_span_id: agent.spanContext().spanId }));
