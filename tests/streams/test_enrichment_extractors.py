"""Extractors: the heuristic one on a realistic trajectory, the LLM one against a real local HTTP server.

No Kafka here: trajectories are built from encoded turn events, as the assembly stage would hand them on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import openai
import pytest

from tests.support.openai_server import HttpError, OpenAIServer, Reply, Stall, malformed, openai_server_fixture  # noqa: F401
from trajstream.assembled import Step, TrajectoryView
from trajstream.errors import ConfigurationError
from trajstream.settings import Settings
from trajstream.streams.enrichment.heuristic import HeuristicExtractor
from trajstream.streams.enrichment.llm import (
    PROMPTS,
    RESPONSE_SCHEMA,
    EnrichmentError,
    LLMExtractor,
    backoff_delay,
    build_extractor,
)
from trajstream.streams.enrichment.model import Decision, Extraction, failed_result_record, to_result_record
from trajstream.streams.enrichment.transcript import format_transcript
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, Text, ToolCall, ToolResponse, turn_record
from trajstream_sdk.schemas import ENRICHMENT_RESULT, TURN

TOOLS = ("lookup_order", "refund", "notify_customer", "transfer_to_billing")
MODEL = "test-model"


def _assistant(content: Any, **kw: Any) -> Message:
    return Message("assistant", content, available_tools=TOOLS, **kw)


def refund_turns() -> list[list[Message]]:
    """A support agent refunds an order: a lookup, a refund that fails and is retried, a handoff, a reply."""
    return [
        [Message.text("user", "Hi, please refund order 1042. It arrived broken.")],
        [
            _assistant(ToolCall("lookup_order", "c1", {"order_id": 1042}), reasoning="I need the order first."),
            Message("tool", ToolResponse("lookup_order", "c1", {"order_id": 1042, "customer": "Jane Doe"})),
        ],
        [
            _assistant(ToolCall("refund", "c2", {"order_id": 1042, "amount": 99.5})),
            Message("tool", ToolResponse("refund", "c2", "payment provider down", "error")),
        ],
        [
            _assistant(ToolCall("refund", "c3", {"order_id": 1042, "amount": 99.5})),
            Message("tool", ToolResponse("refund", "c3", {"refund_id": "R-9"})),
        ],
        [
            _assistant(ToolCall("notify_customer", "c4", {"customer": "Jane Doe"})),
            _assistant(ToolCall("transfer_to_billing", "c5", {"ticket_id": "T-77"})),
            Message("tool", ToolResponse("notify_customer", "c4", "sent")),
            Message("tool", ToolResponse("transfer_to_billing", "c5", "accepted")),
        ],
        [
            _assistant(
                Text('Your refund for order 1042 is done. Billing follows up on ticket T-77 with the "FastPay" team.'),
                reasoning="Both calls worked; summarise.",
            )
        ],
        [Message.text("user", "my card is 4111 1111 1111 1111", persist=False)],
    ]


def make_view(
    codec: SingleObjectCodec,
    turns: list[list[Message]] | None = None,
    task: str = "Refund order 1042 for ACME Corp",
    trajectory_id: str = "traj-refund-1",
) -> TrajectoryView:
    encoded = [
        codec.encode(TURN, turn_record(trajectory_id, i, messages))
        for i, messages in enumerate(refund_turns() if turns is None else turns)
    ]
    record = {
        "trajectory_id": trajectory_id,
        "version": 2,
        "task_description": task,
        "outcome": "success",
        "final_reward": 1.0,
        "context": json.dumps({"entities": [{"name": "ACME Corp", "entity_type": "org", "entity_id": None}]}),
        "turns": encoded,
    }
    return TrajectoryView(record, tuple(Step(codec.decode(b, expect=TURN).record) for b in encoded))


@pytest.fixture
def view(codec: SingleObjectCodec) -> TrajectoryView:
    return make_view(codec)


GOOD = {
    "decisions": [
        {
            "decision_type": "tool_selection",
            "step_index": 1,
            "reasoning": "needs the order before refunding",
            "alternatives": ["refund"],
            "chosen_action": "call lookup_order",
            "confidence": 0.9,
            "implicit": False,
        },
        {
            "decision_type": "backtrack",
            "step_index": 3,
            "reasoning": "the provider was down",
            "alternatives": [],
            "chosen_action": "retry refund",
            "confidence": 0.6,
            "implicit": True,
        },
    ],
    "entities": [
        {
            "name": "order 1042",
            "entity_type": "order",
            "discovered_at_step": 0,
            "importance": "critical",
            "relationships": [{"target": "ACME Corp", "relation": "placed_by"}],
        }
    ],
}


def good_with(**changes: Any) -> dict[str, Any]:
    """GOOD with fields of its first decision changed (a value of None removes the field)."""
    decision = {k: v for k, v in {**GOOD["decisions"][0], **changes}.items() if v is not None}
    return {**GOOD, "decisions": [decision]}


class Sleeps:
    """Injected instead of asyncio.sleep: records back-off delays without waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


