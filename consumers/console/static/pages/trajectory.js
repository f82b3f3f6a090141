// One trajectory: its facts, versions, reward components, every turn with its messages and tool calls,
// AIR and credit per turn, decisions, entities, parent and sub-agents.

import { get } from "../api.js";
import { h } from "../dom.js";
import { chart } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, badge, memory } from "../ui.js";
import { count, num, time, duration, ms, versionLabel } from "../format.js";

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value === "" || value === null || value === undefined ? "–" : value)];
}

function turnCard(turn, credits) {
  const credit = turn.credit !== null && turn.credit !== undefined ? turn.credit : null;
  const stepCredits = credits.filter((c) => c.turn_index === turn.turn_index);
  const calls = new Map((turn.tool_calls || []).map((c) => [c.call_id, c]));
  return h("article", { class: ["turn", turn.error ? "turn-error" : null], "data-turn": turn.turn_index, id: `turn-${turn.turn_index}` },
    h("header", {},
      h("h3", {}, `Turn ${turn.turn_index}`),
      h("span", { class: "meta" }, time(turn.timestamp, "second")),
      h("span", { class: "meta" }, `${turn.model || "–"} · ${versionLabel(turn.model_version)}`),
      h("span", { class: "meta" }, duration(turn.duration_ms)),
      h("span", { class: "meta" }, `tokens ${count(turn.tokens_in)} in / ${count(turn.tokens_out)} out`),
      h("span", { class: "meta air", title: "attributed improvement of this turn" }, `AIR ${num(turn.air, 3)}`),
      h("span", { class: "meta", title: stepCredits.map((c) => `${c.method}: ${num(c.credit, 3)}`).join("\n") || null }, `credit ${num(credit, 3)}`),
      turn.error ? badge("error", turn.error_type) : null,
      turn.error && turn.error_type ? h("span", { class: "meta bad-text" }, turn.error_type) : null),
    h("ol", { class: "messages" }, (turn.messages || []).map((m) => {
      const call = m.call_id ? calls.get(m.call_id) : null;
      return h("li", { class: `msg role-${m.role} kind-${m.kind}`, "data-seq": m.seq },
        h("div", { class: "msg-head" },
          h("span", { class: "role" }, m.role), h("span", { class: "kind" }, m.kind),
          m.tool_name ? h("span", { class: "tool mono" }, m.tool_name) : null,
          m.call_id ? h("span", { class: "meta mono" }, m.call_id) : null,
          call && m.kind === "tool_call" ? badge(call.status) : null),
        h("div", { class: "text" }, m.text));
    })),
    (turn.tool_calls || []).length ? h("table", { class: "data calls", "data-table": `tool-calls-${turn.turn_index}` },
      h("thead", {}, h("tr", {}, h("th", {}, "call"), h("th", {}, "tool"), h("th", {}, "arguments"), h("th", {}, "status"), h("th", { class: "num" }, "latency (ms)"))),
      h("tbody", {}, turn.tool_calls.map((c) => h("tr", { class: `status-${c.status}`, "data-key": c.call_id },
        h("td", { class: "mono" }, c.call_id), h("td", { class: "mono" }, c.tool), h("td", { class: "mono args" }, c.arguments),
        h("td", {}, badge(c.status)), h("td", { class: "num" }, ms(c.latency_ms)))))) : null);
}

