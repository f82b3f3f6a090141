"""What `/sql` and `trajstream sql` may run, judged on ClickHouse's own parse of the statement.

``read_only_query`` (clickhouse_store.py) has ClickHouse format the user's text (``formatQuerySingleLine``,
the text bound as a parameter, never spliced: it refuses a second statement and drops comments), asks
for that single statement's syntax tree (``EXPLAIN AST``) and hands the tree here. This module only
reads the tree: no I/O, so each rule is tested on its own. What runs afterwards is the formatted text,
so the statement checked is the statement run.

The rules (docs/sql.md says why):
- one SELECT (WITH, UNION, ...), SHOW TABLES/DATABASES, DESCRIBE, EXISTS or EXPLAIN of one of these;
- no table function at all (``file()``, ``url()``, ``s3()``, ``remote()``, chDB's ``python()``, even
  ``numbers()``): a table function reaches outside the project's tables, and on chDB ``file()`` reads
  this machine's files;
- no function that reads outside the tables named in the query (``file``, ``joinGet``, ``dictGet``...);
- no ``SETTINGS`` clause anywhere (nor ``SET``): the limits ``read_only_query`` sets must stand;
- no ``INTO OUTFILE`` (chDB writes the file even under readonly=1) and no ``FORMAT`` (the driver's own);
- tables of the project's database only, and ``system.parts``, ``system.tables``, ``system.columns``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The statements allowed at the top, by the name of their node in EXPLAIN AST.
_STATEMENTS = {
    "SelectWithUnionQuery": "SELECT",
    "ShowTables": "SHOW TABLES",
    "DescribeQuery": "DESCRIBE",
    "ExistsTableQuery": "EXISTS",
    "Explain": "EXPLAIN",
}
SYSTEM_TABLES = frozenset({"parts", "tables", "columns"})
# Ordinary functions that read something other than the tables the query names (checked lowercase;
# every name starting with "dict" is refused too: dictGet, dictHas, dictGetOrDefault, ...).
_FUNCTIONS = frozenset({"file", "joinget", "joingetornull", "catboostevaluate", "modelevaluate"})
# `x IN db.t` names a table as a plain identifier.
_IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin",
                           "globalnotnullin"})  # fmt: skip
_SUFFIX = re.compile(r"\s*\((?:alias [^)]*|children \d+)\)\s*$")
_FORMAT_AT_END = re.compile(r"\sFORMAT\s+\w+\s*$", re.IGNORECASE)
ONLY = "/sql reads the project's tables only"


@dataclass
class Node:
    """One line of EXPLAIN AST: ``Function file (alias y) (children 1)`` is kind Function, name file."""

    kind: str
    name: str
    children: list[Node] = field(default_factory=list)

    def walk(self) -> list[tuple[Node, Node | None]]:
        """Every node with its parent, this one first."""
        found: list[tuple[Node, Node | None]] = [(self, None)]
        for child in self.children:
            found += [(node, parent or self) for node, parent in child.walk()]
        return found


def parse_tree(dump: str) -> list[Node]:
    """The top nodes of an EXPLAIN AST dump (one line a node, its depth its indentation)."""
    roots: list[Node] = []
    stack: list[tuple[int, Node]] = []
    for line in dump.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        text = line.strip()
        while _SUFFIX.search(text):
            text = _SUFFIX.sub("", text)
        kind, _, rest = text.partition(" ")
        node = Node(kind, rest.split(" ")[0] if rest else "")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((depth, node))
    return roots


def refusal(dump: str, formatted: str, database: str, default_database: str | None) -> str | None:
    """Why this statement may not run, or None. ``formatted`` is ClickHouse's one-line text of it;
    unqualified table names resolve to ``default_database`` (the client's), allowed when it is the project's."""
    roots = parse_tree(dump)
    if len(roots) != 1:
        return "only one statement is allowed"
    root = roots[0]
    statement = _STATEMENTS.get(root.kind)
    if statement is None:
        return (f"{_statement_name(formatted)} is not allowed: only one SELECT, WITH, SHOW TABLES, DESCRIBE, "
                "EXISTS or EXPLAIN statement is allowed")  # fmt: skip
    if root.kind == "Explain":
        explained = [c for c in root.children if c.kind in _STATEMENTS]
        if not explained or explained[0].kind == "Explain":
            return "EXPLAIN is allowed of a SELECT, SHOW TABLES, DESCRIBE or EXISTS statement only"
    if any(c.kind == "Literal" for c in root.children) or _INTO_OUTFILE.search(_unquoted(formatted)):
        return "INTO OUTFILE is not allowed: /sql returns rows, it writes no file"
    if _FORMAT_AT_END.search(formatted) or (
        root.kind in ("SelectWithUnionQuery", "DescribeQuery") and any(c.kind == "Identifier" for c in root.children)
    ):
        return "a FORMAT clause is not allowed: /sql chooses the format of its answer"
    for node, parent in root.walk():
        reason = _node_refusal(node, parent, database, default_database)
        if reason:
            return reason
    return None


def _node_refusal(node: Node, parent: Node | None, database: str, default_database: str | None) -> str | None:
    if node.kind == "Set":
        return "SETTINGS and SET are not allowed: /sql runs with fixed read-only settings and limits"
    if node.kind == "Function" and parent is not None and parent.kind == "TableExpression":
        return f"table function {node.name}() is not allowed: {ONLY}"
    if node.kind == "Function":
        lower = node.name.lower()
        if lower in _FUNCTIONS or lower.startswith("dict"):
            return f"function {node.name}() is not allowed: {ONLY}"
        if lower in _IN_FUNCTIONS:
            args = node.children[0].children if node.children else []
            if len(args) == 2 and args[1].kind == "Identifier" and "." in args[1].name:
                return _table_refusal(args[1].name, database, default_database)
    if node.kind == "TableIdentifier":
        return _table_refusal(node.name, database, default_database)
    return None


def _table_refusal(name: str, database: str, default_database: str | None) -> str | None:
    parts = name.split(".")
    if len(parts) == 1:
        if default_database in (None, database):
            return None  # the project's database, or the name of a WITH subquery
        return f"table {name} is not allowed: name it with its database ({database}.{name}); {ONLY}"
    if len(parts) == 2 and parts[0] == database:
        return None
    if len(parts) == 2 and parts[0] == "system" and parts[1] in SYSTEM_TABLES:
        return None
    allowed = ", ".join(f"system.{t}" for t in sorted(SYSTEM_TABLES))
    return f"table {name} is not allowed: {ONLY} (database {database}) and {allowed}"


_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`")


def _unquoted(formatted: str) -> str:
    """The formatted text with its string literals and quoted names blanked (it has no comments left)."""
    return _QUOTED.sub("''", formatted)


def _statement_name(formatted: str) -> str:
    words = _unquoted(formatted).split()
    return " ".join(words[:2]).upper() if words[:1] in (["SHOW"], ["SYSTEM"]) else (words[0].upper() if words else "")