LLMFactory = Callable[..., LLMExtractor]


@pytest.fixture
async def llm(openai_server: OpenAIServer) -> AsyncIterator[LLMFactory]:
    """Builds LLM extractors against the test server (jitter pinned to its middle); closes them after the test."""
    made: list[LLMExtractor] = []

    def make(sleeps: Sleeps | None = None, **kw: Any) -> LLMExtractor:
        options: dict[str, Any] = {"timeout_s": 5.0, "max_retries": 2, "concurrency": 4} | kw
        client = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="test-key", max_retries=0)
        made.append(LLMExtractor(client, MODEL, "v1", sleep=sleeps or Sleeps(), rng=lambda: 0.5, **options))
        return made[-1]

    yield make
    for extractor in made:
        await extractor.aclose()


# --- heuristic ---------------------------------------------------------------------------------------


def by_step(extraction: Extraction) -> dict[int, list[Decision]]:
    steps: dict[int, list[Decision]] = {}
    for d in extraction.decisions:
        steps.setdefault(d.step_index, []).append(d)
    return steps


async def test_heuristic_reads_decisions_off_the_tool_calls(view: TrajectoryView) -> None:
    extraction = await HeuristicExtractor().extract(view)
    steps = by_step(extraction)

    (lookup,) = steps[1]
    assert (lookup.decision_type, lookup.chosen_action) == ("tool_selection", "call lookup_order")
    assert lookup.alternatives == ("refund", "notify_customer", "transfer_to_billing")
    assert lookup.confidence == 0.9  # it succeeded, nothing had failed yet
    assert lookup.reasoning == "I need the order first." and lookup.implicit is False  # stated

    (first_refund,) = steps[2]
    assert first_refund.decision_type == "tool_selection" and first_refund.implicit is True
    assert first_refund.confidence < lookup.confidence  # it failed

    (retry,) = steps[3]
    assert (retry.decision_type, retry.chosen_action) == ("backtrack", "call refund")
    assert "after it failed at step 2" in retry.reasoning and "same arguments" in retry.reasoning
    assert retry.confidence < 0.9  # succeeded, but after an error

    assert [(d.decision_type, d.chosen_action) for d in steps[4]] == [
        ("sequencing", "call notify_customer, then transfer_to_billing"),
        ("tool_selection", "call notify_customer"),
        ("delegation", "call transfer_to_billing"),
    ]
    (reply,) = steps[5]
    assert reply.decision_type == "reasoning" and reply.reasoning == "Both calls worked; summarise."
    assert reply.implicit is False
    assert 6 not in steps and 0 not in steps  # user turns decide nothing
    assert all(0.0 <= d.confidence <= 1.0 for d in extraction.decisions)


