"""The skills report: improvised call sequences worth registering as skills, and how registered skills fare.

- **Candidates**: each trajectory's tool calls, with immediate repeats folded into one (a retry is one
  step), give its contiguous n-grams of ``MIN_LENGTH``..``MAX_LENGTH`` calls (two calls in a row are
  usually a step and its reply; three or more make a procedure). A sequence is a candidate when it
  recurs in at least ``MIN_SUPPORT`` successful trajectories of at least ``MIN_GROUPS`` task groups and
  contains no registered skill. Its lift is the success rate of the trajectories of those groups that
  contain it over the rate of those that do not. A candidate contained in a longer one with nearly the
  same support is dropped (the longer one says more). Ranked by support in successes, then lift.
- **Registered skills** (named by the caller: the corpus does not know which tools are skills): within
  each task group that uses one, success with it against without it; "rarely used where it would have
  helped" when used in under a quarter of the group's trajectories and success is higher with it beyond
  doubt; "correlated with failure" when success is lower with it beyond doubt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

from trajstream.corpus.optimise.digest import Digest, by_group
from trajstream.corpus.optimise.report import evidence, ids_md
from trajstream.corpus.optimise.stats import Rate

MIN_LENGTH = 3
MAX_LENGTH = 5
MIN_SUPPORT = 5
MIN_GROUPS = 2
RARE = 0.25


def folded(tools: list[str]) -> list[str]:
    return [t for i, t in enumerate(tools) if i == 0 or tools[i - 1] != t]


def ngrams(tools: list[str]) -> set[tuple[str, ...]]:
    seq = folded(tools)
    return {tuple(seq[i : i + n]) for n in range(MIN_LENGTH, MAX_LENGTH + 1) for i in range(len(seq) - n + 1)}


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    n = len(shorter)
    return any(longer[i : i + n] == shorter for i in range(len(longer) - n + 1))


def candidates(digests: list[Digest], skills: Collection[str]) -> list[dict[str, Any]]:
    grams = {d.trajectory_id: ngrams(d.tools) for d in digests}
    support: Counter[tuple[str, ...]] = Counter()
    groups: dict[tuple[str, ...], set[tuple[str, str]]] = {}
    for d in digests:
        if d.success:
            for g in grams[d.trajectory_id]:
                support[g] += 1
                groups.setdefault(g, set()).add((d.agent_id, d.task_key))
    found: list[dict[str, Any]] = []
    for gram, n in support.items():
        if n < MIN_SUPPORT or len(groups[gram]) < MIN_GROUPS or any(t in skills for t in gram):
            continue
        scope = [d for d in digests if (d.agent_id, d.task_key) in groups[gram]]
        with_ = [d for d in scope if gram in grams[d.trajectory_id]]
        without = [d for d in scope if gram not in grams[d.trajectory_id]]
        rw = Rate(sum(d.success for d in with_), len(with_))
        ro = Rate(sum(d.success for d in without), len(without))
        found.append({
            "kind": "skill_candidate", "sequence": list(gram), "support_in_successes": n,
            "task_groups": [{"agent": a, "task_key": k} for a, k in sorted(groups[gram])],
            "success_with": rw.as_json(), "success_without": ro.as_json(),
            "lift": round(rw.value / ro.value, 3) if ro.n and ro.value else None,
            "evidence": evidence(d.trajectory_id for d in with_ if d.success),
        })  # fmt: skip
    found.sort(key=lambda c: (-c["support_in_successes"], -(c["lift"] or 0), -len(c["sequence"])))
    kept: list[dict[str, Any]] = []
    for c in sorted(found, key=lambda c: -len(c["sequence"])):
        if not any(_contains(tuple(k["sequence"]), tuple(c["sequence"]))
                   and k["support_in_successes"] >= 0.9 * c["support_in_successes"] for k in kept):  # fmt: skip
            kept.append(c)
    return [c for c in found if c in kept]


def registered(digests: list[Digest], skills: Collection[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rarely used where they would have helped, correlated with failure)."""
    rare, failing = [], []
    for (agent, group), ds in by_group(digests):
        for skill in sorted(s for s in skills if any(s in d.tools for d in ds)):
            with_ = [d for d in ds if skill in d.tools]
            without = [d for d in ds if skill not in d.tools]
            rw = Rate(sum(d.success for d in with_), len(with_))
            ro = Rate(sum(d.success for d in without), len(without))
            row = {"skill": skill, "agent": agent, "task_key": group, "used_in": Rate(len(with_), len(ds)).as_json(),
                   "success_with": rw.as_json(), "success_without": ro.as_json(),
                   "evidence_with": evidence(d.trajectory_id for d in with_),
                   "evidence_without": evidence(d.trajectory_id for d in without)}  # fmt: skip
            if len(with_) < RARE * len(ds) and rw.above(ro):
                rare.append({"kind": "skill_underused", **row})
            if ro.above(rw):
                failing.append({"kind": "skill_with_failure", **row})
    return rare, failing


def skills_report(digests: list[Digest], skills: Collection[str]) -> dict[str, Any]:
    found = candidates(digests, skills)
    rare, failing = registered(digests, skills)
    return {"trajectories": len(digests), "registered_skills": sorted(skills),
            "findings": found + rare + failing, "candidates": found, "underused": rare,
            "correlated_with_failure": failing}  # fmt: skip


def _r(j: dict[str, Any]) -> str:
    lo, hi = j["ci95"]
    return f"{j['hits']}/{j['n']} = {j['rate']:.0%} (95% CI {lo:.0%}–{hi:.0%})"


def skills_markdown(report: dict[str, Any]) -> str:
    registered_ = ", ".join(f"`{s}`" for s in report["registered_skills"]) or "none named"
    lines = [f"# Skills report\n\n{report['trajectories']} trajectories; registered skills: {registered_}.\n",
             "## Skill candidates: improvised sequences that recur in successes\n"]  # fmt: skip
    for n, c in enumerate(report["candidates"], 1):
        groups = ", ".join(f"{g['agent']} / {g['task_key']}" for g in c["task_groups"])
        lift = f"{c['lift']:.2f}" if c["lift"] is not None else "n/a"
        lines.append(f"{n}. **{' → '.join(f'`{t}`' for t in c['sequence'])}**: in {c['support_in_successes']} "
                     f"successful trajectories of {len(c['task_groups'])} task groups ({groups}); success with it "
                     f"{_r(c['success_with'])}, without {_r(c['success_without'])}, lift {lift}. "
                     f"Trajectories: {ids_md(c['evidence'])}.")  # fmt: skip
    if not report["candidates"]:
        lines.append("None.")
    for title, key in (("Registered skills rarely used where they would have helped", "underused"),
                       ("Registered skills correlated with failure", "correlated_with_failure")):  # fmt: skip
        lines.append(f"\n## {title}\n")
        for f in report[key]:
            lines.append(f"- `{f['skill']}` in {f['agent']} / {f['task_key']}: used in {_r(f['used_in'])}; success "
                         f"with it {_r(f['success_with'])}, without {_r(f['success_without'])}. With it: "
                         f"{ids_md(f['evidence_with'])}.")  # fmt: skip
        if not report[key]:
            lines.append("None.")
    return "\n".join(lines) + "\n"
