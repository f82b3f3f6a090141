// Tools: per-tool calls, error and timeout rates, latency percentiles; calls and errors over time;
// the tools that most often come last before a failure; repeated-call loops.

import { get } from "../api.js";
import { h, code } from "../dom.js";
import { chart, fillZeros } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, memory, section } from "../ui.js";
import { count, pct, ms, rangeWords } from "../format.js";
import { timeAxis } from "./overview.js";

function timeline(d) {
  const r = d.range;
  const sums = new Map();
  for (const p of d.timeline) {
    const s = sums.get(p.t) || { calls: 0, errors: 0, timeouts: 0 };
    s.calls += p.calls;
    s.errors += p.errors;
    s.timeouts += p.timeouts;
    sums.set(p.t, s);
  }
  const ts = [...sums.keys()].sort((a, b) => a - b);
  const line = (field) => fillZeros(ts.map((t) => [t, sums.get(t)[field]]), r.from, r.to, r.bucket_ms);
  return chart({
    name: "tools-timeline", title: "Tool calls, errors and timeouts over time (all tools)", kind: "line",
    series: [{ name: "calls", points: line("calls") }, { name: "errors", points: line("errors") }, { name: "timeouts", points: line("timeouts") }],
    x: timeAxis(r), y: { unit: "count", label: "calls" }, bucketMs: r.bucket_ms, alwaysLegend: true,
  });
}

export default {
  mount(root, ctx) {
    const tools = section("Tools");
    const over = section("Over time");
    const before = section("Tools that most often precede failure");
    const loops = section("Repeated-call loops");
    root.append(h("h1", {}, "Tools"), tools, over, h("div", { class: "grid two" }, before, loops));
    const trajectoryLink = (id) => ctx.href(`trajectories/${encodeURIComponent(id)}`, new URLSearchParams({ range: ctx.range }));

    const memo = memory();
    return {
      async refresh() {
        let d;
        try {
          d = await get("tools", { range: ctx.range });
        } catch (e) {
          memo.forget("x");
          for (const s of [tools, over, before, loops]) swap(s.body, errorBox(e));
          return;
        }
        if (memo.same("x", d)) return;
        swap(tools.body, d.tools.length ? table({
          name: "tools", rows: d.tools, key: (t) => t.tool,
          rowClass: (t) => (t.error_rate >= 0.2 ? "row-bad" : null),
          columns: [
            { label: "tool", value: (t) => t.tool },
            { label: "calls", num: true, value: (t) => count(t.calls) },
            { label: "errors (%)", num: true, value: (t) => pct(t.error_rate) },
            { label: "timeouts (%)", num: true, value: (t) => pct(t.timeout_rate) },
            { label: "p50 (ms)", num: true, value: (t) => ms(t.p50_ms) },
            { label: "p95 (ms)", num: true, value: (t) => ms(t.p95_ms) },
            { label: "p99 (ms)", num: true, value: (t) => ms(t.p99_ms) },
          ],
        }) : empty(`No tool calls in ${rangeWords(ctx.range)}. Send trajectories that call tools with `,
          code("trajstream emit examples/trajectories.jsonl"), ", or widen the range."));
        swap(over.body, timeline(d));
        swap(before.body, d.before_failure.length ? table({
          name: "before-failure", rows: d.before_failure, key: (b) => b.tool,
          columns: [
            { label: "last tool before the end", value: (b) => b.tool },
            { label: "failures", num: true, value: (b) => count(b.failures) },
            { label: "share of failures (%)", num: true, value: (b) => pct(b.share) },
          ],
        }) : empty(`No failed trajectory called a tool in ${rangeWords(ctx.range)}.`));
        swap(loops.body, d.loops.length ? table({
          name: "loops", rows: d.loops, key: (l) => l.tool, href: (l) => (l.example ? trajectoryLink(l.example) : null),
          columns: [
            { label: "tool", value: (l) => l.tool },
            { label: "trajectories with a loop", num: true, value: (l) => count(l.loops) },
            { label: "most repeats", num: true, value: (l) => count(l.max_repeats) },
            { label: "example", value: (l) => (l.example ? h("a", { href: trajectoryLink(l.example), class: "mono" }, l.example) : "–") },
          ],
        }) : empty("No tool was called 3+ times with the same arguments in one trajectory."));
      },
    };
  },
};
