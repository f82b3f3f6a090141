"""The trainer's loop over a replayed batch, without a broker: windows trained before a restart come back (one
of them longer, as a window closed by time can), and nothing is trained twice or skipped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from trajstream.settings import Settings
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.loop import TrainerLoop
from trajstream.trainer.registry import Registry

TOPIC = "t.trajectories.scored"


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", b"v", None, 1, 1, [])


def test_the_rest_of_a_window_that_came_back_longer_comes_before_the_batchs_later_records(tmp_path: Path) -> None:
    # Before the restart: [0, 3) was trained (closed by time), then [3, 8) (by count); nothing committed.
    settings = TrainerSettings.extend(Settings(home=tmp_path, topic_prefix="t."), trainer_window_count=5,
                                      trainer_window_seconds=600.0)  # fmt: skip
    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    registry.dir.mkdir(parents=True, exist_ok=True)
    trained = {f"{TOPIC}:0@0": 3, f"{TOPIC}:0@3": 8, f"{TOPIC}:0@5": 10}
    (registry.dir / "trainer_state.json").write_text(json.dumps({"trained_windows": trained, "trial": None}))
    loop = TrainerLoop(settings, progress=lambda _: None)

    # The replay arrives in one batch: [0, 5) closes by count and is [0, 3) trained, with 3 and 4 new.
    written = asyncio.run(loop.write([_record(o) for o in range(10)]))

    tp = TopicPartition(TOPIC, 0)
    # 3 and 4 lead the next window, [3, 8), which was trained too: committed up to 8, and 8, 9 are open.
    assert written.commit == {tp: 8}
    builder = loop._builders[tp]
    assert builder.pending == 2
    assert builder._open is not None and [p.offset for p in builder._open.positions] == [8, 9]
    assert loop.reports == []  # nothing trained again
