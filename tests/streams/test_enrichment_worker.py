"""The enrichment worker against the real broker and a local OpenAI-compatible server:
structured output becomes a result; malformed output and timeouts end in the dead-letter topic."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.support.openai_server import HttpError, OpenAIServer, Reply, Stall, malformed
from tests.support.openai_server import openai_server_fixture as openai_server_fixture
from tests.support.streams import publish, read
from trajstream.settings import Settings
from trajstream.streams.assembly import Assembler, Input
from trajstream.streams.enrichment.llm import build_extractor
from trajstream.streams.enrichment.worker import EnrichmentWorker
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ToolCall, end_record, start_record, turn_record

pytestmark = pytest.mark.integration

GOOD = {
    "decisions": [
        {"decision_type": "tool_selection", "step_index": 0, "reasoning": "needs the order", "alternatives": [],
         "chosen_action": "call lookup", "confidence": 0.9, "implicit": False},
    ],
    "entities": [
        {"name": "order 9", "entity_type": "order", "discovered_at_step": 0, "importance": "critical",
         "relationships": []},
    ],
}  # fmt: skip


def _request(settings: Settings, codec: SingleObjectCodec, tid: str) -> bytes:
    """An enrichment request exactly as the assembly stage makes it."""
    assembler = Assembler(settings, codec)
    start = codec.encode("trajectory_start", start_record(tid, "Look up order 9", agent_id="a"))
    turn = codec.encode("turn", turn_record(tid, 0, [Message("assistant", ToolCall("lookup", "c1", {"id": 9}))]))
    end = codec.encode("trajectory_end", end_record(tid, "success", turn_count=1))
    state = None
    outputs = []
    for i, value in enumerate((start, turn, end)):
        result = assembler.handle(Input(settings.topic("events"), 0, i, tid.encode(), value, 1_700_000_000_000), state)
        state = result.state or state
        outputs = result.outputs
    (request,) = [o.value for o in outputs if o.topic == settings.topic("enrichment.requests")]
    return request


async def _run_once(settings: Settings, codec: SingleObjectCodec, tid: str) -> tuple[dict[str, Any], list[Any]]:
    worker = EnrichmentWorker(settings, codec, build_extractor(settings))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop, ready))
    await ready.wait()
    await publish(settings, [("enrichment.requests", tid.encode(), _request(settings, codec, tid))])
    try:
        for _ in range(200):
            results = [r for r in await read(settings, codec, "enrichment.results") if r.key == tid.encode()]
            if results:
                letters = [r.event.record for r in await read(settings, codec, "deadletter") if r.key == tid.encode()]
                return results[0].event.record, letters  # type: ignore[union-attr]
            await asyncio.sleep(0.1)
        raise AssertionError("no enrichment result")
    finally:
        stop.set()
        await task


def _llm_settings(topics: Settings, server: OpenAIServer, **extra: Any) -> Settings:
    return topics.model_copy(
        update={"llm_base_url": server.base_url, "llm_model": "test-model", "llm_timeout_s": 0.5,
                "llm_max_retries": 1, "llm_concurrency": 2, **extra}
    )  # fmt: skip


async def test_structured_output_becomes_a_result(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer
) -> None:
    openai_server.script([HttpError(503), Reply(GOOD, prompt_tokens=300, completion_tokens=50)])
    result, letters = await _run_once(_llm_settings(topics, openai_server), codec, str(uuid.uuid4()))
    assert result["status"] == "ok" and result["extractor"] == "openai:test-model"
    assert result["prompt_version"] == "v1" and result["attempts"] == 2
    assert (result["input_tokens"], result["output_tokens"]) == (300, 50)
    assert [d["chosen_action"] for d in result["decisions"]] == ["call lookup"]
    assert [e["name"] for e in result["entities"]] == ["order 9"]
    assert letters == []
    assert openai_server.requests[-1].body["response_format"]["type"] == "json_schema"


async def test_malformed_output_ends_in_the_dead_letter_topic(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer
) -> None:
    openai_server.script([], default=malformed("{'decisions': oops"))
    tid = str(uuid.uuid4())
    result, letters = await _run_once(_llm_settings(topics, openai_server), codec, tid)
    assert result["status"] == "failed" and "not valid JSON" in (result["error"] or "")
    assert result["decisions"] == [] and result["attempts"] == 2
    (letter,) = letters
    assert letter["stage"] == "enrichment" and letter["error_type"] == "EnrichmentError"
    assert "not valid JSON" in letter["reason"] and letter["trajectory_id"] == tid
    original = codec.decode(letter["payload"], expect="enrichment_request").record  # the request, unchanged
    assert original["trajectory_id"] == tid and original["trajectory_version"] == 1
    assert letter["source"] == topics.topic("enrichment.requests") and letter["source_offset"] is not None


async def test_timeouts_end_in_the_dead_letter_topic(
    topics: Settings, codec: SingleObjectCodec, openai_server: OpenAIServer
) -> None:
    openai_server.script([], default=Stall(2.0))
    result, letters = await _run_once(_llm_settings(topics, openai_server), codec, str(uuid.uuid4()))
    assert result["status"] == "failed" and "timed out" in (result["error"] or "")
    assert len(letters) == 1 and "timed out after 2 attempts" in letters[0]["reason"]


async def test_without_a_model_the_heuristic_extractor_runs(topics: Settings, codec: SingleObjectCodec) -> None:
    result, letters = await _run_once(topics, codec, str(uuid.uuid4()))
    assert result["status"] == "ok" and result["extractor"] == "heuristic"
    assert result["prompt_version"] == "heuristic-v2" and letters == []
    assert any(d["decision_type"] == "tool_selection" for d in result["decisions"])


async def test_a_request_that_is_not_one_is_dead_lettered(topics: Settings, codec: SingleObjectCodec) -> None:
    tid = str(uuid.uuid4())
    worker = EnrichmentWorker(topics, codec, build_extractor(topics))
    outputs = await worker.handle(Input(topics.topic("enrichment.requests"), 1, 42, tid.encode(), b"junk", 0))
    (letter,) = [codec.decode(o.value).record for o in outputs]
    assert letter["error_type"] == "MalformedEventError" and letter["payload"] == b"junk"
    assert (letter["source_partition"], letter["source_offset"]) == (1, 42)
