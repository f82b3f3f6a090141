"""AIR intermediate rewards and credit assignment over LLM calls (pure: no Kafka)."""

from __future__ import annotations

import itertools
import json
import math
import random
import uuid
from typing import Any

import pytest

from trajstream.assembled import TrajectoryView
from trajstream.errors import ConfigurationError
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.streams.scoring.air import AirRules, air_per_llm_step, air_rewards, canonical_arguments
from trajstream.streams.scoring.credit import (
    DECISION,
    DECISION_FALLBACK,
    METHODS,
    air_shaped,
    assign,
    decision_based,
    discounted,
    to_record,
    uniform,
)
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ToolCall, ToolResponse, ToolStatus, turn_record, utcnow
from trajstream_sdk.schemas import SchemaCatalog

CODEC = SingleObjectCodec(SchemaCatalog.from_directory(PROJECT_ROOT / "schemas"))
RULES = AirRules()  # defaults: success 0.1, error -0.1, timeout -0.1, repeated -0.05, turn error -0.1
TOL = 1e-9
STATUSES: tuple[ToolStatus, ...] = ("success", "error", "timeout")


def user(text: str) -> Message:
    return Message.text("user", text)


def say(text: str) -> Message:
    return Message.text("assistant", text)


def call(name: str, args: Any, call_id: str | None = None) -> Message:
    return Message("assistant", ToolCall(name, call_id or uuid.uuid4().hex[:8], args))


def result(name: str, status: ToolStatus = "success") -> Message:
    return Message("tool", ToolResponse(name, "c", {"ok": status == "success"}, status))


def trajectory(
    *turns: list[Message] | tuple[list[Message], bool],
    outcome: str = "success",
    final_reward: float | None = None,
) -> TrajectoryView:
    """A TrajectoryView read back from an encoded AssembledTrajectory; a turn is messages or (messages, error)."""
    tid = str(uuid.uuid4())
    encoded = []
    for i, turn in enumerate(turns):
        messages, error = turn if isinstance(turn, tuple) else (turn, False)
        encoded.append(CODEC.encode("turn", turn_record(tid, i, messages, error=error)))
    record = {
        "trajectory_id": tid,
        "version": 1,
        "emitted_at": utcnow(),
        "reason": "ended",
        "task_description": "Refund order 42",
        "outcome": outcome,
        "final_reward": final_reward,
        "turns": encoded,
        "event_count": len(turns) + 2,
    }
    return TrajectoryView.from_bytes(CODEC.encode("assembled_trajectory", record), CODEC)


# --- AIR ------------------------------------------------------------------------------------


def test_each_tool_status_adds_its_value_to_the_turn_it_appears_in() -> None:
    view = trajectory(
        [user("refund 42")],
        [call("lookup_order", {"id": 42}), call("refund", {"id": 42}), call("notify", {"id": 42})],
        [result("lookup_order"), result("refund", "error"), result("notify", "timeout"), say("sorry")],
    )
    air = air_rewards(view, RULES)
    assert [a.turn_index for a in air] == [0, 1, 2]
    assert air[0].reward == 0 and air[0].reasons == ()
    assert air[1].reward == 0 and air[1].reasons == ()
    assert air[2].reward == pytest.approx(0.1 - 0.1 - 0.1)
    assert air[2].reasons == ("tool_success:lookup_order", "tool_error:refund", "tool_timeout:notify")


def test_rule_values_come_from_settings() -> None:
    rules = AirRules.from_settings(
        Settings(
            air_tool_success=0.3, air_tool_error=-0.5, air_tool_timeout=-0.7, air_repeated_call=-0.2, air_turn_error=-1
        )
    )
    assert rules == AirRules(success=0.3, error=-0.5, timeout=-0.7, repeated_call=-0.2, turn_error=-1.0)
    view = trajectory(
        [call("refund", {"id": 1})],
        ([result("refund", "error"), call("refund", {"id": 1})], True),
        [result("refund", "timeout"), result("refund", "success"), say("done")],
    )
    assert [a.reward for a in air_rewards(view, rules)] == pytest.approx([0.0, -0.5 - 0.2 - 1.0, -0.7 + 0.3])


def test_default_rules_match_default_settings() -> None:
    assert AirRules.from_settings(Settings()) == RULES


def test_a_turn_with_its_error_flag_set_adds_turn_error() -> None:
    view = trajectory([say("hi")], ([say("oops")], True))
    air = air_rewards(view, RULES)
    assert [a.reward for a in air] == pytest.approx([0.0, -0.1])
    assert air[1].reasons == ("turn_error",)


