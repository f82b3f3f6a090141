"""The trainer's Kafka loop: rolling windows of scored trajectories in, model versions out.

A window holds consecutive records of one partition (each partition has its own windows), so that the
records after a partition's committed offset always form the same windows again, whatever order the
partitions are fetched in. Order of effects for a window, and what a crash between two of them does:

1. train, save the version, gate it (a crash here: the window is trained again after a restart; the
   half-made version stays in the registry as a candidate nobody deployed);
2. publish the version's events on ``model.versions`` (a crash here: the window is trained again, and
   the events of both versions are out);
3. record the window (its first offset and the offset one past its last) in the checkpoint
   (``trainer_state.json`` beside the model line);
4. commit the window's offsets.

A restart reads from the committed offsets, so an uncommitted window comes back starting at the same
offset. If the checkpoint has it, the records it trained on are committed, not trained again, and any
records past its end (a window closed by time can come back longer) start the next window. Nothing is
skipped: offsets are committed only up to the end of windows the checkpoint holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from trajstream.topics import DEAD_LETTER_TOPIC, SCORED, trainer_group
from trajstream.trainer.announce import announce_async
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry
from trajstream.trainer.window_training import WindowReport, WindowTrainer
from trajstream.trainer.windows import Position, Window, WindowBuilder
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.events import dead_letter_record
from trajstream_sdk.schemas import DEAD_LETTER

KEEP_WINDOW_IDS = 10_000


class Checkpoint:
    """The windows already trained on (first offset -> one past the last), beside the model line."""

    def __init__(self, path: Path):
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        self.trained: dict[str, int] = dict(data.get("trained_windows", {}))

    def end_of(self, window_id: str) -> int | None:
        return self.trained.get(window_id)

    def add(self, window_id: str, end: int) -> None:
        self.trained[window_id] = end
        while len(self.trained) > KEEP_WINDOW_IDS:
            self.trained.pop(next(iter(self.trained)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"trained_windows": self.trained}))
        tmp.replace(self.path)


class TrainerLoop:
    def __init__(self, settings: TrainerSettings, codec: EventCodec | None = None,
                 progress: Callable[[str], None] = print,
                 after_checkpoint: Callable[[WindowReport], None] | None = None):  # fmt: skip
        self.settings = settings
        self.codec = codec or codec_for(settings)
        self.registry = Registry(settings.registry_dir, settings.trainer_model_name)
        self.checkpoint = Checkpoint(self.registry.dir / "trainer_state.json")
        self.window_trainer = WindowTrainer(settings, self.codec, self.registry, progress)
        self.progress = progress
        self.after_checkpoint = after_checkpoint  # a test's crash point between checkpoint and commit
        self.reports: list[WindowReport] = []

    async def run(self, stop: asyncio.Event, max_windows: int | None = None) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.topic(SCORED), **s.kafka_client_options(), group_id=s.consumer_group(trainer_group(s.trainer_model_name)),
            enable_auto_commit=False, auto_offset_reset=s.trainer_start,
        )  # fmt: skip
        producer = AIOKafkaProducer(**s.durable_producer_options())
        await consumer.start()
        await producer.start()
        builders: dict[TopicPartition, WindowBuilder[bytes]] = {}
        done = 0
        try:
            while not stop.is_set() and (max_windows is None or done < max_windows):
                batch = await consumer.getmany(timeout_ms=500)
                windows = []
                for tp, records in batch.items():
                    builder = builders.setdefault(tp, self._builder())
                    for r in records:
                        window = builder.add(r.value or b"", Position(tp.topic, tp.partition, r.offset))
                        if window is not None:
                            windows.append((tp, window))
                for tp, builder in builders.items():
                    due = builder.due()
                    if due is not None:
                        windows.append((tp, due))
                while windows and (max_windows is None or done < max_windows):
                    tp, window = windows.pop(0)
                    done += await self._finish(window, consumer, producer, builders[tp])
        finally:
            await producer.stop()
            await consumer.stop()

    def _builder(self) -> WindowBuilder[bytes]:
        s = self.settings
        return WindowBuilder(s.trainer_window_count, s.trainer_window_seconds, time.monotonic)

    async def _finish(self, window: Window[bytes], consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                      builder: WindowBuilder[bytes]) -> int:  # fmt: skip
        """Train on the window (or skip what a run before a crash trained on) and commit; the windows handled."""
        wid = window.window_id
        ((topic, partition), end) = next(iter(window.commit_offsets().items()))
        trained_end = self.checkpoint.end_of(wid)
        if trained_end is not None:
            self.progress(f"window {wid}: trained before a restart; committing its offsets")
            await consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(trained_end, "")})
            handled = 1
            for item, position in zip(window.items, window.positions, strict=True):
                if position.offset >= trained_end:  # came back longer than it was trained: the rest is new
                    again = builder.add(item, position)
                    if again is not None:
                        handled += await self._finish(again, consumer, producer, builder)
            return handled
        report = await asyncio.to_thread(self.window_trainer.train, wid, window.items)
        self.reports.append(report)
        await self._publish(report, window, producer)
        self.checkpoint.add(wid, end)
        if self.after_checkpoint is not None:
            self.after_checkpoint(report)
        await consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(end, "")})
        return 1

    async def _publish(self, report: WindowReport, window: Window[bytes], producer: AIOKafkaProducer) -> None:
        s = self.settings
        if report.version is not None and report.verdict is not None:
            events = [("created", "")]
            events.append(("deployed", report.verdict.reason) if report.verdict.deploy else
                          ("rejected", report.verdict.reason))  # fmt: skip
            for event, reason in events:
                await announce_async(s, self.codec, producer, report.version, event, reason)
        for index, reason in report.unreadable:
            position = window.positions[index]
            letter = dead_letter_record(
                stage="trainer", reason=reason, error_type="MalformedEventError", source=position.topic,
                source_partition=position.partition, source_offset=position.offset, payload=window.items[index],
            )  # fmt: skip
            await producer.send_and_wait(s.topic(DEAD_LETTER_TOPIC), self.codec.encode(DEAD_LETTER, letter))
