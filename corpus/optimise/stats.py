"""Proportions with their 95% Wilson score intervals: every rate a report states carries one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """``hits`` of ``n``, with the Wilson interval (sound at small n and near 0 or 1, unlike the normal one)."""

    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.n)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    def above(self, other: Rate) -> bool:
        """This rate is higher than ``other`` beyond doubt: the intervals do not overlap."""
        return self.n > 0 and other.n > 0 and self.low > other.high

    def as_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {"hits": self.hits, "n": self.n, "rate": round(self.value, 4), "ci95": [round(low, 4), round(high, 4)]}

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.hits}/{self.n} = {self.value:.0%} (95% CI {low:.0%}–{high:.0%})"


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
