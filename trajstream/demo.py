"""``trajstream demo``: the broker, the topics, the example trajectories, and what arrived."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trajstream.broker import LocalBroker
from trajstream.codec import codec_for
from trajstream.emit_file import EmitSummary, emit_file
from trajstream.reader import read_topic
from trajstream.sdk.emitter import AsyncEmitter
from trajstream.settings import Settings
from trajstream.topics import DEAD_LETTERS, EVENTS, create_topics


def run_demo(settings: Settings, file: Path, out: Console, err: Console) -> None:
    broker = LocalBroker(settings, progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    t0 = time.monotonic()
    status = broker.start()
    out.print(f"[bold]1. broker[/] {status.bootstrap} ({'external' if status.external else 'local'}) "
              f"answering in {time.monotonic() - t0:.1f}s")  # fmt: skip
    results = asyncio.run(create_topics(settings))
    created = sum(r.created for r in results)
    out.print(f"[bold]2. topics[/] {len(results)} topics ({created} created, {len(results) - created} existed)")
    summary, counts, dead = asyncio.run(_emit_and_read(settings, file))
    out.print(
        f"[bold]3. emit[/] {file.name}: {summary.lines} lines, {summary.trajectories} trajectories, "
        f"{summary.events} events sent, {len(summary.rejected)} rejected"
    )
    for number, reason in summary.rejected:
        out.print(f"   line {number}: {reason}")
    table = Table("event type", "on the events topic now", title="4. read back from Kafka")
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    table.add_row("dead letters", str(dead))
    out.print(table)
    out.print(f"The broker keeps running for the next steps; stop it with [bold]trajstream broker stop[/]. "
              f"Its log: {broker.log_file}")  # fmt: skip


async def _emit_and_read(settings: Settings, file: Path) -> tuple[EmitSummary, Counter[str], int]:
    async with AsyncEmitter(settings, client_id="trajstream-demo") as emitter:
        summary = await emit_file(file, emitter)
    codec = codec_for(settings)
    counts: Counter[str] = Counter()
    async for rec in read_topic(settings, settings.topic(EVENTS), codec):
        counts[rec.event.name if rec.event else f"undecodable ({type(rec.error).__name__})"] += 1
    dead = 0
    async for _ in read_topic(settings, settings.topic(DEAD_LETTERS)):
        dead += 1
    return summary, counts, dead
