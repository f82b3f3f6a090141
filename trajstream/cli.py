"""The ``trajstream`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from trajstream.errors import TrajstreamError
from trajstream.settings import PROJECT_ROOT, Settings

err = Console(stderr=True, soft_wrap=True)
# Tables and summaries should not be cut to 80 columns when piped to a file or CI log.
out = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=True)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    sys.exit(1)


class _Group(click.Group):
    """Turns trajstream's own errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrajstreamError as exc:
            _fail(exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="trajstream")
@click.option("-v", "--verbose", is_flag=True, help="Show the Kafka client's retries and warnings.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """trajstream: capture every agent turn as an event on Kafka and turn the stream into learning.

    Configuration comes from TRAJSTREAM_* environment variables (see README.md): TRAJSTREAM_HOME
    (state, default ./.trajstream), TRAJSTREAM_KAFKA_BOOTSTRAP (an external cluster; when unset a
    local broker is used), TRAJSTREAM_BROKER_PORT, TRAJSTREAM_SCHEMA_REGISTRY_URL, ...
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # The client retries transient errors (a leader moving, a new topic settling) by itself; a user
    # only needs to hear about them when asking, failures still surface as errors.
    logging.getLogger("aiokafka").setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        ctx.obj = Settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        _fail(Exception(f"invalid TRAJSTREAM_* settings: {exc}"))


# --- broker --------------------------------------------------------------------------------
@main.group()
def broker() -> None:
    """Run the local single-node Kafka broker (KRaft) from Maven-resolved jars."""


def _broker(ctx: click.Context) -> Any:
    from trajstream.broker import LocalBroker

    return LocalBroker(_settings(ctx), progress=lambda msg: err.print(f"[dim]{msg}[/]"))


@broker.command("start")
@click.pass_context
def broker_start(ctx: click.Context) -> None:
    """Start the broker (formats storage once; reuses a running one) and wait until it answers."""
    status = _broker(ctx).start()
    _print_status(status)
    if not status.running:
        sys.exit(1)


@broker.command("stop")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for a clean shutdown.")
@click.pass_context
def broker_stop(ctx: click.Context, timeout: float) -> None:
    """Stop the local broker cleanly (controlled shutdown, then SIGKILL after --timeout)."""
    stopped = _broker(ctx).stop(timeout)
    out.print("broker stopped" if stopped else "no local broker was running")


@broker.command("status")
@click.pass_context
def broker_status(ctx: click.Context) -> None:
    """Show whether the broker runs and answers metadata; exit code 1 when it does not."""
    status = _broker(ctx).status()
    _print_status(status)
    if not status.running:
        sys.exit(1)


@broker.command("logs")
@click.option("-n", "--lines", default=100, show_default=True, help="How many lines from the end.")
@click.pass_context
def broker_logs(ctx: click.Context, lines: int) -> None:
    """Print the end of the local broker's log."""
    b = _broker(ctx)
    text = b.logs(lines)
    if not text:
        err.print(f"no broker log at {b.log_file}")
    click.echo(text)


def _print_status(status: Any) -> None:
    where = "external cluster" if status.external else "local broker"
    if status.running:
        pid = f", pid {status.pid}" if status.pid else ""
        out.print(
            f"[green]running[/] {where} {status.bootstrap}{pid}: cluster {status.cluster_id}, "
            f"{status.brokers} broker(s), {status.topics} topic(s)"
        )
    else:
        out.print(f"[red]not running[/] {where} {status.bootstrap}: {status.detail}")


# --- topics --------------------------------------------------------------------------------
@main.group()
def topics() -> None:
    """Manage the platform's Kafka topics."""


@topics.command("create")
@click.pass_context
def topics_create(ctx: click.Context) -> None:
    """Create every topic the platform uses; existing ones are left as they are (idempotent).

    Partitions, replication and retention come from TRAJSTREAM_TOPIC_PARTITIONS,
    TRAJSTREAM_TOPIC_REPLICATION, TRAJSTREAM_TOPIC_RETENTION_MS and TRAJSTREAM_DLQ_RETENTION_MS.
    """
    from trajstream.topics import create_topics

    results = asyncio.run(create_topics(_settings(ctx)))
    table = Table("topic", "state", "partitions", "cleanup", "retention.ms")
    for r in results:
        table.add_row(r.name, "created" if r.created else "exists", str(r.partitions),
                      r.config["cleanup.policy"], r.config["retention.ms"])  # fmt: skip
    out.print(table)


@topics.command("list")
@click.pass_context
def topics_list(ctx: click.Context) -> None:
    """List the platform's topics with their descriptions."""
    from trajstream.topics import TOPICS

    for spec in TOPICS:
        out.print(f"{_settings(ctx).topic(spec.name):40} {spec.description}")


# --- schemas -------------------------------------------------------------------------------
@main.group()
def schemas() -> None:
    """Inspect and check the versioned Avro contract in schemas/."""


@schemas.command("check")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Schema directory (default: TRAJSTREAM_SCHEMAS_DIR).")  # fmt: skip
@click.pass_context
def schemas_check(ctx: click.Context, directory: Path | None) -> None:
    """Fail (exit 1) if any schema version cannot read data written with an earlier version."""
    from trajstream.schemas import SchemaCatalog, check_compatibility

    catalog = SchemaCatalog.from_directory(directory or _settings(ctx).schemas_dir)
    problems = check_compatibility(catalog)
    for name in catalog.names:
        versions = catalog.versions(name)
        out.print(f"{name}: {len(versions)} version(s), latest v{versions[-1].version}")
    if problems:
        for p in problems:
            err.print(f"[red]incompatible[/] {p}")
        sys.exit(1)
    out.print("[green]all schemas are backward compatible with their earlier versions[/]")


@schemas.command("list")
@click.pass_context
def schemas_list(ctx: click.Context) -> None:
    """List every schema version with its CRC-64-AVRO fingerprint."""
    from trajstream.schemas import SchemaCatalog

    catalog = SchemaCatalog.from_directory(_settings(ctx).schemas_dir)
    for name in catalog.names:
        for v in catalog.versions(name):
            out.print(f"{v.full_name:40} v{v.version}  {v.fingerprint.hex()}  {v.path}")


# --- emit ----------------------------------------------------------------------------------
@main.command("emit")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--dry-run", is_flag=True, help="Validate and encode every line, send nothing.")
@click.pass_context
def emit(ctx: click.Context, file: Path, dry_run: bool) -> None:
    """Publish trajectories from a JSON Lines FILE (one trajectory per line, OpenAI chat messages).

    Invalid lines are reported with their line number and reason, and sent to the dead-letter
    topic; valid lines still go out. Exit code 2 when any line was rejected. The line format is
    documented in README.md ("Trajectory files").
    """
    summary = asyncio.run(_emit(_settings(ctx), file, dry_run))
    for number, reason in summary.rejected:
        err.print(f"[yellow]{file}:{number}:[/] rejected: {reason}")
    verb = "validated" if dry_run else "sent"
    out.print(
        f"{summary.lines} line(s): {summary.trajectories} trajectories {verb} ({summary.events} events), "
        f"{len(summary.rejected)} rejected"
        + (f" ({summary.dead_lettered} to the dead-letter topic)" if not dry_run and summary.rejected else "")
        + (f", {summary.blank} blank" if summary.blank else "")
    )
    if summary.rejected:
        sys.exit(2)


async def _emit(settings: Settings, file: Path, dry_run: bool) -> Any:
    from trajstream.emit_file import emit_file
    from trajstream.sdk.emitter import AsyncEmitter

    emitter = AsyncEmitter(settings, client_id="trajstream-emit")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"emitting {file.name}", total=file.stat().st_size)
        if dry_run:
            return await emit_file(file, emitter, dry_run=True, on_line=lambda n, size: progress.advance(task, size))
        async with emitter:
            return await emit_file(file, emitter, on_line=lambda n, size: progress.advance(task, size))


