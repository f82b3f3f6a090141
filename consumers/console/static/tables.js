// Tables: <table data-table=NAME>, one <tr data-key> per row, rows reachable by keyboard
// (one row in the tab order; Arrow Up/Down, Home/End move; Enter opens the row's link).

import { h } from "./dom.js";

/**
 * columns: [{label, value: row => text|Node, num: bool, title}]; key: row => string;
 * href: row => "#/..." | null (Enter and a click on the first cell follow it); rowClass: row => class.
 */
export function table({ name, columns, rows, key, href, rowClass, caption }) {
  const body = h("tbody", {}, rows.map((row, i) => {
    const link = href ? href(row) : null;
    return h("tr", {
      "data-key": key(row), tabindex: i === 0 ? "0" : "-1", class: rowClass ? rowClass(row) : null,
      "data-href": link,
    }, columns.map((c, ci) => {
      let v = c.value(row);
      if (ci === 0 && link && !(v instanceof Node)) v = h("a", { href: link, tabindex: "-1" }, v);
      return h(ci === 0 ? "th" : "td", { class: c.num ? "num" : c.cls || null, scope: ci === 0 ? "row" : null }, v);
    }));
  }));
  const t = h("table", { class: "data", "data-table": name },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null, title: c.title || null }, c.label)))),
    body);
  t.addEventListener("keydown", onKey);
  t.addEventListener("focusin", (e) => {
    const row = e.target.closest("tbody tr");
    if (row) rove(t, row);
  });
  return h("div", { class: "table-scroll" }, t);
}

function rove(t, row) {
  for (const r of t.tBodies[0].rows) r.tabIndex = r === row ? 0 : -1;
}

function onKey(e) {
  const row = e.target.closest("tbody tr");
  if (!row) return;
  const t = e.currentTarget;
  const rows = [...t.tBodies[0].rows];
  const i = rows.indexOf(row);
  let next = null;
  if (e.key === "ArrowDown") next = rows[Math.min(rows.length - 1, i + 1)];
  else if (e.key === "ArrowUp") next = rows[Math.max(0, i - 1)];
  else if (e.key === "Home" && e.target === row) next = rows[0];
  else if (e.key === "End" && e.target === row) next = rows[rows.length - 1];
  else if (e.key === "Enter" && e.target === row && row.dataset.href) {
    e.preventDefault();
    location.hash = row.dataset.href.replace(/^#/, "");
    return;
  }
  if (next) {
    // Arrows inside a text field or select keep their own meaning.
    if (e.target !== row && /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName) && e.target.type !== "checkbox") return;
    e.preventDefault();
    rove(t, next);
    next.focus();
  }
}

/** A table's place when nothing is in it: what to do, not just "empty". */
export function empty(...message) {
  return h("div", { class: "empty" }, ...message);
}
