// Pipeline: each part and its state, consumer lag, events in / trajectories out / landed per minute,
// and the fraction of scored trajectories that landed.

import { get } from "../api.js";
import { h, code } from "../dom.js";
import { chart, fillZeros } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, memory, section, stat, badge } from "../ui.js";
import { count, pct } from "../format.js";

const MINUTE = 60000;

function throughput(d) {
  const pts = d.throughput;
  const to = pts.length ? pts[pts.length - 1].t + MINUTE : Date.now();
  const from = pts.length ? Math.min(pts[0].t, to - 15 * MINUTE) : to - 15 * MINUTE;
  const line = (field) => fillZeros(pts.map((p) => [p.t, p[field]]), from, to, MINUTE);
  return chart({
    name: "pipeline-throughput", title: "Throughput per minute", kind: "line",
    series: [{ name: "events in", points: line("events_in") }, { name: "trajectories out", points: line("trajectories_out") }, { name: "landed", points: line("landed") }],
    x: { type: "time", from, to, granularity: "minute" }, y: { unit: "/min", label: "per min" }, bucketMs: MINUTE, alwaysLegend: true,
    emptyText: "no samples yet (the server samples offsets each minute)",
  });
}

export default {
  mount(root, ctx) {
    const parts = section("Parts");
    const flow = section("Flow");
    const lag = section("Consumer lag");
    root.append(h("h1", {}, "Pipeline"), h("p", { class: "hint" }, "Now, whatever the range."), parts, flow, lag);
    const memo = memory();
    return {
      async refresh() {
        let d;
        try {
          d = await get("pipeline");
        } catch (e) {
          memo.forget("x");
          for (const s of [parts, flow, lag]) swap(s.body, errorBox(e));
          return;
        }
        if (memo.same("x", d)) return;
        const running = d.parts.filter((p) => p.state !== "not running").length;
        swap(parts.body, d.parts.length ? [
          running === 0 ? empty("Nothing is running. Start the pipeline with ", code("trajstream up"), " (", code("trajstream status"), " shows the same parts).") : null,
          h("ul", { class: "parts", "data-testid": "pipeline-parts" }, d.parts.map((p) => h("li", { class: `part state-${p.state.replace(/\s+/g, "-")}`, "data-key": p.name },
            h("div", { class: "part-name" }, p.name), badge(p.state), h("div", { class: "meta" }, p.pid ? `pid ${p.pid}` : "no process"),
            p.detail ? h("div", { class: "meta" }, p.detail) : null))),
        ] : empty("No parts known. Start the pipeline with ", code("trajstream up"), "."));
        const sinks = Object.entries(d.sinks || {});
        swap(flow.body,
          h("div", { class: "stats" },
            stat("landed fraction", pct(d.landed_fraction), "pipeline-landed-fraction", "scored trajectories the ClickHouse sink landed / published"),
            sinks.map(([name, s]) => stat(`${name} (${s.state || "–"})`, count(s.trajectories), `sink-${name}`, "trajectories"))),
          throughput(d));
        swap(lag.body, d.lag.length ? table({
          name: "lag", rows: d.lag, key: (l) => `${l.group}|${l.topic}|${l.partition}`,
          rowClass: (l) => (l.lag > 1000 ? "row-bad" : l.lag > 100 ? "row-warn" : null),
          columns: [
            { label: "group", value: (l) => h("span", { class: "mono" }, l.group) },
            { label: "topic", value: (l) => h("span", { class: "mono" }, l.topic) },
            { label: "partition", num: true, value: (l) => String(l.partition) },
            { label: "end offset", num: true, value: (l) => count(l.end) },
            { label: "committed", num: true, value: (l) => count(l.committed) },
            { label: "lag (records)", num: true, value: (l) => count(l.lag) },
          ],
        }) : empty("No consumer group has committed yet. ", code("trajstream up"), " starts the consumers."));
      },
    };
  },
};