# --- workers -------------------------------------------------------------------------------
@main.group()
def worker() -> None:
    """Run a pipeline worker in the foreground (stop it with Ctrl-C or SIGTERM)."""


@worker.command("streams")
@click.option("--loglevel", default="warn", show_default=True, type=click.Choice(["crit", "error", "warn", "info"]))
@click.pass_context
def worker_streams(ctx: click.Context, loglevel: str) -> None:
    """The Faust worker: assembles trajectories from events and scores them.

    Assembly closes a trajectory on its end event or after TRAJSTREAM_ASSEMBLY_INACTIVITY_TIMEOUT_S
    without events; late turns and feedback re-emit it as a new version. Run `trajstream topics
    create` first: the worker does not create topics.
    """
    from streams.app import run_worker

    run_worker(_settings(ctx), loglevel)


@worker.command("enrich")
@click.pass_context
def worker_enrich(ctx: click.Context) -> None:
    """The enrichment worker: extracts decisions and entities from each finished trajectory.

    Uses the OpenAI-compatible model at TRAJSTREAM_LLM_BASE_URL, or the deterministic heuristic
    extractor when none is configured (its results say extractor=heuristic).
    """
    from streams.enrichment_worker import run_enrichment_worker

    run_enrichment_worker(_settings(ctx))


