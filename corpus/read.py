"""The corpus read back from ClickHouse, whole trajectory by whole trajectory, in bounded memory.

What the exports and the optimisation reports read. Trajectories are picked by ``CorpusFilter`` and paged
by (ended_at, trajectory_id, version) with a keyset, ``batch`` at a time; each page's rows are fetched
with one query per table, bounded by the page's own time window and its ids. Only one page is ever in
memory. Messages come back as the agent sent them (the content record stored as JSON, migration 0004);
rows landed before that migration have no stored content, and such a trajectory is counted as skipped,
with the reason, never rebuilt from the rendered text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from clickhouse_connect.driver.binding import format_query_value

from trajstream.consumers.clickhouse_store import ClickHouseError
from trajstream.settings import Settings

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class CorpusFilter:
    """Which trajectories: every field narrows; empty tuples and None leave it open."""

    since_ms: int | None = None  # ended at or after
    until_ms: int | None = None  # ended before
    outcomes: tuple[str, ...] = ()
    min_reward: float | None = None
    max_reward: float | None = None
    agents: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    model_versions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # a trajectory with any of them
    task_keys: tuple[str, ...] = ()  # the task groups
    latest_only: bool = True  # only the latest version of each trajectory

    def as_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class Message:
    seq: int
    role: str
    kind: str  # text, tool_call, tool_response, widget, structured, redacted
    content: dict[str, Any]  # the content record as the agent sent it
    reasoning: str | None = None


@dataclass
class ToolCallResult:
    call_id: str
    tool: str
    arguments: str  # a JSON document, as recorded
    status: str  # success, error, timeout, unanswered
    latency_ms: int | None


@dataclass
class Turn:
    index: int
    timestamp_ms: int
    duration_ms: int
    error: bool
    model: str
    model_version: str
    input_tokens: int | None
    output_tokens: int | None
    air: float
    credit: float | None
    logprob_tokens: list[str]
    logprobs: list[float]
    token_ids: list[int | None]  # None where the server gave a token's text but not its id
    messages: list[Message] = field(default_factory=list)
    tool_calls: list[ToolCallResult] = field(default_factory=list)

    @property
    def has_logprobs(self) -> bool:
        return bool(self.logprobs)


@dataclass
class Trajectory:
    trajectory_id: str
    version: int
    task: str
    task_key: str
    system_message: str
    agent_id: str
    domain: str
    environment: str
    tags: list[str]
    outcome: str
    reward: float
    reward_function: str
    model_version: str
    started_ms: int
    ended_ms: int
    scored_ms: int
    parent_trajectory_id: str
    entities: list[str]
    components: dict[str, float] = field(default_factory=dict)  # reward components of this version
    turns: list[Turn] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return [m for t in self.turns for m in t.messages]


@dataclass
class Skipped:
    trajectory_id: str
    version: int
    reason: str


_HEAD = ("trajectory_id", "version", "task", "task_key", "system_message", "agent_id", "domain", "environment",
         "tags", "outcome", "reward", "reward_function", "model_version", "started_ms", "ended_ms", "scored_ms",
         "parent_trajectory_id", "entities")  # fmt: skip
_HEAD_SQL = ", ".join(
    {"started_ms": "toUnixTimestamp64Milli(started_at)", "ended_ms": "toUnixTimestamp64Milli(ended_at)",
     "scored_ms": "toUnixTimestamp64Milli(scored_at)"}.get(c, c)
    for c in _HEAD
)  # fmt: skip


def _where(f: CorpusFilter) -> tuple[str, dict[str, Any]]:
    """The filter as SQL over the trajectories table, with its parameters."""
    parts: list[str] = ["1"]
    params: dict[str, Any] = {}
    if f.since_ms is not None:
        parts.append("ended_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')")
        params["since"] = f.since_ms
    if f.until_ms is not None:
        parts.append("ended_at < fromUnixTimestamp64Milli({until:Int64}, 'UTC')")
        params["until"] = f.until_ms
    for name, column in (("outcomes", "outcome"), ("agents", "agent_id"), ("domains", "domain"),
                         ("model_versions", "model_version"), ("task_keys", "task_key")):  # fmt: skip
        values = getattr(f, name)
        if values:
            parts.append(f"{column} IN {{{name}:Array(String)}}")
            params[name] = list(values)
    if f.tags:
        parts.append("hasAny(tags, {tags:Array(String)})")
        params["tags"] = list(f.tags)
    if f.min_reward is not None:
        parts.append("reward >= {min_reward:Float64}")
        params["min_reward"] = f.min_reward
    if f.max_reward is not None:
        parts.append("reward <= {max_reward:Float64}")
        params["max_reward"] = f.max_reward
    return " AND ".join(parts), params


def _ids_literal(ids: list[str]) -> str:
    """The page's ids for ``trajectory_id IN ...`` in every query of the page: one SQL literal escaped once by
    the driver's own quoting. Binding them as a parameter escaped 500 strings again for each of six queries
    (3 of 26 s reading 20k trajectories). An id that looks like a placeholder (``{lo:Int64}``) stays a string
    inside the literal: tests/corpus/test_read.py reads such ids back."""
    return str(format_query_value(ids))


class CorpusReader:
    def __init__(self, client: Any, settings: Settings, batch: int = 500):
        self.client = client
        self.db = settings.clickhouse_database
        self.batch = batch
        self.skipped: list[Skipped] = []

    def _rows(self, sql: str, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self.client.query(sql, parameters=dict(parameters)).result_rows]
        except Exception as exc:  # clickhouse-connect and chDB raise their own types
            raise ClickHouseError(f"reading the corpus failed: {exc}") from exc

    def count(self, f: CorpusFilter) -> int:
        """How many trajectories (versions, unless latest_only) the filter selects: for a progress bar."""
        where, params = _where(f)
        what = "uniqExact(trajectory_id)" if f.latest_only else "count()"
        return int(self._rows(f"SELECT {what} FROM {self.db}.trajectories WHERE {where}", params)[0][0])

    def keys(self, f: CorpusFilter) -> Iterator[list[tuple[str, int]]]:
        """Pages of (trajectory_id, version) in (ended_at, id, version) order; with latest_only, a version is
        kept only if no later version exists (wherever it ended), so the filter applies to the latest.

        A page reads from the cursor up to the end of a time window sized to hold about two pages: the
        trajectories table is sorted by agent first, so an open-ended ``> cursor`` would read the rest of the
        table for every page (quadratic over a month); a window lets ClickHouse read the ids of its rows only.
        """
        where, params = _where(f)
        lo, hi, total = self._rows(
            f"SELECT min(toUnixTimestamp64Milli(ended_at)), max(toUnixTimestamp64Milli(ended_at)), count() "
            f"FROM {self.db}.trajectories WHERE {where}", params)[0]  # fmt: skip
        if not total:
            return
        width = max(1, (int(hi) - int(lo) + 1) * 2 * self.batch // int(total))
        after: tuple[int, str, int] = (int(lo) - 1, "", 0)
        end = int(lo) + width
        while after[0] <= int(hi):
            page = self._rows(
                f"SELECT toUnixTimestamp64Milli(ended_at) AS e, trajectory_id, version FROM {self.db}.trajectories "
                f"WHERE {where} AND ended_at < fromUnixTimestamp64Milli({{end:Int64}}, 'UTC') "
                "AND (e, trajectory_id, version) > ({a_e:Int64}, {a_t:String}, {a_v:UInt32}) "
                "ORDER BY e, trajectory_id, version LIMIT {n:UInt32}",
                {**params, "a_e": after[0], "a_t": after[1], "a_v": after[2], "end": end, "n": self.batch},
            )
            if len(page) < self.batch:  # the window is read to its end: the next one starts there
                if end > int(hi):
                    after = (int(hi) + 1, "", 0)
                end += width
            if not page:
                continue
            after = max(after, (int(page[-1][0]), str(page[-1][1]), int(page[-1][2])))
            keys = [(str(t), int(v)) for _, t, v in page]
            if f.latest_only:
                latest = dict(self._rows(
                    f"SELECT trajectory_id, max(version) FROM {self.db}.trajectories "
                    "WHERE trajectory_id IN {ids:Array(String)} GROUP BY trajectory_id",
                    {"ids": sorted({t for t, _ in keys})},
                ))  # fmt: skip
                keys = [(t, v) for t, v in keys if latest.get(t) == v]
            if keys:
                yield keys

    def trajectories(self, f: CorpusFilter) -> Iterator[Trajectory]:
        for keys in self.keys(f):
            yield from self.load(keys)

    def load(self, keys: list[tuple[str, int]]) -> list[Trajectory]:
        """These versions whole, in the given order; one without stored content is skipped, with the reason."""
        wanted = set(keys)
        ids = _ids_literal(sorted({t for t, _ in keys}))
        heads = {
            (row[0], int(row[1])): row
            for row in self._rows(f"SELECT {_HEAD_SQL} FROM {self.db}.trajectories WHERE trajectory_id IN {ids}", {})
            if (row[0], int(row[1])) in wanted
        }
        if not heads:
            return []
        agents = sorted({str(h[5]) for h in heads.values()})
        lo = min(int(h[13]) for h in heads.values()) - _HOUR_MS
        hi = max(int(h[15]) for h in heads.values()) + _HOUR_MS
        window = {"agents": agents, "lo": lo, "hi": hi}
        by_time = ("agent_id IN {agents:Array(String)} AND {col} >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
                   "AND {col} <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC') AND trajectory_id IN " + ids)  # fmt: skip

        def scoped(col: str) -> str:
            return by_time.replace("{col}", col)

        turns = self._rows(
            "SELECT trajectory_id, turn_index, toUnixTimestamp64Milli(timestamp), duration_ms, error, model, "
            "model_version, input_tokens, output_tokens, air, logprob_tokens, logprobs, token_ids "
            f"FROM {self.db}.turns WHERE {scoped('timestamp')} ORDER BY trajectory_id, turn_index",
            window,
        )
        messages = self._rows(
            "SELECT trajectory_id, turn_index, seq, role, kind, content, reasoning FROM "
            f"{self.db}.messages WHERE {scoped('timestamp')} ORDER BY trajectory_id, turn_index, seq",
            window,
        )
        calls = self._rows(
            "SELECT trajectory_id, turn_index, call_id, tool, arguments, status, latency_ms FROM "
            f"{self.db}.tool_calls WHERE timestamp >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC') AND timestamp <= "
            f"fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC') AND trajectory_id IN {ids} "
            "ORDER BY trajectory_id, turn_index, timestamp",
            window,
        )
        rewards = self._rows(
            f"SELECT trajectory_id, version, component, value FROM {self.db}.rewards WHERE {scoped('scored_at')}",
            window,
        )
        credits = self._rows(
            f"SELECT trajectory_id, version, turn_index, credit FROM {self.db}.credits WHERE {scoped('scored_at')}",
            window)  # fmt: skip
        return self._assemble(keys, heads, turns, messages, calls, rewards, credits)

    def _assemble(self, keys: list[tuple[str, int]], heads: dict[tuple[str, int], tuple[Any, ...]],
                  turns: list[tuple[Any, ...]], messages: list[tuple[Any, ...]], calls: list[tuple[Any, ...]],
                  rewards: list[tuple[Any, ...]], credits: list[tuple[Any, ...]]) -> list[Trajectory]:  # fmt: skip
        by_turn: dict[tuple[str, int], list[Message]] = {}
        missing: set[str] = set()
        for tid, turn, seq, role, kind, content, reasoning in messages:
            if not content:
                missing.add(str(tid))
                continue
            by_turn.setdefault((tid, int(turn)), []).append(
                Message(int(seq), str(role), str(kind), orjson.loads(content), reasoning)
            )
        calls_of: dict[tuple[str, int], list[ToolCallResult]] = {}
        for tid, turn, call, tool, arguments, status, latency in calls:
            calls_of.setdefault((tid, int(turn)), []).append(
                ToolCallResult(str(call), str(tool), str(arguments), str(status), latency)
            )
        components: dict[tuple[str, int], dict[str, float]] = {}
        for tid, version, name, value in rewards:
            components.setdefault((tid, int(version)), {})[str(name)] = float(value)
        credit_of: dict[tuple[str, int, int], float] = {}
        for tid, version, turn, credit in credits:
            credit_of[(tid, int(version), int(turn))] = float(credit)
        turns_of: dict[str, list[tuple[Any, ...]]] = {}
        for row in turns:
            turns_of.setdefault(str(row[0]), []).append(row)
        out = []
        for key in keys:
            head = heads.get(key)
            if head is None:
                continue
            values = dict(zip(_HEAD, head, strict=True))
            tid, version = key
            if tid in missing:
                self.skipped.append(Skipped(tid, version, "landed before messages kept their content (migration "
                                                          "0004): it cannot be given back exactly"))  # fmt: skip
                continue
            trajectory = Trajectory(**{**values, "version": int(values["version"]), "tags": list(values["tags"]),
                                       "entities": list(values["entities"]), "reward": float(values["reward"])},
                                    components=components.get(key, {}))  # fmt: skip
            for (_, index, ts, duration, error, model, model_version, tokens_in, tokens_out, air, lp_tokens, lps,
                 token_ids) in turns_of.get(tid, []):  # fmt: skip
                trajectory.turns.append(Turn(
                    int(index), int(ts), int(duration), bool(error), str(model), str(model_version), tokens_in,
                    tokens_out, float(air), credit_of.get((tid, version, int(index))), list(lp_tokens),
                    [float(x) for x in lps], [None if i < 0 else int(i) for i in token_ids],
                    by_turn.get((tid, int(index)), []), calls_of.get((tid, int(index)), []),
                ))  # fmt: skip
            out.append(trajectory)
        return out
