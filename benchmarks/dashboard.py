"""Dashboard benchmark: every console query over the last 24 hours and 30 days, on a month of data.

    python benchmarks/dashboard.py [--trajectories 1000000] [--turns 10] [--repeats 20] [--dir DIR]
                                   [--chunk 100000] [--merge-rollups]

1. Load: a fresh chDB directory (``--dir``, else a new one under /tmp, removed at the end unless ``--keep``)
   gets the project's migrations (``migrate``), then every table is filled by ``INSERT ... SELECT ... FROM
   numbers(...)``, ``--chunk`` trajectories per INSERT in time order, in the sink's table order, so the
   materialised views aggregate each insert block as they do in production. The data: --trajectories
   trajectories of --turns turns ending evenly over the last 30 days (no denser last day: the 24 h range
   holds 1/30 of them), 6 agents (each serving one of 4 domains), 8 policy versions rolled out over the
   month (10% of traffic on the next version as a canary), 3 models, 15 tools; ~90% of turns call a tool
   (5% errors, 2% timeouts at 30 s), 3% of trajectories loop (the same call 3-5 times), 2% get a second
   version an hour later (re-scored: new outcome and reward; deltas -1 and +1 as the sink writes them);
   2 messages per turn, 3 reward components and 3 decisions per version, a credit per turn, an entity for
   30% of trajectories, ~3000 dead letters and a few dozen model-version events.
2. Timing: for each range, every query of ``queries.page_queries`` and then, for one re-scored trajectory of
   the last day, ``trajectory_versions`` and ``detail_queries`` on the window the server builds from its rows
   ([started_at - 1 h, latest scored_at + 1 h], its agent), each through ``queries.run`` (the console's
   limits): one warm-up, then --repeats timed runs, each until its rows are in Python. p50 and p95 per query
   and range. A query that fails (a limit hit, an error) is a failure: printed, counted as infinitely slow,
   and the script exits 1.
3. Peak memory and rows read per query come from ClickHouse's own accounting, ``system.query_log``
   (``memory_usage`` is the query's peak, ``read_rows`` what it read), each run tagged with ``log_comment``.
   chDB has no query_log unless its configuration declares one, so the benchmark opens the directory itself
   with a config file that does (``chdb_options={"config-file": ...}``; the DSN that ``connect`` takes cannot
   carry it), runs ``migrate`` on that client, and flushes the log once with ``SYSTEM FLUSH LOGS``. The
   summary clickhouse-connect returns for chDB is no substitute: its ``read_rows`` is the result's row count
   (chdb's ``rows_read()``), and it has no memory figure.
4. Baseline, same run, same limits: the overview timeline, the tool table and the model table computed the
   way a dashboard without rollups would, from the wide tables (the latest version by argMax, exact
   quantiles over raw tool_calls and turns, no FINAL). Their counts must equal the rollups' (a mismatch is a
   failure); the ratio printed is baseline p95 / ours (above 1: the rollup is faster). A baseline that hits
   the console's limits is shown as such (past the time limit: the speedup is at least limit / ours), and is
   not a failure of the console; any other baseline error is.

Times are taken as loaded: the rollups hold whatever the background merges have reached (their part and row
counts are printed). ``--merge-rollups`` then merges the rollups once (OPTIMIZE ... FINAL, which the console
itself never runs) and times the page queries again; the RESULT lines stay those of the as-loaded timings.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clickhouse_connect

from trajstream.consumers.clickhouse_store import ClickHouseError, migrate, stored_bytes
from trajstream.consumers.console import queries
from trajstream.consumers.console.queries import Cascade, Query, Window
from trajstream.consumers.console.timerange import TimeRange
from trajstream.settings import Settings

DAY_MS = 86_400_000
SPAN_MS = 30 * DAY_MS
RANGES = ("24h", "30d")
TARGET_MS = 200
TAG = "dashbench"
ROLLUPS = ("trajectory_metrics_minute", "tool_stats_minute", "model_metrics_minute", "last_tool_minute")
QUERY_LOG_CONFIG = """<clickhouse>
  <query_log>
    <database>system</database>
    <table>query_log</table>
    <flush_interval_milliseconds>60000</flush_interval_milliseconds>
  </query_log>