export default {
  mount(root, ctx) {
    const id = ctx.route.args[0];
    const back = ctx.href("trajectories", new URLSearchParams({ range: ctx.range }));
    const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    root.append(h("p", { class: "crumbs" }, h("a", { href: back }, "← Trajectories")), h("h1", { class: "mono" }, id), body);
    const link = (tid) => ctx.href(`trajectories/${encodeURIComponent(tid)}`, new URLSearchParams({ range: ctx.range }));

    const memo = memory();
    return {
      async refresh() {
        let d;
        try {
          d = await get(`trajectory/${encodeURIComponent(id)}`);
        } catch (e) {
          memo.forget("x");
          swap(body, errorBox(e), e.kind === "not_found" ? h("p", {}, "It may not have landed yet, or it is older than the 90 days the store keeps. ", h("a", { href: back }, "Back to the list")) : null);
          return;
        }
        if (memo.same("x", d)) return;
        const t = d.trajectory;
        const air = chart({
          name: "trajectory-air", title: "AIR per turn", kind: "bar",
          series: [{ name: "AIR", points: d.turns.map((u) => [u.turn_index, u.air]) }],
          x: { type: "number", label: "turn", pad: 0.6, band: 1, format: (v) => `turn ${v}` }, y: { unit: "AIR" },
        });
        swap(body,
          h("section", { class: "card facts", "data-testid": "trajectory-facts" },
            h("div", { class: "headline" }, badge(t.outcome), h("span", { class: "reward" }, `reward ${num(t.reward, 3)}`),
              t.timed_out ? badge("timeout") : null, (t.tags || []).map((g) => h("span", { class: "tag" }, g))),
            t.task ? h("p", { class: "task-text" }, t.task) : null,
            h("dl", {},
              fact("agent", t.agent_id), fact("domain", t.domain), fact("environment", t.environment),
              fact("model version", versionLabel(t.model_version)), fact("started", time(t.started_at, "second")),
              fact("ended", time(t.ended_at, "second")), fact("duration", duration(t.duration_ms)),
              fact("turns", count(t.turn_count)), fact("tool calls", count(t.tool_calls)), fact("version", count(t.version)),
              fact("reason", t.reason), fact("reward function", t.reward_function), fact("extractor", t.extractor),
              fact("parent", d.parent ? h("a", { href: link(d.parent), class: "mono", "data-testid": "parent-link" }, d.parent) : null))),
          h("div", { class: "grid two" },
            h("section", { class: "card" }, h("h2", {}, "Versions"), d.versions.length ? table({
              name: "trajectory-versions", rows: d.versions, key: (v) => String(v.version),
              columns: [
                { label: "version", num: true, value: (v) => String(v.version) },
                { label: "scored", value: (v) => time(v.scored_at, "second") },
                { label: "outcome", value: (v) => badge(v.outcome) },
                { label: "reward", num: true, value: (v) => num(v.reward, 3) },
                { label: "reason", value: (v) => v.reason },
              ],
            }) : empty("Not scored yet.")),
            h("section", { class: "card" }, h("h2", {}, "Reward components"), d.rewards.length ? table({
              name: "rewards", rows: d.rewards, key: (r) => r.component,
              columns: [
                { label: "component", value: (r) => r.component },
                { label: "value", num: true, value: (r) => num(r.value, 3) },
                { label: "weight", num: true, value: (r) => num(r.weight, 2) },
                { label: "detail", value: (r) => r.detail },
              ],
            }) : empty("No reward components recorded."))),
          h("section", { class: "card" }, h("h2", {}, "AIR and credit"), air,
            d.credits.length ? h("details", { "data-keep": "credits" }, h("summary", {}, `Credit per step (${d.credits.length})`), table({
              name: "credits", rows: d.credits, key: (c) => `${c.method}:${c.step_index}`,
              columns: [
                { label: "step", num: true, value: (c) => String(c.step_index) },
                { label: "turn", num: true, value: (c) => String(c.turn_index) },
                { label: "method", value: (c) => c.method },
                { label: "credit", num: true, value: (c) => num(c.credit, 3) },
                { label: "AIR", num: true, value: (c) => num(c.air, 3) },
              ],
            })) : null),
          h("section", { class: "card" }, h("h2", {}, `Turns (${d.turns.length})`),
            d.turns.length ? h("div", { class: "turns", "data-testid": "turns" }, d.turns.map((u) => turnCard(u, d.credits))) : empty("This trajectory has no turns.")),
          h("div", { class: "grid two" },
            h("section", { class: "card" }, h("h2", {}, "Decisions"), d.decisions.length ? table({
              name: "decisions", rows: d.decisions, key: (x) => String(x.step_index),
              columns: [
                { label: "step", num: true, value: (x) => String(x.step_index) },
                { label: "type", value: (x) => x.decision_type },
                { label: "chosen", value: (x) => x.chosen_action },
                { label: "alternatives", value: (x) => (x.alternatives || []).join(", ") },
                { label: "confidence", num: true, value: (x) => num(x.confidence, 2) },
                { label: "reasoning", cls: "task", value: (x) => `${x.reasoning}${x.implicit ? " (implicit)" : ""}` },
              ],
            }) : empty("No decisions extracted (enrichment may still be running).")),
            h("section", { class: "card" }, h("h2", {}, "Entities"), d.entities.length ? table({
              name: "entities", rows: d.entities, key: (x) => x.name,
              columns: [
                { label: "name", value: (x) => x.name },
                { label: "type", value: (x) => x.entity_type },
                { label: "step", num: true, value: (x) => String(x.discovered_at_step) },
                { label: "importance", value: (x) => x.importance },
                { label: "relationships", value: (x) => (x.relationships || []).join(", ") },
              ],
            }) : empty("No entities extracted."))),
          h("section", { class: "card" }, h("h2", {}, "Sub-agents"), d.children.length ? table({
            name: "children", rows: d.children, key: (c) => c.trajectory_id, href: (c) => link(c.trajectory_id),
            columns: [
              { label: "trajectory", value: (c) => h("a", { href: link(c.trajectory_id), class: "mono", tabindex: "-1" }, c.trajectory_id) },
              { label: "agent", value: (c) => c.agent_id },
              { label: "outcome", value: (c) => badge(c.outcome) },
              { label: "reward", num: true, value: (c) => num(c.reward, 3) },
              { label: "task", cls: "task", value: (c) => c.task },
            ],
          }) : empty("No sub-agent trajectories.")));
      },
    };
  },
};
