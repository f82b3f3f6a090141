"""``trajstream optimise instructions|skills|tools``: a report from the corpus, as Markdown and JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from trajstream.console import err, out, settings_of

_FILTER_HELP = """
The corpus is read from ClickHouse (TRAJSTREAM_CLICKHOUSE_DSN) in pages, latest version of each
trajectory only, and narrowed by --since/--until (when the trajectory ended, ISO 8601), --agent,
--domain and --task-key (the task group; each may repeat). Progress goes to stderr. Every claim
carries its evidence: counts, rates with 95% Wilson intervals, and the trajectory ids.
"""


def _ms(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time") from exc
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                     help="Folder for the report (created if missing). Default: TRAJSTREAM_HOME/reports/KIND/"
                     "<UTC time>/, where the console and `GET /api/console/reports/KIND` find the latest."),
        click.option("--since", default=None, help="Trajectories that ended at or after this time (ISO 8601)."),
        click.option("--until", default=None, help="Trajectories that ended before this time (ISO 8601)."),
        click.option("--agent", "agents", multiple=True, help="Only this agent id (repeatable)."),
        click.option("--domain", "domains", multiple=True, help="Only this domain (repeatable)."),
        click.option("--task-key", "task_keys", multiple=True, help="Only this task group (repeatable)."),
    )):  # fmt: skip
        fn = option(fn)
    return fn


def _run(ctx: click.Context, kind: str, out_dir: Path | None, since: str | None, until: str | None,
         agents: tuple[str, ...], domains: tuple[str, ...], task_keys: tuple[str, ...],
         skills: tuple[str, ...] = (), embedder: Any = None) -> None:  # fmt: skip
    from trajstream.corpus.optimise.generate import make_report
    from trajstream.corpus.optimise.latest import new_report_dir
    from trajstream.corpus.read import CorpusFilter
    from trajstream.corpus.stores import open_corpus

    f = CorpusFilter(since_ms=_ms(since), until_ms=_ms(until), agents=agents, domains=domains, task_keys=task_keys)
    settings = settings_of(ctx)

    def progress(done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            err.print(f"[dim]read {done}/{total} trajectories[/]")

    out_dir = out_dir or new_report_dir(settings, kind)
    with open_corpus(settings) as client:
        report, paths = make_report(settings, kind, client, f, out_dir, skills, embedder, progress)
    for p in paths:
        out.print(str(p))
    err.print(f"top finding: {report['findings'][0]['headline'] if report['findings'] else 'none'}")


@click.group("optimise")
def optimise() -> None:
    """Reports that mine the corpus for what to change: instructions, skills, tools."""


@optimise.command("tools", help="Tools: which argument patterns fail (errors, timeouts), each tool's effect on "
                  "success within the same task group, loops of repeated calls, tools that never help.\n"
                  + _FILTER_HELP)  # fmt: skip
@_filters
@click.pass_context
def tools(ctx: click.Context, /, **filters: Any) -> None:
    _run(ctx, "tools", **filters)


@optimise.command("skills", help="Skills: improvised call sequences that recur in successful trajectories of "
                  "several task groups (candidates, with support and success lift), and registered skills (--skill) "
                  "rarely used where they would have helped or correlated with failure.\n" + _FILTER_HELP)  # fmt: skip
@_filters
@click.option("--skill", "skills", multiple=True, help="A tool that is a registered skill (repeatable).")
@click.pass_context
def skills(ctx: click.Context, /, skills: tuple[str, ...], **filters: Any) -> None:
    _run(ctx, "skills", skills=skills, **filters)


@optimise.command("instructions", help="Instructions: clusters of failing trajectories (by embedding), what sets "
                  "them apart from the successes of their task group, proposed patches to the agent's system message "
                  "(by an LLM when TRAJSTREAM_LLM_BASE_URL is set, else by a heuristic; the report says which), and "
                  "a GEPA reflective dataset (reflective_dataset.jsonl).\n" + _FILTER_HELP)  # fmt: skip
@_filters
@click.option("--no-embedding", is_flag=True, help="Cluster by the tools called, without loading the embedding model.")
@click.pass_context
def instructions(ctx: click.Context, /, no_embedding: bool, **filters: Any) -> None:
    from trajstream.consumers.embedding import Embedder

    if not no_embedding:
        err.print("[dim]loading the embedding model[/]")
    _run(ctx, "instructions", embedder=None if no_embedding else Embedder(), **filters)


COMMANDS = (optimise,)
WORKERS: tuple[click.Command, ...] = ()  # a report is a command, never a long-running worker
