"""The time range of a console request, and the granularity its charts use.

Every console query filters on time. The bucket follows the span, as Langfuse chooses it: minutes under
2 hours, hours under 3 days, days under 60 days, weeks beyond; a chart thus has at most ~180 points.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from trajstream.errors import TrajstreamError

Granularity = Literal["minute", "hour", "day", "week"]
_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
NAMED: dict[str, int] = {
    "15m": 15 * _MINUTE, "1h": _HOUR, "6h": 6 * _HOUR, "24h": _DAY, "7d": 7 * _DAY, "30d": 30 * _DAY,
    "90d": 90 * _DAY,
}  # fmt: skip
BUCKET_MS: dict[Granularity, int] = {"minute": _MINUTE, "hour": _HOUR, "day": _DAY, "week": 7 * _DAY}
LONGEST_MS = 400 * _DAY  # past the tables' TTL: a longer range reads nothing more, only costs more


class RangeError(TrajstreamError):
    """A time range the console cannot use."""


def granularity_for(span_ms: int) -> Granularity:
    if span_ms < 2 * _HOUR:
        return "minute"
    if span_ms < 3 * _DAY:
        return "hour"
    if span_ms < 60 * _DAY:
        return "day"
    return "week"


@dataclass(frozen=True)
class TimeRange:
    from_ms: int
    to_ms: int

    @property
    def granularity(self) -> Granularity:
        return granularity_for(self.to_ms - self.from_ms)

    @property
    def bucket_ms(self) -> int:
        return BUCKET_MS[self.granularity]

    @property
    def minutes(self) -> float:
        return (self.to_ms - self.from_ms) / _MINUTE

    def parameters(self) -> dict[str, float]:
        """The query parameters every console query filters on ({start:DateTime64(3)} and {end:...})."""
        return {"start": self.from_ms / 1000, "end": self.to_ms / 1000}

    def as_json(self) -> dict[str, object]:
        return {"from": self.from_ms, "to": self.to_ms, "granularity": self.granularity, "bucket_ms": self.bucket_ms}

    @classmethod
    def last(cls, name: str, now_ms: int | None = None) -> TimeRange:
        if name not in NAMED:
            raise RangeError(f"unknown range {name!r}: use one of {', '.join(NAMED)}, or from= and to= (epoch ms)")
        end = now_ms if now_ms is not None else int(time.time() * 1000)
        return cls(end - NAMED[name], end)

    @classmethod
    def of(cls, query: Mapping[str, str], now_ms: int | None = None) -> TimeRange:
        """From a request's ``range=24h``, or ``from=`` and ``to=`` in epoch milliseconds (24h by default)."""
        if "from" in query or "to" in query:
            try:
                start, end = int(query["from"]), int(query.get("to") or (now_ms or time.time() * 1000))
            except (KeyError, ValueError) as exc:
                raise RangeError("from= and to= are epoch milliseconds, from= is required with to=") from exc
            if end <= start:
                raise RangeError(f"the range ends ({end}) before it starts ({start})")
            if end - start > LONGEST_MS:
                raise RangeError(f"the range spans more than {LONGEST_MS // _DAY} days; the data lives 90 by default")
            return cls(start, end)
        return cls.last(query.get("range") or "24h", now_ms)
