// SVG charts: line charts and (stacked) bar charts over time or over numbers, with axes, units, a legend,
// tooltips (<title>), and the test hook: <figure class="chart" data-chart=NAME> whose <svg> carries
// data-series = exactly what is plotted, and a <details> table with the same numbers.
//
// A chart is drawn at the pixel width of its figure (fitCharts after it is in the page, and on resize), so
// the text keeps its size instead of scaling with a viewBox.

import { h, s } from "./dom.js";
import { compact, pct, time as fmtTime } from "./format.js";

const HEIGHT = 240;
const MARGIN = { top: 28, right: 16, bottom: 40, left: 56 };
const PALETTE_SIZE = 8;
const DAY = 86400000;
const TIME_STEPS = [
  60000, 2 * 60000, 5 * 60000, 10 * 60000, 15 * 60000, 30 * 60000,
  3600000, 2 * 3600000, 3 * 3600000, 6 * 3600000, 12 * 3600000,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY,
];

/** Units of the y axis: how a value reads on a tick and in a tooltip. */
const UNITS = {
  "%": { tick: (v) => pct(v, 0), full: (v) => pct(v, 1), label: "%" },
  ms: { tick: (v) => compact(v), full: (v) => `${compact(v)} ms`, label: "ms" },
  tokens: { tick: (v) => compact(v), full: (v) => `${Math.round(v).toLocaleString()} tokens`, label: "tokens" },
  USD: { tick: (v) => `$${compact(v)}`, full: (v) => `$${v.toFixed(4)}`, label: "USD" },
  reward: { tick: (v) => compact(v), full: (v) => Number(v).toFixed(3), label: "reward" },
  "/min": { tick: (v) => compact(v), full: (v) => `${+v.toFixed(2)} / min`, label: "per minute" },
  count: { tick: (v) => compact(v), full: (v) => Math.round(v).toLocaleString(), label: "count" },
  AIR: { tick: (v) => compact(v), full: (v) => Number(v).toFixed(3), label: "AIR" },
};

/**
 * Fill the buckets a count series lacks with zeros, from..to in steps of bucket_ms, anchored on the
 * buckets the server sent (its bucket starts need not be multiples of bucket_ms, e.g. weeks).
 */
export function fillZeros(points, from, to, bucketMs) {
  const known = new Map(points.map(([x, y]) => [x, y]));
  const anchor = points.length ? points[0][0] : Math.floor(from / bucketMs) * bucketMs;
  let start = anchor - Math.floor((anchor - from) / bucketMs) * bucketMs;
  if (start > from) start -= bucketMs;
  const out = [];
  for (let t = start; t < to; t += bucketMs) {
    if (t + bucketMs <= from) continue;
    out.push([t, known.has(t) ? known.get(t) : 0]);
  }
  // A bucket off the grid (should not happen) is still shown rather than dropped.
  for (const [x, y] of points) if (!out.some(([t]) => t === x)) out.push([x, y]);
  return out.sort((a, b) => a[0] - b[0]);
}

function niceStep(span, count, integer) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  // Counts step by whole numbers, never 2.5.
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 && !integer ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  return integer ? Math.max(1, Math.round(step)) : step;
}

function niceDomain(lo, hi, count = 5, integer = false) {
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.5;
    lo -= lo === 0 ? 0 : pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, count, integer);
  const a = Math.floor(lo / step) * step;
  const b = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = a; v <= b + step / 2; v += step) ticks.push(+v.toFixed(10));
  return { lo: a, hi: b, ticks };
}

function timeTicks(from, to, width) {
  const want = Math.max(2, Math.floor(width / 75));
  const step = TIME_STEPS.find((st) => (to - from) / st <= want) || TIME_STEPS[TIME_STEPS.length - 1];
  // Align to the browser's local clock (midnight, whole hours).
  const offset = -new Date(from).getTimezoneOffset() * 60000;
  const ticks = [];
  for (let t = Math.ceil((from + offset) / step) * step - offset; t <= to; t += step) ticks.push(t);
  return { ticks, step };
}

