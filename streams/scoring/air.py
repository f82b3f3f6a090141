"""AIR (Automatic Intermediate Rewarding): turn system signals into small per-turn rewards.

Agent Lightning's AIR reads what the system already knows (a tool returned ``success`` or
``error``, the agent repeated itself, a turn failed) instead of asking a model. Every value is
configurable (``Settings.air_*``) so that a deployment can tune how loud each signal is.

Two views of the same signals are offered:

* :func:`air_rewards` attributes each signal to the turn it appears in: what a dashboard shows.
* :func:`air_per_llm_step` attributes each signal to the LLM call whose action caused it: what
  credit assignment needs. A tool response or a turn's error is *caused* by the latest LLM call
  before it. In our turn layout the results of turn k's tool calls arrive in turn k+1, before the
  next assistant message, so per-turn attribution would credit turn k+1 for turn k's action.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trajstream.assembled import Step, TrajectoryView
from trajstream.settings import Settings
from trajstream_sdk.events import content_kind


@dataclass(frozen=True)
class AirRules:
    """The reward each AIR signal adds (defaults from Agent Lightning's example: ±0.1)."""

    success: float = 0.1
    error: float = -0.1
    timeout: float = -0.1
    repeated_call: float = -0.05
    turn_error: float = -0.1

    @classmethod
    def from_settings(cls, settings: Settings) -> AirRules:
        return cls(
            success=settings.air_tool_success,
            error=settings.air_tool_error,
            timeout=settings.air_tool_timeout,
            repeated_call=settings.air_repeated_call,
            turn_error=settings.air_turn_error,
        )

    def for_status(self, status: str) -> float | None:
        """The value of a tool response status; None for a status AIR has no rule for."""
        return {"success": self.success, "error": self.error, "timeout": self.timeout}.get(status)


@dataclass(frozen=True)
class TurnAir:
    """The AIR reward of one turn (or one LLM step) and the rules that produced it."""

    turn_index: int
    reward: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Signal:
    """One fired rule: the position (in ``view.steps``) of the turn it appears in and of its causing LLM step."""

    step_pos: int
    owner_pos: int | None
    value: float
    reason: str


def canonical_arguments(arguments: str) -> str:
    """Arguments as canonical JSON, so that key order and spacing do not make two calls differ."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:  # redaction may have left text that is not JSON: compare it as it is
        return arguments


def _call_key(call: Mapping[str, Any]) -> tuple[str, str]:
    return str(call["name"]), canonical_arguments(str(call["arguments"]))


def _message_signals(
    message: Mapping[str, Any], rules: AirRules, seen_calls: set[tuple[str, str]]
) -> Iterator[tuple[float, str]]:
    """The rules one message fires; ``seen_calls`` collects every tool call so far in the trajectory."""
    content = message["content"]
    kind = content_kind(content)
    if kind == "tool_response":
        value = rules.for_status(str(content["status"]))
        if value is not None:
            yield value, f"tool_{content['status']}:{content['name']}"
    elif kind == "tool_call":
        key = _call_key(content)
        if key in seen_calls:
            yield rules.repeated_call, f"repeated_call:{content['name']}"
        seen_calls.add(key)


def _signals(view: TrajectoryView, rules: AirRules) -> Iterator[_Signal]:
    """Every fired rule in trajectory order, with the LLM step that caused it.

    A message's cause is the latest assistant message at or before it. A turn's error flag belongs
    to the turn's own LLM call when the turn has one (the call failed), else to the latest before it:
    both are the latest assistant message by the end of the turn.
    """
    seen_calls: set[tuple[str, str]] = set()
    owner: int | None = None
    for pos, step in enumerate(view.steps):
        for message in step.messages:
            if message["role"] == "assistant":
                owner = pos
            for value, reason in _message_signals(message, rules, seen_calls):
                yield _Signal(pos, owner, value, reason)
        if step.error:
            yield _Signal(pos, owner, rules.turn_error, "turn_error")


def _collect(steps: Iterable[tuple[int, Step]], signals: Iterable[tuple[int, _Signal]]) -> list[TurnAir]:
    """One TurnAir per (position, step), summing the signals keyed by that position, in order."""
    by_pos: defaultdict[int, list[_Signal]] = defaultdict(list)
    for pos, signal in signals:
        by_pos[pos].append(signal)
    return [
        TurnAir(step.turn_index, sum(s.value for s in by_pos[pos]), tuple(s.reason for s in by_pos[pos]))
        for pos, step in steps
    ]


def air_rewards(view: TrajectoryView, rules: AirRules) -> list[TurnAir]:
    """AIR per turn, in ``view.steps`` order: each signal counts for the turn it appears in."""
    signals = ((s.step_pos, s) for s in _signals(view, rules))
    return _collect(enumerate(view.steps), signals)


def air_per_llm_step(view: TrajectoryView, rules: AirRules) -> list[TurnAir]:
    """AIR per LLM call (turn with an assistant message), in order: the rewards credit assignment uses.

    Each signal counts for the LLM call that caused it: tool responses, repeated calls and turn
    errors observed after an LLM call and before the next one belong to it, which is how the
    consequences of turn k's tool calls (arriving in turn k+1) reach turn k. Signals before the
    first LLM call (a user pasting a tool result, a failed non-LLM turn) belong to no action and
    are dropped.
    """
    signals = ((s.owner_pos, s) for s in _signals(view, rules) if s.owner_pos is not None)
    llm_steps = ((pos, step) for pos, step in enumerate(view.steps) if step.is_llm_call)
    return _collect(llm_steps, signals)
