// A fetch-based Node client of the recording proxy (Node 20, no packages): one trajectory of two chat calls
// (the model calls a tool, then answers), streamed or not, closed by the end call.
//   node tests/node/proxy_client.mjs GATEWAY_URL TRAJECTORY_ID stream|plain
const [gateway, trajectoryId, mode] = process.argv.slice(2);
const stream = mode === "stream";
const headers = {
  "Content-Type": "application/json",
  "X-Trajstream-Trajectory-Id": trajectoryId,
  "X-Trajstream-Task": "Weather in Paris",
  "X-Trajstream-Agent": "node-weather-bot",
};
const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }];

async function chat(messages) {
  const response = await fetch(`${gateway}/v1/chat/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({ model: "test-model", messages, tools, stream }),
  });
  if (response.status !== 200) throw new Error(`proxy answered ${response.status}: ${await response.text()}`);
  if (response.headers.get("x-trajstream-recorded") !== "true") throw new Error("the call was not recorded");
  if (!stream) return (await response.json()).choices[0].message;
  // Reassemble the streamed message from its server-sent events.
  const message = { role: "assistant", content: "", tool_calls: [] };
  let done = false;
  const text = await response.text();
  for (const line of text.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") { done = true; continue; }
    for (const choice of JSON.parse(data).choices) {
      const delta = choice.delta;
      if (delta.content) message.content += delta.content;
      for (const call of delta.tool_calls ?? []) {
        message.tool_calls[call.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } };
        const slot = message.tool_calls[call.index];
        if (call.id) slot.id = call.id;
        slot.function.name += call.function?.name ?? "";
        slot.function.arguments += call.function?.arguments ?? "";
      }
    }
  }
  if (!done) throw new Error("the stream ended without [DONE]");
  if (message.tool_calls.length === 0) delete message.tool_calls;
  if (message.content === "") message.content = null;
  return message;
}

const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const first = await chat(messages);
messages.push(first);
for (const call of first.tool_calls ?? []) {
  messages.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify({ sky: "rainy" }) });
}
const second = await chat(messages);
const end = await fetch(`${gateway}/v1/trajectories/${trajectoryId}/end`, {
  method: "POST", headers, body: JSON.stringify({ outcome: "success", reward: 1.0 }),
});
if (end.status !== 200) throw new Error(`end answered ${end.status}`);
console.log(JSON.stringify({ first, second }));
