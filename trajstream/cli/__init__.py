"""The ``trajstream`` command line: the core's commands, and each stage's commands module registered here."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from trajstream.console import err, fail, out, settings_of
from trajstream.errors import TrajstreamError
from trajstream.settings import PROJECT_ROOT, Settings


class _Group(click.Group):
    """Turns trajstream's own errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrajstreamError as exc:
            fail(exc)


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
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The client retries transient errors (a leader moving, a new topic settling) by itself; a user
    # only needs to hear about them when asking, failures still surface as errors.
    logging.getLogger("aiokafka").setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        ctx.obj = Settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        fail(Exception(f"invalid TRAJSTREAM_* settings: {exc}"))


# --- broker --------------------------------------------------------------------------------
@main.group()
def broker() -> None:
    """Run the local single-node Kafka broker (KRaft) from Maven-resolved jars."""


def _broker(ctx: click.Context) -> Any:
    from trajstream.broker import LocalBroker

    return LocalBroker(settings_of(ctx), progress=lambda msg: err.print(f"[dim]{msg}[/]"))


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


# --- the local Milvus server ----------------------------------------------------------------
@main.group()
def milvus() -> None:
    """Run the local Milvus server (the `milvus` package's binary) that `up` starts when
    TRAJSTREAM_MILVUS_LOCAL=server and TRAJSTREAM_MILVUS_URI is unset."""


def _milvus(ctx: click.Context) -> Any:
    from trajstream.milvus_server import LocalMilvus

    return LocalMilvus(settings_of(ctx), progress=lambda msg: err.print(f"[dim]{msg}[/]"))


def _print_milvus(status: Any) -> None:
    if status.running:
        out.print(f"[green]running[/] local Milvus {status.version} on {status.uri}, pid {status.pid}: "
                  f"{status.collections} collection(s)")  # fmt: skip
    else:
        pid = f", pid {status.pid}" if status.pid else ""
        out.print(f"[red]not running[/] local Milvus on {status.uri}{pid}: {status.detail}")


@milvus.command("start")
@click.pass_context
def milvus_start(ctx: click.Context) -> None:
    """Start the server on its data (reuses a running one) and wait until it answers."""
    status = _milvus(ctx).start()
    _print_milvus(status)
    if not status.running:
        sys.exit(1)


@milvus.command("stop")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for a clean shutdown.")
@click.pass_context
def milvus_stop(ctx: click.Context, timeout: float) -> None:
    """Stop the server (SIGTERM, then SIGKILL after --timeout)."""
    stopped = _milvus(ctx).stop(timeout)
    out.print("Milvus server stopped" if stopped else "no local Milvus server was running")


@milvus.command("status")
@click.pass_context
def milvus_status(ctx: click.Context) -> None:
    """Show whether the server runs and answers; exit code 1 when it does not."""
    status = _milvus(ctx).status()
    _print_milvus(status)
    if not status.running:
        sys.exit(1)


@milvus.command("logs")
@click.option("-n", "--lines", default=100, show_default=True, help="How many lines from the end.")
@click.pass_context
def milvus_logs(ctx: click.Context, lines: int) -> None:
    """Print the end of the server's output (its own logs are in TRAJSTREAM_HOME/milvus-server/logs)."""
    server = _milvus(ctx)
    text = server.logs(lines)
    if not text:
        err.print(f"no Milvus server output at {server.log_file}")
    click.echo(text)


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

    results = asyncio.run(create_topics(settings_of(ctx)))
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
        out.print(f"{settings_of(ctx).topic(spec.name):40} {spec.description}")


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
    from trajstream.contract import check_compatibility
    from trajstream_sdk.schemas import SchemaCatalog

    catalog = SchemaCatalog.from_directory(directory or settings_of(ctx).schemas_dir)
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
    from trajstream_sdk.schemas import SchemaCatalog

    catalog = SchemaCatalog.from_directory(settings_of(ctx).schemas_dir)
    for name in catalog.names:
        for v in catalog.versions(name):
            out.print(f"{v.full_name:40} v{v.version}  {v.fingerprint.hex()}  {v.path}")


@schemas.command("vectors")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any vector file is missing or out of date.")
@click.pass_context
def schemas_vectors(ctx: click.Context, check: bool) -> None:
    """Write the shared test vectors (schemas/vectors/) that the Python, TypeScript and Rust codecs check.

    One file per record, version and case, with the value (Avro JSON encoding), its single-object
    bytes and the schema's fingerprint, all written by the Python codec.
    """
    from trajstream.vectors import stale, write
    from trajstream_sdk.schemas import SchemaCatalog

    directory = settings_of(ctx).schemas_dir
    catalog = SchemaCatalog.from_directory(directory)
    if check:
        behind = stale(catalog, directory / "vectors")
        for path in behind:
            err.print(f"[red]out of date[/] {path}")
        if behind:
            err.print("run `trajstream schemas vectors` and commit the result")
            sys.exit(1)
        out.print("[green]every vector file matches the codec[/]")
        return
    written = write(catalog, directory / "vectors")
    out.print(f"wrote {len(written)} vector files under {directory / 'vectors'}")


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
    summary = asyncio.run(_emit(settings_of(ctx), file, dry_run))
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
    from trajstream_sdk.emitter import AsyncEmitter

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


