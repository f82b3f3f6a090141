// Trainer: the deployed version, every version with its gate, held-out reward against the deployed one,
// KL and size; rollbacks; held-out reward per version number.

import { get } from "../api.js";
import { h, code } from "../dom.js";
import { chart } from "../charts.js";
import { table, empty } from "../tables.js";
import { errorBox, swap, memory, section, badge } from "../ui.js";
import { num, time, megabytes } from "../format.js";

function heldout(d) {
  const vs = [...d.versions].sort((a, b) => a.number - b.number);
  const byNumber = new Map(vs.map((v) => [v.number, v.version]));
  const deployed = vs.find((v) => v.version === d.deployed);
  return chart({
    name: "trainer-heldout", title: "Held-out reward per version", kind: "line",
    series: [
      { name: "held-out reward", points: vs.map((v) => [v.number, v.heldout_reward]) },
      { name: "deployed version's reward (at the gate)", points: vs.map((v) => [v.number, v.heldout_reward_deployed]) },
    ],
    x: { type: "number", label: "version", pad: 0.5, format: (n) => byNumber.get(n) || `#${n}` }, y: { unit: "reward" },
    markers: deployed ? [{ x: deployed.number, label: `${deployed.version} deployed`, kind: "deployed" }] : [], alwaysLegend: true,
  });
}

export default {
  mount(root) {
    const top = h("div", { class: "deployed", "data-testid": "trainer-deployed" }, h("p", { class: "loading" }, "Loading…"));
    const versions = section("Versions");
    const chartSection = section("Held-out reward");
    const rollbacks = section("Rollbacks");
    root.append(h("h1", {}, "Trainer"), h("p", { class: "hint" }, "Now, whatever the range."), top, versions, h("div", { class: "grid two" }, chartSection, rollbacks));
    const memo = memory();
    return {
      async refresh() {
        let d;
        try {
          d = await get("trainer");
        } catch (e) {
          memo.forget("x");
          swap(top, errorBox(e));
          for (const s of [versions, chartSection, rollbacks]) swap(s.body, "");
          return;
        }
        if (memo.same("x", d)) return;
        const current = d.versions.find((v) => v.version === d.deployed);
        swap(top, h("section", { class: "card hero" },
          h("div", { class: "hero-label" }, `Deployed version of ${d.model}`),
          h("div", { class: "hero-value", "data-testid": "deployed-version" }, d.deployed || "none"),
          current ? h("div", { class: "meta" }, `held-out reward ${num(current.heldout_reward, 3)} · since ${time(current.created_at, "minute")}`) : null,
          !d.versions.length ? empty("No version yet. The trainer runs with the pipeline: ", code("trajstream up"), " starts it; ",
            code("trajstream demo --learn"), " shows a policy learning and being deployed.") : null));
        const sorted = [...d.versions].sort((a, b) => b.number - a.number);
        swap(versions.body, sorted.length ? table({
          name: "trainer-versions", rows: sorted, key: (v) => v.version,
          rowClass: (v) => (v.version === d.deployed ? "row-current" : null),
          columns: [
            { label: "version", value: (v) => h("span", { class: "mono" }, v.version, v.parent ? h("span", { class: "meta" }, ` ← ${v.parent}`) : null) },
            { label: "status", value: (v) => badge(v.status) },
            { label: "gate", value: (v) => badge(v.gate, v.reason) },
            { label: "held-out reward", num: true, value: (v) => num(v.heldout_reward, 3) },
            { label: "vs deployed", num: true, value: (v) => {
              if (v.heldout_reward === null || v.heldout_reward_deployed === null) return num(v.heldout_reward_deployed, 3);
              const diff = v.heldout_reward - v.heldout_reward_deployed;
              return h("span", { class: diff >= 0 ? "ok-text" : "bad-text", title: `deployed: ${num(v.heldout_reward_deployed, 3)}` }, `${diff >= 0 ? "+" : ""}${num(diff, 3)}`);
            } },
            { label: "KL", num: true, value: (v) => num(v.kl, 4) },
            { label: "size (MB)", num: true, value: (v) => megabytes(v.size_bytes) },
            { label: "created", value: (v) => time(v.created_at, "minute") },
            { label: "reason", cls: "task", value: (v) => v.reason },
          ],
        }) : empty("No versions registered."));
        swap(chartSection.body, heldout(d));
        swap(rollbacks.body, d.rollbacks.length ? table({
          name: "rollbacks", rows: d.rollbacks, key: (r) => `${r.version}@${r.t}`,
          columns: [
            { label: "when", value: (r) => time(r.t, "minute") },
            { label: "version", value: (r) => h("span", { class: "mono" }, r.version) },
            { label: "reason", cls: "task", value: (r) => r.reason },
          ],
        }) : empty("No rollbacks: the deployed versions have held."));
      },
    };
  },
};
