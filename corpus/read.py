"""The corpus read back from ClickHouse, whole trajectory by whole trajectory, in bounded memory.

What the exports and the optimisation reports read. Trajectories are picked by ``CorpusFilter`` and paged
by (ended_at, trajectory_id, version) with a keyset, ``batch`` at a time; each page's rows are fetched
with one query per table, bounded by the page's own time window and its ids. Only one page is ever in
memory. Messages come back as the agent sent them (the content record stored as JSON, migration 0004);
rows landed before that migration have no stored content, and such a trajectory is counted as skipped,
with the reason, never rebuilt from the rendered text.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from clickhouse_connect.driver.binding import format_query_value

from trajstream.consumers.clickhouse_store import ClickHouseError
from trajstream.settings import Settings
from trajstream.streams.scoring.credit import DECISION

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


@dataclass(slots=True)
class Message:
    seq: int
    role: str
    kind: str  # text, tool_call, tool_response, widget, structured, redacted
    content: dict[str, Any]  # the content record as the agent sent it
    reasoning: str | None = None


@dataclass(slots=True)
class ToolCallResult:
    call_id: str
    tool: str
    arguments: str  # a JSON document, as recorded
    status: str  # success, error, timeout, unanswered
    latency_ms: int | None


@dataclass(slots=True)
class Turn:
    """A turn; its details (the turns table) are read only for a format that asks for them (``TURN_DETAILS``):
    otherwise they keep these defaults."""

    index: int
    timestamp_ms: int = 0
    duration_ms: int = 0
    error: bool = False
    model: str = ""
    model_version: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    air: float = 0.0
    credit: float | None = None
    logprob_tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    token_ids: list[int | None] = field(default_factory=list)  # None where the server gave a token's text only
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
    {"started_ms": "toUnixTimestamp64Milli(started_at) AS started_ms",
     "ended_ms": "toUnixTimestamp64Milli(ended_at) AS ended_ms",
     "scored_ms": "toUnixTimestamp64Milli(scored_at) AS scored_ms"}.get(c, c)
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
    the driver's own quoting. Binding them as a parameter escaped 500 strings again for each query (3 of 26 s
    reading 20k trajectories). An id that looks like a placeholder (``{lo:Int64}``) stays a string inside the
    literal: tests/corpus/test_read.py reads such ids back."""
    return str(format_query_value(ids))


# What a page reads besides each trajectory's head and messages. A format names the parts it uses
# (``Format.parts``), so an export reads only those rows: tests/corpus/test_read.py checks that every format
# writes the same files from its own parts as from all of them.
TURN_DETAILS = "turn_details"  # the turns table: model, version, timing, error, tokens, AIR
LOGPROBS = "logprobs"  # the turns' token log-probabilities and ids (with the details)
TOOL_CALLS = "tool_calls"  # each call's status and latency (the call itself is in the messages)
REWARDS = "rewards"  # reward components
CREDITS = "credits"  # credit per turn: the decision method's where enrichment gave it, as the trainer prefers
ALL_PARTS: frozenset[str] = frozenset({TURN_DETAILS, LOGPROBS, TOOL_CALLS, REWARDS, CREDITS})

_TURN_SQL = ("trajectory_id, turn_index, toUnixTimestamp64Milli(timestamp), duration_ms, error, model, "
             "model_version, input_tokens, output_tokens, air")  # fmt: skip
_LOGPROB_SQL = ", logprob_tokens, logprobs, token_ids"


_Rows = tuple[Sequence[Sequence[Any]], Sequence[Sequence[Any]], Sequence[Sequence[Any]], Sequence[Sequence[Any]]]