def test_identical_calls_are_repeated_whatever_the_key_order() -> None:
    view = trajectory(
        [call("search", {"q": "acme", "limit": 5})],
        [call("search", {"limit": 5, "q": "acme"})],  # same call, keys reordered
        [call("search", {"q": "acme", "limit": 6})],  # different arguments
        [call("lookup", {"q": "acme", "limit": 5})],  # different tool
        [call("search", {"q": "acme", "limit": 5}), call("search", {"q": "acme", "limit": 5})],  # two more repeats
    )
    air = air_rewards(view, RULES)
    assert [a.reward for a in air] == pytest.approx([0.0, -0.05, 0.0, 0.0, -0.1])
    assert air[1].reasons == ("repeated_call:search",)
    assert air[4].reasons == ("repeated_call:search", "repeated_call:search")


def test_canonical_arguments_ignores_spacing_and_key_order_but_keeps_values() -> None:
    assert canonical_arguments('{"b": 1, "a": [1, 2]}') == canonical_arguments('{"a":[1,2],"b":1}')
    assert canonical_arguments('{"a": [2, 1]}') != canonical_arguments('{"a": [1, 2]}')
    assert canonical_arguments("not json [REDACTED]") == "not json [REDACTED]"


def attribution_view() -> TrajectoryView:
    return trajectory(
        [user("refund 42"), result("crm", "success")],  # turn 0: before any LLM call
        [call("lookup_order", {"id": 42})],  # 1
        [result("lookup_order"), call("refund", {"id": 42})],  # 2
        [result("refund", "error"), call("refund", {"id": 42})],  # 3: repeats its own call
        ([result("refund", "timeout")], True),  # 4: a failed turn without an LLM call
        ([say("could not refund")], True),  # 5: an LLM call whose own turn failed
    )


def test_per_turn_air_counts_each_signal_where_it_appears() -> None:
    air = air_rewards(attribution_view(), RULES)
    assert [a.turn_index for a in air] == [0, 1, 2, 3, 4, 5]
    assert [a.reward for a in air] == pytest.approx([0.1, 0.0, 0.1, -0.15, -0.2, -0.1])


def test_per_llm_step_air_credits_each_consequence_to_the_call_that_caused_it() -> None:
    air = air_per_llm_step(attribution_view(), RULES)
    assert [a.turn_index for a in air] == [1, 2, 3, 5]  # turns 0 and 4 are no LLM calls
    # Turn 1's lookup succeeded (seen in turn 2); turn 2's refund failed (seen in turn 3); turn 3 repeated
    # the refund, which timed out in turn 4, a turn that failed; turn 5 failed itself.
    assert [a.reward for a in air] == pytest.approx([0.1, -0.1, -0.05 - 0.1 - 0.1, -0.1])
    assert air[0].reasons == ("tool_success:lookup_order",)
    assert air[2].reasons == ("repeated_call:refund", "tool_timeout:refund", "turn_error")
    # The crm result in turn 0 came before any action: no LLM step gets it.
    assert all("tool_success:crm" not in a.reasons for a in air)


def test_results_in_the_same_turn_after_the_call_belong_to_that_call() -> None:
    view = trajectory([call("lookup", {}), result("lookup", "error")], [say("retrying")])
    assert [a.reward for a in air_per_llm_step(view, RULES)] == pytest.approx([-0.1, 0.0])


# --- credit methods -------------------------------------------------------------------------