async def test_heuristic_finds_entities_with_steps_importance_and_links(view: TrajectoryView) -> None:
    entities = {e.name: e for e in (await HeuristicExtractor().extract(view)).entities}

    acme = entities["ACME Corp"]  # from the start context, and named in the task
    assert (acme.entity_type, acme.importance, acme.discovered_at_step) == ("org", "critical", 0)

    order = entities["order 1042"]  # prose and tool arguments agree on one name
    assert (order.entity_type, order.importance, order.discovered_at_step) == ("order", "critical", 0)
    assert {(r.target, r.relation) for r in order.relationships} >= {
        ("lookup_order", "argument_of"),
        ("refund", "argument_of"),
    }

    jane = entities["Jane Doe"]  # returned at step 1, passed on at step 4
    assert (jane.entity_type, jane.discovered_at_step, jane.importance) == ("person", 1, "relevant")
    assert ("notify_customer", "argument_of") in {(r.target, r.relation) for r in jane.relationships}

    ticket = entities["ticket T-77"]
    assert (ticket.discovered_at_step, ticket.importance) == (4, "relevant")
    assert ("transfer_to_billing", "argument_of") in {(r.target, r.relation) for r in ticket.relationships}

    fastpay = entities["FastPay"]  # quoted once, in the last reply
    assert (fastpay.discovered_at_step, fastpay.importance) == (5, "peripheral")

    # Sentence-opening words are not names, and redacted content yields nothing.
    assert not {"Hi", "It", "Your", "Billing", "4111"} & set(entities)


async def test_heuristic_is_deterministic_and_says_it_is_heuristic(codec: SingleObjectCodec) -> None:
    # Two separately built copies: new message ids and timestamps, the same content.
    first = await HeuristicExtractor().extract(make_view(codec))
    second = await HeuristicExtractor().extract(make_view(codec))
    assert replace(first, latency_ms=0) == replace(second, latency_ms=0)
    assert first.decisions and first.entities
    assert (first.extractor, first.prompt_version, first.attempts) == ("heuristic", "heuristic-v2", 1)
    assert (first.input_tokens, first.output_tokens) == (None, None)


# --- transcript ----------------------------------------------------------------------------------------


def test_transcript_is_numbered_compact_and_redacted(view: TrajectoryView) -> None:
    lines = format_transcript(view, 24000).splitlines()
    assert lines[0] == "task: Refund order 1042 for ACME Corp"
    assert "[step 0] user: Hi, please refund order 1042. It arrived broken." in lines
    assert "[step 1] assistant: call lookup_order(order_id=1042)" in lines
    assert "[step 1] assistant (reasoning): I need the order first." in lines
    assert "[step 2] tool: refund -> error: payment provider down" in lines
    assert "[step 6] user: [redacted: persist=false]" in lines
    assert not any("4111" in line for line in lines)
    assert format_transcript(view, 24000) == format_transcript(view, 24000)


def test_transcript_of_a_huge_trajectory_fits_its_budget(codec: SingleObjectCodec) -> None:
    turns = [[Message.text("user", f"message {i} " + "x" * 5000)] for i in range(300)]
    view = make_view(codec, turns)
    text = format_transcript(view, 4000)
    assert len(text) <= 4000
    lines = text.splitlines()
    assert lines[0].startswith("task: ")  # the beginning is kept...
    assert lines[-1].startswith("[step 299] user: message 299 ")  # ...and so is the end
    assert any(line.startswith("[... ") and "lines omitted" in line for line in lines)
    assert all(len(line) <= 1100 for line in lines)  # each message was clipped, saying by how much
    assert "chars]" in lines[-1]


# --- result records -----------------------------------------------------------------------------------


async def test_result_records_encode_with_the_enrichment_result_schema(
    view: TrajectoryView, codec: SingleObjectCodec
) -> None:
    extraction = await HeuristicExtractor().extract(view)
    ok = codec.decode(codec.encode(ENRICHMENT_RESULT, to_result_record(extraction, "traj-refund-1", 2))).record
    assert (ok["status"], ok["extractor"], ok["trajectory_version"], ok["error"]) == ("ok", "heuristic", 2, None)
    assert [d["decision_type"] for d in ok["decisions"]] == [d.decision_type for d in extraction.decisions]
    assert [e["name"] for e in ok["entities"]] == [e.name for e in extraction.entities]
    assert ok["entities"][1]["relationships"][0] == {"target": "lookup_order", "relation": "argument_of"}

    failed = failed_result_record("traj-refund-1", 2, "openai:m", "v1", "timed out after 3 attempts of 2.0s", 3, 6100)
    back = codec.decode(codec.encode(ENRICHMENT_RESULT, failed)).record
    assert (back["status"], back["error"], back["attempts"], back["latency_ms"]) == (
        "failed",
        "timed out after 3 attempts of 2.0s",
        3,
        6100,
    )
    assert back["decisions"] == [] and back["entities"] == []


