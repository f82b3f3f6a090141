"""Fuzz the `/sql` guard on chDB, through read_only_query (what /sql and `trajstream sql` call): a statement
either runs as a read, or is refused with ClickHouseError and a reason; nothing else, and a refusal or a
read leaves no trace (tables, rows, the session's readonly setting, no file written, no file read).

The inputs: SQL-ish token soup, the 61 injection attempts of tests/consumers/test_sql_guard.py mutated
(characters edited, case flipped, comments and odd spaces inserted, two spliced), and the accepted ones mutated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.consumers.test_sql_guard import ACCEPTED, INJECTIONS, MARKER, _state
from tests.consumers.test_sql_guard import store as store  # the module's database on the session chDB directory
from tests.fuzz.profiles import examples
from trajstream.consumers.clickhouse_store import ClickHouseError, read_only_query

pytestmark = pytest.mark.integration

_STATEMENTS = [s for _, s, _ in INJECTIONS] + [s for _, s, _ in ACCEPTED]
TOKENS = ["SELECT", "select", "*", "1", "count()", "FROM", "{db}.sentinel", "sentinel", "{db}.trajectories",
          "system.users", "system.parts", "default.t", "WHERE", "IN", "(", ")", ",", ";", "--", "/*", "*/", "'",
          "'{secret}'", "file(", "url(", "numbers(10)", "dictGet(", "joinGet(", "INTO OUTFILE '{out}'", "FORMAT TSV",
          "SETTINGS readonly = 0", "SET", "WITH x AS", "UNION ALL", "JOIN", "ON 1", "INSERT INTO", "DROP TABLE",
          "SHOW TABLES", "DESCRIBE", "EXISTS", "EXPLAIN", "AST", "ORDER BY 1", "LIMIT 1", "AS", "x", "\u3000",
          "\u00a0", "\n", "`", '"', "\\", "$$", "?", "{", "}", "::", "[1]", "arrayJoin(range(3))"]  # fmt: skip
READS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "("}
ODD = ["/* ; */", "-- x\n", "\u3000", "\u00a0", "\t", ";", "'", "`", "\\", "\x00", "\u2028", "#", "\r"]


def _fill(statement: str, secret: Path, out: Path, db: str) -> str:
    return statement.replace("{db}", db).replace("{secret}", str(secret)).replace("{out}", str(out))


def _reads_or_refuses(store: tuple[Any, str], tmp: Path, statement: str) -> None:
    event(reads_or_refuses(store, tmp, statement))  # --hypothesis-show-statistics counts them


def reads_or_refuses(store: tuple[Any, str], tmp: Path, statement: str) -> str:
    """Run ``statement`` through the guard and check what came of it (atheris_run.py calls this too);
    returns what it was: read, or refused and why."""
    client, db = store
    secret, out = tmp / "secret.txt", tmp / "out.txt"
    secret.write_text(f"{MARKER}\n")
    out.unlink(missing_ok=True)
    before = _state(client, db)
    try:
        result_sql = _fill(statement, secret, out, db)
        result = read_only_query(client, result_sql, db, max_rows=100)
    except ClickHouseError as exc:
        assert str(exc).strip(), "a refusal without a reason"
        assert MARKER not in str(exc)
        outcome = f"refused: {str(exc).split(':')[0][:40]}"
    else:
        outcome = "read"
        # What ran is what ClickHouse formatted: a read statement, whatever the text around it was.
        formatted = client.query("SELECT formatQuerySingleLine({s:String})", parameters={"s": result_sql}).result_rows
        assert formatted[0][0].split()[0].upper() in READS, formatted
        assert MARKER not in repr(result["rows"]), "a read of this machine's files got through"
    assert _state(client, db) == before
    assert not out.exists(), "a file was written"
    return outcome


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sql-fuzz")


@examples(60)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map(" ".join))
@example("SELECT * FROM file('{secret}', 'LineAsString')")
def test_token_soup(store: tuple[Any, str], tmp: Path, statement: str) -> None:
    _reads_or_refuses(store, tmp, statement)


def _mutate(statement: str, edits: list[tuple[int, int, str]]) -> str:
    for at, cut, text in edits:
        i = at % (len(statement) + 1)
        statement = statement[:i] + text + statement[i + cut :]
    return statement


EDIT = st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.sampled_from(ODD) | st.text(max_size=2))


@examples(80)
@given(st.sampled_from(_STATEMENTS), st.lists(EDIT, max_size=2), st.booleans())
def test_mutated_known_statements(store: tuple[Any, str], tmp: Path, statement: str,
                                  edits: list[tuple[int, int, str]], swapcase: bool) -> None:  # fmt: skip
    statement = _mutate(statement, edits)
    if swapcase:  # keywords only: the placeholders and the database name are case-sensitive
        statement = re.sub(r"\b[A-Z]{2,}\b", lambda m: m.group().swapcase(), statement)
    _reads_or_refuses(store, tmp, statement)


@examples(40)
@given(st.sampled_from(_STATEMENTS), st.sampled_from(_STATEMENTS), st.integers(0, 10_000), st.sampled_from(ODD))
def test_spliced_statements(store: tuple[Any, str], tmp: Path, first: str, second: str, at: int, glue: str) -> None:
    i = at % (len(first) + 1)
    _reads_or_refuses(store, tmp, first[:i] + glue + second)
