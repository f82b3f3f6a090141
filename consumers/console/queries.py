"""Every ClickHouse query the console runs, and how it runs them.

Rules, so that a dashboard never runs ClickHouse out of memory (Langfuse users' top complaint):
- every query filters on time: the rollups on ``minute``, the wide tables on their own time column, the
  detail of one trajectory on the window its own rows give;
- charts read the rollups (``*_minute``), bucketed by the range's granularity; no query uses FINAL (the
  signed rollups cancel replaced versions; the wide tables pick a trajectory's latest version by
  ``LIMIT 1 BY`` on narrow columns first);
- every query runs with a time, memory and rows-read limit from the settings, and a hit limit is an error
  with a kind (``timeout``, ``too_much``) that the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trajstream.consumers.clickhouse_store import ClickHouseError
from trajstream.consumers.console.timerange import Granularity, TimeRange
from trajstream.settings import Settings

FAILED = "('failure', 'error')"  # the outcomes a failure chart counts
_UNIT: dict[Granularity, str] = {"minute": "MINUTE", "hour": "HOUR", "day": "DAY", "week": "WEEK"}
BY_COLUMN = {"agent": "agent_id", "domain": "domain", "model_version": "model_version"}
_DAY_MS = 24 * 3_600_000
_TIME = "{start:DateTime64(3)}"
_END = "{end:DateTime64(3)}"


@dataclass(frozen=True)
class Query:
    """One statement with its parameters; ``name`` names it in errors, logs and the benchmark."""

    name: str
    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cascade:
    """Queries tried in order until one returns more than ``enough`` rows; else the last one's rows."""

    name: str
    steps: tuple[Query, ...]
    enough: int


