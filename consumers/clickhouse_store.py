"""ClickHouse through clickhouse-connect: one connect for chDB (embedded) and a server, and migrations.

``TRAJSTREAM_CLICKHOUSE_DSN`` is ``chdb:///abs/path`` (the default, under TRAJSTREAM_HOME) or a server
URL such as ``http://user:password@host:8123``. chDB allows one process per data directory: the
sink owns it while ``trajstream up`` runs, and other processes query through its HTTP API.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from trajstream.consumers.sql_guard import refusal
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings

_MIGRATIONS_PACKAGE = "trajstream.consumers.migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class ClickHouseError(TrajstreamError):
    """ClickHouse could not be reached, or refused a statement."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self, database: str, ttl_days: int) -> list[str]:
        text = re.sub(r"--[^\n]*", "", self.sql).replace("{db}", database).replace("{ttl_days}", str(ttl_days))
        return [s.strip() for s in text.split(";") if s.strip()]


def dsn(settings: Settings) -> str:
    return settings.clickhouse_dsn or f"chdb://{(settings.home / 'clickhouse').resolve()}"


def shown_dsn(settings: Settings) -> str:
    """The DSN with its password masked: what /health, status and logs show."""
    from urllib.parse import urlsplit, urlunsplit

    target = dsn(settings)
    parts = urlsplit(target)
    if parts.password is None:
        return target
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(settings: Settings) -> Client:
    """A client for the configured ClickHouse; chDB's data directory is created if missing."""
    target = dsn(settings)
    try:
        if target.startswith("chdb://"):
            path = target.removeprefix("chdb://")
            if path.startswith("/"):
                from pathlib import Path

                Path(path).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=target)
    except Exception as exc:  # clickhouse-connect raises its own errors, chDB a ProgrammingError
        hint = ""
        if target.startswith("chdb://") and "lock" in str(exc).lower() + repr(exc.__cause__).lower():
            hint = " (chDB allows one process per data directory: is `trajstream up` running? query its HTTP API)"
        raise ClickHouseError(f"cannot open ClickHouse at {target}: {exc}{hint}") from exc


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files(_MIGRATIONS_PACKAGE).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ClickHouseError(f"migrations must be numbered 0001, 0002, ... without gaps; found {versions}")
    return found


def migrate(client: Client, settings: Settings) -> list[Migration]:
    """Apply the migrations not applied yet, in order; return them. An edited applied migration is an error."""
    db = settings.clickhouse_database
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    # The project's database is the client's default from here on, so that a table named without its
    # database (`trajstream sql "SELECT count() FROM trajectories"`) resolves there; the sinks name theirs.
    client.database = db
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )
    applied = {int(v): c for v, c in client.query(f"SELECT version, checksum FROM {db}.schema_migrations").result_rows}
    done = []
    for migration in migrations():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise ClickHouseError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        for statement in migration.statements(db, settings.clickhouse_ttl_days):
            client.command(statement)
        client.insert(f"{db}.schema_migrations", [[migration.version, migration.name, migration.checksum]],
                      column_names=["version", "name", "checksum"])  # fmt: skip
        done.append(migration)
    return done


def query_rows(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]


# The limits every /sql statement runs under (docs/sql.md). readonly=1, not 2: with 2, chDB runs file().
# The settings' defaults, for callers without settings at hand (tests, the guard's own checks).
SQL_MAX_SECONDS: float = Settings.model_fields["sql_max_seconds"].default
SQL_MAX_MEMORY_BYTES: int = Settings.model_fields["sql_max_memory_bytes"].default
SQL_MAX_ROWS_TO_READ: int = Settings.model_fields["sql_max_rows_to_read"].default


def sql_limits(settings: Settings) -> dict[str, Any]:
    """The settings' limits for `/sql` and `trajstream sql` (read_only_query's keyword arguments)."""
    return {"max_seconds": settings.sql_max_seconds, "max_memory_bytes": settings.sql_max_memory_bytes,
            "max_rows_to_read": settings.sql_max_rows_to_read}  # fmt: skip


def read_only_query(client: Any, sql: str, database: str, max_rows: int = 10_000, *,
                    max_seconds: float = SQL_MAX_SECONDS, max_memory_bytes: int = SQL_MAX_MEMORY_BYTES,
                    max_rows_to_read: int = SQL_MAX_ROWS_TO_READ) -> dict[str, Any]:  # fmt: skip
    """Run one statement that reads the project's tables (sql_guard.py's rules), under readonly=1 and limits.

    The text is never spliced into other SQL before ClickHouse has parsed it as one statement: chDB runs
    every statement of a multi-statement text (``EXPLAIN AST SELECT 1; DROP TABLE t`` drops the table).
    """
    limits = {"readonly": 1, "max_execution_time": max_seconds, "max_memory_usage": max_memory_bytes,
              "max_result_rows": max_rows, "result_overflow_mode": "break",
              "max_rows_to_read": max_rows_to_read, "read_overflow_mode": "throw"}  # fmt: skip
    try:
        formatted = client.query("SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql},
                                 settings=limits).result_rows[0][0]  # fmt: skip
    except Exception as exc:
        raise ClickHouseError(f"the statement does not parse as one statement: {_first_line(exc)}") from exc
    try:
        # No settings here: the chDB driver SETs them and restores them after, and readonly=1 can't be undone.
        dump = client.command(f"EXPLAIN AST {formatted}")
    except Exception as exc:
        raise ClickHouseError(f"the statement was refused: {_first_line(exc)}") from exc
    reason = refusal(str(dump), str(formatted), database, getattr(client, "database", None))
    if reason:
        raise ClickHouseError(reason)
    try:
        result = client.query(formatted, settings=limits)
    except Exception as exc:
        raise ClickHouseError(f"query failed: {exc}") from exc
    rows = [list(r) for r in result.result_rows[:max_rows]]  # "break" stops at a block, past max_rows
    return {"columns": list(result.column_names), "rows": rows, "database": database}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [repr(exc)])[0]


def stored_bytes(client: Any, database: str) -> dict[str, tuple[int, int]]:
    """Rows and compressed bytes on disk per table (active parts), materialised views' targets included."""
    rows = client.query(
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = {db:String} AND active "
        "GROUP BY table ORDER BY table",
        parameters={"db": database},
    ).result_rows
    return {str(table): (int(n), int(size)) for table, n, size in rows}