@main.command("enrich")
@click.option("--since", required=True, type=click.DateTime(), help="Re-extract trajectories emitted since (UTC).")
@click.option("--prompt-version", default=None, help="Prompt version to use (default: the worker's current).")
@click.pass_context
def enrich(ctx: click.Context, since: Any, prompt_version: str | None) -> None:
    """Request a new extraction for every trajectory assembled since DATE (latest version each)."""
    from trajstream.reenrich import request_reenrichment

    count = asyncio.run(request_reenrichment(_settings(ctx), since, prompt_version))
    out.print(f"{count} enrichment request(s) sent")


@worker.command("sinks")
@click.pass_context
def worker_sinks(ctx: click.Context) -> None:
    """The data worker: the ClickHouse and Milvus sinks and the data API, in one process.

    It applies ClickHouse migrations at start and owns the embedded stores (chDB at
    TRAJSTREAM_CLICKHOUSE_DSN, milvus-lite at TRAJSTREAM_MILVUS_URI), which allow one process per
    data directory; other processes query through its API (TRAJSTREAM_API_PORT, default 8765).
    """
    from consumers.sinks_worker import run_sinks

    run_sinks(_settings(ctx))


# --- the whole pipeline ------------------------------------------------------------------------
def _register_trainer_commands() -> None:
    from trainer.commands import model, serve, trainer_worker

    main.add_command(model)
    main.add_command(serve)
    worker.add_command(trainer_worker)


_register_trainer_commands()


@main.command("up")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for every part to be ready.")
@click.pass_context
def up(ctx: click.Context, timeout: float) -> None:
    """Start the pipeline in the background: broker (unless external), topics, the streams, enrichment
    and data workers (sinks and API). Logs: TRAJSTREAM_HOME/logs. Stop it with `trajstream down`."""
    from trajstream.pipeline import up as start

    start(_settings(ctx), lambda m: err.print(f"[dim]{m}[/]"), timeout)
    out.print("pipeline up; `trajstream status` shows each part and its lag")


@main.command("status")
@click.pass_context
def status(ctx: click.Context) -> None:
    """Each part of the pipeline: its process and the records its consumer group has yet to process."""
    from trajstream.pipeline import status as get_status

    table = Table("part", "pid", "lag", "detail")
    for part in get_status(_settings(ctx)):
        table.add_row(part.name, str(part.pid or "-"), "-" if part.lag is None else str(part.lag), part.detail)
    out.print(table)


@main.command("down")
@click.option("--keep-broker", is_flag=True, help="Leave the local broker running.")
@click.option("--timeout", default=20.0, show_default=True, help="Seconds before a worker is killed.")
@click.pass_context
def down(ctx: click.Context, keep_broker: bool, timeout: float) -> None:
    """Stop the workers (SIGTERM, then SIGKILL after --timeout) and the local broker."""
    from trajstream.pipeline import down as stop

    stop(_settings(ctx), lambda m: err.print(f"[dim]{m}[/]"), timeout, stop_broker=not keep_broker)