class QueryLimitError(ClickHouseError):
    """A console query hit one of its limits; ``kind`` is ``timeout`` or ``too_much``."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


# ClickHouse's error codes for the limits each query runs with.
_TIMEOUT_CODES = {159}  # TIMEOUT_EXCEEDED
_TOO_MUCH_CODES = {158, 241, 396}  # TOO_MANY_ROWS, MEMORY_LIMIT_EXCEEDED, TOO_MANY_ROWS_OR_BYTES
_CODE = re.compile(r"Code: (\d+)")


def limits(settings: Settings) -> dict[str, Any]:
    return {
        "readonly": 1,
        "max_execution_time": settings.console_query_timeout_s,
        "max_memory_usage": settings.console_max_memory_bytes,
        "max_rows_to_read": settings.console_max_rows_to_read,
    }


def run(client: Any, query: Query | Cascade, settings: Settings) -> list[tuple[Any, ...]]:
    """Run one console query under its limits; a hit limit becomes a QueryLimitError that says which."""
    if isinstance(query, Cascade):
        rows: list[tuple[Any, ...]] = []
        for step in query.steps:
            rows = run(client, step, settings)
            if len(rows) > query.enough:
                break
        return rows
    try:
        result = client.query(query.sql, parameters=query.parameters, settings=limits(settings))
    except Exception as exc:  # clickhouse-connect and chDB raise their own types; the code tells the cause
        match = _CODE.search(str(exc))
        code = int(match.group(1)) if match else None
        if code in _TIMEOUT_CODES:
            raise QueryLimitError(f"the {query.name} query ran past its {settings.console_query_timeout_s:g} s "
                                  "limit: pick a shorter range", "timeout") from exc  # fmt: skip
        if code in _TOO_MUCH_CODES:
            raise QueryLimitError(f"the {query.name} query needs more than its limits allow "
                                  f"({settings.console_max_memory_bytes >> 20} MiB, "
                                  f"{settings.console_max_rows_to_read:,} rows read): pick a shorter range",
                                  "too_much") from exc  # fmt: skip
        raise ClickHouseError(f"the {query.name} query failed: {exc}") from exc
    return [tuple(row) for row in result.result_rows]


def _bucket(column: str, r: TimeRange) -> str:
    return f"toUnixTimestamp(toStartOfInterval({column}, INTERVAL 1 {_UNIT[r.granularity]})) * 1000"


# The minute rollups' window: their minute is the bucket start, so a range counts from its first whole minute.
_ROLLUP_WINDOW = f"minute >= toStartOfMinute({_TIME}) AND minute < {_END}"


def _resolution(table: str, r: TimeRange) -> tuple[str, str, str]:
    """The stats rollup to read for a range: ``table`` (``tool_stats``, ``model_metrics``) at minute resolution
    under 2 hours, hour under 3 days, else day; with its time column and window. An hour or day rollup counts
    its whole first bucket: a range is read in whole hours or whole UTC days once it spans that much."""
    if r.granularity == "minute":
        return f"{table}_minute", "minute", _ROLLUP_WINDOW
    unit = "hour" if r.granularity == "hour" else "day"
    start = "toStartOfHour" if unit == "hour" else "toStartOfDay"
    return f"{table}_{unit}", unit, f"{unit} >= {start}({_TIME}) AND {unit} < {_END}"


def _filters(filters: Mapping[str, str], allowed: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """`` AND column = {f_name:String}`` for each given filter that the table has."""
    sql, params = "", {}
    for name, column in allowed.items():
        value = filters.get(name)
        if value:
            sql += f" AND {column} = {{f_{name}:String}}"
            params[f"f_{name}"] = value
    return sql, params


# --- Overview and the learning curve: trajectory_metrics_minute ------------------------------------
def trajectory_timeline(db: str, r: TimeRange, by: str) -> Query:
    key = BY_COLUMN[by]
    return Query(
        "trajectory timeline",
        f"SELECT {_bucket('minute', r)} AS t, {key} AS key, sum(trajectories) AS n, sum(successes) AS ok, "
        f"sum(reward_sum) AS rs FROM {db}.trajectory_metrics_minute WHERE {_ROLLUP_WINDOW} "
        "GROUP BY t, key HAVING n != 0 ORDER BY t, key",
        r.parameters(),
    )


def trajectory_breakdown(db: str, r: TimeRange, by: str) -> Query:
    key = BY_COLUMN[by]
    return Query(
        f"trajectories by {by}",
        f"SELECT {key} AS key, sum(trajectories) AS n, sum(successes) AS ok, sum(reward_sum) AS rs "
        f"FROM {db}.trajectory_metrics_minute WHERE {_ROLLUP_WINDOW} GROUP BY key HAVING n > 0 "
        "ORDER BY n DESC LIMIT 100",
        r.parameters(),
    )


def deployments(db: str, r: TimeRange) -> Query:
    return Query(
        "deployments",
        f"SELECT toUnixTimestamp64Milli(at), model_name, version, event, reason FROM {db}.model_versions "
        f"WHERE at >= {_TIME} AND at < {_END} AND event IN ('deployed', 'rolled_back', 'canary') ORDER BY at "
        "LIMIT 1000",
        r.parameters(),
    )


# --- Tools: tool_stats_minute, last_tool_minute, loops from the trajectories' own columns --------------
def tool_table(db: str, r: TimeRange) -> Query:
    table, _, window = _resolution("tool_stats", r)
    return Query(
        "tool table",
        "SELECT tool, sum(calls) AS c, sum(errors), sum(timeouts), quantilesMerge(0.5, 0.95, 0.99)(latency) "
        f"FROM {db}.{table} WHERE {window} GROUP BY tool ORDER BY c DESC LIMIT 200",
        r.parameters(),
    )


def tool_timeline(db: str, r: TimeRange) -> Query:
    table, column, window = _resolution("tool_stats", r)
    return Query(
        "tool timeline",
        f"SELECT {_bucket(column, r)} AS t, tool, sum(calls), sum(errors), sum(timeouts) "
        f"FROM {db}.{table} WHERE {window} GROUP BY t, tool ORDER BY t, tool LIMIT 20000",
        r.parameters(),
    )


def tools_before_failure(db: str, r: TimeRange) -> Query:
    return Query(
        "tools before failure",
        f"SELECT last_tool, sum(failures) AS f, sum(trajectories) FROM {db}.last_tool_minute "
        f"WHERE {_ROLLUP_WINDOW} AND last_tool != '' GROUP BY last_tool HAVING f > 0 ORDER BY f DESC LIMIT 20",
        r.parameters(),
    )


def tool_loops(db: str, r: TimeRange) -> Query:
    # A trajectory's versions repeat its loops: count trajectories, not rows.
    return Query(
        "tool loops",
        "SELECT tool, uniqExact(trajectory_id) AS loops, max(repeats), any(trajectory_id) "
        f"FROM {db}.trajectories ARRAY JOIN loop_tools AS tool, loop_repeats AS repeats "
        f"WHERE ended_at >= {_TIME} AND ended_at < {_END} AND notEmpty(loop_tools) "
        "GROUP BY tool ORDER BY loops DESC LIMIT 20",
        r.parameters(),
    )


# --- Models: model_metrics_minute -----------------------------------------------------------------
def model_table(db: str, r: TimeRange) -> Query:
    table, _, window = _resolution("model_metrics", r)
    return Query(
        "model table",
        "SELECT model, model_version, sum(turns) AS n, sum(errors), sum(input_tokens), sum(output_tokens), "
        f"quantilesMerge(0.5, 0.95, 0.99)(latency) FROM {db}.{table} WHERE {window} "
        "GROUP BY model, model_version ORDER BY n DESC LIMIT 200",
        r.parameters(),
    )


def model_timeline(db: str, r: TimeRange) -> Query:
    table, column, window = _resolution("model_metrics", r)
    return Query(
        "model timeline",
        f"SELECT {_bucket(column, r)} AS t, model, sum(input_tokens), sum(output_tokens), sum(turns) "
        f"FROM {db}.{table} WHERE {window} GROUP BY t, model ORDER BY t, model LIMIT 20000",
        r.parameters(),
    )


# --- Trajectories: the list and its facets -------------------------------------------------------
LIST_COLUMNS = ("trajectory_id", "version", "ended_at", "agent_id", "domain", "outcome", "reward", "model_version",
                "turn_count", "tool_calls", "duration_ms", "task", "tags", "parent_trajectory_id")  # fmt: skip
_LIST_FILTERS = {"outcome": "outcome", "agent": "agent_id", "domain": "domain", "model_version": "model_version"}


def trajectory_list(db: str, r: TimeRange, filters: Mapping[str, str], page: int, page_size: int) -> Query:
    """The latest version of each trajectory that matches, newest first: the page's ids are picked on narrow
    columns, then only their rows are read whole."""
    where, params = _filters(filters, _LIST_FILTERS)
    if filters.get("tag"):
        where += " AND has(tags, {f_tag:String})"
        params["f_tag"] = filters["tag"]
    for bound, op in (("min_reward", ">="), ("max_reward", "<=")):
        if filters.get(bound) not in (None, ""):
            where += f" AND reward {op} {{f_{bound}:Float64}}"
            params[f"f_{bound}"] = float(filters[bound])
    if filters.get("q"):
        where += " AND (positionCaseInsensitiveUTF8(task, {f_q:String}) > 0 OR trajectory_id = {f_q:String})"
        params["f_q"] = filters["q"]
    window = f"ended_at >= {_TIME} AND ended_at < {_END}"
    columns = ", ".join("toUnixTimestamp64Milli(ended_at)" if c == "ended_at" else c for c in LIST_COLUMNS)
    return Query(
        "trajectory list",
        f"SELECT {columns} FROM {db}.trajectories WHERE {window} AND (trajectory_id, version) IN ("
        f"SELECT trajectory_id, version FROM {db}.trajectories WHERE {window}{where} "
        "ORDER BY ended_at DESC, trajectory_id, version DESC LIMIT 1 BY trajectory_id "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt32}) ORDER BY ended_at DESC, trajectory_id",
        {**r.parameters(), **params, "limit": page_size + 1, "offset": (page - 1) * page_size},
    )


def trajectory_page(db: str, r: TimeRange, filters: Mapping[str, str], page: int, page_size: int) -> Cascade:
    """The page of the list, read from the range's last day, then its last week, then all of it: the list is
    newest first, so a window that holds the page and one row more gives the very page the whole range would,
    without sorting a month of ids (benchmarks/dashboard.py: 455 ms p95 over 30 days of 1M trajectories)."""
    windows = [TimeRange(r.to_ms - span, r.to_ms) for span in (_DAY_MS, 7 * _DAY_MS) if r.to_ms - span > r.from_ms]
    steps = tuple(trajectory_list(db, w, filters, page, page_size) for w in (*windows, r))
    return Cascade("trajectory page", steps, page_size)


def facets(db: str, r: TimeRange) -> Query:
    return Query(
        "facets",
        "SELECT groupUniqArray(100)(agent_id), groupUniqArray(100)(domain), groupUniqArray(100)(model_version), "
        f"groupUniqArray(20)(outcome) FROM {db}.trajectory_deltas WHERE ended_at >= {_TIME} AND ended_at < {_END}",
        r.parameters(),
    )


def tag_facet(db: str, r: TimeRange) -> Query:
    return Query(
        "tags",
        f"SELECT groupUniqArrayArray(100)(tags) FROM {db}.trajectories WHERE ended_at >= {_TIME} AND ended_at < {_END}",
        r.parameters(),
    )


# --- One trajectory ------------------------------------------------------------------------------
DETAIL_COLUMNS = (*LIST_COLUMNS, "started_at", "scored_at", "environment", "reason", "timed_out", "reward_function",
                  "extractor")  # fmt: skip


def trajectory_versions(db: str, trajectory_id: str, ttl_days: int) -> Query:
    """Every version of one trajectory: found by its bloom-filter index, within the data's lifetime."""
    columns = ", ".join(f"toUnixTimestamp64Milli({c})" if c.endswith("_at") else c for c in DETAIL_COLUMNS)
    return Query(
        "trajectory",
        f"SELECT {columns} FROM {db}.trajectories WHERE trajectory_id = {{id:String}} "
        f"AND ended_at >= now64(3) - INTERVAL {int(ttl_days)} DAY ORDER BY version",
        {"id": trajectory_id},
    )


