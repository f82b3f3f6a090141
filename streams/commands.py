"""The streams' commands: `trajstream worker streams`, `worker enrich` and `enrich` (re-extraction)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from trajstream.console import out, settings_of


@click.command("streams")
@click.option("--loglevel", default="warn", show_default=True, type=click.Choice(["crit", "error", "warn", "info"]))
@click.pass_context
def worker_streams(ctx: click.Context, loglevel: str) -> None:
    """The Faust worker: assembles trajectories from events and scores them.

    Assembly closes a trajectory on its end event or after TRAJSTREAM_ASSEMBLY_INACTIVITY_TIMEOUT_S
    without events; late turns and feedback re-emit it as a new version. Run `trajstream topics
    create` first: the worker does not create topics.
    """
    from trajstream.streams.app import run_worker

    run_worker(settings_of(ctx), loglevel)


@click.command("enrich")
@click.pass_context
def worker_enrich(ctx: click.Context) -> None:
    """The enrichment worker: extracts decisions and entities from each finished trajectory.

    Uses the OpenAI-compatible model at TRAJSTREAM_LLM_BASE_URL, or the deterministic heuristic
    extractor when none is configured (its results say extractor=heuristic).
    """
    from trajstream.streams.enrichment.worker import run_enrichment_worker

    run_enrichment_worker(settings_of(ctx))


@click.command("enrich")
@click.option("--since", required=True, type=click.DateTime(), help="Re-extract trajectories emitted since (UTC).")
@click.option("--prompt-version", default=None, help="Prompt version to use (default: the worker's current).")
@click.pass_context
def enrich(ctx: click.Context, since: Any, prompt_version: str | None) -> None:
    """Request a new extraction for every trajectory assembled since DATE (latest version each)."""
    from trajstream.streams.enrichment.reenrich import request_reenrichment

    count = asyncio.run(request_reenrichment(settings_of(ctx), since, prompt_version))
    out.print(f"{count} enrichment request(s) sent")


WORKERS = (worker_streams, worker_enrich)
COMMANDS = (enrich,)
