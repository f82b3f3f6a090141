"""Trajectories, a tiny tokenizer and a tiny model for the trainer's tests (all built locally)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from tests.support.env import free_port
from trajstream.assembled import Step, TrajectoryView
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.trainer.registry import Registry
from trajstream.trainer.tiny import build_model, build_tokenizer, words
from trajstream_sdk.codec import EventCodec, SingleObjectCodec
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Outcome,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    ToolStatus,
    turn_record,
)

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


# --- a model line trained by the trainer itself: a full first version, then LoRA adapters --------------
LORA_TASKS = ("refund the damaged order", "reset the password")
LORA_VOCAB = "call lookup result success error refund the damaged order reset password (step 0) 1) ok please"
LORA_HELDOUT = 0.25
# Each window: per task, trained trajectories (success, failure) and held-out ones the gate judges on.
_TRAINED = {True: 2, False: 2}
_JUDGED = {True: 1, False: 1}


@contextmanager
def process_group() -> Iterator[None]:
    """The environment of a process group of one (what DeepSpeed wants), restored after."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def scored_window(pipeline: Any, codec: EventCodec, heldout_fraction: float = LORA_HELDOUT) -> list[bytes]:
    """Scored trajectory records for one window: two tasks, each with successes and failures (so its group has
    reward variance), and a fixed number held out for the gate (chosen by id, as the trainer splits)."""
    from trajstream.synthetic import tool_trajectory
    from trajstream.trainer.window_training import heldout

    need = {(task, ok, held): (_JUDGED if held else _TRAINED)[ok] for task in LORA_TASKS for ok in (True, False)
            for held in ((False, True) if heldout_fraction > 0 else (False,))}  # fmt: skip
    out: list[bytes] = []
    while any(need.values()):
        for task, ok in [(t, ok) for t in LORA_TASKS for ok in (True, False)]:
            status: ToolStatus = "success" if ok else "error"
            outcome: Outcome = "success" if ok else "failure"
            tid, events = tool_trajectory(codec, task, "lookup", status, outcome, turns=2)
            key = (task, ok, heldout(tid, heldout_fraction))
            if need.get(key, 0) > 0:
                need[key] -= 1
                records = pipeline.run(events)
                assert len(records) == 1, f"a trajectory made {len(records)} scored records"
                out += records
    return out


def trained_lora_registry(home: Path, codec: EventCodec, model_name: str = "policy", adapters: int = 2,
                          seed: int = 0) -> Registry:  # fmt: skip
    """A model line in ``home``'s registry: v1, tiny full weights, deployed; then ``adapters`` LoRA versions
    (v2, v3, ...), each saved by ``WindowTrainer`` from a window of scored trajectories, passed by the gate and
    trained on from the one before (v3's parent is v2). They are left candidates (nothing deploys them, no
    canary serves); each adapter's base is v1's weights."""
    from trajstream.streams.in_process import Pipeline
    from trajstream.trainer.config import TrainerSettings
    from trajstream.trainer.weights import ADAPTER_CONFIG
    from trajstream.trainer.window_training import WindowTrainer

    settings = TrainerSettings.extend(Settings(), home=home, trainer_model_name=model_name,
                                      trainer_heldout_fraction=LORA_HELDOUT, gate_max_kl=10.0, gate_min_gain=-1e9,
                                      trainer_learning_rate=1e-3)  # fmt: skip
    assert settings.trainer_adapter == "lora"
    tok = build_tokenizer(words([LORA_VOCAB]))
    registry = Registry(settings.registry_dir, model_name)
    first = registry.save(model(tok, seed=seed).save_pretrained, tok, None, [], {})
    registry.deploy(first.version, "init")
    trainer = WindowTrainer(settings, codec, registry, progress=lambda _: None)
    pipeline = Pipeline(settings, codec)
    with process_group():
        for i in range(adapters):
            report = trainer.train(f"{model_name}-w{i}", scored_window(pipeline, codec), cut=True)
            info, verdict = report.version, report.verdict
            assert report.trained > 0 and info is not None and verdict is not None, report.line()
            assert verdict.deploy and info.status == "candidate", report.line()
            assert info.version == f"v{i + 2}" and info.base == str(Path(first.path) / "model")
            adapter_config = json.loads((Path(info.path) / "model" / ADAPTER_CONFIG).read_text())
            assert adapter_config["base_model_name_or_path"] == info.base  # what serving checks an adapter by
            assert not (Path(info.path) / "model" / "config.json").exists()  # the adapter alone, not full weights
            # As the loop does, the candidate serves as a canary while the next window trains, so the next
            # version descends from it (and its weights differ from this one's).
            registry.start_canary(info.version, 0.5, "test: the next window trains on from it")
    registry.end_canary()
    for info in registry.versions()[1:]:
        registry.mark(info.version, "candidate", "canary_ended", "test: the line is left with v1 deployed alone")
    return registry