@dataclass(frozen=True)
class Window:
    """Where one trajectory's rows are: its agent (the sort key's first column) and its time span."""

    trajectory_id: str
    agent_id: str
    start_ms: int
    end_ms: int

    def parameters(self) -> dict[str, Any]:
        return {"id": self.trajectory_id, "agent": self.agent_id, "start": self.start_ms / 1000,
                "end": self.end_ms / 1000}  # fmt: skip


def _within(column: str) -> str:
    return (f"agent_id = {{agent:String}} AND {column} >= {_TIME} AND {column} <= {_END} "
            "AND trajectory_id = {id:String}")  # fmt: skip


def detail_queries(db: str, w: Window) -> dict[str, Query]:
    p = w.parameters()
    return {
        "turns": Query(
            "turns",
            "SELECT turn_index, toUnixTimestamp64Milli(timestamp), duration_ms, error, error_type, "
            f"model, model_version, input_tokens, output_tokens, air FROM {db}.turns "
            f"WHERE {_within('timestamp')} ORDER BY turn_index",
            p,
        ),
        "messages": Query(
            "messages",
            "SELECT turn_index, seq, role, kind, text, tool_name, call_id "
            f"FROM {db}.messages WHERE {_within('timestamp')} ORDER BY turn_index, seq",
            p,
        ),
        "tool_calls": Query(
            "tool calls",
            "SELECT turn_index, call_id, tool, arguments, status, latency_ms "
            f"FROM {db}.tool_calls WHERE timestamp >= {_TIME} AND timestamp <= {_END} "
            "AND trajectory_id = {id:String} AND agent_id = {agent:String} "
            "ORDER BY turn_index, timestamp",
            p,
        ),
        "rewards": Query(
            "rewards",
            f"SELECT version, component, value, weight, detail FROM {db}.rewards "
            f"WHERE {_within('scored_at')} ORDER BY version, component",
            p,
        ),
        "credits": Query(
            "credits",
            f"SELECT version, method, step_index, turn_index, credit, air FROM {db}.credits "
            f"WHERE {_within('scored_at')} ORDER BY version, method, step_index",
            p,
        ),
        "decisions": Query(
            "decisions",
            "SELECT version, step_index, decision_type, chosen_action, reasoning, "
            f"alternatives, confidence, implicit FROM {db}.decisions WHERE {_within('extracted_at')} "
            "ORDER BY version, step_index",
            p,
        ),
        "entities": Query(
            "entities",
            "SELECT version, name, entity_type, discovered_at_step, importance, "
            f"relationships FROM {db}.entities WHERE extracted_at >= {_TIME} AND "
            f"extracted_at <= {_END} AND trajectory_id = {{id:String}} "
            "ORDER BY version, discovered_at_step, name",
            p,
        ),
        "children": Query(
            "children",
            "SELECT trajectory_id, agent_id, outcome, reward, task FROM "
            f"{db}.trajectories WHERE ended_at >= {_TIME} AND ended_at <= {_END} "
            "AND parent_trajectory_id = {id:String} ORDER BY ended_at, trajectory_id, version DESC "
            "LIMIT 1 BY trajectory_id LIMIT 200",
            p,
        ),
    }


