"""`trajstream export FORMAT --out DIR`: the corpus, filtered, in a training platform's format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trajstream.console import err, out, settings_of


class _ExportCommand(click.Command):
    """Lists the known formats in --help (found at help time: each is a module of corpus/export/formats)."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        from trajstream.corpus.export.formats import known_formats

        with formatter.section("Formats"):
            formatter.write_dl([(name, cls.summary) for name, cls in known_formats().items()])


@click.command("export", cls=_ExportCommand)
@click.argument("format_name", metavar="FORMAT")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A new (or empty) directory: the files and manifest.json.",
)
@click.option("--since", default=None, help="Ended at or after: an ISO time, or a time ago (7d, 12h, 30m, 2w).")
@click.option("--until", default=None, help="Ended before: an ISO time, or a time ago.")
@click.option(
    "--outcome", "outcomes", multiple=True, help="success, failure, partial, abandoned or error (repeat for several)."
)
@click.option("--min-reward", type=float, default=None, help="Reward at least this.")
@click.option("--max-reward", type=float, default=None, help="Reward at most this.")
@click.option("--agent", "agents", multiple=True, help="Agent id (repeatable).")
@click.option("--domain", "domains", multiple=True, help="Domain (repeatable).")
@click.option("--model-version", "model_versions", multiple=True, help="Model version (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Trajectories with any of these tags (repeatable).")
@click.option("--task-key", "task_keys", multiple=True, help="The task group (repeatable).")
@click.option("--all-versions", is_flag=True, help="Every version of a re-scored trajectory, not only the latest.")
@click.option(
    "--batch",
    default=500,
    show_default=True,
    type=click.IntRange(1),
    help="Trajectories read per page (memory is bounded by one page).",
)
@click.pass_context
def export(ctx: click.Context, format_name: str, out_dir: Path, since: str | None, until: str | None,
           outcomes: tuple[str, ...], min_reward: float | None, max_reward: float | None, agents: tuple[str, ...],
           domains: tuple[str, ...], model_versions: tuple[str, ...], tags: tuple[str, ...],
           task_keys: tuple[str, ...], all_versions: bool, batch: int) -> None:  # fmt: skip
    """Export the trajectory corpus in FORMAT to a new directory, with a manifest.

    The filters narrow the corpus (every one given must hold; a repeated one is any of its values);
    times are the trajectory's end. By default only the latest version of each trajectory is exported.
    Each file appears only when the export is complete; manifest.json, written last, records the
    format, the filters, the counts (read, exported, skipped by reason) and each file's rows and sha256.

    Reading: with embedded chDB the export opens it itself, so while the pipeline runs, export from the
    console's Exports & reports page (the data worker runs it), or stop the pipeline first (`trajstream
    down`), or point TRAJSTREAM_CLICKHOUSE_DSN at a ClickHouse server (read directly, pipeline or not).
    SFT weights: TRAJSTREAM_EXPORT_WEIGHT_BY=reward|credit, TRAJSTREAM_EXPORT_WEIGHT_THRESHOLD.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trajstream.corpus.export.config import ExportSettings
    from trajstream.corpus.export.run import export as run_export
    from trajstream.corpus.export.run import parse_time
    from trajstream.corpus.read import CorpusFilter
    from trajstream_sdk.events import OUTCOMES

    unknown = sorted(set(outcomes) - set(OUTCOMES))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}; known: {', '.join(OUTCOMES)}", param_hint="--outcome")
    filters = CorpusFilter(
        since_ms=parse_time(since) if since else None, until_ms=parse_time(until) if until else None,
        outcomes=outcomes, min_reward=min_reward, max_reward=max_reward, agents=agents, domains=domains,
        model_versions=model_versions, tags=tags, task_keys=task_keys, latest_only=not all_versions,
    )  # fmt: skip
    settings = ExportSettings.extend(settings_of(ctx))
    progress = Progress(TextColumn(f"exporting {format_name}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True)  # fmt: skip
    task = progress.add_task("read", total=None)
    with progress:
        manifest = run_export(settings, format_name, out_dir, filters, batch,
                              on_total=lambda n: progress.update(task, total=n),
                              on_trajectory=lambda: progress.advance(task))  # fmt: skip
    _summary(manifest, out_dir)


def _summary(manifest: dict[str, Any], out_dir: Path) -> None:
    counts = manifest["counts"]
    out.print(f"{manifest['format']}: read {counts['read']}, exported {counts['exported']} rows "
              f"in {len(manifest['files'])} file(s) to {out_dir}")  # fmt: skip
    for reason, n in counts["skipped"].items():
        out.print(f"  skipped {n}: {reason}")
    out.print(f"manifest: {out_dir / 'manifest.json'}")


COMMANDS = (export,)
WORKERS: tuple[click.Command, ...] = ()  # an export is a command, never a long-running worker