# --- data: SQL, recall, simulation ----------------------------------------------------------------
def _access(ctx: click.Context) -> Any:
    from consumers.access import DataAccess

    return DataAccess(_settings(ctx))


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


@main.command("sql")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def sql(ctx: click.Context, query: str, as_json: bool) -> None:
    """Run a read-only query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) against ClickHouse.

    Tables live in the TRAJSTREAM_CLICKHOUSE_DATABASE database (default trajstream), for example
    `trajstream sql "SELECT outcome, count() FROM trajstream.trajectories GROUP BY outcome"`.
    """
    result = _access(ctx).sql(query)
    if as_json:
        _print_json(result)
        return
    table = Table(*result["columns"])
    for row in result["rows"]:
        table.add_row(*(str(v) for v in row))
    out.print(table)


@main.command("recall")
@click.argument("query")
@click.option("-k", default=3, show_default=True, help="How many trajectories.")
@click.option("--outcome", default="success", show_default=True, help="Filter on outcome ('any' for all).")
@click.option("--domain", default=None, help="Filter on domain.")
@click.option("--agent", "agent_id", default=None, help="Filter on agent id.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@click.pass_context
def recall(ctx: click.Context, query: str, k: int, outcome: str, domain: str | None, agent_id: str | None,
           as_json: bool) -> None:  # fmt: skip
    """Similar past trajectories for a task, as few-shot chat messages ready for a prompt."""
    filters = {"outcome": outcome, "domain": domain, "agent_id": agent_id}
    result = _access(ctx).recall(query, k, {key: v for key, v in filters.items() if v})
    if as_json:
        _print_json(result)
        return
    for hit in result["trajectories"]:
        out.print(f"[bold]{hit['similarity']:.3f}[/] {hit['trajectory_id']} {hit['outcome']} {hit['task']}")
    _print_json(result["messages"])


@main.command("predict")
@click.option("--state", required=True, help="The situation: the task and what happened so far.")
@click.option("--action", required=True, help="The action planned next, e.g. 'issue_refund(order=42)'.")
@click.option("-k", default=20, show_default=True, help="How many similar decision points to weigh.")
@click.pass_context
def predict(ctx: click.Context, state: str, action: str, k: int) -> None:
    """Estimate the chance of success of an action from similar past decision points."""
    _print_json(_access(ctx).predict(state, action, k))


@main.command("counterfactual")
@click.argument("trajectory_id")
@click.argument("step", type=int)
@click.argument("alternative_action")
@click.pass_context
def counterfactual(ctx: click.Context, trajectory_id: str, step: int, alternative_action: str) -> None:
    """Compare the predicted outcome of another action at a recorded step with what happened."""
    _print_json(_access(ctx).counterfactual(trajectory_id, step, alternative_action))


@main.command("recommend")
@click.argument("context")
@click.option("-k", default=50, show_default=True, help="How many similar decision points to weigh.")
@click.pass_context
def recommend(ctx: click.Context, context: str, k: int) -> None:
    """Tools ranked by their success rate in similar situations, with the sequence that usually follows."""
    _print_json(_access(ctx).recommend(context, k))


# --- dead letters ----------------------------------------------------------------------------
@main.group()
def dlq() -> None:
    """Inspect the dead-letter topic and replay fixed inputs."""


@dlq.command("list")
@click.option("--stage", default=None, help="Only this stage (emit, assembly, scoring, enrichment).")
@click.option("--error-type", default=None, help="Only this error type.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (payload as base64).")
@click.pass_context
def dlq_list(ctx: click.Context, stage: str | None, error_type: str | None, as_json: bool) -> None:
    """List dead letters with their reason and source (partition:offset identifies each)."""
    from trajstream.codec import codec_for
    from trajstream.dlq import list_letters

    settings = _settings(ctx)
    letters = asyncio.run(list_letters(settings, codec_for(settings), stage, error_type))
    if as_json:
        import base64
        import json

        for letter in letters:
            row = {k: v for k, v in letter.record.items() if k not in ("payload", "key", "timestamp")}
            row.update(ref=letter.ref, timestamp=letter.record["timestamp"].isoformat(),
                       payload=base64.b64encode(letter.record["payload"]).decode(),
                       key=letter.record["key"].decode(errors="replace") if letter.record["key"] else None)  # fmt: skip
            click.echo(json.dumps(row))
        return
    table = Table("ref", "stage", "error", "source", "trajectory", "reason")
    for letter in letters:
        r = letter.record
        where = r["source"] + (f"@{r['source_partition']}:{r['source_offset']}" if r["source_partition"] is not None
                               else f"@{r['source_offset']}" if r["source_offset"] is not None else "")  # fmt: skip
        table.add_row(letter.ref, r["stage"], r["error_type"], where, r["trajectory_id"] or "", r["reason"])
    out.print(table)
    out.print(f"{len(letters)} dead letter(s)")


@dlq.command("replay")
@click.argument("refs", nargs=-1)
@click.option("--stage", default=None, help="Replay every dead letter of this stage.")
@click.option("--error-type", default=None, help="Replay every dead letter of this error type.")
@click.option("--payload", "payload_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Send this file's bytes instead of the stored payload (one REF only).")  # fmt: skip
@click.pass_context
def dlq_replay(
    ctx: click.Context, refs: tuple[str, ...], stage: str | None, error_type: str | None, payload_file: Path | None
) -> None:
    """Send dead letters (REF = partition:offset, from `dlq list`) back to the topic they came from."""
    from trajstream.codec import codec_for
    from trajstream.dlq import list_letters, replay

    settings = _settings(ctx)
    if not refs and not stage and not error_type:
        raise click.UsageError("name REFs, or select with --stage / --error-type")
    letters = asyncio.run(list_letters(settings, codec_for(settings), stage, error_type))
    if refs:
        by_ref = {letter.ref: letter for letter in letters}
        missing = [r for r in refs if r not in by_ref]
        if missing:
            raise click.UsageError(f"no dead letter {', '.join(missing)}")
        letters = [by_ref[r] for r in refs]
    payloads = {}
    if payload_file is not None:
        if len(letters) != 1:
            raise click.UsageError("--payload needs exactly one REF")
        payloads[letters[0].ref] = payload_file.read_bytes()
    sent = asyncio.run(replay(settings, letters, payloads))
    out.print(f"{sent} dead letter(s) sent back")


# --- demo ----------------------------------------------------------------------------------
@main.command("demo")
@click.option("--file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=PROJECT_ROOT / "examples" / "trajectories.jsonl", show_default=True)  # fmt: skip
@click.option("--learn", is_flag=True, help="Run the learning loop instead: agents, serving and the trainer.")
@click.option("--minutes", default=15.0, show_default=True, help="With --learn: how long the loop runs.")
@click.option("--agents", default=4, show_default=True, help="With --learn: simulated agents at once.")
@click.pass_context
def demo(ctx: click.Context, file: Path, learn: bool, minutes: float, agents: int) -> None:
    """Bring the whole pipeline up (as `trajstream up`), emit the example trajectories, and show them
    in ClickHouse, a recall and an outcome prediction. The pipeline keeps running: `trajstream down`.

    With --learn: a small model is built and warmed up here, served (`trajstream serve`), used by
    simulated agents on tool-routing tasks whose success the environment checks, and trained on their
    scored trajectories; the success rate per model version is printed as it goes, and the last line
    is `RESULT success_rate_gain points=<gain> target=20`."""
    if learn:
        from trainer.learn_demo import run_learn_demo

        run_learn_demo(_settings(ctx), minutes, agents, out, err)
        return
    from trajstream.demo import run_demo

    run_demo(_settings(ctx), file, out, err)


if __name__ == "__main__":
    main()
