"""`trajstream model ...` and `trajstream worker trainer`: the registry by hand, and the trainer's loop."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from trajstream.console import out, settings_of
from trajstream.trainer.config import TrainerSettings


def _registry(ctx: click.Context) -> Any:
    from trajstream.trainer.registry import Registry

    settings = TrainerSettings.extend(settings_of(ctx))
    return Registry(settings.registry_dir, settings.trainer_model_name)


@click.group()
def model() -> None:
    """The model registry (TRAJSTREAM_TRAINER_REGISTRY, default HOME/models): versions, deploy, rollback."""


@model.command("init")
@click.option("--from", "source", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="A local model directory (weights and tokenizer, as save_pretrained writes them).")  # fmt: skip
@click.option("--tiny-vocab", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Build a tiny model whose word-level vocabulary is the words of this text file.")  # fmt: skip
@click.pass_context
def model_init(ctx: click.Context, source: Path | None, tiny_vocab: Path | None) -> None:
    """Register the first version of the model line and deploy it."""
    registry = _registry(ctx)
    if registry.versions():
        raise click.UsageError(f"{registry.model_name} already has versions in {registry.dir}")
    if (source is None) == (tiny_vocab is None):
        raise click.UsageError("give exactly one of --from DIR and --tiny-vocab FILE")
    if source is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)

        def write(directory: str) -> None:
            shutil.copytree(source, directory)

        info = registry.save(write, tokenizer, None, [], {})
    else:
        from trajstream.trainer.tiny import build_model, build_tokenizer, words

        assert tiny_vocab is not None
        tokenizer = build_tokenizer(words([tiny_vocab.read_text()]))
        info = registry.save(build_model(len(tokenizer)).save_pretrained, tokenizer, None, [], {})
    registry.deploy(info.version, "initial version")
    _announce(ctx, info, "deployed", "initial version")
    out.print(f"{registry.model_name} {info.version} registered and deployed ({info.path})")


@model.command("list")
@click.pass_context
def model_list(ctx: click.Context) -> None:
    """Every version: status, parent, windows and metrics."""
    registry = _registry(ctx)
    table = Table("version", "status", "parent", "windows", "metrics")
    for v in registry.versions():
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        table.add_row(v.version, v.status, v.parent or "", str(len(v.windows)), metrics)
    out.print(table)


def _announce(ctx: click.Context, info: Any, event: str, reason: str) -> None:
    """Tell serving (model.versions) that the deployed version changed."""
    from trajstream.trainer.announce import announce

    try:
        announce(TrainerSettings.extend(settings_of(ctx)), info, event, reason)
    except Exception as exc:  # the registry is changed either way; serving picks it up at its next event or start
        out.print(f"[yellow]warning:[/] could not announce {info.version} on Kafka: {exc}")


@model.command("promote")
@click.argument("version")
@click.option("--reason", default="promoted by hand", show_default=True)
@click.pass_context
def model_promote(ctx: click.Context, version: str, reason: str) -> None:
    """Deploy VERSION whatever the gate said."""
    try:
        info = _registry(ctx).deploy(version, reason)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    _announce(ctx, info, "deployed", reason)
    out.print(f"{info.version} deployed")


@model.command("rollback")
@click.option("--reason", default="rolled back by hand", show_default=True)
@click.pass_context
def model_rollback(ctx: click.Context, reason: str) -> None:
    """Deploy the version deployed before the current one again."""
    try:
        info = _registry(ctx).rollback(reason)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _announce(ctx, info, "rolled_back", reason)
    out.print(f"{info.version} deployed again")


@click.command("trainer")
@click.option("--windows", type=int, default=None, help="Stop after this many windows (default: run until stopped).")
@click.pass_context
def trainer_worker(ctx: click.Context, windows: int | None) -> None:
    """The trainer: GRPO on rolling windows of scored trajectories, one model version per window.

    Windows close at TRAJSTREAM_TRAINER_WINDOW_COUNT trajectories or TRAJSTREAM_TRAINER_WINDOW_SECONDS;
    each trained window becomes a version that the gate deploys or rejects (TRAJSTREAM_GATE_*).
    """
    from trajstream.foreground import run_until_signalled
    from trajstream.trainer.loop import TrainerLoop

    loop = TrainerLoop(TrainerSettings.extend(settings_of(ctx)))
    run_until_signalled(lambda stop: loop.run(stop, windows))


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", default=2, show_default=True, type=int, help="Generations run at once.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, concurrency: int) -> None:
    """OpenAI-compatible chat completions (POST /v1/chat/completions) from the deployed model version.

    Reloads when a version is deployed or rolled back (model.versions), without dropping requests; every
    response carries model_version, and logprobs=true returns each sampled token's id and log-probability.
    """
    from trajstream.trainer.serve import run_server

    run_server(TrainerSettings.extend(settings_of(ctx)), host, port, concurrency)


WORKERS = (trainer_worker,)
COMMANDS = (model, serve)
