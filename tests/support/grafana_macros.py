"""What Grafana and the ClickHouse datasource plugin do to a panel's rawSql before ClickHouse sees it.

Grafana cannot run here, so the dashboard tests expand each query the way it would be expanded and run the result
against chDB. Three steps, in the order the plugin (grafana-clickhouse-datasource 4.20.0) runs them:

1. ``$__conditionalAll(condition, $var)``, in the browser (``CHDatasource.applyConditionalAll``): ``1=1`` when
   ``$var`` is "All" or empty, else the condition.
2. Template variables, in the browser (Grafana's template service, called with the plugin's own ``format``):
   ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``. "All" without a custom all value stands for every option.
3. The ``$__`` macros, in the plugin's backend (``pkg/macros/macros.go`` on grafana/macropro): comments blanked,
   names matched longest first, arguments split on top-level commas and trimmed.

Only the macros and formats the dashboards use are implemented; anything else is refused here rather than guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ALL = "$__all"


class ExpansionError(ValueError):
    """A query uses something this expander does not implement, or a macro call the plugin would refuse."""


@dataclass(frozen=True)
class Variable:
    """A query variable as a dashboard holds it: the options its query returned and what is selected."""

    name: str
    options: Sequence[str]
    selected: Sequence[str] = (ALL,)  # Grafana keeps a multi-value selection as a list; "All" is ["$__all"]

    @property
    def is_all(self) -> bool:
        return list(self.selected) == [ALL]

    def value(self) -> list[str]:
        """What the template service formats: every option for "All" (no custom all value), else the selection."""
        return list(self.options) if self.is_all else list(self.selected)


@dataclass(frozen=True)
class TimeRange:
    """The panel's time range and the interval Grafana computed for it."""

    start: datetime
    end: datetime
    interval: timedelta = timedelta(minutes=1)


def render(raw_sql: str, variables: Mapping[str, Variable], time_range: TimeRange) -> str:
    """The SQL ClickHouse receives for ``raw_sql``."""
    return interpolate_macros(replace_variables(apply_conditional_all(raw_sql, variables), variables), time_range)


# --- 1. $__conditionalAll (src/data/CHDatasource.ts: applyConditionalAll, getMacroArgs) -----------------------------

_CONDITIONAL_ALL = "$__conditionalAll("
_VARIABLE_NAME = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def apply_conditional_all(sql: str, variables: Mapping[str, Variable]) -> str:
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        params = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if len(params) != 2:
            return sql  # the plugin gives up on the whole query and leaves it as it is
        phrase = params[0]
        name = _VARIABLE_NAME.search(params[1].strip())
        if name:
            variable = variables.get(name.group(0))
            # key?.current.value.toString(): an array joins with commas; an unknown variable is undefined
            current = ",".join(variable.selected) if variable else None
            if current in ("", ALL):
                phrase = "1=1"
        call = f"{_CONDITIONAL_ALL}{params[0]},{params[1]})"
        sql = _js_replace_first(sql, call, phrase)
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


def _macro_args(query: str, args_index: int) -> list[str]:
    """getMacroArgs: split at commas of depth 1, counting brackets only (quotes are not looked at)."""
    args: list[str] = []
    depth = 0
    last = 1
    rest = query[args_index:]
    for match in re.finditer(r"[(),]", rest):
        token = match.group(0)
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == "," and depth == 1:
            args.append(rest[last : match.end() - 1])
            last = match.end()
        if depth == 0:
            args.append(rest[last : match.end() - 1])
            return args
    return []


def _js_replace_first(text: str, pattern: str, replacement: str) -> str:
    """JavaScript's String.replace with a string pattern: the first occurrence, with $$, $&, $` and $' expanded."""
    at = text.find(pattern)
    if at == -1:
        return text
    before, after = text[:at], text[at + len(pattern) :]
    specials = {"$$": "$", "$&": pattern, "$`": before, "$'": after}
    expanded = re.sub(r"\$[$&`']", lambda m: specials[m.group(0)], replacement)
    return before + expanded + after


# --- 2. template variables (Grafana's template service; the plugin's format for variables without one) -------------

_TEMPLATE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _single_quote(value: str | list[str]) -> str:
    if isinstance(value, list):
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in value)
    return "'" + value.replace("'", "\\'") + "'"


def _plugin_format(value: str | list[str]) -> str:
    """CHDatasource.format: a list becomes 'a','b' (nothing escaped); a single value goes in as it is."""
    if isinstance(value, list):
        return "'" + "','".join(value) + "'"
    return value


_FORMATS: dict[str, Callable[[str | list[str]], str]] = {"singlequote": _single_quote}


def replace_variables(sql: str, variables: Mapping[str, Variable]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)  # not a variable of the dashboard ($__timeFilter, ...): left for the backend
        if match.group(5):
            raise ExpansionError(f"field paths (${{{name}.{match.group(5)}}}) are not implemented")
        fmt = match.group(3) or match.group(6)
        if fmt is not None and fmt not in _FORMATS:
            raise ExpansionError(f"variable format {fmt!r} is not implemented (only {sorted(_FORMATS)})")
        return (_FORMATS[fmt] if fmt else _plugin_format)(variable.value())

    return _TEMPLATE.sub(substitute, sql)