# --- each stage's own commands ---------------------------------------------------------------------
def _register_stage_commands() -> None:
    """The CLI is the one core module that imports the stages: each brings its commands module."""
    from trajstream.consumers import commands as consumers
    from trajstream.corpus.console import commands as corpus_console
    from trajstream.corpus.export import commands as corpus_export
    from trajstream.corpus.optimise import commands as optimise
    from trajstream.gateway import commands as gateway
    from trajstream.streams import commands as streams
    from trajstream.trainer import commands as trainer

    for stage in (gateway, streams, consumers, corpus_console, corpus_export, optimise, trainer):
        for command in stage.WORKERS:
            worker.add_command(command)
        for command in stage.COMMANDS:
            main.add_command(command)


_register_stage_commands()


# --- the whole pipeline ------------------------------------------------------------------------
@main.command("up")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for every part to be ready.")
@click.pass_context
def up(ctx: click.Context, timeout: float) -> None:
    """Start the pipeline in the background: broker (unless external), topics, and a supervisor that runs
    the streams, enrichment and data workers (sinks and API) and starts again one that dies, with
    back-off (TRAJSTREAM_RESTART_BACKOFF_S, doubling up to TRAJSTREAM_RESTART_MAX_BACKOFF_S).

    Returns once each worker's own process says it is ready (the data worker: its API answers).
    Logs: TRAJSTREAM_HOME/logs. Stop it with `trajstream down`."""
    from trajstream.pipeline import up as start

    start(settings_of(ctx), lambda m: err.print(f"[dim]{m}[/]"), timeout)
    out.print("pipeline up; `trajstream status` shows each part and its lag")


@main.command("supervise", hidden=True)
@click.pass_context
def supervise(ctx: click.Context) -> None:
    """Run the supervisor of `trajstream up` in the foreground (`up` starts it detached)."""
    from trajstream.supervisor import Supervisor

    Supervisor(settings_of(ctx)).run()


@main.command("status")
@click.pass_context
def status(ctx: click.Context) -> None:
    """Each part of the pipeline: its process (ready, starting, restarting after a crash) and the records
    its consumer group has yet to process; the data worker's two sinks each on their own row, with
    their store's state (a sink waiting for its store shows it here, its lag growing)."""
    from trajstream.pipeline import status as get_status

    table = Table("part", "pid", "lag", "detail")
    for part in get_status(settings_of(ctx)):
        table.add_row(part.name, str(part.pid or "-"), "-" if part.lag is None else str(part.lag), part.detail)
    out.print(table)


@main.command("down")
@click.option("--keep-broker", is_flag=True, help="Leave the local broker running.")
@click.option("--timeout", default=20.0, show_default=True, help="Seconds before a worker is killed.")
@click.pass_context
def down(ctx: click.Context, keep_broker: bool, timeout: float) -> None:
    """Stop the supervisor and the workers (SIGTERM, then SIGKILL after --timeout), then the local broker.

    Returns once every worker's processes have exited and the stores are free."""
    from trajstream.pipeline import down as stop

    stop(settings_of(ctx), lambda m: err.print(f"[dim]{m}[/]"), timeout, stop_broker=not keep_broker)


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
    from trajstream.dlq import list_letters
    from trajstream_sdk.codec import codec_for

    settings = settings_of(ctx)
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
    from trajstream.dlq import list_letters, replay
    from trajstream_sdk.codec import codec_for

    settings = settings_of(ctx)
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
@click.option("--minutes", default=10.0, show_default=True, help="With --learn: how long the agents run.")
@click.option("--agents", default=4, show_default=True, help="With --learn: simulated agents at once.")
@click.option("--control", type=click.Choice(["none", "shuffled"]), default="none", show_default=True,
              help="With --learn: shuffled permutes the rewards in each window (the control arm).")  # fmt: skip
@click.pass_context
def demo(ctx: click.Context, file: Path, learn: bool, minutes: float, agents: int, control: str) -> None:
    """Bring the whole pipeline up (as `trajstream up`), emit the example trajectories, and show them
    in ClickHouse, a recall and an outcome prediction. The pipeline keeps running: `trajstream down`.

    With --learn: a small model is built and warmed up here, served (`trajstream serve`), used by
    simulated agents on tool-routing tasks whose success the environment checks, and trained on their
    scored trajectories; candidates serve half the requests as canaries before promotion or rollback.
    The figure is pooled: the success rate of the last 3 minutes' trajectories minus the first
    version's, with its 95% interval (`RESULT success_rate_gain` and `success_rate_gain_ci_low`; with
    --control shuffled, `RESULT control_gain_abs`). An agent that dies fails the run."""
    if learn:
        from trajstream.trainer.learn_demo import run_learn_demo

        run_learn_demo(settings_of(ctx), minutes, agents, out, err, "shuffled" if control == "shuffled" else "none")
        return
    from trajstream.cli.demo import run_demo

    run_demo(settings_of(ctx), file, out, err)


if __name__ == "__main__":
    main()