</clickhouse>
"""

AGENTS = ["support-bot", "billing-agent", "travel-planner", "code-helper", "research-assistant", "returns-agent"]
DOMAIN_OF_AGENT = [1, 2, 3, 4, 3, 1]  # 1-based into DOMAINS: each agent serves one domain
DOMAINS = ["support", "billing", "travel", "engineering"]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"]
VERSIONS = 8
TOOLS = ["search_orders", "get_order", "refund", "lookup_user", "reset_password", "send_email", "search_flights",
         "book_flight", "cancel_booking", "run_tests", "read_file", "write_file", "web_search", "fetch_url",
         "create_ticket"]  # fmt: skip
TASKS = ["Refund order {n} that arrived damaged", "Reset the password of user {n}", "Book a flight for trip {n}",
         "Summarise support ticket {n}", "Cancel subscription {n}", "Fix failing test in module {n}"]  # fmt: skip
TAGS = ["vip", "escalated", "beta", "eu", "mobile", "retry", "night", "batch"]


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def arr(values: Sequence[object]) -> str:
    return "[" + ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values) + "]"


# --- 1. the data, in SQL -------------------------------------------------------------------------------
class Data:
    """The generating expressions: every value is a hash of the trajectory number ``i`` (and turn ``k``), so
    each table's INSERT derives the same trajectory without reading another table."""

    def __init__(self, trajectories: int, turns: int, now_ms: int):
        self.n, self.t, self.now = trajectories, turns, now_ms

    @staticmethod
    def h(salt: str, *columns: str) -> str:
        """A hash of the columns, a different one per salt."""
        return f"cityHash64({', '.join(columns)}, '{salt}')"

    def trajectory(self, v: int) -> list[str]:
        """``expr AS name`` of a trajectory's attributes in version v (needs ``i`` UInt64)."""
        t, h = self.t, self.h
        status_of = self.status("arrayElement(calls, -1)")
        return [
            "UUIDNumToString(MD5(toString(i))) AS tid",
            f"{h('agent', 'i')} % 6 AS agent_idx",
            f"arrayElement({arr(AGENTS)}, agent_idx + 1) AS agent_id",
            f"arrayElement({arr(DOMAINS)}, arrayElement({arr(DOMAIN_OF_AGENT)}, agent_idx + 1)) AS domain",
            f"toInt64(least({self.now}, {self.now - SPAN_MS} + intDiv(i * {SPAN_MS}, {self.n}) "
            f"+ {h('end', 'i')} % 60000)) AS ended_ms",
            f"toInt64(10000 + {h('dur', 'i')} % 290000) AS dur_ms",
            "ended_ms - dur_ms AS started_ms",
            f"toInt64({v - 1} * 3600000) AS later_ms",
            f"least({VERSIONS - 1}, intDiv((ended_ms - {self.now - SPAN_MS}) * {VERSIONS}, {SPAN_MS}) "
            f"+ ({h('canary', 'i')} % 10 = 0)) AS mv_idx",
            "concat('policy-v', toString(mv_idx + 1)) AS model_version",
            f"{h('task', 'i')} % {len(TASKS)} AS task_idx",
            "concat('task-', toString(task_idx)) AS task_key",
            f"replaceOne(arrayElement({arr(TASKS)}, task_idx + 1), '{{n}}', toString(i % 100000)) AS task",
            f"({t} >= 3 AND {h('loop', 'i')} % 100 < 3) AS looping",
            f"toUInt32(least({t}, 3 + {h('rep', 'i')} % 3)) AS rep",
            f"arrayElement({arr(TOOLS)}, {h('looptool', 'i')} % {len(TOOLS)} + 1) AS loop_tool",
            f"arrayFilter(k -> {self.has_call('k')}, range(toUInt32({t}))) AS calls",
            f"arrayCount(k -> {self.status('k')} != 'success', calls) AS errors_n",
            f"if(empty(calls), '', {self.tool('arrayElement(calls, -1)')}) AS last_tool",
            f"if(empty(calls), '', {status_of}) AS last_status",
            f"{h(f'out{v}', 'i')} % 100 AS roll",
            "multiIf(looping AND roll < 70, 'failure', roll < 68, 'success', roll < 83, 'failure', roll < 90, "
            "'partial', roll < 95, 'error', 'abandoned') AS outcome",
            f"multiIf(outcome = 'success', 0.7 + ({h(f'rw{v}', 'i')} % 300) / 1000, outcome = 'partial', 0.5, "
            f"({h(f'rw{v}', 'i')} % 300) / 1000) AS reward",
            f"({h('entity', 'i')} % 10 < 3) AS has_entity",
            "concat('order-', toString(i % 50000)) AS entity_name",
            f"arrayFilter(x -> x != '', [if({h('tag', 'i')} % 4 = 0, arrayElement({arr(TAGS)}, "
            f"{h('tagname', 'i')} % {len(TAGS)} + 1), ''), if({h('flag', 'i')} % 10 = 0, 'flagged', '')]) AS tags",
        ]  # fmt: skip

    def in_loop(self, k: str) -> str:
        return f"(looping AND toUInt32({k}) >= {self.t} - rep)"

    def has_call(self, k: str) -> str:
        return f"({self.in_loop(k)} OR {self.h('call', 'i', f'toUInt32({k})')} % 10 != 0)"

    def tool(self, k: str) -> str:
        pick = f"arrayElement({arr(TOOLS)}, {self.h('tool', 'i', f'toUInt32({k})')} % {len(TOOLS)} + 1)"
        return f"if({self.in_loop(k)}, loop_tool, {pick})"

    def status(self, k: str) -> str:
        roll = f"{self.h('status', 'i', f'toUInt32({k})')} % 100"
        return f"multiIf({roll} < 93, 'success', {roll} < 98, 'error', 'timeout')"

    def arguments(self, k: str) -> str:
        return (f"if({self.in_loop(k)}, '{{\"query\": \"order status\"}}', concat('{{\"id\": ', "
                f"toString({self.h('arg', 'i', f'toUInt32({k})')} % 100000), '}}'))")  # fmt: skip

    def turn(self) -> list[str]:
        """A turn's values (needs ``k`` UInt32 besides the trajectory's)."""
        h = self.h
        return [
            f"intDiv(dur_ms, {self.t}) AS step_ms",
            "started_ms + k * step_ms AS turn_ms",
            f"toUInt64(150 + {h('td', 'i', 'k')} % 2500 + if({h('slow', 'i', 'k')} % 50 = 0, 8000, 0)) AS duration_ms",
            f"({h('err', 'i', 'k')} % 50 = 0) AS error",
            f"arrayElement({arr(MODELS)}, {h('model', 'i', 'k')} % {len(MODELS)} + 1) AS model",
        ]