class CorpusReader:
    """Reads whole trajectories, a page at a time. ``parts`` says what to read besides heads and messages;
    a part not read leaves its fields at their defaults (a turn's details zero, no tool-call results, no
    components, no credits): only a format that declared it may rely on it."""

    def __init__(self, client: Any, settings: Settings, batch: int = 500, parts: frozenset[str] = ALL_PARTS):
        unknown = set(parts) - ALL_PARTS
        if unknown:
            raise ValueError(f"unknown corpus parts {sorted(unknown)}; known: {sorted(ALL_PARTS)}")
        self.client = client
        self.db = settings.clickhouse_database
        self.batch = batch
        self.parts = parts | ({TURN_DETAILS} if LOGPROBS in parts else set())
        self.skipped: list[Skipped] = []

    def _rows(self, sql: str, parameters: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        try:
            return self.client.query(sql, parameters=dict(parameters)).result_rows  # type: ignore[no-any-return]
        except Exception as exc:  # clickhouse-connect and chDB raise their own types
            raise ClickHouseError(f"reading the corpus failed: {exc}") from exc

    def count(self, f: CorpusFilter) -> int:
        """How many trajectories (versions, unless latest_only) the filter selects: for a progress bar."""
        where, params = _where(f)
        what = "uniqExact(trajectory_id)" if f.latest_only else "count()"
        return int(self._rows(f"SELECT {what} FROM {self.db}.trajectories WHERE {where}", params)[0][0])

    def pages(self, f: CorpusFilter) -> Iterator[list[Sequence[Any]]]:
        """Pages of trajectory heads (``_HEAD``'s columns) in (ended_at, id, version) order; with latest_only, a
        version is kept only if no later version exists (wherever it ended), so the filter applies to the
        latest.

        A page reads from the cursor up to the end of a time window sized to hold about four pages: the
        trajectories table is sorted by agent first, so an open-ended ``> cursor`` would read the rest of the
        table for every page (quadratic over a month); a window lets ClickHouse read the ids of its rows only.
        The latest versions are known before the first page, from one pass over the ids of trajectories with
        more than one version (re-scored ones: a few percent): a check per page looked each page's ids up in
        the whole table, which grows with the table, page after page. Memory holds those ids only.
        """
        where, params = _where(f)
        lo, hi, total = self._rows(
            f"SELECT min(toUnixTimestamp64Milli(ended_at)), max(toUnixTimestamp64Milli(ended_at)), count() "
            f"FROM {self.db}.trajectories WHERE {where}", params)[0]  # fmt: skip
        if not total:
            return
        width = max(1, (int(hi) - int(lo) + 1) * 4 * self.batch // int(total))
        after: tuple[int, str, int] = (int(lo) - 1, "", 0)
        end = int(lo) + width
        scope = (f"{where} AND ended_at < fromUnixTimestamp64Milli({{end:Int64}}, 'UTC') "
                 "AND (toUnixTimestamp64Milli(ended_at), trajectory_id, version) > ({a_e:Int64}, {a_t:String}, "
                 "{a_v:UInt32})")  # fmt: skip
        latest: dict[str, int] = {}
        if f.latest_only:
            latest = {str(t): int(v) for t, v in self._rows(
                f"SELECT trajectory_id, max(version) FROM {self.db}.trajectories GROUP BY trajectory_id "
                "HAVING count() > 1", {})}  # fmt: skip
        sql = (f"SELECT {_HEAD_SQL} FROM {self.db}.trajectories WHERE {scope} "
               "ORDER BY ended_ms, trajectory_id, version LIMIT {n:UInt32}")  # fmt: skip
        ended, tid, version = _HEAD.index("ended_ms"), _HEAD.index("trajectory_id"), _HEAD.index("version")
        while after[0] <= int(hi):
            window = {**params, "a_e": after[0], "a_t": after[1], "a_v": after[2], "end": end, "n": self.batch}
            page = self._rows(sql, window)
            if len(page) < self.batch:  # the window is read to its end: the next one starts there
                if end > int(hi):
                    after = (int(hi) + 1, "", 0)
                end += width
            if not page:
                continue
            last = page[-1]
            after = max(after, (int(last[ended]), str(last[tid]), int(last[version])))
            kept = [h for h in page if latest.get(h[tid], h[version]) == h[version]] if latest else list(page)
            if kept:
                yield kept

    def trajectories(self, f: CorpusFilter) -> Iterator[Trajectory]:
        """Every selected trajectory, page by page. The next page's queries run in a thread while this page is
        assembled and written (ClickHouse works without the GIL), so reading overlaps the Python work; at
        most two pages are held besides the one being written."""
        pages: queue.Queue[tuple[list[Sequence[Any]], _Rows] | BaseException | None] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def offer(item: tuple[list[Sequence[Any]], _Rows] | BaseException | None) -> bool:
            """Hand an item over, unless the reading side has stopped (it may never take another)."""
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def fetch_ahead() -> None:
            try:
                for heads in self.pages(f):
                    if not offer((heads, self._fetch(heads))):
                        return
                offer(None)
            except BaseException as exc:  # handed to the reading thread, which raises it
                offer(exc)

        thread = threading.Thread(target=fetch_ahead, name="corpus-read-ahead", daemon=True)
        thread.start()
        try:
            while (item := pages.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield from self._assemble(item[0], *item[1])
        finally:
            stop.set()
            thread.join()

    def load(self, heads: list[Sequence[Any]]) -> list[Trajectory]:
        """These versions (heads as ``pages`` gives them) whole, in the given order; one without stored content
        is skipped, with the reason."""
        return self._assemble(heads, *self._fetch(heads)) if heads else []

    def _fetch(self, heads: list[Sequence[Any]]) -> _Rows:
        """The page's rows of each part read: (turns, messages, calls, scores)."""
        if not heads:
            return (), (), (), ()
        ids = _ids_literal(sorted({str(h[0]) for h in heads}))
        window = {"agents": sorted({str(h[5]) for h in heads}), "lo": min(int(h[13]) for h in heads) - _HOUR_MS,
                  "hi": max(int(h[15]) for h in heads) + _HOUR_MS}  # fmt: skip

        def scoped(col: str, by_agent: bool = True) -> str:
            agent = "agent_id IN {agents:Array(String)} AND " if by_agent else ""
            return (f"{agent}{col} >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC') AND {col} <= "
                    f"fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC') AND trajectory_id IN {ids}")  # fmt: skip

        messages = self._rows(
            f"SELECT trajectory_id, turn_index, seq, role, kind, content, reasoning FROM {self.db}.messages "
            f"WHERE {scoped('timestamp')} ORDER BY trajectory_id, turn_index, seq", window)  # fmt: skip
        turns: Sequence[Sequence[Any]] = ()
        if TURN_DETAILS in self.parts:
            columns = _TURN_SQL + (_LOGPROB_SQL if LOGPROBS in self.parts else "")
            turns = self._rows(f"SELECT {columns} FROM {self.db}.turns WHERE {scoped('timestamp')} "
                               "ORDER BY trajectory_id, turn_index", window)  # fmt: skip
        calls: Sequence[Sequence[Any]] = ()
        if TOOL_CALLS in self.parts:
            calls = self._rows(
                "SELECT trajectory_id, turn_index, call_id, tool, arguments, status, latency_ms FROM "
                f"{self.db}.tool_calls WHERE {scoped('timestamp', by_agent=False)} "
                "ORDER BY trajectory_id, turn_index, timestamp", window)  # fmt: skip
        scores: Sequence[Sequence[Any]] = ()  # rewards and credits in one query: (id, version, component, turn, value)
        selects = []
        if REWARDS in self.parts:
            selects.append(f"SELECT trajectory_id, version, component, -1 AS turn, value FROM {self.db}.rewards "
                           f"WHERE {scoped('scored_at')}")  # fmt: skip
        if CREDITS in self.parts:
            selects.append("SELECT trajectory_id, version, toString(method) AS component, toInt64(turn_index) AS "
                           f"turn, credit AS value FROM {self.db}.credits WHERE {scoped('scored_at')}")  # fmt: skip
        if selects:
            scores = self._rows(" UNION ALL ".join(selects), window)
        return turns, messages, calls, scores

    def _assemble(self, heads: list[Sequence[Any]], turns: Sequence[Sequence[Any]],
                  messages: Sequence[Sequence[Any]], calls: Sequence[Sequence[Any]],
                  scores: Sequence[Sequence[Any]]) -> list[Trajectory]:  # fmt: skip
        # Rows come sorted by (trajectory, turn): each trajectory's messages and turns are consecutive, so they
        # are cut into lists as they come, with no per-row lookups. This loop runs for every message exported.
        loads = orjson.loads
        by_turn: dict[str, dict[int, list[Message]]] = {}
        missing: set[str] = set()
        current: list[Message] = []
        key: tuple[str, int] = ("", -1)
        for tid, turn, seq, role, kind, content, reasoning in messages:
            if not content:
                missing.add(tid)
                continue
            if (tid, turn) != key:
                key = (tid, turn)
                current = by_turn.setdefault(tid, {}).setdefault(turn, [])
            current.append(Message(seq, role, kind, loads(content), reasoning))
        calls_of: dict[tuple[str, int], list[ToolCallResult]] = {}
        for tid, turn, call, tool, arguments, status, latency in calls:
            calls_of.setdefault((tid, turn), []).append(ToolCallResult(call, tool, arguments, status, latency))
        components: dict[tuple[str, int], dict[str, float]] = {}
        credit_of: dict[tuple[str, int, int], float] = {}
        for tid, version, name, turn, value in scores:  # name: the component, or the credit's method
            if turn < 0:
                components.setdefault((tid, version), {})[name] = value
            elif name == DECISION or (tid, version, turn) not in credit_of:  # the trainer's choice of method
                credit_of[(tid, version, turn)] = value
        details: dict[str, list[Sequence[Any]]] = {}
        for row in turns:
            details.setdefault(row[0], []).append(row)
        out = []
        for head in heads:
            tid, version = head[0], int(head[1])
            if tid in missing:
                self.skipped.append(Skipped(tid, version, "landed before messages kept their content (migration "
                                                          "0004): it cannot be given back exactly"))  # fmt: skip
                continue
            # the head's columns are the fields in order (_HEAD); only the arrays become lists
            trajectory = Trajectory(*head[:8], list(head[8]), *head[9:17], list(head[17]))  # type: ignore[call-arg]
            trajectory.components = components.get((tid, version), {})
            said = by_turn.get(tid, {})
            if TURN_DETAILS in self.parts:
                for row in details.get(tid, ()):
                    index = row[1]
                    logprobs = ([], [], []) if len(row) == 10 else (
                        list(row[10]), list(row[11]), [None if i < 0 else i for i in row[12]])  # fmt: skip
                    trajectory.turns.append(Turn(
                        index, row[2], row[3], bool(row[4]), row[5], row[6], row[7], row[8], row[9],
                        credit_of.get((tid, version, index)), *logprobs, said.get(index, []),
                        calls_of.get((tid, index), []),
                    ))  # fmt: skip
            else:  # the turns are those that said something, with no details
                for index, said_then in sorted(said.items()):
                    trajectory.turns.append(Turn(index, messages=said_then, tool_calls=calls_of.get((tid, index), []),
                                                 credit=credit_of.get((tid, version, index))))  # fmt: skip
            out.append(trajectory)
        return out
