"""LightningRL-style credit assignment: spread the episode reward over the LLM calls.

Agent Lightning trains on each LLM call (a turn with an assistant message) as one action, so the
episode reward is split into per-call credits. Every method here returns one credit per LLM call,
in order, and the credits sum to the episode reward (the last credit absorbs float rounding), so
that no method changes the total reward a trajectory carries, only where it lands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.errors import ConfigurationError
from trajstream.streams.scoring.air import AirRules, TurnAir, air_per_llm_step
from trajstream.streams.scoring.rewards import episode_reward
from trajstream_sdk.events import utcnow

UNIFORM = "uniform"
DISCOUNTED = "discounted"
AIR_SHAPED = "air_shaped"
DECISION = "decision"
METHODS: tuple[str, ...] = (UNIFORM, DISCOUNTED, AIR_SHAPED, DECISION)
# What decision_based reports when the decisions give nothing positive to normalise.
DECISION_FALLBACK = "decision:uniform_fallback"

# The smallest air_shaped weight: a heavily penalised step still gets a sliver, so weights stay positive.
AIR_WEIGHT_FLOOR = 1e-3


@dataclass(frozen=True)
class StepCredit:
    """One LLM call's AIR and credit, shaped as StepCredit in schemas/credit_assignment."""

    turn_index: int
    air: float
    air_reasons: tuple[str, ...]
    credit: float


@dataclass(frozen=True)
class CreditResult:
    """The credits of one method for one trajectory; ``method`` names what actually produced them."""

    method: str
    final_reward: float
    steps: list[StepCredit]


def _spread(total: float, weights: Sequence[float]) -> list[float]:
    """``total`` split in proportion to ``weights`` (positive sum); the last share takes the rounding error."""
    if not weights:
        return []
    norm = math.fsum(weights)
    if not norm > 0:
        raise ValueError(f"credit weights must have a positive sum, got {norm}")
    shares = [total * w / norm for w in weights]
    shares[-1] = total - math.fsum(shares[:-1])
    return shares


def uniform(final_reward: float, n: int) -> list[float]:
    """Every LLM call gets the same share."""
    return _spread(final_reward, [1.0] * n)


def discounted(final_reward: float, n: int, gamma: float) -> list[float]:
    """Call i (of n) weighs gamma**(n-1-i): calls closer to the outcome are more responsible for it."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    return _spread(final_reward, [gamma ** (n - 1 - i) for i in range(n)])


def air_shaped(final_reward: float, air: Sequence[float]) -> list[float]:
    """Shares weighted by AIR: w_i = max(floor, 1 + s * air_i), s the sign of final_reward.

    A linear weight keeps the shaping proportional to AIR's small values (±0.1 moves a share by
    about 10%), where a softmax would need a temperature. The sign flip makes the shaping mean the
    same thing for a failed episode: a negative reward falls mostly on the calls whose tools failed,
    not on the ones that went well. Equal AIR gives uniform shares; a zero reward gives zeros.
    """
    sign = -1.0 if final_reward < 0 else 1.0
    return _spread(final_reward, [max(AIR_WEIGHT_FLOOR, 1.0 + sign * a) for a in air])


def _decision_value(decision: Mapping[str, Any]) -> float:
    """The seed's decision quality without the entity term: confidence, alternatives, branching, backtrack."""
    value = 0.0
    if float(decision["confidence"]) > 0.8:
        value += 0.1
    if decision.get("alternatives"):
        value += 0.1
    if decision["decision_type"] == "branching":
        value *= 1.5
    if decision["decision_type"] == "backtrack":
        value -= 0.2
    return value


def _step_decision_credit(decisions: Sequence[Mapping[str, Any]], new_entities: int) -> float:
    """The seed's per-step credit, for any number of decisions at the step.

    Each decision contributes its own quality; the step's entity discoveries count once (+0.05
    each), scaled ×1.5 when a decision at the step is a branching point. With exactly one decision
    this is the seed's formula; a step without decisions gets 0.
    """
    if not decisions:
        return 0.0
    branching = any(d["decision_type"] == "branching" for d in decisions)
    entity_term = 0.05 * new_entities * (1.5 if branching else 1.0)
    return math.fsum(_decision_value(d) for d in decisions) + entity_term