function timeTickLabel(t, step, previous) {
  const d = new Date(t);
  const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  if (step >= DAY) return [day];
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  const p = previous === null ? null : new Date(previous);
  const newDay = p === null || p.getDate() !== d.getDate();
  return newDay ? [hm, day] : [hm];
}

/** The palette slot of a series: its position, unless the chart groups series (one colour per model). */
function colour(spec, name, i) {
  return `s${(spec.colorOf ? spec.colorOf(name, i) : i) % PALETTE_SIZE}`;
}

function seriesData(series) {
  return series.map((se) => ({ name: se.name, points: se.points.filter(([, y]) => y !== null && y !== undefined) }));
}

function xText(spec, x) {
  if (spec.x.type === "time") return fmtTime(x, spec.x.granularity || "minute");
  return spec.x.format ? spec.x.format(x) : String(x);
}

function dataTable(spec, data) {
  const xs = [...new Set(data.flatMap((se) => se.points.map(([x]) => x)))].sort((a, b) => a - b);
  const unit = UNITS[spec.y.unit] || UNITS.count;
  const lookup = data.map((se) => new Map(se.points.map(([x, y]) => [x, y])));
  return h("details", { class: "chart-data" },
    h("summary", {}, "Data"),
    h("div", { class: "table-scroll" },
      h("table", { class: "data" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, spec.x.label || "time"),
          data.map((se) => h("th", { scope: "col", class: "num" }, `${se.name} (${unit.label})`)))),
        h("tbody", {}, xs.map((x) => h("tr", {},
          h("th", { scope: "row" }, xText(spec, x)),
          lookup.map((m) => h("td", { class: "num" }, m.has(x) ? unit.full(m.get(x)) : "–"))))))));
}

function legend(spec, data) {
  if (!data.length || (data.length < 2 && !spec.alwaysLegend)) return null;
  return h("ul", { class: "legend", "aria-label": "Legend" },
    data.map((se, i) => h("li", {}, h("span", { class: `sw ${colour(spec, se.name, i)}${spec.dashed && spec.dashed(se.name) ? " dashed" : ""}`, "aria-hidden": "true" }), se.name)));
}

