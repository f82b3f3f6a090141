"""The tools report: which calls fail for which kind of request, which tools help, loops, tools that never help.

- **Failure correlations**: each call's arguments become features (``key~shape``: digits to ``#``,
  lowercase words to ``a``, so ``INT-40213`` is ``order_id~INT-#``; and ``key=value`` for short values).
  A feature is reported when the tool's calls with it fail (error or timeout) more often than its calls
  without it beyond doubt: the 95% Wilson intervals do not overlap. Ranked by the failures it explains.
- **Effect on success**: within each (agent, task group), the success rate of trajectories that call the
  tool against those that do not; a tool's effect is the mean difference, weighted by n₁n₀/(n₁+n₀).
- **Loops**: the same tool called ``LOOP_LENGTH`` or more times in a row in one trajectory.
- **Never helps**: tools compared in at least one group, in none of which success with them is above success
  without beyond doubt (the Wilson intervals apart), and whose effect is at most +0.05.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from trajstream.corpus.optimise.digest import Call, Digest, by_group
from trajstream.corpus.optimise.report import evidence, ids_md
from trajstream.corpus.optimise.stats import Rate

FAILED = ("error", "timeout")
MIN_SUPPORT = 5  # calls with a feature before its failure rate means anything
MIN_GROUP_SIDE = 3  # trajectories on each side of a with/without comparison
LOOP_LENGTH = 3
_VALUE_MAX = 24


def _shape(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return "#"
    if isinstance(value, str):
        return re.sub(r"[a-z]+", "a", re.sub(r"\d+", "#", value))[:_VALUE_MAX]
    return type(value).__name__


def features(call: Call) -> set[str]:
    """What a call's arguments look like: their shapes, and their short values."""
    out: set[str] = set()
    for key, value in call.arguments.items():
        out.add(f"{key}~{_shape(value)}")
        if isinstance(value, str | bool) and len(str(value)) <= _VALUE_MAX:
            out.add(f"{key}={value}")
    return out


@dataclass
class _Calls:
    ids: list[str]
    failed: list[bool]
    statuses: list[str]
    feats: list[set[str]]
    examples: list[dict[str, Any]]
    errors: list[str]


def failure_correlations(digests: list[Digest]) -> list[dict[str, Any]]:
    per_tool: dict[str, _Calls] = {}
    for d in digests:
        errors = iter(d.errors)
        for c in d.calls:
            calls = per_tool.setdefault(c.tool, _Calls([], [], [], [], [], []))
            calls.ids.append(d.trajectory_id)
            calls.failed.append(c.status in FAILED)
            calls.statuses.append(c.status)
            calls.feats.append(features(c))
            calls.examples.append(c.arguments)
            calls.errors.append(next(errors, "") if c.status in FAILED else "")
    found: list[dict[str, Any]] = []
    for tool, calls in per_tool.items():
        counts = Counter(f for fs in calls.feats for f in fs)
        total_failed = sum(calls.failed)
        for feature, n in counts.items():
            if n < MIN_SUPPORT or n == len(calls.ids):
                continue
            hits = sum(1 for fs, bad in zip(calls.feats, calls.failed, strict=True) if bad and feature in fs)
            with_, without = Rate(hits, n), Rate(total_failed - hits, len(calls.ids) - n)
            if not with_.above(without):
                continue
            idx = [i for i, fs in enumerate(calls.feats) if feature in fs and calls.failed[i]]
            found.append({
                "kind": "failure_correlation", "tool": tool, "feature": feature,
                "failure_with": with_.as_json(), "failure_without": without.as_json(),
                "statuses": dict(Counter(calls.statuses[i] for i in idx)),
                "example_arguments": [calls.examples[i] for i in idx[:3]],
                "errors": [e for e, _ in Counter(calls.errors[i] for i in idx if calls.errors[i]).most_common(3)],
                "evidence": evidence(calls.ids[i] for i in idx),
                "_rank": (hits, with_.low - without.high),
                "_rates": (with_, without),
            })  # fmt: skip
    # Of one tool's features that explain the same failed calls (a shape and its values), keep the widest.
    found.sort(key=lambda f: f["_rank"], reverse=True)
    kept: list[dict[str, Any]] = []
    for f in found:
        if not any(k["tool"] == f["tool"] and k["failure_with"]["hits"] >= f["failure_with"]["hits"]
                   and set(f["evidence"]["trajectory_ids"]) <= set(k["evidence"]["trajectory_ids"])
                   and k["failure_with"]["n"] <= f["failure_with"]["n"] * 1.5 for k in kept):  # fmt: skip
            kept.append(f)
    return kept


def effects(digests: list[Digest]) -> list[dict[str, Any]]:
    per_tool: dict[str, list[dict[str, Any]]] = {}
    for (agent, group), ds in by_group(digests):
        for tool in sorted({t for d in ds for t in d.tools}):
            with_ = [d for d in ds if tool in d.tools]
            without = [d for d in ds if tool not in d.tools]
            if len(with_) < MIN_GROUP_SIDE or len(without) < MIN_GROUP_SIDE:
                continue
            rw = Rate(sum(d.success for d in with_), len(with_))
            ro = Rate(sum(d.success for d in without), len(without))
            per_tool.setdefault(tool, []).append({
                "agent": agent, "task_key": group, "success_with": rw.as_json(), "success_without": ro.as_json(),
                "difference": round(rw.value - ro.value, 4), "helps": rw.above(ro), "hurts": ro.above(rw),
                "weight": len(with_) * len(without) / len(ds),
                "evidence_with": evidence(d.trajectory_id for d in with_),
                "evidence_without": evidence(d.trajectory_id for d in without),
            })  # fmt: skip
    ranked = []
    for tool, groups in per_tool.items():
        weight = sum(g["weight"] for g in groups)
        effect = sum(g["difference"] * g["weight"] for g in groups) / weight
        ranked.append({"tool": tool, "effect": round(effect, 4), "groups": groups})
    ranked.sort(key=lambda t: -t["effect"])
    return ranked


