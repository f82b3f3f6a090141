"""The instructions report: clusters of failing trajectories, what sets them apart from the successes of
their task group, the instruction patches that would close the gap, and a GEPA reflective dataset.

Clusters come from ``clusters.py`` (embedding, or tools when no embedder is given); each is compared with
the successes of its main task group by ``distinguish.py``; clusters whose failures skip a step the
successes take rank first (an instruction can add a step), then by size times the gap. Patches come from
``patches.py``: an LLM when configured, a heuristic otherwise. The reflective dataset has GEPA's shape
(``make_reflective_dataset``'s records ``{"Inputs", "Generated Outputs", "Feedback"}``, plus ``score``):
one record per trajectory of the reported task groups, for the ``system_message`` component. Each patch
carries the patched system message in full (``text``) and as an Agent Lightning prompt template.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from trajstream.corpus.optimise.clusters import Encoder, cluster
from trajstream.corpus.optimise.digest import Digest
from trajstream.corpus.optimise.distinguish import distinguish, sentence
from trajstream.corpus.optimise.patches import diff, heuristic_lines, llm_lines, patched, prompt_template, request
from trajstream.corpus.optimise.report import evidence, ids_md
from trajstream.corpus.optimise.stats import Rate
from trajstream.settings import Settings

MAX_PATCHES = 3
MIN_CLUSTER = 3


def _transcript(d: Digest) -> str:
    calls = "; ".join(f"{c.tool}({', '.join(f'{k}={v}' for k, v in c.arguments.items())}) -> {c.status}"
                      for c in d.calls)  # fmt: skip
    return f"calls: {calls or 'none'}\nfinal: {d.final}"


def _analyse(digests: list[Digest], encoder: Encoder | None) -> list[dict[str, Any]]:
    failures = [d for d in digests if not d.success]
    successes: dict[tuple[str, str], list[Digest]] = {}
    for d in digests:
        if d.success:
            successes.setdefault((d.agent_id, d.task_key), []).append(d)
    out: list[dict[str, Any]] = []
    for members in cluster(failures, encoder):
        if len(members) < MIN_CLUSTER:
            continue
        groups = Counter((d.agent_id, d.task_key) for d in members)
        (agent, group), _ = groups.most_common(1)[0]
        mine = [d for d in members if (d.agent_id, d.task_key) == (agent, group)]
        wins = successes.get((agent, group), [])
        found = distinguish(mine, wins) if wins else []
        tools = Counter(t for d in members for t in set(d.tools))
        top = found[0] if found else None
        out.append({
            "agent": agent, "task_key": group, "task": mine[0].task, "system_message": mine[0].system_message,
            "size": len(members),
            "task_groups": [{"agent": a, "task_key": k, "count": n} for (a, k), n in groups.most_common()],
            "tools_involved": {t: n for t, n in tools.most_common()},
            "tool_errors": [e for e, _ in Counter(e.split(":")[0] for d in members for e in d.errors).most_common(3)],
            "group_success": Rate(len(wins), len(wins) + sum(1 for d in digests if not d.success and
                                  (d.agent_id, d.task_key) == (agent, group))).as_json(),
            "distinguishing": found[:5],
            "summary": sentence(top) if top else "nothing sets these failures apart from the group's successes",
            "evidence": evidence(d.trajectory_id for d in members),
            "_members": members, "_wins": wins,
            "_rank": (top is None, top is not None and top["side"] != "missing",
                      -len(mine) * (top["difference"] if top else 0)),
        })  # fmt: skip
    out.sort(key=lambda c: c["_rank"])
    return out


def _row(d: Digest, feedback: str) -> dict[str, Any]:
    return {"component": "system_message", "trajectory_id": d.trajectory_id,
            "Inputs": {"task": d.task, "request": d.request, "system_message": d.system_message},
            "Generated Outputs": _transcript(d), "Feedback": feedback, "score": d.reward}  # fmt: skip


def _gepa(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in clusters:
        rows += [_row(d, f"Failed ({d.outcome}). In this task group {c['summary']}.") for d in c["_members"]]
        rows += [_row(d, "Succeeded: this is what the task group's successes do.") for d in c["_wins"][:20]]
    return rows


def instructions_report(digests: list[Digest], encoder: Encoder | None,
                        settings: Settings | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """The report and the reflective dataset's rows."""
    clusters = _analyse(digests, encoder)
    patchable = [c for c in clusters if c["distinguishing"]][:MAX_PATCHES]
    proposer, why = "heuristic", "no LLM is configured (TRAJSTREAM_LLM_BASE_URL)"
    lines = [heuristic_lines(c["task"], c["distinguishing"]) for c in patchable]
    if settings is not None and settings.llm_configured and patchable:
        asks = [request(settings, c["system_message"], c["task"], c["distinguishing"],
                        [_transcript(d) for d in c["_members"][:5]]) for c in patchable]  # fmt: skip
        got, failed = asyncio.run(llm_lines(settings, asks))
        if failed is None:
            proposer, why, lines = f"llm:{settings.llm_model}", "an LLM is configured", got
        else:
            why = f"the LLM was configured but failed, so the heuristic proposed them: {failed}"
    for c, new in zip(patchable, lines, strict=True):
        text = patched(c["system_message"], new)
        c["patch"] = {"proposed_by": proposer, "lines": new, "diff": diff(c["agent"], c["system_message"], new),
                      "text": text, "prompt_template": prompt_template(text)}  # fmt: skip
    rows = _gepa(patchable)
    for c in clusters:
        for k in ("_members", "_wins", "_rank", "system_message"):
            c.pop(k)
    report = {"trajectories": len(digests), "failures": sum(not d.success for d in digests),
              "clustering": "embedding (all-MiniLM-L6-v2)" if encoder is not None else "tools called",
              "patches_proposed_by": proposer, "why": why, "findings": clusters,
              "reflective_dataset": {"rows": len(rows), "component": "system_message"}}  # fmt: skip
    return report, rows


def _r(j: dict[str, Any]) -> str:
    lo, hi = j["ci95"]
    return f"{j['hits']}/{j['n']} = {j['rate']:.0%} (95% CI {lo:.0%}–{hi:.0%})"


def instructions_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Instructions report\n\n{report['trajectories']} trajectories, {report['failures']} failures, "
             f"clustered by {report['clustering']}. Patches proposed by **{report['patches_proposed_by']}** "
             f"({report['why']}).\n"]  # fmt: skip
    for n, c in enumerate(report["findings"], 1):
        lines.append(f"## Cluster {n}: {c['size']} failures, {c['agent']} / {c['task_key']}\n")
        lines.append(f"**What sets them apart:** {c['summary']}.\n")
        lines.append(f"- Task group success: {_r(c['group_success'])}")
        lines.append(f"- Tools involved: {', '.join(f'`{t}` ({k})' for t, k in c['tools_involved'].items())}")
        if c["tool_errors"]:
            lines.append(f"- Tools that answered with errors: {', '.join(f'`{e}`' for e in c['tool_errors'])}")
        for f in c["distinguishing"][1:]:
            lines.append(f"- Also: {sentence(f)}")
        lines.append(f"- Trajectories: {ids_md(c['evidence'])}\n")
        if "patch" in c:
            lines.append(f"Proposed patch ({c['patch']['proposed_by']}):\n\n```diff\n{c['patch']['diff']}```\n")
    if not report["findings"]:
        lines.append("No cluster of failures.\n")
    return "\n".join(lines)
