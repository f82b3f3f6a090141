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


_READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


def read_only_query(client: Any, sql: str, database: str, max_rows: int = 10_000) -> dict[str, Any]:
    """Run a read-only statement: refused unless it reads, and run with readonly=1 all the same."""
    if not _READ_ONLY.match(sql) or ";" in sql.strip().rstrip(";"):
        raise ClickHouseError("only one SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS statement is allowed")
    try:
        result = client.query(sql.strip().rstrip(";"), settings={"readonly": 1, "max_result_rows": max_rows,
                                                                  "result_overflow_mode": "break"})  # fmt: skip
    except Exception as exc:
        raise ClickHouseError(f"query failed: {exc}") from exc
    return {"columns": list(result.column_names), "rows": [list(r) for r in result.result_rows], "database": database}


def stored_bytes(client: Any, database: str) -> dict[str, tuple[int, int]]:
    """Rows and compressed bytes on disk per table (active parts), materialised views' targets included."""
    rows = client.query(
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = {db:String} AND active "
        "GROUP BY table ORDER BY table",
        parameters={"db": database},
    ).result_rows
    return {str(table): (int(n), int(size)) for table, n, size in rows}
