// Exports & reports: start an export of the corpus (format and filters) in the data worker, follow its
// progress, read its manifest and download it; the latest optimisation report of each kind, its top
// findings with their evidence, and (for an operator) making it again. These routes come from the corpus
// stage (corpus/console), served by the data worker, which alone may read embedded chDB while it runs.

import { get, post } from "../api.js";
import { h, code } from "../dom.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, section, memory, badge } from "../ui.js";
import { count, pct, ago, time } from "../format.js";

const POLL_MS = 1000;
const KIND_WORDS = { tools: "Tools", skills: "Skills", instructions: "Instructions" };
const TOP = 5; // findings shown per report; the Markdown link has them all
const TEXT_FILTERS = [
  ["agent", "agent"], ["domain", "domain"], ["model_version", "model version"], ["tag", "tag"], ["task_key", "task key"],
];
const OUTCOMES = ["success", "failure", "partial", "abandoned", "error"];

let lastExport = null; // the job id this browser started, kept across refreshes and visits
let lastStartError = null;

function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function progressBar(job, testid) {
  const { read, total } = job.progress || {};
  const label = total === null || total === undefined ? `${count(read)} trajectories read` : `${count(read)} of ${count(total)} trajectories read`;
  return h("div", { class: "job-progress" },
    h("progress", { max: total || 1, value: total ? read : null, "data-testid": testid, "aria-label": label }),
    h("span", { class: "hint" }, label));
}

/** The form's values as the API's JSON: comma-separated text fields become lists; empty ones are left out. */
function bodyOf(form) {
  const f = new FormData(form);
  const body = { format: f.get("format"), latest_only: f.get("latest_only") === "on" };
  for (const name of ["since", "until", "min_reward", "max_reward"]) {
    const v = String(f.get(name) || "").trim();
    if (v) body[name] = name.endsWith("reward") ? Number(v) : v;
  }
  const outcome = f.get("outcome");
  if (outcome) body.outcome = [outcome];
  for (const [name] of TEXT_FILTERS) {
    const values = String(f.get(name) || "").split(",").map((s) => s.trim()).filter(Boolean);
    if (values.length) body[name] = values;
  }
  return body;
}

function manifestView(job) {
  const m = job.manifest;
  const skipped = Object.entries(m.counts.skipped || {});
  return h("div", { class: "manifest", "data-testid": "export-manifest" },
    h("div", { class: "stats" },
      h("div", { class: "stat" }, h("div", { class: "stat-value", "data-testid": "export-read" }, count(m.counts.read)), h("div", { class: "stat-label" }, "trajectories read")),
      h("div", { class: "stat" }, h("div", { class: "stat-value", "data-testid": "export-rows" }, count(m.counts.exported)), h("div", { class: "stat-label" }, "rows exported")),
      h("div", { class: "stat" }, h("div", { class: "stat-value", "data-testid": "export-skipped" }, count(skipped.reduce((a, [, n]) => a + n, 0))), h("div", { class: "stat-label" }, "skipped"))),
    skipped.length ? h("ul", { class: "skipped", "data-testid": "export-skipped-reasons" },
      skipped.map(([reason, n]) => h("li", {}, `${count(n)} skipped: ${reason}`,
        (m.skipped_examples || {})[reason] ? h("span", { class: "hint" }, ` (e.g. ${(m.skipped_examples[reason] || []).slice(0, 3).join(", ")})`) : null))) : null,
    m.files.length ? table({
      name: "export-files", rows: m.files, key: (f) => f.path,
      columns: [
        { label: "file", value: (f) => h("span", { class: "mono" }, f.path) },
        { label: "rows", num: true, value: (f) => count(f.rows) },
        { label: "size", num: true, value: (f) => bytes(f.bytes) },
        { label: "sha256", value: (f) => h("span", { class: "mono sha", title: f.sha256 }, f.sha256) },
      ],
    }) : empty("No rows: nothing these filters select could be written in this format (the skipped reasons say why)."),
    h("p", {}, h("a", { class: "button primary", href: job.download, download: "", "data-testid": "export-download" }, "Download .tar.gz"),
      h("span", { class: "hint" }, ` the files and manifest.json, ${m.format}, made ${m.created_at}`)));
}