@dataclass
class Loader:
    client: Any
    db: str
    data: Data
    chunk: int
    seconds: dict[str, float] = field(default_factory=dict)

    def insert(self, table: str, columns: str, select: str, source: str, *, where: str = "") -> None:
        sql = (f"INSERT INTO {self.db}.{table} ({columns}) SELECT {columns} FROM (SELECT {select} FROM ({source})"
               f"{f' WHERE {where}' if where else ''})")  # fmt: skip
        started = time.perf_counter()
        self.client.command(sql)
        self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - started

    def per_trajectory(self, lo: int, n: int) -> str:
        return f"SELECT toUInt64(number) AS i FROM numbers({lo}, {n})"

    def per_turn(self, lo: int, n: int) -> str:
        t = self.data.t
        return f"SELECT intDiv(number, {t}) AS i, toUInt32(number % {t}) AS k FROM numbers({lo * t}, {n * t})"

    def per_item(self, lo: int, n: int, each: int) -> str:
        return (
            f"SELECT intDiv(number, {each}) AS i, toUInt32(number % {each}) AS c FROM numbers({lo * each}, {n * each})"
        )

    def load(self) -> None:
        d = self.data
        for lo in range(0, d.n, self.chunk):
            n = min(self.chunk, d.n - lo)
            started = time.perf_counter()
            self.chunk_v1(lo, n)
            self.chunk_v2(lo, n)
            log(f"loaded trajectories {lo:,}..{lo + n - 1:,} in {time.perf_counter() - started:.1f} s")
        self.side_tables()

    def chunk_v1(self, lo: int, n: int) -> None:
        d = self.data
        traj = ", ".join(d.trajectory(1))
        turn = f"{traj}, {', '.join(d.turn())}"
        self.insert(
            "turns",
            "trajectory_id, turn_index, timestamp, duration_ms, error, error_type, turn_reward, model, "
            "model_version, input_tokens, output_tokens, air, message_count, agent_id, domain, task_key, outcome, "
            "reward, first_version",
            f"tid AS trajectory_id, k AS turn_index, fromUnixTimestamp64Milli(turn_ms, 'UTC') AS timestamp, "
            "if(error, 'RateLimitError', '') AS error_type, CAST(NULL, 'Nullable(Float64)') AS turn_reward, "
            f"toUInt64(300 + {d.h('in', 'i', 'k')} % 3700) AS input_tokens, "
            f"toUInt64(20 + {d.h('outtok', 'i', 'k')} % 480) AS output_tokens, "
            f"({d.h('air', 'i', 'k')} % 1000) / 1000 - 0.5 AS air, toUInt16(2) AS message_count, "
            f"toUInt32(1) AS first_version, {turn}",
            self.per_turn(lo, n),
        )  # fmt: skip
        prev = "toUInt32(k - 1)"
        called_before = f"(k > 0 AND {d.has_call(prev)})"
        self.insert(
            "messages",
            "trajectory_id, turn_index, seq, timestamp, role, kind, text, tool_name, call_id, agent_id, domain, "
            "task_key",
            "tid AS trajectory_id, k AS turn_index, toUInt16(s) AS seq, "
            "fromUnixTimestamp64Milli(turn_ms + seq * 100, 'UTC') AS timestamp, "
            f"if(seq = 0, if({called_before}, 'tool', 'user'), 'assistant') AS role, "
            f"multiIf(seq = 0 AND role = 'tool', 'tool_response', seq = 1 AND {d.has_call('k')}, 'tool_call', 'text') "
            "AS kind, "
            f"multiIf(kind = 'tool_response', "
            f"concat('{{\"status\": \"', {d.status(prev)}, '\", \"result\": \"ok\"}}'), "
            f"kind = 'tool_call', concat({d.tool('k')}, ' ', {d.arguments('k')}), seq = 0 AND k = 0, task, seq = 0, "
            "'Please continue with the next step.', 'Here is what I found for your request.') AS text, "
            f"multiIf(kind = 'tool_response', {d.tool(prev)}, kind = 'tool_call', {d.tool('k')}, '') AS tool_name, "
            "multiIf(kind = 'tool_response', concat('c', toString(k - 1)), "
            f"kind = 'tool_call', concat('c', toString(k)), '') AS call_id, agent_id, domain, task_key, {turn}",
            f"SELECT intDiv(number, {2 * d.t}) AS i, toUInt32(intDiv(number, 2) % {d.t}) AS k, number % 2 AS s "
            f"FROM numbers({lo * 2 * d.t}, {n * 2 * d.t})",
        )  # fmt: skip
        status = d.status("k")
        self.insert(
            "tool_calls",
            "trajectory_id, turn_index, call_id, timestamp, tool, arguments, status, latency_ms, agent_id, domain, "
            "model_version, task_key",
            f"tid AS trajectory_id, k AS turn_index, concat('c', toString(k)) AS call_id, "
            f"fromUnixTimestamp64Milli(turn_ms + 100, 'UTC') AS timestamp, {d.tool('k')} AS tool, "
            f"{d.arguments('k')} AS arguments, {status} AS status, "
            f"toUInt64(if(status = 'timeout', 30000, 20 + {d.h('lat', 'i', 'k')} % 800 "
            f"+ if({d.h('latslow', 'i', 'k')} % 20 = 0, 3000, 0))) AS latency_ms, "
            f"agent_id, domain, model_version, task_key, {turn}",
            self.per_turn(lo, n),
            where=d.has_call("k"),
        )  # fmt: skip
        self.scored(lo, n, 1)
        self.insert("trajectories", *self.trajectory_rows(1), self.per_trajectory(lo, n))
        self.insert("trajectory_deltas", *self.delta_rows(1, 1), self.per_trajectory(lo, n))

    def scored(self, lo: int, n: int, v: int) -> None:
        """The rows each scored version adds: rewards, credits, decisions, entities."""
        d = self.data
        traj = ", ".join(d.trajectory(v))
        only = "" if v == 1 else self.second_version()
        scored_at = "fromUnixTimestamp64Milli(ended_ms + 2000 + later_ms, 'UTC')"
        extracted_at = "fromUnixTimestamp64Milli(ended_ms + 1000 + later_ms, 'UTC')"
        self.insert(
            "rewards",
            "trajectory_id, version, scored_at, reward_function, component, value, weight, detail, agent_id, domain",
            f"tid AS trajectory_id, toUInt32({v}) AS version, {scored_at} AS scored_at, 'default' AS reward_function, "
            "arrayElement(['outcome', 'efficiency', 'tool_use'], c + 1) AS component, "
            "if(c = 0, reward, 1 - errors_n / greatest(1, length(calls))) AS value, "
            "arrayElement([0.7, 0.2, 0.1], c + 1) AS weight, '' AS detail, agent_id, domain, " + traj,
            self.per_item(lo, n, 3),
            where=only,
        )  # fmt: skip
        self.insert(
            "credits",
            "trajectory_id, version, scored_at, method, step_index, turn_index, credit, air, agent_id, domain",
            f"tid AS trajectory_id, toUInt32({v}) AS version, {scored_at} AS scored_at, 'air' AS method, "
            f"k AS step_index, k AS turn_index, reward / {d.t} AS credit, "
            f"({d.h('air', 'i', 'k')} % 1000) / 1000 - 0.5 AS air, agent_id, domain, " + traj,
            self.per_turn(lo, n),
            where=only,
        )  # fmt: skip
        self.insert(
            "decisions",
            "trajectory_id, version, extracted_at, extractor, prompt_version, step_index, decision_type, "
            "chosen_action, reasoning, alternatives, confidence, implicit, agent_id, domain, outcome",
            f"tid AS trajectory_id, toUInt32({v}) AS version, {extracted_at} AS extracted_at, "
            "'heuristic' AS extractor, 'v1' AS prompt_version, c AS step_index, "
            "arrayElement(['tool_selection', 'plan', 'final_answer'], c + 1) AS decision_type, "
            f"concat('call ', {d.tool('c')}) AS chosen_action, 'The task needs this information first.' AS reasoning, "
            "['ask the user', 'escalate'] AS alternatives, "
            f"({d.h('conf', 'i', 'c')} % 100) / 100 AS confidence, c = 2 AS implicit, agent_id, domain, outcome, "
            + traj,
            self.per_item(lo, n, 3),
            where=only,
        )  # fmt: skip
        self.insert(
            "entities",
            "trajectory_id, version, extracted_at, extractor, prompt_version, name, entity_type, discovered_at_step, "
            "importance, relationships, agent_id, domain",
            f"tid AS trajectory_id, toUInt32({v}) AS version, {extracted_at} AS extracted_at, "
            "'heuristic' AS extractor, 'v1' AS prompt_version, entity_name AS name, 'order' AS entity_type, "
            "toUInt32(0) AS discovered_at_step, "
            "'critical' AS importance, CAST([], 'Array(String)') AS relationships, agent_id, domain, " + traj,
            self.per_trajectory(lo, n),
            where=f"has_entity{f' AND {only}' if only else ''}",
        )  # fmt: skip

    def second_version(self) -> str:
        return f"{self.data.h('v2', 'i')} % 50 = 0"

    def trajectory_rows(self, v: int) -> tuple[str, str]:
        traj = ", ".join(self.data.trajectory(v))
        return (
            "trajectory_id, version, ended_at, started_at, scored_at, agent_id, domain, environment, task_key, task, "
            "tags, outcome, reward, reward_function, turn_count, tool_calls, tool_errors, last_tool, loop_tools, "
            "loop_repeats, duration_ms, model_version, parent_trajectory_id, timed_out, extractor, entities, reason, "
            "source_partition, source_offset",
            f"tid AS trajectory_id, toUInt32({v}) AS version, fromUnixTimestamp64Milli(ended_ms, 'UTC') AS ended_at, "
            "fromUnixTimestamp64Milli(started_ms, 'UTC') AS started_at, "
            "fromUnixTimestamp64Milli(ended_ms + 2000 + later_ms, 'UTC') AS scored_at, 'production' AS environment, "
            f"'default' AS reward_function, toUInt32({self.data.t}) AS turn_count, "
            "toUInt32(length(calls)) AS tool_calls, "
            "toUInt32(errors_n) AS tool_errors, if(looping, [loop_tool], []) AS loop_tools, "
            "if(looping, [rep], CAST([], 'Array(UInt32)')) AS loop_repeats, toUInt64(dur_ms) AS duration_ms, "
            f"if({self.data.h('child', 'i')} % 50 = 0 AND i > 0, UUIDNumToString(MD5(toString(i - 1))), '') "
            "AS parent_trajectory_id, outcome = 'abandoned' AS timed_out, 'heuristic' AS extractor, "
            "if(has_entity, [entity_name], []) AS entities, '' AS reason, toUInt32(i % 12) AS source_partition, "
            f"toUInt64(i * 2 + {v - 1}) AS source_offset, " + traj,
        )  # fmt: skip

    def delta_rows(self, v: int, sign: int) -> tuple[str, str]:
        return (
            "trajectory_id, version, sign, ended_at, agent_id, domain, model_version, last_tool, outcome, reward",
            f"tid AS trajectory_id, toUInt32({v}) AS version, toInt8({sign}) AS sign, "
            "fromUnixTimestamp64Milli(ended_ms, 'UTC') AS ended_at, " + ", ".join(self.data.trajectory(v)),
        )

    def chunk_v2(self, lo: int, n: int) -> None:
        """2% re-scored an hour later: a new trajectories row, its scored rows, and the deltas the sink writes
        (-1 with the replaced version's stored values, +1 with the new one's) in one insert."""
        only = self.second_version()
        self.scored(lo, n, 2)
        self.insert("trajectories", *self.trajectory_rows(2), self.per_trajectory(lo, n), where=only)
        columns, old = self.delta_rows(1, -1)
        _, new = self.delta_rows(2, 1)
        source = self.per_trajectory(lo, n)
        sql = (f"INSERT INTO {self.db}.trajectory_deltas ({columns}) "
               f"SELECT {columns} FROM (SELECT {old} FROM ({source}) WHERE {only}) "
               f"UNION ALL SELECT {columns} FROM (SELECT {new} FROM ({source}) WHERE {only})")  # fmt: skip
        started = time.perf_counter()
        self.client.command(sql)
        self.seconds["trajectory_deltas"] += time.perf_counter() - started

    def side_tables(self) -> None:
        now, start = self.data.now, self.data.now - SPAN_MS
        started = time.perf_counter()
        letters = max(100, self.data.n * 3 // 1000)
        self.client.command(
            f"INSERT INTO {self.db}.dead_letters (failed_at, stage, error_type, reason, source, source_partition, "
            "source_offset, trajectory_id, payload_bytes, input_bytes, payload_cut, dlq_partition, dlq_offset) "
            f"SELECT fromUnixTimestamp64Milli(toInt64({start} + intDiv(number * {SPAN_MS}, {letters})), 'UTC'), "
            "arrayElement(['assembly', 'enrichment', 'scoring', 'sink-clickhouse'], number % 4 + 1), "
            "arrayElement(['SchemaError', 'ValueError', 'TimeoutError'], cityHash64(number) % 3 + 1), "
            "arrayElement(['unknown schema fingerprint', 'turn_air has 3 values for 4 turns', "
            "'the judge did not answer in 30 s', 'record too large'], cityHash64(number, 'r') % 4 + 1), "
            "'trajstream.events', toInt32(number % 12), toInt64(number), UUIDNumToString(MD5(toString(number))), "
            "toUInt32(500 + cityHash64(number) % 5000), toUInt64(500 + cityHash64(number) % 5000), false, "
            f"toUInt32(number % 3), toUInt64(number) FROM numbers({letters})"
        )  # fmt: skip
        self.seconds["dead_letters"] = time.perf_counter() - started
        started = time.perf_counter()
        # Each policy version: created, then deployed as a canary, then deployed (or, one in four, rejected or
        # rolled back), at the start of its share of the month.
        self.client.command(
            f"INSERT INTO {self.db}.model_versions (at, model_name, version, number, parent, event, metrics, reason, "
            "canary_share, windows) SELECT fromUnixTimestamp64Milli(toInt64("
            f"{start} + intDiv(number * {SPAN_MS}, {VERSIONS}) + e * 600000), 'UTC'), 'policy', "
            "concat('policy-v', toString(number + 1)), toUInt32(number + 1), "
            "if(number = 0, '', concat('policy-v', toString(number))), "
            "arrayElement(['created', 'canary', if(number % 4 = 3, 'rolled_back', 'deployed')], e + 1), "
            "map('success_rate', 0.6 + number / 50, 'reward_mean', 0.5 + number / 40), '', if(e = 1, 0.1, 0), "
            f"toUInt32(3) FROM numbers({VERSIONS}) ARRAY JOIN [0, 1, 2] AS e WHERE "
            f"{start} + intDiv(number * {SPAN_MS}, {VERSIONS}) + e * 600000 <= {now}"
        )  # fmt: skip
        self.seconds["model_versions"] = time.perf_counter() - started


# --- 2./3. timing and ClickHouse's accounting --------------------------------------------------------
@dataclass
class Timed:
    label: str
    range: str
    query: Query | Cascade
    times_ms: list[float] = field(default_factory=list)
    rows: int = 0
    failure: str = ""
    limit_hit: bool = False  # the failure is one of the console's limits (time, memory, rows read)
    peak_bytes: int | None = None
    read_rows: int | None = None
    result: list[tuple[Any, ...]] = field(default_factory=list, repr=False)

    def p(self, q: float) -> float:
        """Nearest-rank percentile; a failed query is infinitely slow."""
        if self.failure or not self.times_ms:
            return math.inf
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def comment(self) -> str:
        return f"{TAG}|{self.range}|{self.label}"


def time_query(client: Any, settings: Settings, timed: Timed, repeats: int) -> list[tuple[Any, ...]]:
    client.set_client_setting("log_comment", timed.comment)
    result: list[tuple[Any, ...]] = []
    try:
        result = queries.run(client, timed.query, settings)  # the warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            result = queries.run(client, timed.query, settings)
            timed.times_ms.append((time.perf_counter() - started) * 1000)
    except ClickHouseError as exc:
        kind = getattr(exc, "kind", "error")
        timed.failure, timed.limit_hit = f"{kind}: {exc}", isinstance(exc, queries.QueryLimitError)
        log(f"FAILED {timed.label} ({timed.range}): {timed.failure[:400]}")
    timed.rows, timed.result = len(result), result
    return result


def labelled(found: list[Query | Cascade]) -> list[tuple[str, Query | Cascade]]:
    """Query names repeat (a timeline by agent and by version): number the repeats."""
    seen: dict[str, int] = {}
    out = []
    for q in found:
        seen[q.name] = seen.get(q.name, 0) + 1
        out.append((q.name if seen[q.name] == 1 else f"{q.name} #{seen[q.name]}", q))
    return out


def account(client: Any, timed: list[Timed]) -> bool:
    """Peak memory and rows read of every run from system.query_log; False if chDB keeps no query_log."""
    try:
        client.command("SYSTEM FLUSH LOGS")
        rows = client.query(
            "SELECT log_comment, max(memory_usage), max(read_rows) FROM system.query_log "
            "WHERE type = 'QueryFinish' AND startsWith(log_comment, {tag:String}) GROUP BY log_comment",
            parameters={"tag": f"{TAG}|"},
        ).result_rows
    except Exception as exc:  # no query_log table: the config was not taken
        log(f"no system.query_log ({exc}): peak memory and rows read are not known")
        return False
    by_comment = {str(c): (int(m), int(r)) for c, m, r in rows}
    for t in timed:
        if t.comment in by_comment:
            t.peak_bytes, t.read_rows = by_comment[t.comment]
    return True


def ms(value: float) -> str:
    return "FAILED" if math.isinf(value) else f"{value:,.1f}"


def print_table(title: str, timed: list[Timed]) -> None:
    print(f"\n{title}")
    print(f"{'query':<28} {'range':>6} {'p50 ms':>9} {'p95 ms':>9} {'peak MiB':>9} {'rows read':>13} {'rows':>6}")
    for t in timed:
        peak = f"{t.peak_bytes / 2**20:,.1f}" if t.peak_bytes is not None else "-"
        read = f"{t.read_rows:,}" if t.read_rows is not None else "-"
        mark = "  <- over target" if t.p(95) > TARGET_MS else ""
        print(f"{t.label:<28} {t.range:>6} {ms(t.p(50)):>9} {ms(t.p(95)):>9} {peak:>9} {read:>13} {t.rows:>6}{mark}")


def page_timings(client: Any, settings: Settings, ranges: dict[str, TimeRange], repeats: int) -> list[Timed]:
    db = settings.clickhouse_database
    out = []
    for name, r in ranges.items():
        for label, q in labelled(queries.page_queries(db, r)):
            timed = Timed(label, name, q)
            time_query(client, settings, timed, repeats)
            out.append(timed)
        log(f"timed the page queries over {name}")
    return out


def detail_timings(client: Any, settings: Settings, now_ms: int, repeats: int) -> list[Timed]:
    """One re-scored trajectory of the last day, opened as the server opens it."""
    db = settings.clickhouse_database
    picked = client.query(
        f"SELECT trajectory_id FROM {db}.trajectories WHERE version = 2 AND ended_at >= "
        "fromUnixTimestamp64Milli({since:Int64}, 'UTC') ORDER BY ended_at LIMIT 1",
        parameters={"since": now_ms - DAY_MS},
    ).result_rows
    if not picked:
        failed = Timed("trajectory", "detail", Query("trajectory", "SELECT 1"), failure="no re-scored trajectory")
        return [failed]
    tid = str(picked[0][0])
    versions = Timed("trajectory", "detail", queries.trajectory_versions(db, tid, settings.clickhouse_ttl_days))
    rows = time_query(client, settings, versions, repeats)
    out = [versions]
    if not rows:
        versions.failure = versions.failure or f"trajectory {tid} not found"
        return out
    at = {c: i for i, c in enumerate(queries.DETAIL_COLUMNS)}
    window = Window(tid, str(rows[-1][at["agent_id"]]), min(int(r[at["started_at"]]) for r in rows) - 3_600_000,
                    max(int(r[at["scored_at"]]) for r in rows) + 3_600_000)  # fmt: skip
    expected = {"turns": 1, "messages": 1, "rewards": 1, "credits": 1, "decisions": 1}  # at least a row each
    for key, q in queries.detail_queries(db, window).items():
        timed = Timed(q.name, "detail", q)
        time_query(client, settings, timed, repeats)
        if key in expected and not timed.rows and not timed.failure:
            timed.failure = f"no {key} rows for trajectory {tid} in its window"
            log(f"FAILED {timed.label}: {timed.failure}")
        out.append(timed)
    return out


# --- 4. the baseline: no rollups --------------------------------------------------------------------
def _bucket(column: str, r: TimeRange) -> str:
    unit = {"minute": "MINUTE", "hour": "HOUR", "day": "DAY", "week": "WEEK"}[r.granularity]
    return f"toUnixTimestamp(toStartOfInterval({column}, INTERVAL 1 {unit})) * 1000"


def _window(column: str, align: str = "toStartOfMinute") -> str:
    # The rows the rollups' window counts: from the range's first whole minute on (or hour, or UTC day, for
    # the Tools and Models pages past 2 hours and 3 days: queries._resolution).
    return f"{column} >= {align}({{start:DateTime64(3)}}) AND {column} < {{end:DateTime64(3)}}"


def _stats_align(r: TimeRange) -> str:
    return {"minute": "toStartOfMinute", "hour": "toStartOfHour"}.get(r.granularity, "toStartOfDay")


def baseline_queries(db: str, r: TimeRange) -> dict[str, Query]:
    return {
        "trajectory timeline": Query(
            "baseline timeline",
            f"SELECT {_bucket('last_end', r)} AS t, last_agent AS key, count() AS n, "
            "countIf(last_outcome = 'success') AS ok, sum(last_reward) AS rs FROM (SELECT trajectory_id, "
            "argMax(agent_id, version) AS last_agent, argMax(ended_at, version) AS last_end, "
            "argMax(outcome, version) AS last_outcome, argMax(reward, version) AS last_reward "
            f"FROM {db}.trajectories WHERE {_window('ended_at')} GROUP BY trajectory_id) "
            "GROUP BY t, key ORDER BY t, key",
            r.parameters(),
        ),
        "tool table": Query(
            "baseline tool table",
            "SELECT tool, count() AS c, countIf(status = 'error'), countIf(status = 'timeout'), "
            f"quantiles(0.5, 0.95, 0.99)(latency_ms) FROM {db}.tool_calls "
            f"WHERE {_window('timestamp', _stats_align(r))} GROUP BY tool ORDER BY c DESC LIMIT 200",
            r.parameters(),
        ),
        "model table": Query(
            "baseline model table",
            "SELECT model, model_version, count() AS n, countIf(error), sum(ifNull(input_tokens, 0)), "
            "sum(ifNull(output_tokens, 0)), quantiles(0.5, 0.95, 0.99)(duration_ms) "
            f"FROM {db}.turns WHERE {_window('timestamp', _stats_align(r))} GROUP BY model, model_version "
            "ORDER BY n DESC LIMIT 200",
            r.parameters(),
        ),
    }


def _counts(rows: list[tuple[Any, ...]], keys: int, values: int) -> dict[tuple[Any, ...], tuple[int, ...]]:
    return {tuple(r[:keys]): tuple(int(v) for v in r[keys : keys + values]) for r in rows}


# The part of each answer that must match exactly (keys, then counts; quantiles and float sums may differ).
COMPARED: dict[str, Callable[[list[tuple[Any, ...]]], dict[tuple[Any, ...], tuple[int, ...]]]] = {
    "trajectory timeline": lambda rows: _counts(rows, 2, 2),
    "tool table": lambda rows: _counts(rows, 1, 3),
    "model table": lambda rows: _counts(rows, 2, 4),
}


def baseline_timings(client: Any, settings: Settings, ranges: dict[str, TimeRange], repeats: int,
                     timed: list[Timed]) -> list[tuple[Timed, Timed]]:  # fmt: skip
    """Each naive query next to the console's own, timed already in ``timed`` (found by its SQL and range)."""
    db = settings.clickhouse_database
    ours_of: dict[str, Callable[[TimeRange], Query]] = {
        "trajectory timeline": lambda r: queries.trajectory_timeline(db, r, "agent"),
        "tool table": lambda r: queries.tool_table(db, r),
        "model table": lambda r: queries.model_table(db, r),
    }
    pairs = []
    for name, r in ranges.items():
        for page, naive in baseline_queries(db, r).items():
            sql = ours_of[page](r).sql
            ours = next(t for t in timed if t.range == name and getattr(t.query, "sql", None) == sql)
            base = Timed(f"{page} (no rollup)", name, naive)
            base_rows = time_query(client, settings, base, repeats)
            if not ours.failure and not base.failure and COMPARED[page](ours.result) != COMPARED[page](base_rows):
                ours.failure = "its counts differ from the wide tables' (the rollup is wrong)"
                log(f"FAILED {ours.label} ({name}): {ours.failure}")
            pairs.append((ours, base))
        log(f"timed the baseline over {name}")
    return pairs


# --- the run -----------------------------------------------------------------------------------------
def open_store(directory: Path) -> Any:
    """chDB on ``directory`` with a query_log (see the module's docstring for why not ``connect``)."""
    config = directory.parent / f"{directory.name}-config.xml"
    config.write_text(QUERY_LOG_CONFIG)
    return clickhouse_connect.get_client(
        interface="chdb", path=str(directory), chdb_options={"config-file": str(config)}
    )


def rollup_shape(client: Any, db: str) -> str:
    rows = client.query(
        "SELECT table, count(), sum(rows) FROM system.parts WHERE database = {db:String} AND active "
        "AND table IN {t:Array(String)} GROUP BY table ORDER BY table",
        parameters={"db": db, "t": list(ROLLUPS)},
    ).result_rows
    return ", ".join(f"{t} {int(n):,} rows in {int(p)} parts" for t, p, n in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=1_000_000)
    parser.add_argument("--turns", type=int, default=10, help="turns per trajectory")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per query, after one warm-up")
    parser.add_argument("--chunk", type=int, default=100_000, help="trajectories per INSERT")
    parser.add_argument("--dir", type=Path, help="a new or empty directory for chDB (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the chDB directory")
    parser.add_argument("--merge-rollups", action="store_true",
                        help="also time the page queries after merging the rollups once (OPTIMIZE FINAL)")  # fmt: skip
    args = parser.parse_args()
    if args.trajectories < 1 or args.turns < 1 or args.repeats < 1 or args.chunk < 1:
        parser.error("--trajectories, --turns, --repeats and --chunk must be positive")
    if args.dir and args.dir.exists() and any(args.dir.iterdir()):
        parser.error(f"{args.dir} is not empty: the benchmark loads a fresh directory")
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="bench-dashboard-", dir="/tmp"))).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(clickhouse_dsn=f"chdb://{directory}")
    db = settings.clickhouse_database
    try:
        client = open_store(directory)
        migrate(client, settings)
        now_ms = int(time.time() * 1000)
        log(f"loading {args.trajectories:,} trajectories of {args.turns} turns into {directory}")
        loader = Loader(client, db, Data(args.trajectories, args.turns, now_ms), args.chunk)
        started = time.perf_counter()
        loader.load()
        load_s = time.perf_counter() - started
        sizes = stored_bytes(client, db)
        print(f"loaded {args.trajectories:,} trajectories x {args.turns} turns in {load_s:.1f} s (INSERT ... SELECT "
              f"FROM numbers, {args.chunk:,} trajectories per INSERT)")  # fmt: skip
        print(f"{'table':<26} {'rows':>12} {'MiB on disk':>12} {'insert s':>9}")
        for table, (rows, size) in sizes.items():
            seconds = (
                f"{loader.seconds[table]:.1f}" if table in loader.seconds else "(view)" if table in ROLLUPS else "-"
            )
            print(f"{table:<26} {rows:>12,} {size / 2**20:>12,.1f} {seconds:>9}")
        print(f"rollups as timed: {rollup_shape(client, db)}")

        ranges = {name: TimeRange.last(name) for name in RANGES}
        timed = page_timings(client, settings, ranges, args.repeats)
        timed += detail_timings(client, settings, now_ms, args.repeats)
        pairs = baseline_timings(client, settings, ranges, args.repeats, timed)
        merged: list[Timed] = []
        if args.merge_rollups:
            for table in ROLLUPS:
                client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
            log(f"rollups merged: {rollup_shape(client, db)}")
            for t in page_timings(client, settings, ranges, args.repeats):
                t.label = f"{t.label} (merged)"
                merged.append(t)
        if not account(client, timed + merged + [base for _, base in pairs]):
            print("peak memory and rows read: not known (chDB kept no system.query_log)")

        print_table(f"console queries as loaded ({args.repeats} runs each after a warm-up; peak memory and rows "
                    "read from system.query_log)", timed)  # fmt: skip
        if merged:
            print_table(f"page queries after OPTIMIZE FINAL of the rollups: {rollup_shape(client, db)}", merged)
        print("\nbaseline: the same answers from the wide tables, no rollups (speedup = baseline p95 / ours p95)")
        print(f"{'page':<22} {'range':>6} {'ours p95':>9} {'baseline p95':>13} {'speedup':>8} {'ours MiB':>9} "
              f"{'base MiB':>9} {'base rows read':>15}")  # fmt: skip
        speedup: dict[tuple[str, str], float] = {}
        for ours, base in pairs:
            # A baseline past the time limit took at least that long: the speedup is at least limit / ours.
            limit_ms = settings.console_query_timeout_s * 1000
            slow = base.limit_hit and base.failure.startswith("timeout")
            ratio = 0.0 if math.isinf(ours.p(95)) else (limit_ms if slow else base.p(95)) / ours.p(95)
            speedup[(ours.label, ours.range)] = ratio
            mib = [f"{t.peak_bytes / 2**20:,.1f}" if t.peak_bytes is not None else "-" for t in (ours, base)]
            read = f"{base.read_rows:,}" if base.read_rows is not None else "-"
            base_p95 = f">{limit_ms:,.0f}" if slow else ms(base.p(95))
            shown = f"{'>=' if slow else ''}{ratio:.2f}"
            print(f"{ours.label:<22} {ours.range:>6} {ms(ours.p(95)):>9} {base_p95:>13} {shown:>8} "
                  f"{mib[0]:>9} {mib[1]:>9} {read:>15}")  # fmt: skip

        # A baseline that hits the console's limits is the baseline's figure, not a failure of the console.
        failures = [t for t in timed + merged if t.failure] + [b for _, b in pairs if b.failure and not b.limit_hit]
        for t in failures:
            print(f"FAILED {t.label} ({t.range}): {t.failure}")
        for _, b in pairs:
            if b.limit_hit:
                print(f"baseline {b.label} ({b.range}) hit the console's limits: {b.failure}")
        slowest = max(timed, key=lambda t: t.p(95))
        print(f"\nslowest console query: {slowest.label} over {slowest.range}, p95 {ms(slowest.p(95))} ms "
              f"(target {TARGET_MS} ms); failures: {len(failures)}")  # fmt: skip
        print(f"RESULT dashboard_query_p95 value={slowest.p(95):.1f} target={TARGET_MS}")
        print(f"RESULT dashboard_rollup_speedup ratio={speedup[('trajectory timeline', '30d')]:.2f} target=1")
        if failures:
            sys.exit(1)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
            (directory.parent / f"{directory.name}-config.xml").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
