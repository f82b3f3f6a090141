"""One report made end to end: the corpus read through a ClickHouse client, analysed by its kind, written as
Markdown and JSON (and, for instructions, the GEPA dataset). `trajstream optimise` and the data worker's
POST /api/console/reports/<kind> both call ``make_report``, so a report is the same whoever asks."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from trajstream.corpus.optimise.digest import Digest, read_digests
from trajstream.corpus.optimise.latest import KINDS
from trajstream.corpus.optimise.report import write_jsonl, write_report
from trajstream.corpus.read import CorpusFilter, CorpusReader
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings

Progress = Callable[[int, int], None]  # (trajectories read, of total)


def _rate(j: dict[str, Any]) -> str:
    return f"{j['hits']}/{j['n']} = {j['rate']:.0%}"


def headline(finding: dict[str, Any]) -> str:
    """A finding in one line, for the report list and the console (the Markdown says it at length)."""
    kind = finding.get("kind")
    if kind == "failure_correlation":
        return (f"{finding['tool']} fails when {finding['feature']}: {_rate(finding['failure_with'])} of those calls, "
                f"against {_rate(finding['failure_without'])} of its other calls")  # fmt: skip
    if kind == "loop":
        return (f"{finding['tool']} called up to {finding['longest_run']} times in a row in "
                f"{finding['evidence']['count']} trajectories")  # fmt: skip
    if kind == "never_helps":
        return f"{finding['tool']} never helps (effect {finding['effect']:+.2f} on success in its task groups)"
    if kind == "skill_candidate":
        return (f"candidate skill {' → '.join(finding['sequence'])}: in {finding['support_in_successes']} successes "
                f"across {len(finding['task_groups'])} task groups")  # fmt: skip
    if kind == "skill_underused":
        return f"registered skill {finding['skill']} is rarely used in {finding['agent']} / {finding['task_key']}"
    if kind == "skill_with_failure":
        return f"registered skill {finding['skill']} goes with failure in {finding['agent']} / {finding['task_key']}"
    if "summary" in finding:  # an instructions cluster
        return f"{finding['size']} failures of {finding['agent']} / {finding['task_key']}: {finding['summary']}"
    return str(finding)


def _digests(settings: Settings, client: Any, filters: CorpusFilter,
             progress: Progress | None) -> tuple[list[Digest], dict[str, Any]]:  # fmt: skip
    reader = CorpusReader(client, settings)
    digests = read_digests(reader, filters, progress)
    skipped = [{"trajectory_id": s.trajectory_id, "version": s.version, "reason": s.reason} for s in reader.skipped]
    return digests, {"filter": filters.as_json(), "skipped": skipped}


def make_report(settings: Settings, kind: str, client: Any, filters: CorpusFilter, out: Path,
                skills: Collection[str] = (), embedder: Any = None,
                progress: Progress | None = None) -> tuple[dict[str, Any], tuple[Path, ...]]:  # fmt: skip
    """Read, analyse and write a report of ``kind`` into ``out``; returns it and the files written.

    ``skills``: the registered skills (skills reports); ``embedder``: clusters failures by embedding
    (instructions reports; None clusters them by the tools called)."""
    if kind not in KINDS:
        raise TrajstreamError(f"no report kind {kind!r}; known: {', '.join(KINDS)}")
    digests, meta = _digests(settings, client, filters, progress)
    rows: list[dict[str, Any]] | None = None
    if kind == "tools":
        from trajstream.corpus.optimise.tools import tools_markdown, tools_report

        report, markdown = {**meta, **tools_report(digests)}, tools_markdown
    elif kind == "skills":
        from trajstream.corpus.optimise.skills import skills_markdown, skills_report

        report, markdown = {**meta, **skills_report(digests, set(skills))}, skills_markdown
    else:
        from trajstream.corpus.optimise.instructions import instructions_markdown, instructions_report

        body, rows = instructions_report(digests, embedder, settings)
        report, markdown = {**meta, **body}, instructions_markdown
    for finding in report["findings"]:
        finding["headline"] = headline(finding)
    paths: tuple[Path, ...] = write_report(out, kind, report, markdown(report))
    if rows is not None:
        paths = (*paths, write_jsonl(out / "reflective_dataset.jsonl", rows))
    return report, paths