/** The frame both kinds share: scales, gridlines, axes, unit label. */
function frame(spec, data, width) {
  const iw = Math.max(80, width - MARGIN.left - MARGIN.right);
  const ih = HEIGHT - MARGIN.top - MARGIN.bottom;
  const unit = UNITS[spec.y.unit] || UNITS.count;
  const ys = [];
  for (const se of spec.stackedTotals || data) for (const [, y] of se.points) ys.push(y);
  let lo = spec.y.min !== undefined ? spec.y.min : Math.min(0, ...ys);
  let hi = spec.y.max !== undefined ? spec.y.max : Math.max(lo + (spec.y.unit === "%" ? 1 : 1e-9), ...ys);
  if (!ys.length && spec.y.max === undefined) hi = spec.y.unit === "%" ? 1 : 1;
  const yd = spec.y.unit === "%" && spec.y.max === undefined ? { lo: 0, hi: 1, ticks: [0, 0.25, 0.5, 0.75, 1] } : niceDomain(lo, hi, 5, ["count", "tokens"].includes(spec.y.unit));
  lo = yd.lo;
  hi = yd.hi;
  const y = (v) => MARGIN.top + ih - ((v - lo) / (hi - lo || 1)) * ih;

  let x0 = spec.x.from;
  let x1 = spec.x.to;
  if (x0 !== undefined && x1 !== undefined) {
    // The first bucket may start before the range does: widen, so no bar hangs over the y axis.
    for (const se of data) for (const [px] of se.points) x0 = Math.min(x0, px);
  } else {
    const xs = data.flatMap((se) => se.points.map(([px]) => px));
    x0 = xs.length ? Math.min(...xs) : 0;
    x1 = xs.length ? Math.max(...xs) : 1;
    if (spec.x.pad) {
      x0 -= spec.x.pad;
      x1 += spec.x.pad;
    }
    if (x0 === x1) {
      x0 -= 1;
      x1 += 1;
    }
  }
  const x = (v) => MARGIN.left + ((v - x0) / (x1 - x0 || 1)) * iw;

  const g = s("g", { class: "axes" });
  for (const t of yd.ticks) {
    g.append(s("line", { class: t === 0 && lo < 0 ? "grid zero" : "grid", x1: MARGIN.left, x2: MARGIN.left + iw, y1: y(t), y2: y(t) }));
    g.append(s("text", { class: "tick", x: MARGIN.left - 6, y: y(t) + 4, "text-anchor": "end" }, unit.tick(t)));
  }
  g.append(s("text", { class: "unit", x: MARGIN.left - 6, y: MARGIN.top - 12, "text-anchor": "end" }, spec.y.label || unit.label));
  g.append(s("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left + iw, y1: MARGIN.top + ih, y2: MARGIN.top + ih }));
  g.append(s("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: MARGIN.top + ih }));

  let xticks;
  if (spec.x.type === "time") {
    const { ticks, step } = timeTicks(x0, x1, iw);
    let previous = null;
    xticks = ticks.map((t) => {
      const lines = timeTickLabel(t, step, previous);
      previous = t;
      return [t, lines];
    });
  } else {
    const nd = niceDomain(x0, x1, Math.max(2, Math.floor(iw / 70)));
    const step = Math.max(1, nd.ticks[1] - nd.ticks[0] || 1);
    xticks = [];
    for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) xticks.push([t, [spec.x.format ? spec.x.format(t) : String(t)]]);
  }
  for (const [t, lines] of xticks) {
    const px = x(t);
    if (px < MARGIN.left - 1 || px > MARGIN.left + iw + 1) continue;
    g.append(s("line", { class: "tickmark", x1: px, x2: px, y1: MARGIN.top + ih, y2: MARGIN.top + ih + 4 }));
    g.append(s("text", { class: "tick", x: px, y: MARGIN.top + ih + 16, "text-anchor": "middle" },
      lines.map((line, i) => s("tspan", { x: px, dy: i === 0 ? 0 : 13 }, line))));
  }
  return { g, x, y, iw, ih, unit, lo, hi, x0, x1 };
}

function markers(spec, f) {
  const g = s("g", { class: "markers" });
  (spec.markers || []).forEach((m, i) => {
    if (m.x < f.x0 || m.x > f.x1) return;
    const px = f.x(m.x);
    const row = i % 2;
    g.append(s("g", { class: `marker ${m.kind || ""}` },
      s("title", {}, m.title || m.label),
      s("line", { x1: px, x2: px, y1: MARGIN.top - 4 + row * 12, y2: MARGIN.top + f.ih }),
      s("text", { x: px + 3, y: MARGIN.top + 6 + row * 12, "text-anchor": px > MARGIN.left + f.iw - 60 ? "end" : "start", dx: px > MARGIN.left + f.iw - 60 ? -6 : 0 }, m.label)));
  });
  return g;
}

function drawLines(spec, data, f) {
  const g = s("g", { class: "plot" });
  const gap = spec.gapAfter; // a step longer than this breaks the line (a missing bucket)
  data.forEach((se, i) => {
    const cls = colour(spec, se.name, i);
    let d = "";
    let last = null;
    const raw = spec.series[i].points;
    for (const [px, py] of raw) {
      if (py === null || py === undefined) {
        last = null;
        continue;
      }
      const broken = last === null || (gap && px - last > gap);
      d += `${broken ? "M" : "L"}${f.x(px).toFixed(1)},${f.y(py).toFixed(1)}`;
      last = px;
    }
    const dashed = spec.dashed && spec.dashed(se.name);
    g.append(s("path", { class: `line ${cls}${dashed ? " dashed" : ""}`, d }));
    for (const [px, py] of se.points) {
      g.append(s("g", { class: "pt" },
        s("title", {}, `${se.name}: ${f.unit.full(py)} · ${xText(spec, px)}`),
        s("circle", { class: `hit`, cx: f.x(px), cy: f.y(py), r: 8 }),
        s("circle", { class: `dot ${cls}`, cx: f.x(px), cy: f.y(py), r: 2.5 })));
    }
  });
  return g;
}

function drawBars(spec, data, f) {
  const g = s("g", { class: "plot" });
  const xs = [...new Set(data.flatMap((se) => se.points.map(([x]) => x)))].sort((a, b) => a - b);
  const band = spec.x.type === "time" ? spec.bucketMs : spec.x.band || 1;
  const full = Math.max(2, f.x(f.x0 + band) - f.x(f.x0));
  const stacked = spec.stacked;
  const groupWidth = full * 0.8;
  const barWidth = stacked ? groupWidth : groupWidth / Math.max(1, data.length);
  const lookups = data.map((se) => new Map(se.points));
  for (const x of xs) {
    // Time buckets start at x; numeric categories are centred on x.
    const left = spec.x.type === "time" ? f.x(x) + full * 0.1 : f.x(x) - groupWidth / 2;
    let base = 0;
    data.forEach((se, i) => {
      const v = lookups[i].get(x);
      if (v === undefined || v === null) return;
      const cls = colour(spec, se.name, i);
      const a = stacked ? base : 0;
      const b = stacked ? base + v : v;
      if (stacked) base += v;
      const top = Math.min(f.y(a), f.y(b));
      const hgt = Math.max(v === 0 ? 0 : 1, Math.abs(f.y(a) - f.y(b)));
      const bx = stacked ? left : left + i * barWidth;
      g.append(s("rect", { class: `bar ${cls}`, x: bx.toFixed(1), y: top.toFixed(1), width: Math.max(1, barWidth - (stacked ? 0 : 1)).toFixed(1), height: hgt.toFixed(1) },
        s("title", {}, `${se.name}: ${f.unit.full(v)} · ${xText(spec, x)}`)));
    });
  }
  return g;
}

function bodyWidth(figure) {
  const body = figure.querySelector(".chart-body");
  const w = body ? body.clientWidth : 0;
  return w ? Math.max(280, Math.round(w)) : 0;
}

function draw(figure) {
  const spec = figure._spec;
  const width = bodyWidth(figure) || spec.width || 640;
  const data = seriesData(spec.series);
  if (spec.kind === "bar" && spec.stacked) {
    // The y scale must hold the stacked totals.
    const totals = new Map();
    for (const se of data) for (const [x, y] of se.points) totals.set(x, (totals.get(x) || 0) + Math.max(0, y));
    spec.stackedTotals = [{ points: [...totals.entries()] }];
  }
  const f = frame(spec, data, width);
  const empty = data.every((se) => se.points.length === 0);
  const svg = s("svg", {
    class: "chart-svg", width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
    "aria-label": `${spec.title}${empty ? ": no data in this range" : ""}`,
    "data-series": JSON.stringify(data),
  },
  f.g,
  spec.kind === "bar" ? drawBars(spec, data, f) : drawLines(spec, data, f),
  markers(spec, f),
  empty ? s("text", { class: "nodata", x: MARGIN.left + f.iw / 2, y: MARGIN.top + f.ih / 2, "text-anchor": "middle" }, spec.emptyText || "no data in this range") : null);
  svg.dataset.width = String(width);
  const old = figure.querySelector("svg");
  if (old) old.replaceWith(svg);
  else figure.querySelector(".chart-body").append(svg);
}

/**
 * A chart. spec: {name, title, kind: "line"|"bar", series: [{name, points: [[x, y|null]]}],
 * x: {type: "time"|"number", from, to, granularity, label, format}, y: {unit, min, max, label},
 * markers: [{x, label, title, kind}], gapAfter (ms: longer steps break a line), bucketMs, stacked, note}.
 */
export function chart(spec) {
  const data = seriesData(spec.series);
  const figure = h("figure", { class: "chart", "data-chart": spec.name },
    h("figcaption", {}, spec.title, spec.note ? h("span", { class: "note" }, spec.note) : null),
    h("div", { class: "chart-body" }),
    legend(spec, data),
    dataTable(spec, data));
  figure._spec = spec;
  draw(figure);
  return figure;
}

/** Redraw the charts under root whose width changed (after they enter the page, or on resize). */
export function fitCharts(root) {
  for (const figure of root.querySelectorAll("figure.chart")) {
    if (!figure._spec) continue;
    const svg = figure.querySelector("svg");
    const want = bodyWidth(figure);
    if (want && (!svg || svg.dataset.width !== String(want))) draw(figure);
  }
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => fitCharts(document), 150);
});