# --- Dead letters ---------------------------------------------------------------------------------
def dead_letter_timeline(db: str, r: TimeRange) -> Query:
    return Query(
        "dead-letter timeline",
        f"SELECT {_bucket('failed_at', r)} AS t, stage, count() FROM {db}.dead_letters "
        f"WHERE failed_at >= {_TIME} AND failed_at < {_END} GROUP BY t, stage ORDER BY t, stage LIMIT 20000",
        r.parameters(),
    )


def dead_letter_reasons(db: str, r: TimeRange) -> Query:
    return Query(
        "dead-letter reasons",
        f"SELECT stage, error_type, reason, count() AS n FROM {db}.dead_letters WHERE failed_at >= {_TIME} "
        f"AND failed_at < {_END} GROUP BY stage, error_type, reason ORDER BY n DESC LIMIT 50",
        r.parameters(),
    )


def dead_letter_list(db: str, r: TimeRange, stage: str | None, page: int, page_size: int) -> Query:
    where, params = _filters({"stage": stage or ""}, {"stage": "stage"})
    return Query(
        "dead letters",
        f"SELECT dlq_partition, dlq_offset, toUnixTimestamp64Milli(failed_at), stage, error_type, reason, source, "
        f"trajectory_id, payload_bytes, payload_cut FROM {db}.dead_letters WHERE failed_at >= {_TIME} "
        f"AND failed_at < {_END}{where} ORDER BY failed_at DESC, dlq_partition, dlq_offset "
        "LIMIT 1 BY dlq_partition, dlq_offset LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
        {**r.parameters(), **params, "limit": page_size + 1, "offset": (page - 1) * page_size},
    )


