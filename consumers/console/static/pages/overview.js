// Overview: totals, trajectories / success / reward over time split by a key, the learning curve
// (per model version, deployments as markers), breakdown tables.

import { get } from "../api.js";
import { h, code } from "../dom.js";
import { chart, fillZeros } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, section, stat, memory } from "../ui.js";
import { count, pct, num, rangeWords, versionLabel } from "../format.js";

const BY = [["agent", "agent"], ["domain", "domain"], ["model_version", "model version"]];
const FILTER_OF = { agent: "agent", domain: "domain", model_version: "model_version" };

function keyLabel(by, key) {
  if (by === "model_version") return versionLabel(key);
  return key === "" ? "(none)" : key;
}

export function timeAxis(range) {
  return { type: "time", from: range.from, to: range.to, granularity: range.granularity };
}

function overTime(data) {
  const r = data.range;
  const perMinute = r.bucket_ms / 60000;
  const by = data.by;
  const gap = r.bucket_ms * 1.5;
  const split = (field, f) => data.series.map((se) => ({
    name: keyLabel(by, se.key),
    points: se.points.map((p) => [p.t, p[field] === null || p[field] === undefined ? null : f(p[field])]),
  }));
  const rate = split("trajectories", (v) => v / perMinute).map((se) => ({ ...se, points: fillZeros(se.points, r.from, r.to, r.bucket_ms) }));
  const byWord = BY.find(([k]) => k === by)[1];
  return h("div", { class: "grid charts" },
    chart({ name: "overview-trajectories", title: `Trajectories per minute, by ${byWord}`, kind: "line", series: rate, x: timeAxis(r), y: { unit: "/min", label: "per min" }, bucketMs: r.bucket_ms, alwaysLegend: true }),
    chart({ name: "overview-success", title: `Success rate, by ${byWord}`, kind: "line", series: split("success_rate", (v) => v), x: timeAxis(r), y: { unit: "%" }, gapAfter: gap, alwaysLegend: true }),
    chart({ name: "overview-reward", title: `Mean reward, by ${byWord}`, kind: "line", series: split("mean_reward", (v) => v), x: timeAxis(r), y: { unit: "reward" }, gapAfter: gap, alwaysLegend: true }));
}

function learning(data) {
  const r = data.range;
  const gap = r.bucket_ms * 1.5;
  const markers = data.deployments.map((d) => ({
    x: d.t, label: `${versionLabel(d.version)}${d.event === "deployed" ? "" : ` ${d.event.replace("_", " ")}`}`,
    title: `${versionLabel(d.version)} ${d.event.replace("_", " ")}${d.reason ? `: ${d.reason}` : ""}`, kind: d.event,
  }));
  const lines = (field) => data.versions.map((v) => ({ name: versionLabel(v.version), points: v.points.map((p) => [p.t, p[field]]) }));
  const note = data.deployments.length ? "dashed lines: deployments" : "no deployment in this range";
  return h("div", { class: "grid charts two" },
    chart({ name: "learning-success", title: "Learning curve: success rate per model version", note, kind: "line", series: lines("success_rate"), x: timeAxis(r), y: { unit: "%" }, markers, gapAfter: gap, alwaysLegend: true }),
    chart({ name: "learning-reward", title: "Learning curve: mean reward per model version", note, kind: "line", series: lines("mean_reward"), x: timeAxis(r), y: { unit: "reward" }, markers, gapAfter: gap, alwaysLegend: true }));
}

function breakdown(data, ctx) {
  return h("div", { class: "grid tables" }, BY.map(([by, word]) => {
    const rows = data.breakdown[by] || [];
    return h("div", {}, h("h3", {}, `By ${word}`), rows.length ? table({
      name: `breakdown-${by}`,
      rows,
      key: (r) => r.key,
      href: (r) => ctx.href("trajectories", new URLSearchParams({ range: ctx.range, [FILTER_OF[by]]: r.key })),
      columns: [
        { label: word, value: (r) => keyLabel(by, r.key) },
        { label: "trajectories", num: true, value: (r) => count(r.trajectories) },
        { label: "success (%)", num: true, value: (r) => pct(r.success_rate) },
        { label: "mean reward", num: true, value: (r) => num(r.mean_reward, 3) },
      ],
    }) : empty(`No ${word} in ${rangeWords(ctx.range)}.`));
  }));
}

export default {
  mount(root, ctx) {
    const by = BY.some(([k]) => k === ctx.params.get("by")) ? ctx.params.get("by") : "agent";
    const totals = section(null, { cls: "totals", testid: "totals" });
    const select = h("select", { "data-testid": "overview-by", on: { change: (e) => ctx.setParams({ by: e.target.value }) } },
      BY.map(([k, w]) => h("option", { value: k, selected: k === by }, w)));
    const trends = section("Over time");
    trends.querySelector("h2").append(h("label", { class: "inline" }, "split by ", select));
    const curve = section("Learning curve");
    const tables = section("Breakdown");
    root.append(h("h1", {}, "Overview"), totals, trends, curve, tables);
    const memo = memory();

    return {
      async refresh() {
        const [ov, le] = await Promise.allSettled([get("overview", { range: ctx.range, by }), get("learning", { range: ctx.range })]);
        if (ov.status === "rejected") {
          memo.forget("overview");
          swap(totals.body, errorBox(ov.reason));
          swap(trends.body, errorBox(ov.reason));
          swap(tables.body, errorBox(ov.reason));
        } else if (!memo.same("overview", ov.value)) {
          const d = ov.value;
          const t = d.totals;
          swap(totals.body,
            h("div", { class: "stats" },
              stat("trajectories", count(t.trajectories), "totals-trajectories"),
              stat("success rate", pct(t.success_rate), "totals-success-rate"),
              stat("mean reward", num(t.mean_reward, 3), "totals-mean-reward"),
              stat("trajectories / min", num(t.per_minute, 2), "totals-per-minute")),
            t.trajectories === 0 ? empty(`No trajectories in ${rangeWords(ctx.range)}. Send some with `,
              code("trajstream emit examples/trajectories.jsonl"), ", or widen the range.") : null);
          swap(trends.body, overTime(d));
          swap(tables.body, breakdown(d, ctx));
        }
        if (le.status === "rejected") {
          memo.forget("learning");
          swap(curve.body, errorBox(le.reason));
        } else if (memo.same("learning", le.value)) {
          // unchanged
        } else if (!le.value.versions.length && !le.value.deployments.length) {
          swap(curve.body, empty(`No model version has trajectories in ${rangeWords(ctx.range)}. `,
            code("trajstream demo --learn"), " shows a policy learning; the trainer (run by ", code("trajstream up"), ") deploys versions."),
          learning(le.value));
        } else swap(curve.body, learning(le.value));
      },
    };
  },
};
