// Models: per model and version, turns, tokens, latency percentiles, cost; tokens over time.

import { get } from "../api.js";
import { h, code } from "../dom.js";
import { chart, fillZeros } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, memory, section } from "../ui.js";
import { count, ms, usd, rangeWords, versionLabel } from "../format.js";
import { timeAxis } from "./overview.js";

function tokens(d) {
  const r = d.range;
  const byModel = new Map();
  for (const p of d.timeline) {
    if (!byModel.has(p.model)) byModel.set(p.model, []);
    byModel.get(p.model).push(p);
  }
  const series = [];
  for (const [model, points] of byModel) {
    for (const field of ["tokens_in", "tokens_out"]) {
      series.push({
        name: `${model} ${field === "tokens_in" ? "in" : "out"}`,
        points: fillZeros(points.map((p) => [p.t, p[field] || 0]), r.from, r.to, r.bucket_ms),
      });
    }
  }
  return chart({
    name: "models-tokens", title: "Tokens over time, per model (in: solid, out: dashed)", kind: "line", series,
    x: timeAxis(r), y: { unit: "tokens" }, bucketMs: r.bucket_ms, dashed: (name) => name.endsWith(" out"), alwaysLegend: true,
    colorOf: (name) => [...byModel.keys()].indexOf(name.replace(/ (in|out)$/, "")),
  });
}

export default {
  mount(root, ctx) {
    const models = section("Models");
    const over = section("Tokens over time");
    root.append(h("h1", {}, "Models"), models, over);
    const memo = memory();
    return {
      async refresh() {
        let d;
        try {
          d = await get("models", { range: ctx.range });
        } catch (e) {
          memo.forget("x");
          swap(models.body, errorBox(e));
          swap(over.body, errorBox(e));
          return;
        }
        if (memo.same("x", d)) return;
        const unpriced = !d.priced || d.models.some((m) => m.cost === null);
        swap(models.body,
          d.models.length ? table({
            name: "models", rows: d.models, key: (m) => `${m.model}@${m.model_version}`,
            columns: [
              { label: "model", value: (m) => m.model },
              { label: "version", value: (m) => versionLabel(m.model_version) },
              { label: "turns", num: true, value: (m) => count(m.turns) },
              { label: "errors", num: true, value: (m) => count(m.errors) },
              { label: "tokens in", num: true, value: (m) => count(m.tokens_in) },
              { label: "tokens out", num: true, value: (m) => count(m.tokens_out) },
              { label: "p50 (ms)", num: true, value: (m) => ms(m.p50_ms) },
              { label: "p95 (ms)", num: true, value: (m) => ms(m.p95_ms) },
              { label: "p99 (ms)", num: true, value: (m) => ms(m.p99_ms) },
              { label: "cost (USD)", num: true, value: (m) => usd(m.cost) },
            ],
          }) : empty(`No model turns in ${rangeWords(ctx.range)}. Send some with `, code("trajstream emit examples/trajectories.jsonl"), ", or widen the range."),
          unpriced ? h("p", { class: "hint", "data-testid": "models-unpriced" },
            d.priced ? "Some models have no price, so their cost shows as –. " : "No model has a price, so cost is not shown. ",
            "Set ", code("TRAJSTREAM_MODEL_PRICES"), " (the price table per model) in the settings to see cost.") : null);
        swap(over.body, tokens(d));
      },
    };
  },
};