# --- LLM extractor ------------------------------------------------------------------------------------


async def test_llm_parses_structured_output_and_sends_schema_and_prompt(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView
) -> None:
    openai_server.script([Reply(GOOD, prompt_tokens=321, completion_tokens=45)])
    extraction = await llm().extract(view)

    assert (extraction.extractor, extraction.prompt_version, extraction.attempts) == ("openai:test-model", "v1", 1)
    assert (extraction.input_tokens, extraction.output_tokens) == (321, 45)
    assert [(d.decision_type, d.step_index) for d in extraction.decisions] == [("tool_selection", 1), ("backtrack", 3)]
    assert extraction.decisions[0].alternatives == ("refund",)
    (order,) = extraction.entities
    assert (order.name, order.importance, order.relationships[0].target) == ("order 1042", "critical", "ACME Corp")

    (request,) = openai_server.requests
    assert request.body["model"] == MODEL
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "trajectory_enrichment"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"] == RESPONSE_SCHEMA
    system, user = request.messages
    assert (system["role"], system["content"]) == ("system", PROMPTS["v1"])
    assert request.headers["x-trajstream-prompt-version"] == "v1"
    assert user["role"] == "user" and user["content"] == format_transcript(view, 24000)


async def test_llm_retries_malformed_output_and_sums_tokens(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView
) -> None:
    openai_server.script([malformed(), Reply(GOOD)])
    sleeps = Sleeps()
    extraction = await llm(sleeps).extract(view)
    assert extraction.attempts == 2 and len(openai_server.requests) == 2
    assert (extraction.input_tokens, extraction.output_tokens) == (200, 40)  # both attempts were paid for
    assert sleeps.delays == [backoff_delay(1, lambda: 0.5)]


async def test_llm_gives_up_on_output_that_stays_malformed(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView
) -> None:
    openai_server.script([malformed(), Reply(good_with(decision_type="guess")), malformed("[1, 2")])
    sleeps = Sleeps()
    with pytest.raises(EnrichmentError) as caught:
        await llm(sleeps, max_retries=2).extract(view)
    error = caught.value
    assert error.attempts == 3 and len(openai_server.requests) == 3
    assert str(error).startswith("model output is not valid JSON: ")
    assert "gave up after 3 attempts" in str(error) and "decisions[0].decision_type" in str(error)
    assert sleeps.delays == [0.375, 0.75]  # exponential back-off, between attempts only


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (good_with(decision_type="guess"), "decisions[0].decision_type: Input should be 'tool_selection'"),
        (good_with(confidence=1.5), "decisions[0].confidence: Input should be less than or equal to 1"),
        (good_with(chosen_action=None), "decisions[0].chosen_action: Field required"),
        (good_with(step_index="1"), "decisions[0].step_index: Input should be a valid integer"),
        (good_with(step_index=7), "names step 7 at decisions[0].step_index, but the trajectory's steps are 0-6"),
        ({"decisions": []}, "entities: Field required"),
    ],
    ids=["decision_type", "confidence", "missing", "string-index", "step-out-of-range", "no-entities"],
)
async def test_llm_rejects_schema_violations(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView, output: dict[str, Any], problem: str
) -> None:
    openai_server.script([Reply(output)])
    with pytest.raises(EnrichmentError, match=r"does not match the schema|names step") as caught:
        await llm(max_retries=0).extract(view)
    assert problem in str(caught.value) and caught.value.attempts == 1


async def test_llm_times_out_each_attempt(openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView) -> None:
    openai_server.script([Stall(1.0, then=Reply(GOOD))] * 3)
    started = time.perf_counter()
    with pytest.raises(EnrichmentError) as caught:
        await llm(timeout_s=0.3, max_retries=2).extract(view)
    assert str(caught.value) == "timed out after 3 attempts of 0.3s"
    assert caught.value.attempts == 3 and len(openai_server.requests) == 3
    assert 900 <= caught.value.latency_ms < 2500
    assert time.perf_counter() - started < 2.5  # no attempt waited for the stalled answer


