"""``trajstream demo``: the whole pipeline on the example trajectories, then a recall and a prediction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trajstream.emit_file import EmitSummary, emit_file
from trajstream.settings import Settings
from trajstream_sdk.emitter import AsyncEmitter


def run_demo(settings: Settings, file: Path, out: Console, err: Console) -> None:
    """Bring the pipeline up, emit the example trajectories, and show them in ClickHouse and Milvus."""
    from trajstream.consumers.access import DataAccess
    from trajstream.pipeline import up

    t0 = time.monotonic()
    up(settings, lambda msg: err.print(f"[dim]{msg}[/]"))
    out.print(f"[bold]1. pipeline up[/] in {time.monotonic() - t0:.1f}s: broker, topics, streams, enrichment, "
              "sinks and data API, and the gateway for any runtime on "
              f"http://{settings.gateway_host}:{settings.gateway_port} (`trajstream status`)")  # fmt: skip
    summary = asyncio.run(_emit(settings, file))
    out.print(
        f"[bold]2. emit[/] {file.name}: {summary.lines} lines, {summary.trajectories} trajectories, "
        f"{summary.events} events sent, {len(summary.rejected)} rejected"
    )
    for number, reason in summary.rejected:
        out.print(f"   line {number}: {reason}")
    ids = _ids(file)
    data = DataAccess(settings)
    db = settings.clickhouse_database
    t0 = time.monotonic()
    landed = 0
    while time.monotonic() - t0 < 120:
        query = f"SELECT uniqExact(trajectory_id) FROM {db}.trajectories WHERE trajectory_id IN ({_quoted(ids)})"
        landed = int(data.sql(query)["rows"][0][0])
        if (landed >= len(ids) and data.recall("refund", 1, {"outcome": "any"})["trajectories"]
                and data.predict("refund", "issue_refund", 5)["p_success"] is not None):  # fmt: skip
            break  # in ClickHouse, and both Milvus collections answer
        time.sleep(0.5)
    out.print(f"[bold]3. landed[/] {landed} of {len(ids)} trajectories in ClickHouse and Milvus "
              f"after {time.monotonic() - t0:.1f}s")  # fmt: skip
    result = data.sql(
        f"SELECT outcome, count() AS trajectories, round(avg(reward), 3) AS mean_reward, sum(tool_errors) AS "
        f"tool_errors FROM (SELECT * FROM {db}.trajectories ORDER BY version DESC LIMIT 1 BY trajectory_id) "
        "GROUP BY outcome ORDER BY trajectories DESC"
    )
    table = Table(*result["columns"], title="4. ClickHouse: latest version of each trajectory")
    for row in result["rows"]:
        table.add_row(*(str(v) for v in row))
    out.print(table)
    query = "my parcel came damaged and I want my money back"
    recall = data.recall(query, 2, {})
    out.print(f"[bold]5. recall[/] {query!r} (successful trajectories, as few-shot messages):")
    for hit in recall["trajectories"]:
        out.print(f"   {hit['similarity']:.3f}  {hit['task']}  ({hit['outcome']}, reward {hit['reward']:.2f})")
    for message in recall["messages"][:2]:
        out.print(f"   [dim]{message['role']}:[/] {message['content']}")
    state, good, bad = "Customer asks to refund an order that arrived broken", "issue_refund", "escalate_to_human"
    for action in (good, bad):
        p = data.predict(state, action, 20)
        shown = "unknown" if p["p_success"] is None else f"{p['p_success']:.2f}"
        out.print(f"[bold]6. predict[/] {action}: p(success) {shown}, confidence {p['confidence']:.2f}")
    out.print("The pipeline keeps running: look at it in the web console ([bold]trajstream console --open[/]), or "
              "try [bold]trajstream sql[/], [bold]recall[/], [bold]predict[/], [bold]recommend[/]; stop it with "
              "[bold]trajstream down[/].")  # fmt: skip


def _ids(file: Path) -> list[str]:
    ids = []
    for line in file.read_text().splitlines():
        if line.strip():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("id"):
                    ids.append(str(doc["id"]))
    return ids


def _quoted(ids: list[str]) -> str:
    return ", ".join("'" + i.replace("'", "") + "'" for i in ids) or "''"


async def _emit(settings: Settings, file: Path) -> EmitSummary:
    async with AsyncEmitter(settings, client_id="trajstream-demo") as emitter:
        return await emit_file(file, emitter)