def loops(digests: list[Digest]) -> list[dict[str, Any]]:
    found: dict[str, list[Digest]] = {}
    longest: Counter[str] = Counter()
    for d in digests:
        run, previous = 0, None
        looped: set[str] = set()
        for tool in [*d.tools, None]:
            run = run + 1 if tool == previous else 1
            if tool is not None and run >= LOOP_LENGTH:
                looped.add(tool)
                longest[tool] = max(longest[tool], run)
            previous = tool
        for tool in looped:
            found.setdefault(tool, []).append(d)
    out: list[dict[str, Any]] = []
    for tool, ds in found.items():
        others = [d for d in digests if tool in d.tools and d not in ds]
        out.append({"kind": "loop", "tool": tool, "longest_run": longest[tool],
                    "success_in_loops": Rate(sum(d.success for d in ds), len(ds)).as_json(),
                    "success_otherwise": Rate(sum(d.success for d in others), len(others)).as_json(),
                    "evidence": evidence(d.trajectory_id for d in ds)})  # fmt: skip
    out.sort(key=lambda f: -f["evidence"]["count"])
    return out


def never_help(ranked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "kind": "never_helps",
            "tool": t["tool"],
            "effect": t["effect"],
            "groups": [
                {k: g[k] for k in ("agent", "task_key", "success_with", "success_without")} for g in t["groups"]
            ],
        }
        for t in ranked
        if not any(g["helps"] for g in t["groups"]) and t["effect"] <= 0.05
    ]


def tools_report(digests: list[Digest]) -> dict[str, Any]:
    correlations = failure_correlations(digests)
    ranked = effects(digests)
    looped = loops(digests)
    useless = never_help(ranked)
    usage = Counter(c.tool for d in digests for c in d.calls)
    failures = Counter(c.tool for d in digests for c in d.calls if c.status in FAILED)
    for f in correlations:
        del f["_rank"], f["_rates"]
    return {
        "trajectories": len(digests),
        "findings": correlations + looped + useless,  # most actionable first: a failing request kind
        "failure_correlations": correlations,
        "tool_failure_rates": {t: Rate(failures[t], n).as_json() for t, n in usage.most_common()},
        "effects": ranked,
        "loops": looped,
        "never_help": useless,
    }


def _r(j: dict[str, Any]) -> str:
    lo, hi = j["ci95"]
    return f"{j['hits']}/{j['n']} = {j['rate']:.0%} (95% CI {lo:.0%}–{hi:.0%})"


def tools_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Tools report\n\n{report['trajectories']} trajectories.\n", "## Failure correlations\n"]
    if not report["failure_correlations"]:
        lines.append("No argument pattern makes a tool fail more often than its other calls.\n")
    for n, f in enumerate(report["failure_correlations"], 1):
        lines.append(
            f"{n}. **`{f['tool']}` fails when `{f['feature']}`**: {_r(f['failure_with'])} of those calls failed, "
            f"against {_r(f['failure_without'])} of its other calls. Statuses: {f['statuses']}. "
            f"Errors: {'; '.join(f['errors']) or 'none recorded'}. Example arguments: "
            f"{f['example_arguments']}. Trajectories: {ids_md(f['evidence'])}.\n"
        )
    lines.append("\n## Effect on success within the same task group\n")
    lines.append(
        "| tool | effect (all groups) | agent / task group | difference here | success with | success without |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    for t in report["effects"]:
        for g in t["groups"]:
            rates = f"{_r(g['success_with'])} | {_r(g['success_without'])}"
            lines.append(f"| `{t['tool']}` | {t['effect']:+.2f} | {g['agent']} / {g['task_key']} | "
                         f"{g['difference']:+.2f} | {rates} |")  # fmt: skip
    lines.append("\n## Loops of repeated calls\n")
    for f in report["loops"] or []:
        lines.append(f"- `{f['tool']}` called up to {f['longest_run']} times in a row in {f['evidence']['count']} "
                     f"trajectories; success in them {_r(f['success_in_loops'])}, otherwise "
                     f"{_r(f['success_otherwise'])}. Trajectories: {ids_md(f['evidence'])}.")  # fmt: skip
    if not report["loops"]:
        lines.append("None.")
    lines.append("\n## Tools that never help\n")
    for f in report["never_help"] or []:
        lines.append(f"- `{f['tool']}`: effect {f['effect']:+.2f}; in no task group is success more likely with it "
                     "beyond doubt.")  # fmt: skip
    if not report["never_help"]:
        lines.append("None.")
    lines.append("\n## Failure rate of each tool\n")
    lines += [f"- `{t}`: {_r(r)}" for t, r in report["tool_failure_rates"].items()]
    return "\n".join(lines) + "\n"
