// The console's shell: hash routes (#/page/arg?range=24h&...), the header (nav, range, theme, live
// indicator), and re-fetching the current page on each `landed` event (at most every 500 ms) and every 10 s.

import { h } from "./dom.js";
import { streamUrl } from "./api.js";
import { errorBox } from "./ui.js";
import { fitCharts } from "./charts.js";
import overview from "./pages/overview.js";
import tools from "./pages/tools.js";
import models from "./pages/models.js";
import trajectories from "./pages/trajectories.js";
import trajectory from "./pages/trajectory.js";
import deadletters from "./pages/deadletters.js";
import pipeline from "./pages/pipeline.js";
import trainer from "./pages/trainer.js";
import exportsPage from "./pages/exports.js";

const PAGES = [
  ["overview", "Overview", overview],
  ["tools", "Tools", tools],
  ["models", "Models", models],
  ["trajectories", "Trajectories", trajectories],
  ["deadletters", "Dead letters", deadletters],
  ["pipeline", "Pipeline", pipeline],
  ["trainer", "Trainer", trainer],
  ["exports", "Exports & reports", exportsPage],
];
const RANGES = ["15m", "1h", "6h", "24h", "7d", "30d", "90d"];
const THEME_KEY = "trajstream-console-theme";
const MIN_REFRESH_MS = 500;
const FALLBACK_REFRESH_MS = 10000;

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const rangeSelect = document.getElementById("range");

let current = null; // {key, mounted: {refresh}, route}
let refreshing = false;
let pendingRefresh = false;
let lastRefresh = 0;
let refreshTimer = null;

/** The route in the hash: #/trajectories/abc?range=24h -> {page, args: ["abc"], params}. */
function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  if (!RANGES.includes(params.get("range"))) params.set("range", "24h");
  return { page: parts[0] || "overview", args: parts.slice(1), params };
}

function href(page, params) {
  const q = params.toString();
  return `#/${page}${q ? `?${q}` : ""}`;
}

function renderNav(route) {
  const keep = new URLSearchParams({ range: route.params.get("range") });
  const active = route.page === "trajectory" ? "trajectories" : route.page;
  nav.replaceChildren(...PAGES.map(([key, label]) =>
    h("a", { href: href(key, keep), "aria-current": key === active ? "page" : null, "data-testid": `nav-${key}` }, label)));
  rangeSelect.value = route.params.get("range");
}

function context(route) {
  return {
    route,
    params: route.params,
    range: route.params.get("range"),
    /** Change query parameters of the current route (null removes one); a new hash, so Back works. */
    setParams(changes) {
      const p = new URLSearchParams(route.params);
      for (const [k, v] of Object.entries(changes)) {
        if (v === null || v === undefined || v === "") p.delete(k);
        else p.set(k, v);
      }
      const path = [route.page, ...route.args.map(encodeURIComponent)].join("/");
      location.hash = `#/${path}${p.toString() ? `?${p}` : ""}`;
    },
    href,
    refresh: () => refreshNow(),
    confirm,
  };
}

function mount() {
  let route = parseRoute();
  // #/trajectories/<id> is the detail page.
  if (route.page === "trajectories" && route.args.length) route = { ...route, page: "trajectory" };
  renderNav(route);
  const entry = PAGES.find(([key]) => key === route.page);
  const page = route.page === "trajectory" ? trajectory : entry ? entry[2] : null;
  const key = `${route.page}/${route.args.join("/")}?${route.params}`;
  if (current && current.key === key) return;
  const sameView = current && current.route.page === route.page && current.route.args.join("/") === route.args.join("/");
  const y = window.scrollY;
  main.replaceChildren();
  if (!page) {
    main.append(errorBox({ message: `There is no page “${route.page}”.`, kind: "not_found" }));
    current = null;
    return;
  }
  document.title = `${route.page === "trajectory" ? "Trajectory" : entry[1]} · trajstream console`;
  const mounted = page.mount(main, context(route));
  current = { key, route, mounted };
  fitCharts(main);
  // A filter change on the same view keeps the reader where they were.
  if (sameView) window.scrollTo(0, y);
  else window.scrollTo(0, 0);
  refreshNow();
}

async function refreshNow() {
  if (!current) return;
  if (refreshing) {
    pendingRefresh = true;
    return;
  }
  refreshing = true;
  lastRefresh = Date.now();
  const mine = current;
  try {
    await mine.mounted.refresh();
  } catch (e) {
    // A page shows its own errors; anything that escapes is a bug worth seeing in the console.
    console.warn("refresh failed", e);
  } finally {
    refreshing = false;
    if (pendingRefresh) {
      pendingRefresh = false;
      scheduleRefresh();
    }
  }
}

/** At most one refresh per MIN_REFRESH_MS, however many `landed` events arrive. */
function scheduleRefresh() {
  if (refreshTimer) return;
  const wait = Math.max(0, lastRefresh + MIN_REFRESH_MS - Date.now());
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    // A confirmation open on screen is not pulled from under the reader.
    if (document.getElementById("confirm").open) {
      pendingRefresh = true;
      return;
    }
    refreshNow();
  }, wait);
}

// ---- the live stream ----
const live = document.getElementById("live");
function setLive(state, text) {
  live.dataset.state = state;
  live.querySelector(".live-text").textContent = text || state;
}

let source = null;
async function connect() {
  if (source) source.close();
  setLive(source ? "reconnecting" : "connecting");
  source = new EventSource(await streamUrl());
  source.addEventListener("open", () => setLive("live"));
  source.addEventListener("landed", () => {
    setLive("live");
    scheduleRefresh();
  });
  source.addEventListener("ping", () => setLive("live"));
  source.addEventListener("error", () => {
    setLive("reconnecting");
    // EventSource retries by itself unless the server refused it outright (closed): then we do, in 5 s.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  });
}

// ---- theme ----
const themeButton = document.getElementById("theme-toggle");
function effectiveTheme() {
  const set = document.documentElement.getAttribute("data-theme");
  if (set) return set;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function labelThemeButton() {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  themeButton.textContent = next === "dark" ? "◐ Dark" : "◑ Light";
  themeButton.setAttribute("aria-label", `Switch to the ${next} theme`);
  themeButton.dataset.theme = effectiveTheme();
}
themeButton.addEventListener("click", () => {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  document.documentElement.setAttribute("data-theme", next);
  try {
    localStorage.setItem(THEME_KEY, next);
  } catch (e) {
    // A browser that keeps nothing still switches for this visit.
  }
  labelThemeButton();
});
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", labelThemeButton);

// ---- confirmation dialog (a <dialog>, not window.confirm: it does not block the page or a test driver) ----
const dialog = document.getElementById("confirm");
function confirm(title, text, okLabel = "Confirm") {
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  dialog.querySelector('[data-testid="confirm-ok"]').textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      if (pendingRefresh) {
        pendingRefresh = false;
        scheduleRefresh();
      }
    }, { once: true });
  });
}

rangeSelect.addEventListener("change", () => {
  const route = parseRoute();
  route.params.set("range", rangeSelect.value);
  route.params.delete("page");
  const path = location.hash.replace(/^#\/?/, "").split("?")[0] || "overview";
  location.hash = `#/${path}?${route.params}`;
});

window.addEventListener("hashchange", mount);
labelThemeButton();
if (!location.hash) history.replaceState(null, "", `${location.pathname}${location.search}#/overview?range=24h`);
mount();
connect();
setInterval(() => {
  if (!document.hidden && !dialog.open) scheduleRefresh();
}, FALLBACK_REFRESH_MS);