function jobView(job) {
  if (!job) return empty("No export yet. Pick a format and filters above and start one; ", code("trajstream export FORMAT --out DIR"), " does the same when the pipeline is down.");
  const head = h("p", { class: "job-head" }, badge(job.state === "done" ? "ready" : job.state === "running" ? "in_progress" : "failed"),
    " export ", h("span", { class: "mono" }, job.id), ` (${job.format})`);
  if (job.state === "running") return [head, progressBar(job, "export-progress")];
  if (job.state === "failed") return [head, errorBox({ message: job.error, kind: "bad_request" })];
  return [head, manifestView(job)];
}

function isRate(v) {
  return v && typeof v === "object" && "hits" in v && "n" in v && "ci95" in v;
}

function rateText(label, r) {
  return `${label.replace(/_/g, " ")}: ${r.hits}/${r.n} = ${pct(r.rate, 0)} (95% CI ${pct(r.ci95[0], 0)}–${pct(r.ci95[1], 0)})`;
}

function findingView(f, n, ctx) {
  const link = (id) => ctx.href(`trajectories/${encodeURIComponent(id)}`, new URLSearchParams({ range: "90d" }));
  const rates = Object.entries(f).filter(([, v]) => isRate(v));
  const evidence = Object.entries(f).filter(([k, v]) => k.startsWith("evidence") && v && v.trajectory_ids);
  return h("li", { class: "finding", "data-testid": `finding-${n}` },
    h("div", { class: "finding-head" }, f.headline || f.summary || f.kind),
    rates.length ? h("ul", { class: "rates" }, rates.map(([k, r]) => h("li", {}, rateText(k, r)))) : null,
    evidence.map(([k, ev]) => h("div", { class: "evidence" },
      h("span", { class: "hint" }, `${k === "evidence" ? "trajectories" : k.replace("evidence_", "trajectories ")} (${count(ev.count)}): `),
      ev.trajectory_ids.map((id, i) => [i ? ", " : "", h("a", { class: "mono", href: link(id) }, id)]),
      ev.count > ev.trajectory_ids.length ? ` and ${count(ev.count - ev.trajectory_ids.length)} more` : "")));
}

