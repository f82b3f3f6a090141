// Dead letters: counts over time by stage, a table by stage/error/reason, the letters themselves, and
// (for an operator) replaying them, one or a selection, after a confirmation.

import { get, post } from "../api.js";
import { h, code } from "../dom.js";
import { chart, fillZeros } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, section, memory } from "../ui.js";
import { count, time, rangeWords } from "../format.js";
import { timeAxis } from "./overview.js";

// Kept across refreshes so a `landed` event does not untick what the operator ticked.
const selected = new Set();
let lastResult = null; // {ok: bool, text}

function timeline(d) {
  const r = d.range;
  const stages = [...new Set(d.timeline.map((p) => p.stage))].sort();
  const series = stages.map((stage) => ({
    name: stage,
    points: fillZeros(d.timeline.filter((p) => p.stage === stage).map((p) => [p.t, p.count]), r.from, r.to, r.bucket_ms),
  }));
  return chart({ name: "deadletters-timeline", title: "Dead letters over time, by stage", kind: "bar", stacked: true, series, x: timeAxis(r), y: { unit: "count", label: "letters" }, bucketMs: r.bucket_ms, alwaysLegend: true });
}

export default {
  mount(root, ctx) {
    const p = ctx.params;
    const page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
    const stage = p.get("stage") || "";
    const over = section("Over time");
    const reasons = section("By stage, error and reason");
    const letters = section("Letters", { testid: "deadletter-list" });
    const result = h("div", { class: "replay-result", "data-testid": "replay-result", "aria-live": "polite" });
    root.append(h("h1", {}, "Dead letters"), over, reasons, letters);
    let role = "read";
    const memo = memory();

    function showResult() {
      swap(result, lastResult ? h("p", { class: lastResult.ok ? "ok-text" : "error", role: lastResult.ok ? "status" : "alert" }, lastResult.text) : null);
    }

    async function replay(refs) {
      const n = refs.length;
      const ok = await ctx.confirm(`Replay ${n} dead letter${n === 1 ? "" : "s"}?`,
        `${refs.join(", ")} will be sent back to ${n === 1 ? "its" : "their"} source topic and go through the pipeline again.`, "Replay");
      if (!ok) return;
      try {
        const answer = await post("deadletters/replay", { refs });
        lastResult = { ok: true, text: `Replayed ${answer.replayed} dead letter${answer.replayed === 1 ? "" : "s"}.` };
        for (const r of refs) selected.delete(r);
      } catch (e) {
        lastResult = { ok: false, text: `Not replayed (nothing was sent): ${e.message}` };
      }
      showResult();
      memo.forget("x"); // the ticks changed: draw the list again even if the letters did not
      ctx.refresh();
    }

    function renderLetters(d) {
      const operator = role === "operator";
      const replayable = new Set(d.rows.filter((r) => r.replayable).map((r) => r.ref));
      for (const ref of [...selected]) if (!replayable.has(ref)) selected.delete(ref);
      const selectedButton = h("button", {
        type: "button", class: "primary", "data-testid": "replay-selected", disabled: selected.size === 0,
        on: { click: () => replay([...selected]) },
      }, `Replay selected (${selected.size})`);
      const syncButton = () => {
        selectedButton.disabled = selected.size === 0;
        selectedButton.textContent = `Replay selected (${selected.size})`;
      };
      const trajectoryLink = (id) => ctx.href(`trajectories/${encodeURIComponent(id)}`, new URLSearchParams({ range: ctx.range }));
      const columns = [
        { label: "ref", value: (r) => h("span", { class: "mono" }, r.ref) },
        { label: "failed", value: (r) => time(r.failed_at, "second") },
        { label: "stage", value: (r) => r.stage },
        { label: "error type", value: (r) => h("span", { class: "mono" }, r.error_type) },
        { label: "reason", cls: "task", value: (r) => h("span", { title: r.reason }, r.reason) },
        { label: "source", value: (r) => h("span", { class: "mono" }, r.source) },
        { label: "trajectory", value: (r) => (r.trajectory_id ? h("a", { href: trajectoryLink(r.trajectory_id), class: "mono" }, r.trajectory_id) : "–") },
        { label: "payload (bytes)", num: true, value: (r) => count(r.payload_bytes) },
      ];
      if (operator) {
        columns.unshift({
          label: h("span", { class: "sr-only" }, "select"),
          value: (r) => (r.replayable ? h("input", {
            type: "checkbox", "aria-label": `select ${r.ref}`, "data-testid": `select-${r.ref}`, checked: selected.has(r.ref),
            on: { change: (e) => { if (e.target.checked) selected.add(r.ref); else selected.delete(r.ref); syncButton(); } },
          }) : ""),
        });
        columns.push({
          label: "replay",
          value: (r) => (r.replayable
            ? h("button", { type: "button", class: "small", "data-testid": `replay-${r.ref}`, on: { click: () => replay([r.ref]) } }, "Replay")
            : h("span", { class: "why-not", "data-testid": `why-not-${r.ref}` }, r.why_not || "not replayable")),
        });
      } else {
        columns.push({ label: "replayable", value: (r) => (r.replayable ? "yes" : h("span", { class: "why-not" }, r.why_not || "no")) });
      }
      const pager = h("nav", { class: "pager", "aria-label": "Pages" },
        h("button", { type: "button", class: "ghost", disabled: page <= 1, "data-testid": "page-prev", on: { click: () => ctx.setParams({ page: page - 1 > 1 ? page - 1 : null }) } }, "← Previous"),
        h("span", {}, `page ${page}`),
        h("button", { type: "button", class: "ghost", disabled: !d.has_more, "data-testid": "page-next", on: { click: () => ctx.setParams({ page: page + 1 }) } }, "Next →"));
      const stages = [...new Set([...d.by_reason.map((b) => b.stage), ...d.timeline.map((b) => b.stage), ...(stage ? [stage] : [])])].sort();
      const toolbar = h("div", { class: "toolbar" },
        h("label", {}, "stage ", h("select", { "data-testid": "filter-stage", on: { change: (e) => ctx.setParams({ stage: e.target.value, page: null }) } },
          h("option", { value: "", selected: !stage }, "any"), stages.map((s) => h("option", { value: s, selected: s === stage }, s)))),
        operator ? selectedButton : h("span", { class: "hint" }, "Replaying needs the operator role (the console on loopback, or an operator token)."));
      if (!d.rows.length) {
        return [toolbar, empty(`No dead letters in ${rangeWords(ctx.range)}${stage ? ` at stage ${stage}` : ""}. Records a stage rejects land here, with the reason; `,
          code("trajstream up"), " runs the stages."), page > 1 ? pager : null];
      }
      return [toolbar, table({
        name: "deadletters", rows: d.rows, key: (r) => r.ref, columns,
        href: (r) => (r.trajectory_id ? trajectoryLink(r.trajectory_id) : null),
        rowClass: (r) => (r.replayable ? null : "not-replayable"),
      }), pager];
    }

    return {
      async refresh() {
        const [who, dl] = await Promise.allSettled([get("whoami"), get("deadletters", { range: ctx.range, stage, page })]);
        role = who.status === "fulfilled" ? who.value.role : "read";
        if (dl.status === "rejected") {
          memo.forget("x");
          for (const s of [over, reasons]) swap(s.body, errorBox(dl.reason));
          swap(letters.body, errorBox(dl.reason), result);
          return;
        }
        const d = dl.value;
        if (memo.same("x", d, role)) return;
        swap(over.body, timeline(d));
        swap(reasons.body, d.by_reason.length ? table({
          name: "deadletter-reasons", rows: d.by_reason, key: (b) => `${b.stage}|${b.error_type}|${b.reason}`,
          columns: [
            { label: "stage", value: (b) => b.stage },
            { label: "error type", value: (b) => h("span", { class: "mono" }, b.error_type) },
            { label: "reason", cls: "task", value: (b) => b.reason },
            { label: "letters", num: true, value: (b) => count(b.count) },
          ],
        }) : empty(`No dead letters in ${rangeWords(ctx.range)}.`));
        swap(letters.body, renderLetters(d), result);
        showResult();
      },
    };
  },
};
