"""The /sql guard against chDB: every injection attempt is refused with its reason and leaves no trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from trajstream.consumers import clickhouse_store
from trajstream.consumers.api import build_app
from trajstream.consumers.clickhouse_store import ClickHouseError, connect, migrate, read_only_query
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.settings import Settings

pytestmark = pytest.mark.integration

MARKER = "top-secret-7f3a"

# (name, statement, what the refusal must say). {db}: the project's database; {secret}: a file holding
# MARKER; {out}: a path that must not exist afterwards.
INJECTIONS = [
    ("second statement", "SELECT 1; DROP TABLE {db}.sentinel", "one statement"),
    ("second after spaces", "SELECT 1 ;   \n\t DROP TABLE {db}.sentinel", "one statement"),
    ("second after comment", "SELECT 1 -- hi\n; DROP TABLE {db}.sentinel", "one statement"),
    ("second after block comment", "SELECT 1 /* ; */; DROP TABLE {db}.sentinel", "one statement"),
    ("second then comment", "SELECT 1; DROP TABLE {db}.sentinel -- ;", "one statement"),
    ("second after string", "SELECT ';' ; INSERT INTO {db}.sentinel VALUES (9)", "one statement"),
    ("ideographic space", "sElEcT 1;\u3000DROP TABLE {db}.sentinel", "one statement"),
    ("nbsp", "SELECT\u00a01;\u00a0DROP TABLE {db}.sentinel", "one statement"),
    ("insert select", "INSERT INTO {db}.sentinel SELECT 9", "INSERT is not allowed"),
    ("insert lower case", "insert into {db}.sentinel values (9)", "INSERT is not allowed"),
    ("with insert", "WITH x AS (SELECT 1) INSERT INTO {db}.sentinel SELECT 9", "INSERT is not allowed"),
    ("settings readonly", "SELECT count() FROM {db}.sentinel SETTINGS readonly = 0", "SETTINGS"),
    ("settings memory", "SELECT 1 SETTINGS max_memory_usage = 100000000000", "SETTINGS"),
    ("settings in subquery", "SELECT * FROM (SELECT 1 SETTINGS readonly = 0)", "SETTINGS"),
    ("set", "SET readonly = 0", "SET is not allowed"),
    ("explain settings", "EXPLAIN readonly = 0 SELECT 1", "SETTINGS"),
    ("file", "SELECT * FROM file('{secret}', 'LineAsString')", "table function file() is not allowed"),
    ("file upper case", "select * from FILE('{secret}', 'LineAsString')", "table function FILE() is not allowed"),
    ("file scalar", "SELECT file('{secret}')", "function file() is not allowed"),
    ("file in subquery", "SELECT * FROM (SELECT * FROM file('{secret}', 'LineAsString'))", "file() is not allowed"),
    (
        "file in join",
        "SELECT * FROM {db}.sentinel AS s JOIN file('{secret}', 'LineAsString') AS f ON 1",
        "file() is not allowed",
    ),
    ("file in IN", "SELECT 1 WHERE 'x' IN (SELECT * FROM file('{secret}', 'LineAsString'))", "file() is not"),
    ("file in with", "WITH f AS (SELECT * FROM file('{secret}', 'LineAsString')) SELECT * FROM f", "file()"),
    ("url", "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')", "table function url()"),
    ("s3", "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'LineAsString')", "table function s3()"),
    ("remote", "SELECT * FROM remote('127.0.0.1:9', system.one)", "table function remote()"),
    ("input", "SELECT * FROM input('x String')", "table function input()"),
    ("executable", "SELECT * FROM executable('id', 'TSV', 'x String')", "table function executable()"),
    ("cluster", "SELECT * FROM cluster('default', system.one)", "table function cluster()"),
    ("mysql", "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')", "table function mysql()"),
    ("numbers", "SELECT * FROM numbers(10)", "table function numbers()"),
    ("dictionary", "SELECT * FROM dictionary('d')", "table function dictionary()"),
    ("dictGet", "SELECT dictGet('d', 'a', 1)", "function dictGet() is not allowed"),
    ("joinGet", "SELECT joinGet('{db}.sentinel', 'x', 1)", "function joinGet() is not allowed"),
    ("into outfile", "SELECT * FROM {db}.sentinel INTO OUTFILE '{out}'", "INTO OUTFILE"),
    ("into outfile truncate", "SELECT 1 INTO OUTFILE '{out}' TRUNCATE", "INTO OUTFILE"),
    ("show into outfile", "SHOW TABLES INTO OUTFILE '{out}'", "INTO OUTFILE"),
    ("format", "SELECT 1 FORMAT TSV", "a FORMAT clause is not allowed"),
    ("show format", "SHOW TABLES FORMAT TSV", "a FORMAT clause is not allowed"),
    ("create", "CREATE TABLE {db}.evil (x UInt8) ENGINE = Memory", "CREATE is not allowed"),
    ("create temporary", "CREATE TEMPORARY TABLE evil (x UInt8)", "CREATE is not allowed"),
    ("alter", "ALTER TABLE {db}.sentinel DELETE WHERE 1", "ALTER is not allowed"),
    ("drop", "DROP TABLE {db}.sentinel", "DROP is not allowed"),
    ("truncate", "TRUNCATE TABLE {db}.sentinel", "TRUNCATE is not allowed"),
    ("optimize", "OPTIMIZE TABLE {db}.sentinel FINAL", "OPTIMIZE is not allowed"),
    ("system", "SYSTEM DROP MARK CACHE", "SYSTEM CLEAR is not allowed"),
    ("kill", "KILL QUERY WHERE 1", "KILL is not allowed"),
    ("grant", "GRANT ALL ON *.* TO default", "GRANT is not allowed"),
    ("attach", "ATTACH TABLE {db}.evil (x UInt8) ENGINE = Memory", "ATTACH is not allowed"),
    ("detach", "DETACH TABLE {db}.sentinel", "DETACH is not allowed"),
    ("rename", "RENAME TABLE {db}.sentinel TO {db}.gone", "RENAME is not allowed"),
    ("exchange", "EXCHANGE TABLES {db}.sentinel AND {db}.trajectories", "EXCHANGE is not allowed"),
    ("explain insert", "EXPLAIN AST INSERT INTO {db}.sentinel VALUES (9)", "EXPLAIN is allowed of"),
    ("show processlist", "SHOW PROCESSLIST", "SHOW PROCESSLIST is not allowed"),
    ("show users", "SHOW USERS", "SHOW USERS is not allowed"),
    ("system.users", "SELECT * FROM system.users", "table system.users is not allowed"),
    ("system.processes", "SELECT query FROM system.processes", "table system.processes is not allowed"),
    ("system in IN", "SELECT 1 WHERE 'default' IN system.users", "table system.users is not allowed"),
    ("describe system.users", "DESCRIBE system.users", "table system.users is not allowed"),
    ("other database", "SELECT * FROM default.anything", "table default.anything is not allowed"),
]

ACCEPTED = [
    ("select", "SELECT count() FROM {db}.sentinel", [[1]]),
    ("unqualified", "SELECT x FROM sentinel", [[1]]),
    ("with select", "WITH s AS (SELECT x FROM {db}.sentinel) SELECT x + 1 FROM s", [[2]]),
    ("union", "SELECT 1 UNION ALL SELECT 2 ORDER BY 1", [[1], [2]]),
    ("show tables", "SHOW TABLES FROM {db} LIKE 'sent%'", [["sentinel"]]),
    ("describe", "DESCRIBE {db}.sentinel", None),
    ("describe unqualified", "DESC trajectories", None),
    ("exists", "EXISTS {db}.sentinel", [[1]]),
    ("explain", "EXPLAIN SELECT * FROM {db}.sentinel", None),
    (
        "strings with ; and --",
        "SELECT ';' AS a, '--' AS b, '/*' AS c, 'x; DROP TABLE t' AS d",
        [[";", "--", "/*", "x; DROP TABLE t"]],
    ),
    ("trailing ;", "SELECT 1;", [[1]]),
    ("trailing ; and comment", "SELECT 1; -- done\n", [[1]]),
    ("comments", "/* lead */ SELECT -- a ; comment\n 1", [[1]]),
    ("function named like a keyword", "SELECT format('{{}};', 'x')", [["x;"]]),
    ("system.parts", "SELECT count() > 0 FROM system.parts WHERE database = '{db}' AND table = 'sentinel'", [[True]]),
    ("system.columns", "SELECT name FROM system.columns WHERE database = '{db}' AND table = 'sentinel'", [["x"]]),
    ("lower case", "select x from {db}.sentinel", [[1]]),
]


@pytest.fixture(scope="module")
def store(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """One database for the module: every refusal must leave it as it was, which each test checks."""
    client, db = sentinel_store(chdb_dir, tmp_path_factory.mktemp("home"))
    yield client, db
    client.command(f"DROP DATABASE IF EXISTS {db}")
    client.close()


def sentinel_store(chdb_dir: Path, home: Path) -> tuple[Any, str]:
    """A fresh database on ``chdb_dir``, migrated, with a sentinel table of one row (atheris_run.py uses it too)."""
    settings = Settings(home=home, clickhouse_dsn=f"chdb://{chdb_dir}", clickhouse_database=f"t{uuid.uuid4().hex[:10]}")
    client = connect(settings)
    migrate(client, settings)
    db = settings.clickhouse_database
    client.command(f"CREATE TABLE {db}.sentinel (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.command(f"INSERT INTO {db}.sentinel VALUES (1)")
    return client, db


def _state(client: Any, db: str) -> tuple[Any, ...]:
    """What a write would change: the tables, the sentinel's rows, the session's readonly setting."""
    tables = client.query(f"SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name").result_rows
    rows = client.query(f"SELECT x FROM {db}.sentinel ORDER BY x").result_rows
    readonly = client.query("SELECT value FROM system.settings WHERE name = 'readonly'").result_rows
    return tuple(map(tuple, tables)), tuple(map(tuple, rows)), readonly[0][0]


@pytest.mark.parametrize(("statement", "refused"), [pytest.param(s, r, id=n) for n, s, r in INJECTIONS])
def test_injection_is_refused_and_leaves_no_trace(store: tuple[Any, str], tmp_path: Path, statement: str,
                                                  refused: str) -> None:  # fmt: skip
    client, db = store
    secret, out = tmp_path / "secret.txt", tmp_path / "out.txt"
    secret.write_text(f"{MARKER}\n")
    before = _state(client, db)
    with pytest.raises(ClickHouseError) as caught:
        read_only_query(client, statement.format(db=db, secret=secret, out=out), db)
    assert refused in str(caught.value)
    assert MARKER not in str(caught.value)
    assert _state(client, db) == before
    assert before[2] == "0"  # the session is not left read-only: the sink shares the engine
    assert not out.exists()


@pytest.mark.parametrize(("statement", "rows"), [pytest.param(s, r, id=n) for n, s, r in ACCEPTED])
def test_reading_statements_run(store: tuple[Any, str], statement: str, rows: list[list[Any]] | None) -> None:
    client, db = store
    result = read_only_query(client, statement.format(db=db), db)
    assert result["database"] == db and result["columns"]
    if rows is not None:
        assert result["rows"] == rows
    else:
        assert result["rows"]


def test_unqualified_names_need_the_project_database_as_default(store: tuple[Any, str]) -> None:
    client, db = store
    client.database = "default"
    try:
        with pytest.raises(ClickHouseError, match="name it with its database"):
            read_only_query(client, "SELECT * FROM sentinel", db)
        assert read_only_query(client, f"SELECT x FROM {db}.sentinel", db)["rows"] == [[1]]
    finally:
        client.database = db


def test_limits(store: tuple[Any, str]) -> None:
    client, db = store
    assert len(read_only_query(client, "SELECT arrayJoin(range(100000))", db, max_rows=10)["rows"]) == 10
    with pytest.raises(ClickHouseError, match="max_rows_to_read"):
        read_only_query(client, f"SELECT * FROM {db}.schema_migrations", db, max_rows_to_read=1)
    with pytest.raises(ClickHouseError, match="MEMORY_LIMIT_EXCEEDED"):
        read_only_query(client, "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(20000000)) AS x)", db,
                        max_memory_bytes=50_000_000)  # fmt: skip
    with pytest.raises(ClickHouseError, match="TIMEOUT_EXCEEDED"):
        read_only_query(client, "SELECT sum(cityHash64(x, y)) FROM (SELECT arrayJoin(range(40000)) AS x) AS a "
                        "CROSS JOIN (SELECT arrayJoin(range(40000)) AS y) AS b", db, max_seconds=0.5)  # fmt: skip


def test_readonly_alone(
    chdb_dir: Path, store: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the guard off, readonly=1 still refuses writes and table functions, but not the file() function:
    what chDB does, measured, and why the guard refuses functions too. Its own client: a refused INSERT
    leaves readonly=1 in the chDB session (its SETTINGS clause sticks)."""
    _, db = store
    monkeypatch.setattr(clickhouse_store, "refusal", lambda *args: None)
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{MARKER}\n")
    client = connect(Settings(home=tmp_path, clickhouse_dsn=f"chdb://{chdb_dir}", clickhouse_database=db))
    try:
        assert read_only_query(client, f"SELECT file('{secret}')", db)["rows"] == [[f"{MARKER}\n"]]
        with pytest.raises(ClickHouseError, match="READONLY"):
            read_only_query(client, f"SELECT * FROM file('{secret}', 'LineAsString')", db)
        with pytest.raises(ClickHouseError, match="READONLY"):  # last: it leaves this session read-only
            read_only_query(client, f"INSERT INTO {db}.sentinel SELECT 9", db)
        assert store[0].query(f"SELECT count() FROM {db}.sentinel").result_rows == [(1,)]
    finally:
        client.close()


async def test_http_endpoint_refuses_with_the_reason(store: tuple[Any, str]) -> None:
    client, db = store

    def no_recall() -> Any:
        raise StoreUnavailableError("no recall in this test")

    settings = Settings(clickhouse_database=db)
    app = build_app(settings, no_recall, lambda: client, lambda: {})
    headers = {"X-Trajstream-Console": "1"}  # what the API asks of every POST (consumers/api_access.py)
    async with TestClient(TestServer(app), headers=headers) as http:
        refused = await http.post("/sql", json={"query": f"SELECT 1; DROP TABLE {db}.sentinel"})
        assert refused.status == 400
        assert "one statement" in (await refused.json())["error"]
        refused = await http.post("/sql", json={"query": "SELECT * FROM file('/etc/passwd', 'LineAsString')"})
        assert refused.status == 400
        assert (await refused.json())["error"].startswith("table function file() is not allowed")
        ok = await http.post("/sql", json={"query": f"SELECT count() FROM {db}.sentinel"})
        assert ok.status == 200
        assert (await ok.json())["result"]["rows"] == [[1]]