export default {
  mount(root, ctx) {
    const form = h("form", { class: "filters export-form", "data-testid": "export-form" });
    const startError = h("div", { "data-testid": "export-start-error", "aria-live": "polite" });
    const start = section("Export the corpus", { testid: "export-start" });
    const current = section("Export", { testid: "export-job" });
    const reports = section("Latest optimisation reports", { testid: "reports" });
    root.append(h("h1", {}, "Exports & reports"), start, current, reports);
    const memo = memory();
    let role = "read";
    let formats = null;
    let polling = null;
    const reportBodies = new Map(); // kind -> the report drawn, so a refresh does not fetch an unchanged one again

    function poll() {
      if (polling) return;
      polling = setTimeout(() => {
        polling = null;
        if (root.isConnected) ctx.refresh();
      }, POLL_MS);
    }

    function drawForm() {
      const operator = role === "operator";
      const label = (text, input, cls) => h("label", { class: cls || null }, text, input);
      form.replaceChildren(...[
        label("format", h("select", { name: "format", "data-testid": "export-format", required: true },
          formats.map((f) => h("option", { value: f.name, title: f.summary }, f.name)))),
        label("since", h("input", { name: "since", placeholder: "7d or 2025-01-31", class: "short", "data-testid": "export-since" })),
        label("until", h("input", { name: "until", placeholder: "ISO time or 1h", class: "short" })),
        label("outcome", h("select", { name: "outcome", "data-testid": "export-outcome" }, h("option", { value: "" }, "any"), OUTCOMES.map((o) => h("option", { value: o }, o)))),
        label("reward", h("span", { class: "pair" },
          h("input", { name: "min_reward", type: "number", step: "any", class: "short", placeholder: "min", "aria-label": "minimum reward" }), "–",
          h("input", { name: "max_reward", type: "number", step: "any", class: "short", placeholder: "max", "aria-label": "maximum reward" }))),
        TEXT_FILTERS.map(([name, text]) => label(text, h("input", { name, placeholder: "a, b", class: "short", "data-testid": `export-${name}` }))),
        h("label", { class: "check" }, h("span", {}, h("input", { type: "checkbox", name: "latest_only", checked: true }), " latest version only")),
        h("div", { class: "buttons" }, operator
          ? h("button", { type: "submit", class: "primary", "data-testid": "export-submit" }, "Start export")
          : h("span", { class: "hint" }, "Starting an export needs the operator role (the console on loopback, or an operator token).")),
      ].flat());
      form.onsubmit = async (e) => {
        e.preventDefault();
        try {
          const job = await post("exports", bodyOf(form));
          lastExport = job.id;
          lastStartError = null;
        } catch (err) {
          lastStartError = err;
        }
        swap(startError, lastStartError ? errorBox(lastStartError) : null);
        memo.forget("job");
        ctx.refresh();
      };
      swap(start.body, h("p", { class: "hint" }, "The same filters as ", code("trajstream export"),
        "; lists are comma-separated; times are a trajectory's end. One export runs at a time, in the data worker."), form,
      startError);
    }

    async function regenerate(kind) {
      const ok = await ctx.confirm(`Make a new ${kind} report?`, `The data worker reads the corpus and writes a new ${kind} report; it becomes the latest.`, "Make report");
      if (!ok) return;
      try {
        await post(`reports/${kind}`, {});
      } catch (err) {
        reportBodies.set(`${kind}:error`, err);
      }
      memo.forget("reports");
      ctx.refresh();
    }

    function reportCard(r, report) {
      const operator = role === "operator";
      const job = r.job;
      const button = operator ? h("button", { type: "button", class: "small", "data-testid": `regenerate-${r.kind}`, disabled: job && job.state === "running", on: { click: () => regenerate(r.kind) } }, "Regenerate") : null;
      const failed = reportBodies.get(`${r.kind}:error`) || (job && job.state === "failed" ? { message: job.error } : null);
      const parts = [h("div", { class: "report-head" }, h("h3", {}, KIND_WORDS[r.kind]), button)];
      if (job && job.state === "running") parts.push(progressBar(job, `report-progress-${r.kind}`));
      if (failed) parts.push(errorBox(failed));
      if (!r.latest) {
        parts.push(empty(`No ${r.kind} report yet: run `, code(`trajstream optimise ${r.kind}`), operator ? " or press Regenerate." : " (or ask an operator to make one here)."));
        return h("article", { class: "report", "data-testid": `report-${r.kind}` }, parts);
      }
      parts.push(h("p", { class: "meta" }, `${count(r.latest.trajectories)} trajectories, ${count(r.latest.findings)} findings, made ${time(r.latest.generated_at_ms, "second")} (${ago(r.latest.generated_at_ms)}) · `,
        h("a", { href: `/api/console/reports/${r.kind}/markdown`, target: "_blank", rel: "noopener" }, "the whole report (Markdown)")));
      const findings = (report && report.findings) || [];
      parts.push(findings.length
        ? h("ol", { class: "findings" }, findings.slice(0, TOP).map((f, i) => findingView(f, i, ctx)))
        : empty("Nothing found: no finding is backed by enough evidence in this corpus."));
      return h("article", { class: "report", "data-testid": `report-${r.kind}` }, parts);
    }

    async function drawReports() {
      let listed;
      try {
        listed = (await get("reports")).reports;
      } catch (err) {
        memo.forget("reports");
        swap(reports.body, errorBox(err));
        return;
      }
      const bodies = await Promise.all(listed.map(async (r) => {
        if (!r.latest) return null;
        const key = `${r.kind}@${r.latest.generated_at_ms}`;
        if (!reportBodies.has(key)) {
          try {
            reportBodies.set(key, await get(`reports/${r.kind}`));
          } catch (err) {
            return null;
          }
        }
        return reportBodies.get(key);
      }));
      if (listed.some((r) => r.job && r.job.state === "running")) poll();
      if (memo.same("reports", listed, role)) return;
      swap(reports.body, h("div", { class: "reports" }, listed.map((r, i) => reportCard(r, bodies[i]))));
    }

    async function drawJob() {
      let job = null;
      try {
        job = lastExport ? await get(`exports/${encodeURIComponent(lastExport)}`) : ((await get("exports")).exports[0] || null);
      } catch (err) {
        memo.forget("job");
        swap(current.body, errorBox(err));
        return;
      }
      if (job && job.state === "running") poll();
      if (memo.same("job", job)) return;
      swap(current.body, jobView(job));
    }

    return {
      async refresh() {
        const [who, fm] = await Promise.allSettled([get("whoami"), formats ? Promise.resolve({ formats }) : get("exports/formats")]);
        const newRole = who.status === "fulfilled" ? who.value.role : "read";
        if (fm.status === "rejected") {
          swap(start.body, errorBox(fm.reason));
        } else if (!form.isConnected || newRole !== role) {
          // Drawn once (and again only if the role changes), so a refresh never clears what is being typed.
          formats = fm.value.formats;
          role = newRole;
          drawForm();
        }
        role = newRole;
        await Promise.all([drawJob(), drawReports()]);
      },
    };
  },
};
