"""A JSON body's filters as a CorpusFilter: the same filters as `trajstream export`'s options, named as the
console's list filters are (singular; a list, or one string, for the repeatable ones), each refused by name."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from trajstream.corpus.export.run import parse_time
from trajstream.corpus.read import CorpusFilter
from trajstream.errors import TrajstreamError
from trajstream_sdk.events import OUTCOMES

# JSON field -> CorpusFilter field, for the filters that take several values (any of them).
MANY = {"outcome": "outcomes", "agent": "agents", "domain": "domains", "model_version": "model_versions",
        "tag": "tags", "task_key": "task_keys"}  # fmt: skip
FIELDS = ("since", "until", *MANY, "min_reward", "max_reward", "latest_only")


class FieldError(TrajstreamError):
    """A field of the request that cannot be used; ``field`` names it for the page and the client."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field

    def as_json(self) -> dict[str, str]:
        """The console's error shape, with the field named."""
        return {"error": str(self), "kind": "bad_request", "field": self.field}


def strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(name, "a string or a list of strings")
    return tuple(v for v in value if v.strip())


def _number(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError(name, "a number")
    try:
        return float(value)
    except ValueError:
        raise FieldError(name, f"a number, not {value!r}") from None


def _time(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise FieldError(name, "an ISO time like 2025-01-31T12:00, or a time ago like 7d, 12h, 30m")
    try:
        return parse_time(value)
    except TrajstreamError as exc:
        raise FieldError(name, str(exc)) from None


def corpus_filter(body: dict[str, Any], allowed: Collection[str] = FIELDS) -> CorpusFilter:
    """The filter ``body`` asks for, reading the filters in ``allowed`` (``refuse_unknown`` first refuses
    any field nobody reads)."""
    many = {MANY[k]: strings(k, body[k]) for k in MANY if k in body and k in allowed}
    unknown = sorted(set(many.get("outcomes", ())) - set(OUTCOMES))
    if unknown:
        raise FieldError("outcome", f"{', '.join(unknown)} unknown; known: {', '.join(OUTCOMES)}")
    latest = body.get("latest_only", True) if "latest_only" in allowed else True
    if not isinstance(latest, bool):
        raise FieldError("latest_only", "true or false")

    def given(name: str) -> Any:
        return body.get(name) if name in allowed else None

    filters = CorpusFilter(since_ms=_time("since", given("since")), until_ms=_time("until", given("until")),
                           min_reward=_number("min_reward", given("min_reward")),
                           max_reward=_number("max_reward", given("max_reward")), latest_only=latest,
                           **many)  # fmt: skip
    if filters.min_reward is not None and filters.max_reward is not None and filters.min_reward > filters.max_reward:
        raise FieldError("min_reward", f"{filters.min_reward} is above max_reward {filters.max_reward}")
    return filters


def refuse_unknown(body: dict[str, Any], known: Collection[str]) -> None:
    """A 400 for a field nobody reads: a misspelt filter would otherwise widen the export silently."""
    for key in body:
        if key not in known:
            raise FieldError(key, f"unknown field; known: {', '.join(known)}")