# --- 3. the backend's macros (pkg/macros/macros.go, on grafana/macropro) -------------------------------------------


def _date_time(t: datetime) -> str:
    return f"toDateTime({math.floor(t.timestamp())})"


def _date_time64(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({math.floor(t.timestamp() * 1000)})"


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"


def _one(name: str, args: list[str]) -> str:
    if len(args) != 1:
        raise ExpansionError(f"$__{name} expected 1 argument(s), received {len(args)}")
    return args[0]


def _seconds(r: TimeRange) -> int:
    return int(max(r.interval.total_seconds(), 1))


_Macro = Callable[[TimeRange, list[str]], str]
_MACROS: dict[str, _Macro] = {
    "timeFilter": lambda r, a: f"{_one('timeFilter', a)} >= {_date_time(r.start)} AND {a[0]} <= {_date_time(r.end)}",
    "timeFilter_ms": lambda r, a: (
        f"{_one('timeFilter_ms', a)} >= {_date_time64(r.start)} AND {a[0]} <= {_date_time64(r.end)}"
    ),
    "dateFilter": lambda r, a: f"{_one('dateFilter', a)} >= {_date(r.start)} AND {a[0]} <= {_date(r.end)}",
    "timeFrom": lambda r, a: f"{_one('timeFrom', a)} >= {_date_time(r.start)}",
    "timeTo": lambda r, a: f"{_one('timeTo', a)} <= {_date_time(r.end)}",
    "fromTime": lambda r, a: _date_time(r.start),
    "toTime": lambda r, a: _date_time(r.end),
    "fromTime_ms": lambda r, a: _date_time64(r.start),
    "toTime_ms": lambda r, a: _date_time64(r.end),
    "timeInterval": lambda r, a: (
        f"toStartOfInterval(toDateTime({_one('timeInterval', a)}), INTERVAL {_seconds(r)} second)"
    ),
    "timeInterval_ms": lambda r, a: (
        f"toStartOfInterval(toDateTime64({_one('timeInterval_ms', a)}, 3), "
        f"INTERVAL {int(max(r.interval / timedelta(milliseconds=1), 1))} millisecond)"
    ),
    "interval_s": lambda r, a: str(_seconds(r)),
}
# The plugin's other macros: named so that a dashboard using one fails here instead of passing unexpanded.
_NOT_IMPLEMENTED = ("dateTimeFilter", "dt", "timeGroup", "interval", "interval_ms", "table", "column")


def interpolate_macros(sql: str, time_range: TimeRange) -> str:
    sql = _blank_comments(sql)
    names = sorted([*_MACROS, *_NOT_IMPLEMENTED], key=lambda n: (-len(n), n))  # $__timeFilter_ms before _timeFilter
    for name in names:
        sql = _replace_macro(sql, name, time_range)
    return sql


def _replace_macro(sql: str, name: str, time_range: TimeRange) -> str:
    token = "$__" + name
    out: list[str] = []
    rest = sql
    while (at := rest.find(token)) != -1:
        after = at + len(token)
        if after < len(rest) and (rest[after].isalnum() or rest[after] == "_"):  # the prefix of a longer name
            out.append(rest[:after])
            rest = rest[after:]
            continue
        out.append(rest[:at])
        rest = rest[after:]
        raw = ""
        if rest.startswith("("):
            end = _closing_paren(rest)
            if end != -1:
                raw, rest = rest[1:end], rest[end + 1 :]
        if name in _NOT_IMPLEMENTED:
            raise ExpansionError(f"{token} is a macro of the plugin this expander does not implement")
        out.append(_MACROS[name](time_range, _parse_args(raw)))
    out.append(rest)
    return "".join(out)


def _string_end(s: str, at: int) -> int:
    """The index after the quoted literal that starts at ``at`` (doubled quotes inside it)."""
    quote = s[at]
    j = at + 1
    while j < len(s):
        if s[j] == quote:
            if j + 1 < len(s) and s[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return j


def _closing_paren(s: str) -> int:
    depth = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c in "'\"":
            i = _string_end(s, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _parse_args(raw: str) -> list[str]:
    raw = raw.strip()
    if not raw:
        return []
    args: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(raw):
        c = raw[i]
        if c in "'\"":
            i = _string_end(raw, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                raise ExpansionError(f"unexpected ')' at position {i}")
            depth -= 1
        elif c == "," and depth == 0:
            args.append(raw[start:i].strip())
            start = i + 1
        i += 1
    if depth:
        raise ExpansionError("unbalanced parentheses in arguments")
    args.append(raw[start:].strip())
    return args


def _blank_comments(sql: str) -> str:
    """-- and /* */ comments become spaces (macros inside them are never expanded); quoted text is kept whole,
    with ClickHouse's backslash escapes and backquoted identifiers. Dollar-quoted literals are refused."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < len(sql) and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            out.append(sql[i : j + 1])
            i = j + 1
            continue
        if c == "$" and re.match(r"\$\w*\$", sql[i:]) and not sql.startswith("$__", i):
            raise ExpansionError("dollar-quoted literals are not implemented")
        if sql.startswith("--", i):
            j = i
            while j < len(sql) and sql[j] not in "\r\n":
                j += 1
            out.append(" " * (j - i))
            i = j
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            j = len(sql) if end == -1 else end + 2
            out.append(" " * (j - i))
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)
