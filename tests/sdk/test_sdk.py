"""The SDK against the real broker: round trips, order, idempotent retries, redaction, back-pressure."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from openai.types.chat import ChatCompletion

from tests.support.samples import ALL_CONTENT, CONTENT_KINDS, as_decoded, sample_records
from trajstream.errors import DeliveryError
from trajstream.reader import ReadRecord, read_topic
from trajstream.settings import Settings
from trajstream_sdk import AsyncEmitter, SyncEmitter, pattern_redactor
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ModelInfo, Text, ToolCall, content_kind

pytestmark = pytest.mark.integration


async def read_all(settings: Settings, codec: SingleObjectCodec, topic: str = "events") -> list[ReadRecord]:
    return [rec async for rec in read_topic(settings, settings.topic(topic), codec)]


def by_trajectory(records: list[ReadRecord]) -> dict[str, list[ReadRecord]]:
    grouped: dict[str, list[ReadRecord]] = defaultdict(list)
    for rec in records:
        assert rec.error is None, rec.error
        grouped[rec.key.decode()].append(rec)  # type: ignore[union-attr]
    return grouped


async def test_every_schema_and_content_branch_round_trips_through_the_broker(
    topics: Settings, codec: SingleObjectCodec
) -> None:
    samples = sample_records()
    async with AsyncEmitter(topics, codec=codec) as emitter:
        for name, record in samples.items():
            topic = {"feedback": "feedback", "dead_letter": "deadletter"}.get(name, "events")
            await emitter.emit(name, record, key="6f1c2b1e-7d7a-4f7e-9a51-0c3d1f0b7a11", topic=topics.topic(topic))
    received: dict[str, dict[str, Any]] = {}
    for topic in ("events", "feedback", "deadletter"):
        for rec in await read_all(topics, codec, topic):
            assert rec.event is not None
            received[rec.event.name] = rec.event.record
    assert received == {name: as_decoded(record) for name, record in samples.items()}
    assert {content_kind(m["content"]) for m in received["turn"]["messages"]} == CONTENT_KINDS


async def test_a_trajectorys_events_are_consumed_in_order(topics: Settings, codec: SingleObjectCodec) -> None:
    turns = 30

    async def agent(emitter: AsyncEmitter, n: int) -> str:
        async with emitter.trajectory(f"task {n}", agent_id=f"agent-{n}") as t:
            for i in range(turns):
                await t.turn([Message.text("assistant", f"step {i}")])
                await asyncio.sleep(0)  # interleave the agents
        return t.trajectory_id

    async with AsyncEmitter(topics, codec=codec) as emitter:
        ids = await asyncio.gather(*(agent(emitter, n) for n in range(6)))
    grouped = by_trajectory(await read_all(topics, codec))
    assert set(grouped) == set(ids)
    for tid in ids:
        events = grouped[tid]
        assert len({r.partition for r in events}) == 1  # one key, one partition
        names = [r.event.name for r in events]  # type: ignore[union-attr]
        assert names == ["trajectory_start"] + ["turn"] * turns + ["trajectory_end"]
        assert [r.event.record["turn_index"] for r in events[1:-1]] == list(range(turns))  # type: ignore[union-attr]
        assert events[-1].event.record["turn_count"] == turns  # type: ignore[union-attr]


def _lose_first_produce_response(producer: AIOKafkaProducer) -> list[int]:
    """After the broker has appended the first produce request, drop its response, as a network
    failure would: the producer must retry a batch the broker already has."""
    client = producer.client
    real_send = client.send
    lost: list[int] = []

    async def send(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = await real_send(node_id, request, *args, **kwargs)
        appended = all(part[1] == 0 for _topic, parts in getattr(response, "topics", ()) for part in parts)
        if type(request).__name__.startswith("ProduceRequest") and appended and not lost:
            lost.append(node_id)
            raise KafkaConnectionError("test: produce response lost after the append")
        return response

    client.send = send  # type: ignore[method-assign]
    return lost


async def test_a_producer_retry_creates_no_duplicate(topics: Settings, codec: SingleObjectCodec) -> None:
    async with AsyncEmitter(topics, codec=codec) as emitter:
        lost = _lose_first_produce_response(emitter._producer)  # type: ignore[arg-type]
        async with emitter.trajectory("retry me", agent_id="a") as t:
            for i in range(3):
                await t.turn([Message.text("assistant", f"step {i}")])
        await emitter.flush()
    assert lost, "the fault was not injected"
    events = by_trajectory(await read_all(topics, codec))[t.trajectory_id]
    assert len(events) == 5
    assert len({r.event.record["event_id"] for r in events}) == 5  # type: ignore[union-attr]


async def test_the_retry_fault_does_duplicate_without_idempotence(topics: Settings) -> None:
    """Control for the test above: the injected fault really makes the producer resend."""
    producer = AIOKafkaProducer(**topics.kafka_client_options(), enable_idempotence=False, acks="all")
    await producer.start()
    try:
        lost = _lose_first_produce_response(producer)
        await producer.send_and_wait(topics.topic("events"), b"once", key=b"k")
    finally:
        await producer.stop()
    assert lost
    values = [r.value async for r in read_topic(topics, topics.topic("events"))]
    assert values == [b"once", b"once"]


async def test_private_messages_never_appear_in_clear_on_the_wire(topics: Settings, codec: SingleObjectCodec) -> None:
    secret = "SECRET-4c1d-card-4111"
    emitter = AsyncEmitter(topics, codec=codec, redactor=pattern_redactor())
    async with emitter, emitter.trajectory("mail alice@example.com about her refund", agent_id="a") as t:
        await t.turn(
            [
                Message.text("user", f"my card is {secret}", persist=False, reasoning=f"think {secret}"),
                Message(
                    "assistant",
                    ToolCall("send_mail", "c1", {"to": "alice@example.com", "note": secret}),
                    persist=False,
                ),
                Message.text("assistant", "I wrote to alice@example.com, call +1 415 555 0100"),
            ]
        )
    records = await read_all(topics, codec)
    assert records
    for rec in records:
        assert secret.encode() not in rec.value
        assert b"alice@example.com" not in rec.value
        assert b"555 0100" not in rec.value
    turn = next(r.event.record for r in records if r.event and r.event.name == "turn")
    first, second, third = turn["messages"]
    assert first["content"] == {"reason": "persist=false", "original_kind": "text"}
    assert first["reasoning"] is None and first["visibility"]["persist"] is False
    assert second["content"]["original_kind"] == "tool_call"
    assert third["content"]["text"] == "I wrote to [REDACTED:EMAIL], call [REDACTED:PHONE]"
    start = next(r.event.record for r in records if r.event and r.event.name == "trajectory_start")
    assert start["task_description"] == "mail [REDACTED:EMAIL] about her refund"


async def test_an_exception_ends_the_trajectory_with_outcome_error(topics: Settings, codec: SingleObjectCodec) -> None:
    async with AsyncEmitter(topics, codec=codec) as emitter:
        with pytest.raises(RuntimeError, match="tool exploded"):
            async with emitter.trajectory("will fail", agent_id="a") as failing:
                await failing.turn([Message.text("assistant", "calling the tool")])
                raise RuntimeError("tool exploded")
        async with emitter.trajectory("will succeed", agent_id="a", default_outcome="partial") as ok:
            pass
    grouped = by_trajectory(await read_all(topics, codec))
    end = grouped[failing.trajectory_id][-1].event.record  # type: ignore[union-attr]
    assert end["outcome"] == "error" and end["error_type"] == "RuntimeError"
    assert end["error_message"] == "tool exploded" and end["turn_count"] == 1
    assert grouped[ok.trajectory_id][-1].event.record["outcome"] == "partial"  # type: ignore[union-attr]


@pytest.mark.parametrize("bound", [1, 8])
async def test_the_buffer_is_bounded(topics: Settings, codec: SingleObjectCodec, bound: int) -> None:
    settings = topics.model_copy(update={"sdk_max_buffered_events": bound, "producer_linger_ms": 20})
    async with AsyncEmitter(settings, codec=codec) as emitter:
        async with emitter.trajectory("many turns", agent_id="a") as t:
            for i in range(200):
                await t.turn([Message.text("assistant", f"step {i}")])
                assert emitter.in_flight <= bound
        await emitter.flush()
        assert emitter.stats.max_in_flight == bound  # the bound was reached and held
        assert emitter.stats.delivered == 202 and emitter.stats.failed == 0
    assert len(by_trajectory(await read_all(topics, codec))[t.trajectory_id]) == 202


async def test_undeliverable_events_are_reported(topics: Settings, codec: SingleObjectCodec) -> None:
    settings = topics.model_copy(update={"producer_request_timeout_ms": 2000})
    async with AsyncEmitter(settings, codec=codec) as emitter:
        with pytest.raises(Exception, match=r"UnknownTopicOrPartition|KafkaTimeout|Unknown"):
            await emitter.emit("feedback", sample_records()["feedback"], key="k", topic="no-such-topic")
        assert emitter.in_flight == 0  # the slot was given back


def test_the_sync_facade(topics: Settings, codec: SingleObjectCodec) -> None:
    with SyncEmitter(topics, codec=codec) as emitter:
        with emitter.trajectory("sync agent", agent_id="sync", domain="ops") as t:
            t.turn([Message.text("user", "hi"), Message.text("assistant", "hello")], model=ModelInfo(request_model="m"))
        with pytest.raises(ValueError), emitter.trajectory("sync failure", agent_id="sync") as bad:
            raise ValueError("boom")
        emitter.feedback(t.trajectory_id, reward=1.0, human_reviewed=True, comment="great")
        emitter.flush()
        assert emitter.stats.delivered == 6
    grouped = by_trajectory(asyncio.run(read_all(topics, codec)))
    assert [r.event.name for r in grouped[t.trajectory_id]] == ["trajectory_start", "turn", "trajectory_end"]  # type: ignore[union-attr]
    assert grouped[bad.trajectory_id][-1].event.record["outcome"] == "error"  # type: ignore[union-attr]
    feedback = asyncio.run(read_all(topics, codec, "feedback"))
    assert [f.event.record["comment"] for f in feedback] == ["great"]  # type: ignore[union-attr]


def _completion(message: dict[str, Any], *, logprobs: bool = False, finish: str = "stop") -> ChatCompletion:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "message": {"role": "assistant", **message}}
    if logprobs:
        choice["logprobs"] = {
            "content": [
                {"token": "Re", "logprob": -0.1, "bytes": None, "top_logprobs": []},
                {"token": "funded", "logprob": -0.7, "bytes": None, "top_logprobs": []},
            ]
        }
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "created": 1764000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [choice],
            "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57},
        }
    )


async def test_recording_openai_chat_completions(topics: Settings, codec: SingleObjectCodec) -> None:
    request: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Refund order 42"},
    ]
    call = {"id": "call_1", "type": "function", "function": {"name": "refund", "arguments": '{"order": 42}'}}
    first = _completion({"content": None, "tool_calls": [call]}, finish="tool_calls")
    emitter = AsyncEmitter(topics, codec=codec)
    async with emitter, emitter.trajectory("Refund order 42", agent_id="support") as t:
        await t.record_chat_completion(request, first, request_model="gpt-4o-mini", model_version="v3",
                                           available_tools=["refund"])  # fmt: skip
        request += [first.choices[0].message.model_dump(exclude_none=True)]
        request += [{"role": "tool", "tool_call_id": "call_1", "content": "provider timeout"}]
        second = _completion({"content": "Refunded.", "reasoning_content": "the tool said ok"}, logprobs=True)
        await t.record_chat_completion(request, second, tool_statuses={"call_1": "timeout"})
    events = by_trajectory(await read_all(topics, codec))[t.trajectory_id]
    turn0, turn1 = (e.event.record for e in events[1:3])  # type: ignore[union-attr]
    assert [(m["role"], content_kind(m["content"])) for m in turn0["messages"]] == [
        ("system", "text"), ("user", "text"), ("assistant", "tool_call"),
    ]  # fmt: skip
    assert turn0["messages"][2]["content"] == {"name": "refund", "call_id": "call_1", "arguments": '{"order":42}'}
    assert turn0["messages"][2]["context_snapshot"]["available_tools"] == ["refund"]
    assert turn0["model"]["request_model"] == "gpt-4o-mini" and turn0["model"]["model_version"] == "v3"
    assert turn0["model"]["input_tokens"] == 50 and turn0["model"]["output_tokens"] == 7
    assert turn0["model"]["finish_reason"] == "tool_calls"
    # Only the new messages: the tool result, then the answer; the earlier ones are not repeated.
    assert [m["role"] for m in turn1["messages"]] == ["tool", "assistant"]
    tool = turn1["messages"][0]["content"]
    assert tool == {"name": "refund", "call_id": "call_1", "status": "timeout", "result": '"provider timeout"'}
    assert turn1["messages"][1]["reasoning"] == "the tool said ok"
    assert [(lp["token"], lp["logprob"]) for lp in turn1["model"]["logprobs"]] == [("Re", -0.1), ("funded", -0.7)]


def test_samples_cover_every_content_kind() -> None:
    kinds = {m.content.kind for m in ALL_CONTENT} | {"redacted"}
    assert kinds == {"text", "tool_call", "tool_response", "widget", "structured", "redacted"}
    assert isinstance(ALL_CONTENT[0].content, Text)


async def test_flush_raises_when_delivery_failed(topics: Settings, codec: SingleObjectCodec) -> None:
    emitter = AsyncEmitter(topics, codec=codec)
    await emitter.start()
    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    failed.set_exception(KafkaConnectionError("broker went away"))
    await emitter._slots.acquire()
    emitter._in_flight += 1
    emitter._on_delivery(failed)
    with pytest.raises(DeliveryError, match=r"1 event\(s\) were not delivered.*broker went away"):
        await emitter.close()
