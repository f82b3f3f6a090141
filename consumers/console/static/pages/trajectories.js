// Trajectories: filters (kept in the hash), a paged table, and "similar trajectories to a description".

import { get, post } from "../api.js";
import { h, code } from "../dom.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, section, badge, memory } from "../ui.js";
import { count, num, time, duration, rangeWords, versionLabel } from "../format.js";

const SELECTS = [["outcome", "outcome"], ["agent", "agent"], ["domain", "domain"], ["model_version", "model version"], ["tag", "tag"]];
const TEXTS = ["min_reward", "max_reward", "q"];

// The last search, kept across refreshes and visits to a detail (the page is mounted again on return).
let lastSearch = { query: "", results: null, error: null };

function fillSelect(select, values, chosen, labelOf) {
  const want = ["", ...new Set([...(values || []), ...(chosen ? [chosen] : [])])];
  const have = [...select.options].map((o) => o.value);
  if (want.join("\u0000") === have.join("\u0000")) return;
  select.replaceChildren(...want.map((v) => h("option", { value: v, selected: v === chosen }, v === "" ? "any" : labelOf(v))));
}

export default {
  mount(root, ctx) {
    const p = ctx.params;
    const page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
    const selects = {};
    for (const [name] of SELECTS) {
      selects[name] = h("select", { name, "data-testid": `filter-${name}`, on: { change: (e) => ctx.setParams({ [name]: e.target.value, page: null }) } },
        h("option", { value: p.get(name) || "", selected: true }, p.get(name) ? (name === "model_version" ? versionLabel(p.get(name)) : p.get(name)) : "any"));
    }
    const inputs = {
      min_reward: h("input", { name: "min_reward", type: "number", step: "any", value: p.get("min_reward") || "", placeholder: "min", "data-testid": "filter-min-reward", class: "short" }),
      max_reward: h("input", { name: "max_reward", type: "number", step: "any", value: p.get("max_reward") || "", placeholder: "max", "data-testid": "filter-max-reward", class: "short" }),
      q: h("input", { name: "q", type: "search", value: p.get("q") || "", placeholder: "text in the task or id", "data-testid": "filter-q" }),
    };
    const filters = h("form", { class: "filters", "data-testid": "filters", on: {
      submit: (e) => {
        e.preventDefault();
        const changes = { page: null };
        for (const k of TEXTS) changes[k] = inputs[k].value.trim();
        ctx.setParams(changes);
      },
    } },
    SELECTS.map(([name, word]) => h("label", {}, word, selects[name])),
    h("label", {}, "reward", h("span", { class: "pair" }, inputs.min_reward, "–", inputs.max_reward)),
    h("label", { class: "grow" }, "text", inputs.q),
    h("div", { class: "buttons" },
      h("button", { type: "submit", class: "primary", "data-testid": "filter-apply" }, "Apply"),
      h("a", { href: ctx.href("trajectories", new URLSearchParams({ range: ctx.range })), class: "button ghost", "data-testid": "filter-clear" }, "Clear")));

    const list = section("Trajectories", { testid: "trajectory-list" });
    const searchInput = h("input", { type: "search", value: lastSearch.query, placeholder: "e.g. refund a damaged order", "data-testid": "search-input", "aria-label": "Description to search for" });
    const searchOut = h("div", { "data-testid": "search-results", "aria-live": "polite" });
    const search = h("section", { class: "card" }, h("h2", {}, "Similar trajectories to a description"),
      h("form", { class: "search", on: { submit: (e) => { e.preventDefault(); runSearch(); } } },
        searchInput, h("button", { type: "submit", class: "primary", "data-testid": "search-submit" }, "Search")),
      searchOut);
    root.append(h("h1", {}, "Trajectories"), h("section", { class: "card" }, filters), list, search);

    const detail = (id) => ctx.href(`trajectories/${encodeURIComponent(id)}`, new URLSearchParams({ range: ctx.range }));

    function showSearch() {
      if (lastSearch.error) swap(searchOut, errorBox(lastSearch.error));
      else if (lastSearch.results === null) swap(searchOut, h("p", { class: "hint" }, "Finds trajectories whose task and turns read like the description (by recall, from Milvus)."));
      else if (!lastSearch.results.length) swap(searchOut, empty("Nothing similar found. Trajectories are searchable once the data worker has embedded them (", code("trajstream up"), ")."));
      else swap(searchOut, table({
        name: "search-results", rows: lastSearch.results, key: (r) => r.trajectory_id, href: (r) => detail(r.trajectory_id),
        columns: [
          { label: "trajectory", value: (r) => h("a", { href: detail(r.trajectory_id), class: "mono", tabindex: "-1" }, r.trajectory_id) },
          { label: "score", num: true, value: (r) => num(r.score, 3) },
          { label: "outcome", value: (r) => badge(r.outcome) },
          { label: "reward", num: true, value: (r) => num(r.reward, 3) },
          { label: "agent", value: (r) => r.agent_id },
          { label: "domain", value: (r) => r.domain },
          { label: "task", cls: "task", value: (r) => r.task },
        ],
      }));
    }

    async function runSearch() {
      const query = searchInput.value.trim();
      if (!query) return;
      lastSearch = { query, results: null, error: null };
      swap(searchOut, h("p", { class: "loading" }, "Searching…"));
      try {
        lastSearch.results = (await post("search", { query, k: 10 })).results;
      } catch (e) {
        lastSearch.error = e;
      }
      showSearch();
    }
    showSearch();
    const memo = memory();

    return {
      async refresh() {
        const query = { range: ctx.range, page, page_size: 50 };
        for (const [name] of SELECTS) query[name] = p.get(name);
        for (const k of TEXTS) query[k] = p.get(k);
        let d;
        try {
          d = await get("trajectories", query);
        } catch (e) {
          memo.forget("x");
          swap(list.body, errorBox(e));
          return;
        }
        if (memo.same("x", d)) return;
        for (const [name] of SELECTS) {
          if (document.activeElement !== selects[name]) fillSelect(selects[name], d.facets[name], p.get(name) || "", name === "model_version" ? versionLabel : (v) => v);
        }
        const filtered = SELECTS.some(([n]) => p.get(n)) || TEXTS.some((k) => p.get(k));
        const pager = h("nav", { class: "pager", "aria-label": "Pages" },
          h("button", { type: "button", class: "ghost", disabled: page <= 1, "data-testid": "page-prev", on: { click: () => ctx.setParams({ page: page - 1 > 1 ? page - 1 : null }) } }, "← Previous"),
          h("span", { "data-testid": "page-number" }, `page ${page}`),
          h("button", { type: "button", class: "ghost", disabled: !d.has_more, "data-testid": "page-next", on: { click: () => ctx.setParams({ page: page + 1 }) } }, "Next →"));
        swap(list.body, d.rows.length ? [table({
          name: "trajectories", rows: d.rows, key: (r) => r.trajectory_id, href: (r) => detail(r.trajectory_id),
          rowClass: (r) => `outcome-${r.outcome}`,
          columns: [
            { label: "trajectory", value: (r) => h("a", { href: detail(r.trajectory_id), class: "mono", tabindex: "-1" }, r.trajectory_id) },
            { label: "ended", value: (r) => time(r.ended_at, "second") },
            { label: "agent", value: (r) => r.agent_id },
            { label: "domain", value: (r) => r.domain },
            { label: "outcome", value: (r) => badge(r.outcome) },
            { label: "reward", num: true, value: (r) => num(r.reward, 3) },
            { label: "model version", value: (r) => versionLabel(r.model_version) },
            { label: "turns", num: true, value: (r) => count(r.turn_count) },
            { label: "tool calls", num: true, value: (r) => count(r.tool_calls) },
            { label: "duration", num: true, value: (r) => duration(r.duration_ms) },
            { label: "task", cls: "task", value: (r) => h("span", { title: r.task }, r.task) },
            { label: "tags", value: (r) => (r.tags || []).map((t) => h("span", { class: "tag" }, t)) },
          ],
        }), pager] : [filtered
          ? empty(`No trajectory in ${rangeWords(ctx.range)} matches these filters. Clear a filter, or widen the range.`)
          : empty(`No trajectories in ${rangeWords(ctx.range)}. Send some with `, code("trajstream emit examples/trajectories.jsonl"), ", or widen the range."),
        page > 1 ? pager : null]);
      },
    };
  },
};