# --- Trainer --------------------------------------------------------------------------------------
def model_version_events(db: str, r: TimeRange) -> Query:
    return Query(
        "model versions",
        "SELECT toUnixTimestamp64Milli(at), model_name, version, number, parent, event, metrics, reason "
        f"FROM {db}.model_versions WHERE at >= {_TIME} AND at < {_END} ORDER BY model_name, at, number LIMIT 10000",
        r.parameters(),
    )


def page_queries(db: str, r: TimeRange) -> list[Query | Cascade]:
    """Every query the pages run over a range (the benchmark times these)."""
    return [
        trajectory_timeline(db, r, "agent"), trajectory_timeline(db, r, "model_version"),
        *(trajectory_breakdown(db, r, by) for by in BY_COLUMN), deployments(db, r),
        tool_table(db, r), tool_timeline(db, r), tools_before_failure(db, r), tool_loops(db, r),
        model_table(db, r), model_timeline(db, r),
        trajectory_page(db, r, {}, 1, 50), trajectory_page(db, r, {"outcome": "failure", "q": "refund"}, 3, 50),
        facets(db, r), tag_facet(db, r),
        dead_letter_timeline(db, r), dead_letter_reasons(db, r), dead_letter_list(db, r, None, 1, 100),
        model_version_events(db, r),
    ]  # fmt: skip
