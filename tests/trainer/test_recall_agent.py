"""The recall-using agent of benchmarks/context_learning.py decides from recall: over a corpus where past
outcomes point to the right tool it answers with it, over one where they point elsewhere it follows them, and
with nothing similar in the corpus it keeps the model's choice.

The corpus goes the way of the benchmark's, short of Kafka: events through the in-process streams (assembly,
heuristic enrichment, scoring), the Milvus sink's own rows into milvus-lite, questions through the data API's
``/predict`` over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka.structs import ConsumerRecord

from tests.support.env import free_port
from trajstream.consumers.api import build_app
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_sink import DecisionSink, TrajectorySink
from trajstream.consumers.milvus_store import connect
from trajstream.consumers.recall import Prediction, Recall
from trajstream.data_api import api_headers
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.topics import EVENTS_TOPIC
from trajstream.trainer.learn_env import DECOYS, TASKS
from trajstream.trainer.recall_agent import NEIGHBOURS, RecallAgent, choose
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import Message, end_record, start_record, turn_record

pytestmark = pytest.mark.integration  # milvus-lite and the MiniLM embedder (no broker)

REFUND = "i want my money back for a broken item"
RIGHT, DECOY = f"call {TASKS[REFUND]}", f"call {DECOYS[REFUND]}"
RIGHT_WINS, DECOY_WINS, NOBODY = "right-wins", "decoy-wins", "nobody"  # corpora, told apart by agent


def _events(codec: EventCodec, agent: str, task: str, answer: str, success: bool) -> list[tuple[str, bytes]]:
    """A trajectory as the demo's agents leave one: the request, the model's text answer, the outcome."""
    tid = str(uuid.uuid4())
    messages = [Message.text("user", task), Message.text("assistant", answer)]
    return [(EVENTS_TOPIC, codec.encode("trajectory_start", start_record(tid, task, agent_id=agent, domain="support"))),
            (EVENTS_TOPIC, codec.encode("turn", turn_record(tid, 0, messages, duration_ms=20))),
            (EVENTS_TOPIC, codec.encode("trajectory_end", end_record(tid, "success" if success else "failure",
                                                                     turn_count=1)))]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, codec: EventCodec) -> Iterator[tuple[Settings, Any, Embedder]]:
    """Two corpora in milvus-lite: in one the right tool succeeded and the decoy failed, in the other the
    reverse; as many trajectories of each answer as a prediction weighs, so that every neighbour of an answer
    is that answer (the two differ by one word: fewer would let the other's cases in), landed by the Milvus
    sink's own code."""
    home = tmp_path_factory.mktemp("recall-agent")
    settings = Settings(home=home, milvus_uri=str(home / "milvus.db"))
    pipeline = Pipeline(settings, codec)
    scored: list[bytes] = []
    for agent, winner in ((RIGHT_WINS, RIGHT), (DECOY_WINS, DECOY)):
        for answer in (RIGHT, DECOY):
            for _ in range(NEIGHBOURS):
                scored += pipeline.run(_events(codec, agent, REFUND, answer, answer == winner))
    client = connect(settings)
    embedder = Embedder()
    records = [ConsumerRecord("scored", 0, n, 0, 0, None, value, None, 0, len(value), ()) for n, value in
               enumerate(scored)]  # fmt: skip
    TrajectorySink(settings, client, embedder, codec).land(records)
    sink = DecisionSink(settings, client, embedder, codec)
    sink.land(records)
    assert sink.stats.decision_points == len(scored) == 4 * NEIGHBOURS
    yield settings, client, embedder
    client.close()


@pytest.fixture(scope="module")
async def api(corpus: tuple[Settings, Any, Embedder]) -> AsyncIterator[httpx.AsyncClient]:
    """The data API's routes over the corpus (no ClickHouse: ``/predict`` reads Milvus only)."""
    settings, client, embedder = corpus
    recall = Recall(settings, client, None, embedder)

    def no_clickhouse() -> Any:
        raise AssertionError("predict_outcome must not need ClickHouse")

    app = build_app(settings, lambda: recall, no_clickhouse, lambda: {"status": "ok"})
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=api_headers(settings),
                                 timeout=60) as http:  # fmt: skip
        yield http
    await runner.cleanup()


def _scripted(answers: list[str]) -> Any:
    """A served model that gives these answers in turn."""
    remaining = list(answers)

    async def ask(task: str) -> str:
        assert task == REFUND
        return remaining.pop(0)

    return ask


async def test_where_recall_shows_the_right_tool_succeeding_the_agent_answers_with_it(api: httpx.AsyncClient) -> None:
    choice = await RecallAgent(api, {"agent_id": RIGHT_WINS}).act(_scripted([DECOY, DECOY, RIGHT, DECOY]), REFUND)
    assert choice.model_answer == DECOY and choice.answer == RIGHT and choice.switched
    right, decoy = choice.predictions[RIGHT], choice.predictions[DECOY]
    assert right.p_success is not None and decoy.p_success is not None
    assert right.p_success > 0.9 and decoy.p_success < 0.1 and min(right.confidence, decoy.confidence) > 0.9


async def test_the_agent_keeps_a_right_first_answer(api: httpx.AsyncClient) -> None:
    choice = await RecallAgent(api, {"agent_id": RIGHT_WINS}).decide(REFUND, [RIGHT, DECOY, DECOY, DECOY])
    assert choice.answer == RIGHT and not choice.switched


async def test_the_agent_follows_recall_where_it_points_elsewhere(api: httpx.AsyncClient) -> None:
    """The decision comes from the outcomes recalled, not from the answers' words: reversed outcomes,
    reversed choice."""
    choice = await RecallAgent(api, {"agent_id": DECOY_WINS}).decide(REFUND, [RIGHT, DECOY, RIGHT, RIGHT])
    assert choice.answer == DECOY and choice.switched


async def test_with_nothing_recalled_the_agent_keeps_the_models_choice(api: httpx.AsyncClient) -> None:
    choice = await RecallAgent(api, {"agent_id": NOBODY}).decide(REFUND, [DECOY, RIGHT, RIGHT, RIGHT])
    assert choice.answer == DECOY and not choice.switched
    assert all(p.p_success is None and p.confidence == 0.0 for p in choice.predictions.values())


async def test_a_remembered_prediction_is_not_asked_again(api: httpx.AsyncClient) -> None:
    remembering, forgetting = (RecallAgent(api, {"agent_id": RIGHT_WINS}, remember_s=s) for s in (600.0, 0.0))
    for agent in (remembering, forgetting):
        for _ in range(2):
            assert (await agent.decide(REFUND, [DECOY, RIGHT])).answer == RIGHT
    assert (remembering.asked, forgetting.asked) == (2, 4)


def test_evidence_no_stronger_than_the_margin_or_unconfident_does_not_switch() -> None:
    near = {DECOY: Prediction(0.4, 0.9), RIGHT: Prediction(0.6, 0.9)}
    assert choose([DECOY, RIGHT], near).answer == DECOY  # 0.2 better: within the margin
    unsure = {DECOY: Prediction(0.0, 0.9), RIGHT: Prediction(1.0, 0.2)}
    assert choose([DECOY, RIGHT], unsure).answer == DECOY  # the better answer's evidence is too thin
    clear = {DECOY: Prediction(0.0, 0.9), RIGHT: Prediction(1.0, 0.9)}
    assert choose([DECOY, RIGHT], clear).answer == RIGHT
