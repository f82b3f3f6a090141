"""Trajectories, a tiny tokenizer and a tiny model for the trainer's tests (all built locally)."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from trajstream.assembled import Step, TrajectoryView
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.trainer.tiny import build_model, build_tokenizer, words
from trajstream_sdk.codec import EventCodec, SingleObjectCodec
from trajstream_sdk.events import Message, ModelInfo, TokenLogprob, ToolCall, ToolResponse, turn_record

VOCAB_TEXT = 'refund order 42 please done lookup result success error call {"order_id": 42} {"ok": true} thanks'


def tokenizer() -> Any:
    return build_tokenizer(words([VOCAB_TEXT]))


def model(tok: Any, seed: int = 0) -> Any:
    return build_model(len(tok), hidden=32, layers=2, heads=4, seed=seed)


def view(codec: EventCodec, *, version: str | None = "v1", logprobs: list[tuple[int, float]] | None = None,
         system: str | None = "be brief", answer: str = "refund done thanks") -> TrajectoryView:  # fmt: skip
    """A user question, a tool call (turn 0), the tool's result and a final answer (turn 1)."""
    tid = str(uuid.uuid4())
    lp = [TokenLogprob(str(i), p, i) for i, p in logprobs] if logprobs is not None else None
    turns = [
        turn_record(tid, 0, [Message.text("user", "refund order 42 please"),
                             Message("assistant", ToolCall("lookup", "c1", {"order_id": 42}))],
                    model=ModelInfo(model_version=version)),
        turn_record(tid, 1, [Message("tool", ToolResponse("lookup", "c1", {"ok": True}, "success")),
                             Message.text("assistant", answer)],
                    model=ModelInfo(model_version=version, logprobs=lp)),
    ]  # fmt: skip
    steps = tuple(Step(codec.decode(codec.encode("turn", t)).record) for t in turns)
    return TrajectoryView({"trajectory_id": tid, "version": 1, "system_message": system}, steps)


def imitate(policy: Any, sample: Any, steps: int = 20, lr: float = 0.05) -> Any:
    """A copy of ``policy`` pushed towards ``sample``'s assistant tokens (plain cross-entropy steps)."""
    import copy

    import torch

    moved = copy.deepcopy(policy)
    optimizer = torch.optim.SGD(moved.parameters(), lr=lr)
    ids = torch.tensor([sample.prompt_ids + sample.completion_ids])
    labels = torch.tensor([[-100] * len(sample.prompt_ids) + [t if m else -100 for t, m in
                            zip(sample.completion_ids, sample.assistant_mask, strict=True)]])  # fmt: skip
    for _ in range(steps):
        optimizer.zero_grad()
        moved(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
    return moved.eval()


async def read_decoded(settings: Settings, codec: SingleObjectCodec, topic: str) -> list[dict[str, Any]]:
    """Every record of a topic, decoded, from its beginning to its current end."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic(topic))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += [codec.decode(r.value).record for r in records if r.value]
        return out
    finally:
        await consumer.stop()
