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

The loop is a ``BatchSink`` (trajstream.sink) whose write keeps the records of open windows back: it
returns the offsets of the windows it finished, and the base commits only those. A restart reads from
the committed offsets, so an uncommitted window comes back starting at the same offset. If the
checkpoint has it, the records it trained on are committed, not trained again, and any records past
its end (a window closed by time can come back longer) start the next window. Nothing is
skipped: offsets are committed only up to the end of windows the checkpoint holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import TopicPartition

from trajstream.sink import BatchSink, Received, Record, Written
from trajstream.topics import SCORED, trainer_group
from trajstream.trainer.announce import announce_async
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry
from trajstream.trainer.window_training import WindowReport, WindowTrainer
from trajstream.trainer.windows import Position, Window, WindowBuilder
from trajstream_sdk.codec import EventCodec, codec_for

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


class TrainerLoop(BatchSink):
    stage = "trainer"

    def __init__(self, settings: TrainerSettings, codec: EventCodec | None = None,
                 progress: Callable[[str], None] = print,
                 after_checkpoint: Callable[[WindowReport], None] | None = None):  # fmt: skip
        # One try per batch: a failed window is trained again after a restart, from the committed offsets.
        group = settings.consumer_group(trainer_group(settings.trainer_model_name))
        super().__init__(
            settings, codec or codec_for(settings), group=group, topics=(settings.topic(SCORED),),
            batch_rows=max(settings.trainer_window_count, 500), batch_seconds=0.5, eager=True,
            retry_attempts=1, auto_offset_reset=settings.trainer_start,
        )  # fmt: skip
        self.settings: TrainerSettings = settings
        self.registry = Registry(settings.registry_dir, settings.trainer_model_name)
        self.checkpoint = Checkpoint(self.registry.dir / "trainer_state.json")
        self.window_trainer = WindowTrainer(settings, self.codec, self.registry, progress)
        self.progress = progress
        self.after_checkpoint = after_checkpoint  # a test's crash point between checkpoint and commit
        self.reports: list[WindowReport] = []
        self._builders: dict[TopicPartition, WindowBuilder[bytes]] = {}
        self._max_windows: int | None = None
        self._windows_done = 0

    async def run(self, stop: asyncio.Event, max_windows: int | None = None,  # type: ignore[override]
                  ready: asyncio.Event | None = None) -> None:  # fmt: skip
        """Train until ``stop`` is set, or until ``max_windows`` windows were handled."""
        self._max_windows = max_windows
        await super().run(stop, ready)

    def done(self) -> bool:
        return self._max_windows is not None and self._windows_done >= self._max_windows

    async def write(self, batch: list[Record]) -> Written:
        windows: list[tuple[TopicPartition, Window[bytes]]] = []
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            builder = self._builders.setdefault(tp, self._builder())
            window = builder.add(r.value or b"", Position(r.topic, r.partition, r.offset))
            if window is not None:
                windows.append((tp, window))
        return await self._finish_all(windows)

    async def idle(self) -> Written | None:
        return await self._finish_all([])

    async def _finish_all(self, windows: list[tuple[TopicPartition, Window[bytes]]]) -> Written:
        """Finish the windows closed by count, then those whose time is up; commit only what they covered."""
        for tp, builder in self._builders.items():
            due = builder.due()
            if due is not None:
                windows.append((tp, due))
        commit: dict[TopicPartition, int] = {}
        while windows and not self.done():
            tp, window = windows.pop(0)
            commit.update(await self._finish(window, self._builders[tp]))
        return Written(commit=commit)

    def _builder(self) -> WindowBuilder[bytes]:
        s = self.settings
        return WindowBuilder(s.trainer_window_count, s.trainer_window_seconds, time.monotonic)

    async def _finish(self, window: Window[bytes], builder: WindowBuilder[bytes]) -> dict[TopicPartition, int]:
        """Train on the window (or skip what a run before a crash trained on); the offsets to commit."""
        wid = window.window_id
        ((topic, partition), end) = next(iter(window.commit_offsets().items()))
        tp = TopicPartition(topic, partition)
        trained_end = self.checkpoint.end_of(wid)
        self._windows_done += 1
        if trained_end is not None:
            self.progress(f"window {wid}: trained before a restart; committing its offsets")
            commit = {tp: trained_end}
            for item, position in zip(window.items, window.positions, strict=True):
                if position.offset >= trained_end:  # came back longer than it was trained: the rest is new
                    again = builder.add(item, position)
                    if again is not None and not self.done():
                        commit.update(await self._finish(again, builder))
            return commit
        report = await asyncio.to_thread(self.window_trainer.train, wid, window.items)
        self.reports.append(report)
        await self._publish(report, window)
        self.checkpoint.add(wid, end)
        if self.after_checkpoint is not None:
            self.after_checkpoint(report)
        return {tp: end}

    async def _publish(self, report: WindowReport, window: Window[bytes]) -> None:
        """The version's events and the window's dead letters, acknowledged before the checkpoint."""
        assert self.producer is not None
        if report.version is not None and report.verdict is not None:
            events = [("created", "")]
            events.append(("deployed", report.verdict.reason) if report.verdict.deploy else
                          ("rejected", report.verdict.reason))  # fmt: skip
            for event, reason in events:
                await announce_async(self.settings, self.codec, self.producer, report.version, event, reason)
        letters = []
        for index, reason in report.unreadable:
            p = window.positions[index]
            source = Received(p.topic, p.partition, p.offset, None, window.items[index])
            letters.append(self.dead_letter(source, reason, "MalformedEventError"))
        await self.send(letters)
