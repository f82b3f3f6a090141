// Numbers, times and units as the pages show them.

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function count(n) {
  return n === null || n === undefined ? "–" : nf.format(n);
}

export function pct(f, digits = 1) {
  return f === null || f === undefined ? "–" : `${(f * 100).toFixed(digits)}%`;
}

export function num(f, digits = 2) {
  return f === null || f === undefined ? "–" : Number(f).toFixed(digits);
}

export function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 10000) return `${nf.format(Math.round(v))}`;
  return v >= 100 ? `${Math.round(v)}` : `${Number(v).toFixed(1)}`;
}

export function duration(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(1)} s`;
  return `${Math.floor(v / 60000)} min ${Math.round((v % 60000) / 1000)} s`;
}

export function usd(v) {
  if (v === null || v === undefined) return "–";
  return v < 1 ? `$${v.toFixed(4)}` : `$${v.toFixed(2)}`;
}

export function megabytes(bytes) {
  return bytes === null || bytes === undefined ? "–" : (bytes / 1e6).toFixed(1);
}

/** A compact number for axis ticks: 1.2k, 3M. */
export function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  if (a === 0) return "0";
  if (a < 0.01) return v.toExponential(0);
  return `${+v.toFixed(a < 1 ? 2 : a < 100 && !Number.isInteger(v) ? 1 : 0)}`;
}

const pad = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A time (epoch ms) in the browser's local time, as precise as the granularity asks. */
export function time(t, granularity = "minute") {
  if (t === null || t === undefined) return "–";
  const d = new Date(t);
  const day = `${MONTHS[d.getMonth()]} ${d.getDate()}`;
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (granularity === "day" || granularity === "week") return day;
  if (granularity === "hour") return `${day} ${hm}`;
  if (granularity === "second") return `${day} ${hm}:${pad(d.getSeconds())}`;
  return `${day} ${hm}`;
}

export function ago(t) {
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export const RANGE_WORDS = {
  "15m": "15 minutes", "1h": "hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days", "30d": "30 days", "90d": "90 days",
};

export function rangeWords(range) {
  const w = RANGE_WORDS[range] || RANGE_WORDS["24h"];
  return w === "hour" ? "the last hour" : `the last ${w}`;
}

export function versionLabel(v) {
  return v === "" || v === null || v === undefined ? "unversioned" : v;
}