async def test_llm_retries_server_errors_and_rate_limits(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView
) -> None:
    openai_server.script([HttpError(500), HttpError(429, retry_after=3), Reply(GOOD)])
    sleeps = Sleeps()
    extraction = await llm(sleeps).extract(view)
    assert extraction.attempts == 3 and len(extraction.decisions) == 2
    assert sleeps.delays == [0.375, 3.0]  # the rate limit's Retry-After outweighs the back-off


async def test_llm_does_not_retry_a_bad_request(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView
) -> None:
    openai_server.script([HttpError(400, "unknown model"), Reply(GOOD)])
    with pytest.raises(EnrichmentError, match=r"^HTTP 400: .*unknown model.* \(not retried\)$") as caught:
        await llm().extract(view)
    assert caught.value.attempts == 1 and len(openai_server.requests) == 1


async def test_llm_reports_every_kind_of_failure_it_gave_up_on(
    openai_server: OpenAIServer, llm: LLMFactory, view: TrajectoryView
) -> None:
    openai_server.script([HttpError(503, "overloaded"), Stall(1.0), Reply(good_with(step_index=99))])
    with pytest.raises(EnrichmentError) as caught:
        await llm(timeout_s=0.3).extract(view)
    message = str(caught.value)
    assert message.startswith("model output names step 99")
    assert "earlier: HTTP 503: overloaded; timed out after 0.3s" in message


async def test_llm_bounds_calls_in_flight(
    openai_server: OpenAIServer, llm: LLMFactory, codec: SingleObjectCodec
) -> None:
    openai_server.script([], default=Reply(GOOD, delay_s=0.15))
    extractor = llm(concurrency=2)
    views = [make_view(codec, trajectory_id=f"traj-{i}") for i in range(6)]
    results = await asyncio.gather(*(extractor.extract(v) for v in views))
    assert [r.attempts for r in results] == [1] * 6 and len(openai_server.requests) == 6
    assert openai_server.max_in_flight == 2  # never more than the limit, and the limit was used


async def test_llm_retries_when_nothing_listens(view: TrajectoryView) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    sleeps = Sleeps()
    extractor = LLMExtractor(client, MODEL, "v1", 2.0, 1, 1, sleep=sleeps)
    try:
        with pytest.raises(EnrichmentError, match=r"^connection failed .*gave up after 2 attempts") as caught:
            await extractor.extract(view)
    finally:
        await extractor.aclose()
    assert caught.value.attempts == 2 and len(sleeps.delays) == 1


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap() -> None:
    assert [backoff_delay(n, lambda: 0.0) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert [backoff_delay(n, lambda: 1.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_delay(10, lambda: 1.0) == 8.0 and backoff_delay(100, lambda: 0.0) == 4.0


async def test_build_extractor_picks_the_llm_only_when_configured(
    openai_server: OpenAIServer, view: TrajectoryView
) -> None:
    assert isinstance(build_extractor(Settings(llm_base_url=None)), HeuristicExtractor)

    settings = Settings(llm_base_url=openai_server.base_url, llm_model="m-1", llm_timeout_s=2.0, llm_max_retries=1)
    extractor = build_extractor(settings)
    assert isinstance(extractor, LLMExtractor) and extractor.name == "openai:m-1"
    assert extractor.client.max_retries == 0 and extractor.max_retries == 1 and extractor.timeout_s == 2.0
    openai_server.script([Reply(GOOD)])
    try:
        assert (await extractor.extract(view)).extractor == "openai:m-1"  # the factory's client really works
    finally:
        await extractor.aclose()
    assert openai_server.requests[0].body["model"] == "m-1"

    with pytest.raises(ConfigurationError, match="unknown enrichment prompt version 'v0'"):
        build_extractor(settings.model_copy(update={"enrichment_prompt_version": "v0"}))
