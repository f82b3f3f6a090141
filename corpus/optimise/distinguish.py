"""What sets a cluster's failures apart from the successes of their task group: the tools each side calls,
and the order of the first calls (``a<b``: a called before b). A feature counts when its rate on one side
is above the other beyond doubt (95% Wilson intervals apart).

A step the successes take and the failures skip is what an instruction can add ("missing"); a step only
the failures take is more often a reaction to the failure (a retry, an escalation) than its cause
("extra"), so missing steps rank first."""

from __future__ import annotations

from collections import Counter
from typing import Any

from trajstream.corpus.optimise.digest import Digest
from trajstream.corpus.optimise.report import evidence
from trajstream.corpus.optimise.stats import Rate


def features(d: Digest) -> set[str]:
    first: dict[str, int] = {}
    for i, tool in enumerate(d.tools):
        first.setdefault(tool, i)
    out = {f"calls:{t}" for t in first}
    out |= {f"order:{a}<{b}" for a in first for b in first if first[a] < first[b]}
    return out


def _follows(tool: str, successes: list[Digest], failures: list[Digest]) -> list[str]:
    """The tools the successes call after ``tool`` (in at least 80% of them) that the failures call too."""
    after: Counter[str] = Counter()
    for d in successes:
        if tool in d.tools:
            after.update(set(d.tools[d.tools.index(tool) + 1 :]) - {tool})
    with_tool = sum(tool in d.tools for d in successes)
    failing_calls = {t for d in failures for t in d.tools}
    return [t for t, n in after.most_common() if n >= 0.8 * with_tool and t in failing_calls]


def distinguish(failures: list[Digest], successes: list[Digest]) -> list[dict[str, Any]]:
    counts_f = Counter(f for d in failures for f in features(d))
    counts_s = Counter(f for d in successes for f in features(d))
    found = []
    for feature in sorted(set(counts_f) | set(counts_s)):
        rs, rf = Rate(counts_s[feature], len(successes)), Rate(counts_f[feature], len(failures))
        if rs.above(rf):
            side = "missing"
        elif rf.above(rs):
            side = "extra"
        else:
            continue
        kind, _, what = feature.partition(":")
        item: dict[str, Any] = {"feature": feature, "kind": kind, "side": side, "in_successes": rs.as_json(),
                                "in_failures": rf.as_json(),
                                "difference": round(abs(rs.value - rf.value), 4)}  # fmt: skip
        if kind == "calls":
            item["tool"] = what
            if side == "missing":
                item["before"] = _follows(what, successes, failures)
                item["evidence_failures_without"] = evidence(d.trajectory_id for d in failures if what not in d.tools)
                item["evidence_successes_with"] = evidence(d.trajectory_id for d in successes if what in d.tools)
            else:
                item["evidence_failures_with"] = evidence(d.trajectory_id for d in failures if what in d.tools)
        found.append(item)
    # Missing before extra; a tool before an order of tools (it says more simply); then the larger gap.
    found.sort(key=lambda f: (f["side"] != "missing", f["kind"] != "calls", -f["difference"], f["feature"]))
    return found


def sentence(f: dict[str, Any]) -> str:
    s, fl = f["in_successes"], f["in_failures"]
    rates = f"{s['hits']}/{s['n']} successes, {fl['hits']}/{fl['n']} failures"
    if f["kind"] == "calls" and f["side"] == "missing":
        before = f" before {', '.join(f'`{t}`' for t in f['before'])}" if f.get("before") else ""
        return f"the successes call `{f['tool']}`{before}; the failures skip it (called in {rates})"
    if f["kind"] == "calls":
        return f"the failures call `{f['tool']}`, the successes do not ({rates})"
    a, b = f["feature"].removeprefix("order:").split("<")
    who = "successes" if f["side"] == "missing" else "failures"
    return f"the {who} call `{a}` before `{b}` ({rates})"
