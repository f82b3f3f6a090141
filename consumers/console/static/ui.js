// What every page shares: errors shown in place, sections swapped without losing the reader's place,
// the header's stat tiles.

import { h, code } from "./dom.js";
import { fitCharts } from "./charts.js";

/** An API error where the chart or table would be, saying what to do about it. */
export function errorBox(err) {
  const kind = err && err.kind ? err.kind : "bad_request";
  const msg = err && err.message ? err.message : String(err);
  let advice;
  if (kind === "timeout") advice = ["This query ran past its time limit: pick a shorter range."];
  else if (kind === "too_much") advice = ["Too much data for one answer: pick a shorter range or narrow the filters."];
  else if (kind === "unavailable") advice = ["The store is away; retrying every 10 s."];
  else if (kind === "network") advice = ["Retrying every 10 s. Is ", code("trajstream up"), " running?"];
  else if (kind === "unauthorized") advice = ["Sign in: open the console once as ", code("/console/?token=<the data API token>"), " (the token is kept in this browser)."];
  else if (kind === "forbidden") advice = ["This needs the operator role."];
  else advice = [];
  return h("div", { class: `error kind-${kind}`, role: "alert", "data-testid": "error", "data-kind": kind },
    h("strong", {}, kind === "unavailable" ? "Unavailable: " : kind === "timeout" ? "Timed out: " : "Error: "), msg,
    advice.length ? h("div", { class: "advice" }, ...advice) : null);
}

function keepKey(el) {
  const chart = el.closest("[data-chart]");
  if (chart) return `chart:${chart.dataset.chart}`;
  return el.dataset.keep ? `keep:${el.dataset.keep}` : null;
}

/**
 * Replace a section's content, keeping what the reader had: the open <details>, the focused table row
 * (or other element with a data-testid), and the scroll position.
 */
export function swap(section, ...nodes) {
  const open = new Set();
  for (const d of section.querySelectorAll("details[open]")) {
    const k = keepKey(d);
    if (k) open.add(k);
  }
  const active = document.activeElement;
  let focus = null;
  if (active && section.contains(active)) {
    const row = active.closest("tr[data-key]");
    const tableEl = active.closest("table[data-table]");
    if (row && tableEl && active === row) focus = `table[data-table="${CSS.escape(tableEl.dataset.table)}"] tr[data-key="${CSS.escape(row.dataset.key)}"]`;
    else if (active.dataset.testid) focus = `[data-testid="${CSS.escape(active.dataset.testid)}"]`;
  }
  const x = window.scrollX;
  const y = window.scrollY;
  // Keep the section's height while swapping so the page does not jump.
  section.style.minHeight = `${section.offsetHeight}px`;
  section.replaceChildren(...nodes.flat().filter(Boolean));
  for (const d of section.querySelectorAll("details")) {
    const k = keepKey(d);
    if (k && open.has(k)) d.open = true;
  }
  fitCharts(section);
  section.style.minHeight = "";
  if (focus) {
    const el = section.querySelector(focus);
    if (el) {
      if (el.matches("tr")) for (const r of el.parentElement.rows) r.tabIndex = r === el ? 0 : -1;
      el.focus({ preventScroll: true });
    }
  }
  if (window.scrollX !== x || window.scrollY !== y) window.scrollTo(x, y);
}

/** A section of a page: its heading stays, its body is what swap() replaces. */
export function section(title, { id, testid, cls } = {}) {
  const body = h("div", { class: "section-body" }, h("p", { class: "loading" }, "Loading…"));
  const el = h("section", { class: ["card", cls], id, "data-testid": testid }, title ? h("h2", {}, title) : null, body);
  el.body = body;
  return el;
}

/** One number with its label, big. */
export function stat(label, value, testid, hint) {
  return h("div", { class: "stat" },
    h("div", { class: "stat-value", "data-testid": testid }, value),
    h("div", { class: "stat-label" }, label),
    hint ? h("div", { class: "stat-hint" }, hint) : null);
}

/** A coloured badge for a state word (success, failure, ready, deployed, ...). */
export function badge(word, extra) {
  const w = String(word || "").toLowerCase();
  const tone =
    /^(success|ready|deployed|ok|running|passed)$/.test(w) ? "good" :
    /^(failure|failed|error|rejected|rolled_back|not running|dead|down|stopped|timeout)$/.test(w) ? "bad" :
    /^(partial|starting|canary|pending|candidate|degraded|lagging|reconnecting|in_progress)$/.test(w) ? "warn" : "neutral";
  return h("span", { class: `badge ${tone}`, title: extra || null }, word === "" || word === null || word === undefined ? "–" : String(word));
}

/**
 * What a page last drew, so a refresh whose answer did not change leaves the page alone (no flicker, and
 * elements a reader or a test holds stay the same). The range's from/to move with the clock on every
 * answer, so only the bucket they fall in counts.
 */
export function memory() {
  const last = new Map();
  return {
    same(name, data, extra) {
      let sig = data;
      if (data && data.range && data.range.bucket_ms) {
        sig = { ...data, range: [data.range.granularity, Math.floor(data.range.from / data.range.bucket_ms)] };
      }
      const s = JSON.stringify([sig, extra === undefined ? null : extra]);
      if (last.get(name) === s) return true;
      last.set(name, s);
      return false;
    },
    forget(name) {
      last.delete(name);
    },
  };
}