def decision_credits_raw(view: TrajectoryView, enrichment: Mapping[str, Any] | None) -> list[float]:
    """Unnormalised decision credit per LLM call; decisions and entities attach by turn index.

    Decisions at turns that are not LLM calls are ignored: no action there to credit.
    """
    decisions: dict[int, list[Mapping[str, Any]]] = {}
    discovered: dict[int, set[str]] = {}
    for d in (enrichment or {}).get("decisions", ()):
        decisions.setdefault(int(d["step_index"]), []).append(d)
    for e in (enrichment or {}).get("entities", ()):
        discovered.setdefault(int(e["discovered_at_step"]), set()).add(str(e["name"]))
    return [
        _step_decision_credit(decisions.get(s.turn_index, []), len(discovered.get(s.turn_index, ())))
        for s in view.llm_steps
    ]


def decision_based(
    view: TrajectoryView, enrichment: Mapping[str, Any] | None, final_reward: float
) -> tuple[list[float], str]:
    """The seed's decision_based_credit per LLM call, normalised to sum to final_reward: (credits, method).

    The seed leaves credits unnormalised when their total is not positive, which breaks the sum;
    here that case (no decisions, only backtracks, no enrichment) falls back to uniform shares and
    the method says ``decision:uniform_fallback``.
    """
    raw = decision_credits_raw(view, enrichment)
    total = math.fsum(raw)
    if not raw:
        return [], DECISION
    if total > 0:
        return _spread(final_reward, raw), DECISION
    return uniform(final_reward, len(raw)), DECISION_FALLBACK


def _credits(
    method: str,
    view: TrajectoryView,
    air: list[TurnAir],
    final_reward: float,
    gamma: float,
    enrichment: Mapping[str, Any] | None,
) -> tuple[list[float], str]:
    if method == UNIFORM:
        return uniform(final_reward, len(air)), method
    if method == DISCOUNTED:
        return discounted(final_reward, len(air), gamma), method
    if method == AIR_SHAPED:
        return air_shaped(final_reward, [a.reward for a in air]), method
    if method in (DECISION, "decision_based"):
        return decision_based(view, enrichment, final_reward)
    raise ConfigurationError(f"unknown credit method {method!r}; known: {', '.join(METHODS)}")


def assign(
    view: TrajectoryView,
    method: str,
    final_reward: float | None,
    air_rules: AirRules,
    gamma: float,
    enrichment: Mapping[str, Any] | None = None,
) -> CreditResult:
    """Credits of one method over the LLM calls, with each call's AIR (see ``air_per_llm_step``).

    ``final_reward`` None means the trajectory's own (``episode_reward``). ``method`` is one of
    METHODS ("decision_based" is accepted for "decision"). No LLM calls: no steps, nothing spread.
    """
    reward = episode_reward(view) if final_reward is None else final_reward
    air = air_per_llm_step(view, air_rules)
    credits, produced_by = _credits(method, view, air, reward, gamma, enrichment)
    steps = [StepCredit(a.turn_index, a.reward, a.reasons, c) for a, c in zip(air, credits, strict=True)]
    return CreditResult(produced_by, reward, steps)


def to_record(result: CreditResult, trajectory_id: str, trajectory_version: int) -> dict[str, Any]:
    """The credit_assignment record of a result."""
    return {
        "trajectory_id": trajectory_id,
        "trajectory_version": trajectory_version,
        "created_at": utcnow(),
        "method": result.method,
        "final_reward": result.final_reward,
        "steps": [
            {"turn_index": s.turn_index, "air": s.air, "air_reasons": list(s.air_reasons), "credit": s.credit}
            for s in result.steps
        ],
    }
