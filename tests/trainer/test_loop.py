"""The trainer's Kafka loop against the real broker: windows, versions, a crash between checkpoint and commit."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support.trainer import read_decoded
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream.topics import DEAD_LETTER_TOPIC, MODEL_VERSIONS, SCORED, create_topics, trainer_group
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.loop import TrainerLoop
from trajstream.trainer.registry import Registry
from trajstream.trainer.tiny import build_model, build_tokenizer, words
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

WINDOW = 8
TASKS = ["refund the damaged order", "reset the password"]


class Crash(Exception):
    pass


def _scored(settings: Settings, codec: SingleObjectCodec, n: int) -> list[bytes]:
    pipeline = Pipeline(settings, codec)
    out: list[bytes] = []
    for i in range(n):
        ok = i % 3 != 0
        _, events = tool_trajectory(codec, TASKS[i % 2], "lookup", "success" if ok else "error",
                                    "success" if ok else "failure", turns=2)  # fmt: skip
        out += pipeline.run(events)
    return out


async def _publish(settings: Settings, values: list[bytes]) -> None:
    """WINDOW records to each partition in turn: each partition makes one window."""
    producer = AIOKafkaProducer(**settings.durable_producer_options())
    await producer.start()
    try:
        for i, v in enumerate(values):
            await producer.send_and_wait(settings.topic(SCORED), v, key=str(uuid.uuid4()).encode(),
                                         partition=i // WINDOW)  # fmt: skip
    finally:
        await producer.stop()


async def _committed_and_end(settings: Settings) -> tuple[int, int]:
    group = settings.consumer_group(trainer_group(settings.trainer_model_name))
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic(SCORED))
        ends = await consumer.end_offsets(tps)
        committed = [await consumer.committed(tp) or 0 for tp in tps]
        return sum(committed), sum(ends.values())
    finally:
        await consumer.stop()


@pytest.fixture
def trainer_settings(broker_settings: Settings, tmp_path: Path, codec: SingleObjectCodec) -> TrainerSettings:
    # Nothing held out: the random trajectory ids would make the groups, and so what is trained, vary from
    # run to run. The gate (then rejecting every version: nothing to judge on) has its own tests.
    settings = TrainerSettings.extend(broker_settings, **{
        "topic_prefix": f"tr{uuid.uuid4().hex[:8]}.", "home": tmp_path, "trainer_window_count": WINDOW,
        "trainer_window_seconds": 600.0, "trainer_heldout_fraction": 0.0, "trainer_learning_rate": 1e-3,
        "gate_max_kl": 10.0, "trainer_versions_per_hour": 1e9,
    })  # fmt: skip
    asyncio.run(create_topics(settings))
    tok = build_tokenizer(words(["call lookup result success error refund the damaged order reset password"]))
    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    registry.deploy(registry.save(build_model(len(tok), hidden=32).save_pretrained, tok, None, [], {}).version, "init")
    return settings


def test_a_crash_between_checkpoint_and_commit_neither_retrains_nor_skips(
    trainer_settings: TrainerSettings, codec: SingleObjectCodec
) -> None:
    settings = trainer_settings
    values = _scored(settings, codec, 2 * WINDOW)
    asyncio.run(_publish(settings, [*values, b"not a scored trajectory", *_scored(settings, codec, WINDOW - 1)]))

    def crash(_: Any) -> None:
        raise Crash

    first = TrainerLoop(settings, codec, progress=lambda _: None, after_checkpoint=crash)
    with pytest.raises(Crash):
        asyncio.run(first.run(asyncio.Event(), max_windows=1))
    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    assert [v.version for v in registry.versions()] == ["v1", "v2"]
    assert asyncio.run(_committed_and_end(settings))[0] == 0  # crashed before the commit

    second = TrainerLoop(settings, codec, progress=lambda _: None)
    asyncio.run(second.run(asyncio.Event(), max_windows=3))
    # The replayed first window was committed without training; the next two were trained.
    assert len(second.reports) == 2
    assert [v.version for v in registry.versions()] == ["v1", "v2", "v3", "v4"]
    committed, end = asyncio.run(_committed_and_end(settings))
    assert committed == end == 3 * WINDOW
    windows = [first.reports[0].window_id] + [r.window_id for r in second.reports]
    assert len(set(windows)) == 3
    # Every record is accounted for: trained, held out, or counted as skipped or unreadable.
    for report in [*first.reports, *second.reports]:
        accounted = report.trained + report.heldout + report.skipped_samples + report.stale + report.no_assistant
        assert accounted + len(report.unreadable) == report.records == WINDOW
        assert report.trained > 0 and report.version is not None and report.verdict is not None
        assert report.version.windows == [report.window_id] and report.version.parent is not None
    assert sum(len(r.unreadable) for r in [*first.reports, *second.reports]) == 1
    letters = [d for d in asyncio.run(read_decoded(settings, codec, DEAD_LETTER_TOPIC)) if d["stage"] == "trainer"]
    assert len(letters) == 1 and letters[0]["payload"] == b"not a scored trajectory"
    events = asyncio.run(read_decoded(settings, codec, MODEL_VERSIONS))
    by_version: dict[str, list[str]] = {}
    for e in events:
        by_version.setdefault(e["version"], []).append(e["event"])
    assert by_version == {v: ["created", "rejected"] for v in ("v2", "v3", "v4")}  # nothing held out to judge on


def _served(settings: Settings, codec: SingleObjectCodec, version: str, outcomes: list[bool], tag: str) -> list[bytes]:
    """Scored trajectories served by ``version``, succeeding or failing as given (alternating two tasks).

    Their ids are fixed by ``tag``: the gate's held-out split goes by trajectory id, and random ids left a
    window's training half without a group whose rewards differ now and then (no version cut: a flaky test).
    """
    pipeline = Pipeline(settings, codec)
    out: list[bytes] = []
    for i, ok in enumerate(outcomes):
        tid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"test-loop/{tag}/{i}"))
        _, events = tool_trajectory(codec, TASKS[i % 2], "lookup", "success" if ok else "error",
                                    "success" if ok else "failure", turns=1, model_version=version,
                                    trajectory_id=tid)  # fmt: skip
        out += pipeline.run(events)
    return out


def test_a_worse_candidate_that_passes_the_gate_is_rolled_back_live(
    trainer_settings: TrainerSettings, codec: SingleObjectCodec
) -> None:
    """The gate passes every candidate here; the canary's live reward decides. A canary that loses is rolled
    back (and the policy in memory goes back to the deployed weights with its optimizer); one that holds is
    promoted and watched, and rolled back when its live reward then falls below its predecessor's."""
    settings = TrainerSettings.extend(trainer_settings, **{
        "trainer_window_count": 12, "trainer_heldout_fraction": 0.5, "gate_min_gain": -1e9, "gate_max_kl": 1e9,
        "canary_share": 0.5, "canary_margin": 0.1, "canary_min_trajectories": 4, "watch_trajectories": 1000,
    })  # fmt: skip
    mixed = [True, False, False, True] * 3
    windows = [
        _served(settings, codec, "v1", mixed, "w1"),  # trains; v2 passes the gate and becomes a canary
        _served(settings, codec, "v2", [False] * 6, "w2a")
        + _served(settings, codec, "v1", [True] * 6, "w2b"),  # v2 loses
        _served(settings, codec, "v1", mixed, "w3"),  # v3 passes the gate: a canary
        _served(settings, codec, "v3", [True] * 6, "w4a")
        + _served(settings, codec, "v1", [True] * 6, "w4b"),  # v3 holds
        _served(settings, codec, "v3", [False] * 12, "w5"),  # deployed v3 falls below v1's canary-time reward
    ]
    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    states: list[tuple[str | None, str | None]] = []

    async def main() -> TrainerLoop:
        loop = TrainerLoop(settings, codec, progress=lambda _: None)
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        producer = AIOKafkaProducer(**settings.durable_producer_options())
        await producer.start()
        try:
            for n, window in enumerate(windows, start=1):
                for value in window:  # one partition: the windows come in this order
                    await producer.send_and_wait(settings.topic(SCORED), value, key=b"k", partition=0)
                while len(loop.reports) < n and not task.done():
                    await asyncio.sleep(0.1)
                deployed, canary = registry.deployed(), registry.canary()
                states.append((deployed.version if deployed else None, canary[0].version if canary else None))
                if n == 2:  # the canary lost: the policy in memory holds v1's weights again (a bare base)
                    assert loop.window_trainer.optimizer is not None
                    assert all(float(p.abs().max()) == 0.0 for name, p in loop.window_trainer.policy.named_parameters()
                               if "lora_B" in name)  # fmt: skip
        finally:
            stop.set()
            await task
            await producer.stop()
        return loop

    loop = asyncio.run(main())
    assert states == [("v1", "v2"), ("v1", None), ("v1", "v3"), ("v3", None), ("v1", None)]
    assert registry.get("v2").status == "rejected" and registry.get("v3").status == "retired"
    assert [r.verdict.deploy for r in loop.reports if r.verdict] == [True, True]  # the gate passed both
    events = asyncio.run(read_decoded(settings, codec, MODEL_VERSIONS))
    by_version: dict[str, list[str]] = {}
    for e in events:
        by_version.setdefault(e["version"], []).append(e["event"])
    assert by_version["v2"] == ["created", "canary", "rolled_back"]
    assert by_version["v3"] == ["created", "canary", "deployed", "rolled_back"]
    assert by_version["v1"] == ["deployed"]  # the watch's rollback deploys v1 again
    assert [e["canary_share"] for e in events if e["event"] == "canary"] == [0.5, 0.5]
    assert [v for v, _ in registry.deployments()] == ["v1", "v3", "v1"]
