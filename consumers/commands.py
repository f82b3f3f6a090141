"""The data worker's commands: `trajstream worker data`, and `sql`, `recall`, `predict`, `counterfactual`,
`recommend`, which ask the data worker's API (or open the stores when no worker runs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from trajstream.console import out, print_json, settings_of

if TYPE_CHECKING:
    from trajstream.consumers.api import RouteAdder


def data_worker_command(routes: Callable[[], Sequence[RouteAdder]] = tuple) -> click.Command:
    """`trajstream worker data`, serving ``routes()`` beside its own (a later stage's, found when it starts:
    the consumers cannot import the stages above them, so the corpus builds this command with its routes)."""

    @click.command("data")
    @click.pass_context
    def worker_data(ctx: click.Context) -> None:
        """The data worker: the ClickHouse and Milvus sinks and the data API, in one process.

        It applies ClickHouse migrations at start and owns the embedded stores (chDB at
        TRAJSTREAM_CLICKHOUSE_DSN, milvus-lite at TRAJSTREAM_MILVUS_URI), which allow one process per
        data directory; other processes query through its API (TRAJSTREAM_API_PORT, default 8765).
        """
        from trajstream.consumers.data_worker import run_data_worker

        run_data_worker(settings_of(ctx), routes())

    return worker_data


def _access(ctx: click.Context) -> Any:
    from trajstream.consumers.access import DataAccess

    return DataAccess(settings_of(ctx))


@click.command("sql")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def sql(ctx: click.Context, query: str, as_json: bool) -> None:
    """Run a read-only query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) against ClickHouse.

    Tables without a database resolve in TRAJSTREAM_CLICKHOUSE_DATABASE (default trajstream), for example
    `trajstream sql "SELECT outcome, count() FROM trajectories GROUP BY outcome"`.
    """
    result = _access(ctx).sql(query)
    if as_json:
        print_json(result)
        return
    table = Table(*result["columns"])
    for row in result["rows"]:
        table.add_row(*(str(v) for v in row))
    out.print(table)


@click.command("recall")
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
        print_json(result)
        return
    for hit in result["trajectories"]:
        out.print(f"[bold]{hit['similarity']:.3f}[/] {hit['trajectory_id']} {hit['outcome']} {hit['task']}")
    print_json(result["messages"])


@click.command("predict")
@click.option("--state", required=True, help="The situation: the task and what happened so far.")
@click.option("--action", required=True, help="The action planned next, e.g. 'issue_refund(order=42)'.")
@click.option("-k", default=20, show_default=True, help="How many similar decision points to weigh.")
@click.pass_context
def predict(ctx: click.Context, state: str, action: str, k: int) -> None:
    """Estimate the chance of success of an action from similar past decision points."""
    print_json(_access(ctx).predict(state, action, k))


@click.command("counterfactual")
@click.argument("trajectory_id")
@click.argument("step", type=int)
@click.argument("alternative_action")
@click.pass_context
def counterfactual(ctx: click.Context, trajectory_id: str, step: int, alternative_action: str) -> None:
    """Compare the predicted outcome of another action at a recorded step with what happened."""
    print_json(_access(ctx).counterfactual(trajectory_id, step, alternative_action))


@click.command("recommend")
@click.argument("context")
@click.option("-k", default=50, show_default=True, help="How many similar decision points to weigh.")
@click.pass_context
def recommend(ctx: click.Context, context: str, k: int) -> None:
    """Tools ranked by their success rate in similar situations, with the sequence that usually follows."""
    print_json(_access(ctx).recommend(context, k))


@click.command("console")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default web browser.")
@click.pass_context
def console(ctx: click.Context, open_browser: bool) -> None:
    """The web console's address: live dashboards (overview, learning curve, tools, models), trajectories
    with search and detail, dead letters with replay, the pipeline and the trainer.

    The data worker of `trajstream up` serves it. With TRAJSTREAM_API_READ_TOKEN or _OPERATOR_TOKEN set,
    sign in on the page with one (the operator token may replay dead letters); with neither, it listens
    on loopback only and needs no sign-in."""
    import webbrowser

    from trajstream.data_api import answering_api

    settings = settings_of(ctx)
    url = answering_api(settings)
    if url is None:
        raise click.ClickException("no data worker answers: start the pipeline with `trajstream up`")
    address = f"{url}/console/"
    out.print(address)
    if settings.api_read_token or settings.api_operator_token:
        out.print("sign in with TRAJSTREAM_API_READ_TOKEN or TRAJSTREAM_API_OPERATOR_TOKEN", style="dim")
    if open_browser and not webbrowser.open(address):
        raise click.ClickException(f"no web browser could be started here; open {address} yourself")


# The data worker's command is corpus/console/commands.py's: data_worker_command with the corpus's routes.
WORKERS: tuple[click.Command, ...] = ()
COMMANDS = (sql, recall, predict, counterfactual, recommend, console)
