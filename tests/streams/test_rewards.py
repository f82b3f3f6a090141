"""Reward functions, their registry and the RULER-style judge (no Kafka; the judge talks to a local HTTP server)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from trajstream.assembled import Step, TrajectoryView
from trajstream.errors import ConfigurationError
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.streams.scoring.rewards import (
    REWARD_FUNCTIONS,
    JudgeError,
    entity_f1,
    episode_reward,
    get_reward_function,
    ruler_judge,
    score,
    transcript,
)
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ToolCall, ToolResponse, turn_record, utcnow
from trajstream_sdk.schemas import SchemaCatalog

CODEC = SingleObjectCodec(SchemaCatalog.from_directory(PROJECT_ROOT / "schemas"))
SETTINGS = Settings()  # outcome weight 0.6, entity weight 0.4, judge weight 0.5


def trajectory(
    task: str = "Summarise ACME revenue for Q3 2024",
    *,
    outcome: str = "success",
    final_reward: float | None = None,
    context_entities: tuple[str, ...] = (),
    trajectory_id: str | None = None,
) -> TrajectoryView:
    """A small trajectory read back from an encoded AssembledTrajectory."""
    tid = trajectory_id or str(uuid.uuid4())
    turns = [
        turn_record(tid, 0, [Message.text("user", task)]),
        turn_record(tid, 1, [Message("assistant", ToolCall("search_reports", "c1", {"q": "acme q3"}))]),
        turn_record(
            tid,
            2,
            [
                Message("tool", ToolResponse("search_reports", "c1", {"revenue": "12M"})),
                Message.text("assistant", "ACME revenue in Q3 2024 was 12M."),
            ],
        ),
    ]
    context = {
        "referrer": None,
        "user": None,
        "entities": [{"name": n, "entity_type": "org"} for n in context_entities],
    }
    record = {
        "trajectory_id": tid,
        "version": 1,
        "emitted_at": utcnow(),
        "reason": "ended",
        "task_description": task,
        "context": json.dumps(context),
        "outcome": outcome,
        "final_reward": final_reward,
        "turns": [CODEC.encode("turn", t) for t in turns],
        "event_count": 5,
    }
    return TrajectoryView.from_bytes(CODEC.encode("assembled_trajectory", record), CODEC)


def enrichment(*names: str, status: str = "ok") -> dict[str, Any]:
    entities = [
        {"name": n, "entity_type": "org", "discovered_at_step": 1, "importance": "relevant", "relationships": []}
        for n in names
    ]
    return {"status": status, "decisions": [], "entities": entities}


# --- outcome and registry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "final_reward", "expected"),
    [
        ("success", None, 1.0),
        ("partial", None, 0.5),
        ("failure", None, 0.0),
        ("abandoned", None, 0.0),
        ("error", None, 0.0),
        ("success", 0.3, 0.3),
        ("failure", -1.0, -1.0),
    ],
)
def test_episode_reward_uses_final_reward_else_the_outcome(
    outcome: str, final_reward: float | None, expected: float
) -> None:
    view = trajectory(outcome=outcome, final_reward=final_reward)
    assert episode_reward(view) == expected
    result = score(view, None, "outcome", SETTINGS)
    assert result.reward == expected
    assert result.reward_function == "outcome@1"
    assert [(c.name, c.value, c.weight) for c in result.components] == [("outcome", expected, 1.0)]


def test_unknown_reward_function_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"'nope'.*entity_aware, outcome"):
        get_reward_function("nope")
    with pytest.raises(ConfigurationError):
        score(trajectory(), None, "nope", SETTINGS)


def test_registry_holds_named_versioned_functions() -> None:
    assert set(REWARD_FUNCTIONS) == {"outcome", "entity_aware"}
    for name, function in REWARD_FUNCTIONS.items():
        assert function.name == name and function.version
        assert get_reward_function(name) is function


# --- entity_aware ---------------------------------------------------------------------------


def test_entity_aware_hand_worked_example() -> None:
    # Expected: the context's "ACME revenue" and "Q3 2024", plus any extracted name the task mentions
    # ("Q3 2024" again). Extracted: "ACME sales" (wrong), "q3  2024" (right, spelled differently), "Bob".
    view = trajectory(context_entities=("ACME revenue", "Q3 2024"))
    result = score(view, enrichment("ACME sales", "q3  2024", "Bob"), "entity_aware", SETTINGS)
    # precision 1/3, recall 1/2, F1 = 2 * (1/6) / (5/6) = 0.4; reward 0.6 * 1.0 + 0.4 * 0.4 = 0.76
    assert result.reward == pytest.approx(0.76)
    assert result.reward_function == "entity_aware@1"
    outcome, entity = result.components
    assert (outcome.name, outcome.value, outcome.weight) == ("outcome", 1.0, 0.6)
    assert (entity.name, entity.weight) == ("entity_f1", 0.4)
    assert entity.value == pytest.approx(0.4)
    assert entity.detail is not None
    detail = json.loads(entity.detail)
    assert detail["precision"] == pytest.approx(1 / 3) and detail["recall"] == pytest.approx(0.5)
    assert detail["expected"] == ["acme revenue", "q3 2024"]


def test_entities_named_in_the_task_are_expected_without_context() -> None:
    view = trajectory("Compare ACME and Globex revenue")
    result = score(view, enrichment("ACME", "Globex", "Initech", "Acm"), "entity_aware", SETTINGS)
    # expected {acme, globex} ("acm" is no whole word of the task): precision 2/4, recall 1, F1 2/3
    assert result.components[1].value == pytest.approx(2 / 3)
    assert result.reward == pytest.approx(0.6 + 0.4 * 2 / 3)
    # Globex was not extracted, so nothing says it was expected: F1 1, and a partial outcome gives 0.5
    partial = trajectory("Compare ACME and Globex revenue", outcome="partial")
    assert score(partial, enrichment("ACME"), "entity_aware", SETTINGS).reward == pytest.approx(0.6 * 0.5 + 0.4)


def test_entity_weights_come_from_settings() -> None:
    view = trajectory(context_entities=("ACME revenue", "Q3 2024"), outcome="failure")
    settings = Settings(reward_outcome_weight=0.2, reward_entity_weight=0.8)
    result = score(view, enrichment("ACME revenue", "Q3 2024"), "entity_aware", settings)
    assert result.reward == pytest.approx(0.8)  # 0.2 * 0 + 0.8 * F1 1.0
    assert [c.weight for c in result.components] == [0.2, 0.8]


@pytest.mark.parametrize(
    ("extracted", "status", "rule"),
    [
        (("Bob",), "ok", "no_expected_entities"),
        ((), "ok", "no_expected_entities"),
        (("ACME",), "failed", "no_enrichment"),
    ],
)
def test_without_expected_entities_the_outcome_takes_both_weights(
    extracted: tuple[str, ...], status: str, rule: str
) -> None:
    view = trajectory("Say hello", outcome="partial")  # the task names no entity, the context has none
    result = score(view, enrichment(*extracted, status=status), "entity_aware", SETTINGS)
    assert result.reward == pytest.approx(0.5)  # (0.6 + 0.4) * 0.5
    outcome, entity = result.components
    assert outcome.weight == pytest.approx(1.0) and entity.weight == 0.0
    assert entity.detail is not None and json.loads(entity.detail)["rule"] == rule


def test_no_enrichment_at_all_scores_the_outcome() -> None:
    result = score(trajectory(context_entities=("ACME",), outcome="success"), None, "entity_aware", SETTINGS)
    assert result.reward == pytest.approx(1.0)
    assert result.components[1].detail is not None and "no_enrichment" in result.components[1].detail


def test_entity_f1_edges() -> None:
    assert entity_f1(set(), {"a"}) == (0.0, 0.0, 0.0)
    assert entity_f1({"a"}, {"a"}) == (1.0, 1.0, 1.0)
    assert entity_f1({"a", "b"}, {"c"}) == (0.0, 0.0, 0.0)


def test_components_fit_the_scored_trajectory_schema() -> None:
    view = trajectory(context_entities=("ACME revenue",))
    result = score(view, enrichment("ACME revenue"), "entity_aware", SETTINGS, judge_score=0.9, judge_rationale="ok")
    record = {
        "trajectory_id": view.trajectory_id,
        "trajectory_version": 1,
        "scored_at": utcnow(),
        "task_key": view.task_key,
        "outcome": view.outcome,
        "reward": result.reward,
        "reward_function": result.reward_function,
        "components": result.component_records(),
        "trajectory": b"",
    }
    decoded = CODEC.decode(CODEC.encode("scored_trajectory", record)).record
    assert [c["name"] for c in decoded["components"]] == ["outcome", "entity_f1", "ruler_judge"]


# --- judge blending -------------------------------------------------------------------------


def test_a_judge_score_is_blended_with_the_judge_weight() -> None:
    view = trajectory(context_entities=("ACME revenue", "Q3 2024"))
    extracted = enrichment("ACME sales", "Q3 2024", "Bob")
    result = score(view, extracted, "entity_aware", SETTINGS, judge_score=0.2, judge_rationale="missed the metric")
    assert result.reward == pytest.approx(0.5 * 0.76 + 0.5 * 0.2)
    assert [c.weight for c in result.components] == pytest.approx([0.3, 0.2, 0.5])
    judge = result.components[-1]
    assert (judge.name, judge.value) == ("ruler_judge", 0.2)
    assert judge.detail is not None and json.loads(judge.detail) == {"rationale": "missed the metric"}
    heavy = score(view, extracted, "entity_aware", Settings(reward_judge_weight=1.0), judge_score=0.2)
    assert heavy.reward == pytest.approx(0.2)


def test_a_judge_score_out_of_range_is_refused() -> None:
    with pytest.raises(JudgeError):
        score(trajectory(), None, "outcome", SETTINGS, judge_score=1.5)


# --- RULER judge over a real HTTP server ----------------------------------------------------


@dataclass
class FakeJudgeServer:
    """A local chat-completions endpoint that answers every request with ``content`` and keeps the requests."""

    content: str | None = ""
    refusal: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def judge_server() -> Iterator[FakeJudgeServer]:
    state = FakeJudgeServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            state.requests.append(body)
            reply = json.dumps(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": state.content, "refusal": state.refusal},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def group() -> list[TrajectoryView]:
    return [trajectory(trajectory_id=f"traj-{i}", outcome=o) for i, o in enumerate(("success", "failure", "partial"))]


def answer(*entries: tuple[str, Any]) -> str:
    return json.dumps({"scores": [{"trajectory_id": i, "score": s, "rationale": f"why {i}"} for i, s in entries]})


async def judge(server: FakeJudgeServer, views: list[TrajectoryView]) -> list[float]:
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="test", max_retries=0)
    try:
        return await ruler_judge(views, client, "judge-model")
    finally:
        await client.close()


async def test_ruler_judge_scores_the_group_in_one_structured_request(judge_server: FakeJudgeServer) -> None:
    judge_server.content = answer(("traj-2", 0.5), ("traj-0", 0.9), ("traj-1", 0))  # any order
    assert await judge(judge_server, group()) == [0.9, 0.0, 0.5]  # in the order of the views
    [request] = judge_server.requests
    assert request["model"] == "judge-model"
    assert request["response_format"]["type"] == "json_schema"
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["scores"]["items"]["required"] == ["trajectory_id", "score", "rationale"]
    prompt = request["messages"][-1]["content"]
    assert all(f'id="traj-{i}"' in prompt for i in range(3))
    assert "Summarise ACME revenue for Q3 2024" in prompt and "search_reports" in prompt
    assert "12M" in prompt  # the tool result is in the transcript


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (answer(("traj-0", 0.9), ("traj-1", 0.1)), "missing \\['traj-2'\\]"),
        (answer(("traj-0", 0.9), ("traj-1", 1.2), ("traj-2", 0.5)), "traj-1: score 1.2"),
        (answer(("traj-0", -0.1), ("traj-1", 0.2), ("traj-2", 0.5)), "traj-0: score -0.1"),
        (answer(("traj-0", 0.9), ("traj-1", 0.1), ("traj-2", 0.5), ("traj-9", 0.5)), "unknown \\['traj-9'\\]"),
        (answer(("traj-0", 0.9), ("traj-0", 0.8), ("traj-1", 0.1), ("traj-2", 0.5)), "traj-0 twice"),
        (answer(("traj-0", "high"), ("traj-1", 0.1), ("traj-2", 0.5)), "traj-0: score 'high'"),
        ("the first one is best", "not the expected JSON"),
        ("", "no content"),
    ],
)
async def test_ruler_judge_refuses_a_bad_answer(judge_server: FakeJudgeServer, content: str, message: str) -> None:
    judge_server.content = content
    with pytest.raises(JudgeError, match=message):
        await judge(judge_server, group())
    assert len(judge_server.requests) == 1  # the request did go out: the answer was refused


async def test_ruler_judge_reports_a_refusal(judge_server: FakeJudgeServer) -> None:
    judge_server.content, judge_server.refusal = None, "I cannot grade these."
    with pytest.raises(JudgeError, match="refused: I cannot grade these"):
        await judge(judge_server, group())


async def test_ruler_judge_needs_one_task(judge_server: FakeJudgeServer) -> None:
    views = [*group(), trajectory("Another task", trajectory_id="traj-x")]
    with pytest.raises(ValueError, match="one task"):
        await judge(judge_server, views)
    assert judge_server.requests == []


def test_the_judge_reads_content_as_every_stage_renders_it() -> None:
    assert transcript(trajectory()).splitlines() == [
        "[turn 0] user: Summarise ACME revenue for Q3 2024",
        '[turn 1] assistant: call search_reports(q="acme q3")',
        '[turn 2] tool: search_reports -> success: {"revenue":"12M"}',
        "[turn 2] assistant: ACME revenue in Q3 2024 was 12M.",
    ]


def test_a_long_attempt_keeps_its_end_for_the_judge() -> None:
    base = trajectory()
    turns = [
        turn_record(base.trajectory_id, i, [Message.text("assistant", f"step {i} " + "x" * 2000)]) for i in range(40)
    ]
    steps = tuple(Step(CODEC.decode(CODEC.encode("turn", t), expect="turn").record) for t in turns)
    text = transcript(TrajectoryView(base.record, steps))
    lines = text.splitlines()
    assert len(text) <= 8000
    assert lines[0].startswith("[turn 0] assistant: step 0 ") and lines[-1].startswith("[turn 39] assistant: step 39 ")
    assert all(len(line) <= 400 + len("[turn 39] assistant: ") for line in lines)  # each message clipped