def random_cases(seed: int, count: int = 400) -> list[tuple[float, list[float], float]]:
    """(final_reward, AIR per step, gamma): rewards include zero, negatives and large values."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        n = rng.randint(1, 15)
        reward = rng.choice([0.0, 1.0, -1.0, rng.uniform(-5, 5), rng.uniform(-1e-6, 1e-6), rng.uniform(-100, 100)])
        air = [rng.choice([0.0, 0.1, -0.1, rng.uniform(-2, 2)]) for _ in range(n)]
        gamma = rng.choice([1.0, rng.uniform(0.01, 1.0)])
        cases.append((reward, air, gamma))
    return cases


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_method_spreads_exactly_the_final_reward(seed: int) -> None:
    for reward, air, gamma in random_cases(seed):
        n = len(air)
        for credits in (uniform(reward, n), discounted(reward, n, gamma), air_shaped(reward, air)):
            assert len(credits) == n
            assert abs(sum(credits) - reward) <= TOL, (reward, air, gamma, credits)


def test_equal_air_gives_uniform_credits() -> None:
    for air_value in (0.0, 0.1, -0.3, -5.0):
        for reward in (1.0, -2.0, 0.0):
            assert air_shaped(reward, [air_value] * 4) == pytest.approx(uniform(reward, 4))


def test_air_shaped_hand_worked() -> None:
    # w = 1 + air for a positive reward: 1.1 and 0.9 of 2.0.
    assert air_shaped(1.0, [0.1, -0.1]) == pytest.approx([0.55, 0.45])
    # w = 1 - air for a negative reward: the failed step takes the larger share of the blame.
    assert air_shaped(-1.0, [0.1, -0.1]) == pytest.approx([-0.45, -0.55])
    # A weight below the floor is floored: the step keeps a sliver, the sum is still exact.
    floored = air_shaped(1.0, [-3.0, 0.0])
    assert 0 < floored[0] < 0.01 and sum(floored) == pytest.approx(1.0, abs=TOL)
    assert air_shaped(0.0, [0.5, -0.5]) == [0.0, 0.0]


def test_uniform_and_empty() -> None:
    assert uniform(1.0, 4) == pytest.approx([0.25] * 4)
    assert uniform(1.0, 0) == [] and discounted(1.0, 0, 0.9) == [] and air_shaped(1.0, []) == []


def test_discounted_gives_later_steps_more() -> None:
    assert discounted(1.75, 3, 0.5) == pytest.approx([0.25, 0.5, 1.0])  # weights 0.25, 0.5, 1 of 1.75
    credits = discounted(1.0, 6, 0.9)
    assert all(a < b for a, b in itertools.pairwise(credits))
    negative = discounted(-1.0, 6, 0.9)
    assert all(a > b for a, b in itertools.pairwise(negative))  # later steps take more blame
    assert discounted(1.0, 4, 1.0) == pytest.approx(uniform(1.0, 4))
    with pytest.raises(ValueError, match="gamma"):
        discounted(1.0, 3, 0.0)


# --- decision-based credit ------------------------------------------------------------------


def decision(step: int, kind: str, confidence: float, alternatives: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "decision_type": kind,
        "step_index": step,
        "reasoning": "",
        "alternatives": list(alternatives),
        "chosen_action": "x",
        "confidence": confidence,
        "implicit": False,
    }


def entity(name: str, step: int) -> dict[str, Any]:
    return {
        "name": name,
        "entity_type": "org",
        "discovered_at_step": step,
        "importance": "relevant",
        "relationships": [],
    }


def four_llm_steps() -> TrajectoryView:
    return trajectory(
        [user("compare ACME and Globex")],  # 0: no LLM call
        [call("search", {"q": "acme"})],  # 1
        [result("search"), call("search", {"q": "globex"})],  # 2
        [result("search"), call("search", {"q": "acme"})],  # 3
        [result("search"), say("ACME wins")],  # 4
    )


def test_decision_based_matches_the_seed_on_a_hand_worked_example() -> None:
    enrichment = {
        "decisions": [
            decision(1, "tool_selection", 0.9, ("guess",)),  # 0.1 + 0.1, + 2 entities * 0.05 = 0.30
            decision(2, "branching", 0.95),  # (0.1 + 1 entity * 0.05) * 1.5 = 0.225
            decision(3, "backtrack", 0.5, ("stop",)),  # 0.1 - 0.2 = -0.10
            decision(0, "reasoning", 0.99, ("a",)),  # turn 0 is no LLM call: ignored
        ],  # turn 4: no decision, 0
        "entities": [entity("ACME", 1), entity("Globex", 1), entity("ACME revenue", 2), entity("Initech", 4)],
    }
    # Raw [0.30, 0.225, -0.10, 0.0] sums to 0.425; a final reward of 0.85 doubles each.
    credits, method = decision_based(four_llm_steps(), enrichment, 0.85)
    assert method == DECISION
    assert credits == pytest.approx([0.6, 0.45, -0.2, 0.0])
    assert abs(sum(credits) - 0.85) <= TOL


def test_several_decisions_at_a_step_add_up_and_entities_count_once() -> None:
    enrichment = {
        "decisions": [
            decision(1, "tool_selection", 0.9),  # 0.1
            decision(1, "reasoning", 0.5, ("other",)),  # 0.1
            decision(2, "tool_selection", 0.9),  # 0.1
        ],
        "entities": [entity("ACME", 1), entity("ACME", 1)],  # one entity, listed twice: +0.05 once
    }
    credits, _ = decision_based(four_llm_steps(), enrichment, 0.35)
    assert credits == pytest.approx([0.25, 0.1, 0.0, 0.0])  # raw already sums to 0.35


@pytest.mark.parametrize(
    "enrichment",
    [
        {"decisions": [decision(1, "backtrack", 0.9), decision(3, "backtrack", 0.2)], "entities": []},
        {"decisions": [], "entities": [entity("ACME", 1)]},  # entities alone give no decision credit
        {},
        None,
    ],
)
def test_decision_based_falls_back_to_uniform_when_the_total_is_not_positive(
    enrichment: dict[str, Any] | None,
) -> None:
    credits, method = decision_based(four_llm_steps(), enrichment, -0.8)
    assert method == DECISION_FALLBACK
    assert credits == pytest.approx([-0.2] * 4)


def random_view(rng: random.Random) -> tuple[TrajectoryView, dict[str, Any]]:
    turns: list[list[Message] | tuple[list[Message], bool]] = []
    for i in range(rng.randint(0, 8)):
        messages = [result("t", rng.choice(STATUSES))] if rng.random() < 0.6 else []
        if rng.random() < 0.8:
            messages.append(call("t", {"x": rng.randint(0, 2)}) if rng.random() < 0.7 else say(f"step {i}"))
        turns.append((messages or [user("hello")], rng.random() < 0.15))
    kinds = ["tool_selection", "reasoning", "branching", "backtrack", "delegation", "sequencing"]
    enrichment = {
        "decisions": [
            decision(rng.randint(0, 8), rng.choice(kinds), rng.random(), ("a",) * rng.randint(0, 1))
            for _ in range(rng.randint(0, 6))
        ],
        "entities": [entity(f"e{k}", rng.randint(0, 8)) for k in range(rng.randint(0, 4))],
    }
    reward = rng.choice([None, 0.0, rng.uniform(-3, 3)])
    return trajectory(*turns, outcome=rng.choice(["success", "partial", "failure"]), final_reward=reward), enrichment


def test_every_assign_method_keeps_the_sum_and_one_step_per_llm_call() -> None:
    rng = random.Random(7)
    methods_seen = set()
    for _ in range(150):
        view, enrichment = random_view(rng)
        override = rng.choice([None, rng.uniform(-2, 2)])
        for method in METHODS:
            res = assign(view, method, override, RULES, rng.uniform(0.1, 1.0), enrichment)
            methods_seen.add(res.method)
            assert [s.turn_index for s in res.steps] == [s.turn_index for s in view.llm_steps]
            if res.steps:
                assert abs(sum(s.credit for s in res.steps) - res.final_reward) <= TOL
            expected = override if override is not None else view.final_reward
            if expected is not None:
                assert res.final_reward == expected
    assert {DECISION, DECISION_FALLBACK} <= methods_seen  # both decision branches were exercised


def test_assign_records_air_per_llm_step_and_final_reward_from_the_outcome() -> None:
    view = attribution_view()  # outcome success, no final_reward
    res = assign(view, "uniform", None, RULES, 0.9)
    assert res.method == "uniform" and res.final_reward == 1.0
    assert [s.turn_index for s in res.steps] == [1, 2, 3, 5]
    assert [s.air for s in res.steps] == pytest.approx([0.1, -0.1, -0.25, -0.1])
    assert res.steps[0].air_reasons == ("tool_success:lookup_order",)
    assert [s.credit for s in res.steps] == pytest.approx([0.25] * 4)
    shaped = assign(view, "air_shaped", None, RULES, 0.9)
    assert shaped.steps[0].credit > shaped.steps[1].credit > shaped.steps[2].credit


@pytest.mark.parametrize(("outcome", "final_reward", "expected"), [("partial", None, 0.5), ("failure", -0.3, -0.3)])
def test_assign_uses_the_trajectory_reward_when_none_is_given(
    outcome: str, final_reward: float | None, expected: float
) -> None:
    view = trajectory([say("a")], [say("b")], outcome=outcome, final_reward=final_reward)
    res = assign(view, "discounted", None, RULES, 1.0)
    assert res.final_reward == expected
    assert [s.credit for s in res.steps] == pytest.approx([expected / 2] * 2)


def test_no_llm_calls_give_no_steps() -> None:
    view = trajectory([user("hello")], [result("x", "error")])
    for method in METHODS:
        assert assign(view, method, 1.0, RULES, 0.9, {"decisions": []}).steps == []


def test_unknown_method_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="air_shaped"):
        assign(four_llm_steps(), "random", 1.0, RULES, 0.9)


def test_decision_based_alias_is_the_decision_method() -> None:
    enrichment = {"decisions": [decision(1, "tool_selection", 0.9)], "entities": []}
    res = assign(four_llm_steps(), "decision_based", 1.0, RULES, 0.9, enrichment)
    assert res.method == DECISION
    assert [s.credit for s in res.steps] == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_credit_record_round_trips_through_the_schema() -> None:
    res = assign(attribution_view(), "air_shaped", -1.0, RULES, 0.9)
    record = to_record(res, "tid-1", 3)
    decoded = CODEC.decode(CODEC.encode("credit_assignment", record), expect="credit_assignment").record
    assert decoded == record
    assert decoded["method"] == "air_shaped" and decoded["trajectory_version"] == 3
    assert decoded["steps"][2]["air_reasons"] == ["repeated_call:refund", "tool_timeout:refund", "turn_error"]
    assert math.isclose(sum(s["credit"] for s in decoded["steps"]), -1.0, abs_tol=TOL)
    json.dumps({k: v for k, v in decoded.items() if k != "created_at"})  # plain data, no stray objects
