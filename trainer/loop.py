"""The trainer's Kafka loop: rolling windows of scored trajectories in, model versions out.

A window holds consecutive records of one partition (each partition has its own windows), so that the
records after a partition's committed offset always form the same windows again, whatever order the
partitions are fetched in. Order of effects for a window, and what a crash between two of them does:

1. train; when a version is due (``trainer_versions_per_hour``, and no canary or watch open), save it
   and gate it (a crash here: the window is trained again after a restart; the half-made version stays
   in the registry as a candidate nobody deployed);
2. add the window's live rewards to the open canary or watch and act on the sequential test
   (``trainer.live``): promote or roll back a canary, roll back a watched version; a candidate that
   passed the gate starts its canary (or, with ``canary_share`` 0, is deployed);
3. publish the versions' events on ``model.versions`` (a crash here: the window is trained again, and
   the events of both versions are out);
4. record the window (its first offset and the offset one past its last) and the open canary or watch
   in the checkpoint (``trainer_state.json`` beside the model line);
5. commit the window's offsets.

Training between two versions lives in memory: a crash loses at most the windows since the last version
(their offsets are committed), which ``trainer_versions_per_hour`` bounds.

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
from trajstream.trainer.live import RewardStats, Trial, TrialParameters, sequential_test
from trajstream.trainer.registry import Registry, VersionInfo
from trajstream.trainer.window_training import WindowReport, WindowTrainer
from trajstream.trainer.windows import Position, Window, WindowBuilder
from trajstream_sdk.codec import EventCodec, codec_for

KEEP_WINDOW_IDS = 10_000


class Checkpoint:
    """The windows already trained on (first offset -> one past the last), and the open canary or watch with
    the live rewards it has counted, beside the model line: both change with a window, so both are saved
    with it."""

    def __init__(self, path: Path):
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        self.trained: dict[str, int] = dict(data.get("trained_windows", {}))
        self.trial: Trial | None = Trial.from_json(data["trial"]) if data.get("trial") else None

    def end_of(self, window_id: str) -> int | None:
        return self.trained.get(window_id)

    def add(self, window_id: str, end: int, trial: Trial | None) -> None:
        self.trained[window_id] = end
        self.trial = trial
        while len(self.trained) > KEEP_WINDOW_IDS:
            self.trained.pop(next(iter(self.trained)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"trained_windows": self.trained, "trial": trial.to_json() if trial else None}))
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
        self.trial: Trial | None = self.checkpoint.trial
        self._last_cut: float | None = None
        self.live: dict[str, RewardStats] = {}  # every version's live reward seen by this process
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
        # Each window is finished as soon as it closes, before the batch's later records join the builder: a
        # window trained before a restart that came back longer puts its untrained rest into the builder, and
        # that rest must come first (found by the chaos suite: finished after the batch, the rest went behind
        # later records, a window spanned both, and the rest was trained again on its own).
        commit: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            builder = self._builders.setdefault(tp, self._builder())
            window = builder.add(r.value or b"", Position(r.topic, r.partition, r.offset))
            if window is not None and not self.done():
                _advance(commit, await self._finish(window, builder))
        _advance(commit, await self._finish_due())
        return Written(commit=commit)

    async def idle(self) -> Written | None:
        return Written(commit=await self._finish_due())

    async def _finish_due(self) -> dict[TopicPartition, int]:
        """Finish the open windows whose time is up; the offsets they covered."""
        commit: dict[TopicPartition, int] = {}
        for builder in self._builders.values():
            due = builder.due()
            if due is not None and not self.done():
                _advance(commit, await self._finish(due, builder))
        return commit

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
                        _advance(commit, await self._finish(again, builder))
            return commit
        report = await asyncio.to_thread(self.window_trainer.train, wid, window.items, self._cut_due())
        if report.version is not None:
            self._last_cut = time.monotonic()
        self.reports.append(report)
        events = self._decide(report)
        await self._publish(events, report, window)
        self.checkpoint.add(wid, end, self.trial)
        if self.after_checkpoint is not None:
            self.after_checkpoint(report)
        return {tp: end}

    def _cut_due(self) -> bool:
        """A new candidate only while no canary or watch is open, and at most versions-per-hour."""
        if self.trial is not None:
            return False
        gap = 3600.0 / self.settings.trainer_versions_per_hour
        return self._last_cut is None or time.monotonic() - self._last_cut >= gap

    def _test(self, trial: Trial) -> tuple[str, float]:
        s = self.settings
        limit = s.canary_max_trajectories if trial.kind == "canary" else s.watch_trajectories
        params = TrialParameters(s.canary_margin, s.canary_alpha, s.canary_beta, s.canary_min_trajectories, limit)
        return sequential_test(trial.candidate_stats, trial.reference_stats, params)

    def _decide(self, report: WindowReport) -> list[tuple[VersionInfo, str, str]]:
        """Act on the live figures, then on the window's candidate; the events to announce, in order."""
        events: list[tuple[VersionInfo, str, str]] = []
        for served, stats in report.live.items():
            self.live.setdefault(served, RewardStats()).merge(stats)
        trial = self.trial
        if trial is not None:
            for served, stats in report.live.items():
                trial.add(served, stats)
            decision, llr = self._test(trial)
            why = f"live reward {trial.line()} (log-likelihood ratio {llr:.2f})"
            if trial.kind == "canary" and decision == "ok":
                self.registry.end_canary()
                info = self.registry.deploy(trial.candidate, f"canary promoted: {why}")
                events.append((info, "deployed", f"canary promoted: {why}"))
                self.progress(f"canary {trial.candidate} promoted: {why}")
                self.trial = (Trial("watch", trial.candidate, trial.reference, reference_stats=trial.reference_stats,
                                    reference_frozen=True) if self.settings.watch_trajectories else None)  # fmt: skip
            elif trial.kind == "canary" and decision == "worse":
                self.registry.end_canary()
                info = self.registry.mark(trial.candidate, "rejected", "rolled_back", f"canary rolled back: {why}")
                events.append((info, "rolled_back", f"canary rolled back: {why}"))
                self.progress(f"canary {trial.candidate} rolled back: {why}")
                self._restore_deployed()
                self.trial = None
            elif trial.kind == "watch" and decision == "worse":
                info = self.registry.rollback(f"live reward fell below its predecessor's: {why}")
                events.append((self.registry.get(trial.candidate), "rolled_back", f"live reward fell: {why}"))
                events.append((info, "deployed", f"rollback from {trial.candidate}: {why}"))
                self.progress(f"deployed {trial.candidate} rolled back to {info.version}: {why}")
                self._restore_deployed()
                self.trial = None
            elif trial.kind == "watch" and decision == "ok":
                self.progress(f"deployed {trial.candidate} holds up live: {why}")
                self.trial = None
        if report.version is not None and report.verdict is not None:
            version, verdict = report.version, report.verdict
            events.append((version, "created", ""))
            deployed = self.registry.deployed()
            share = self.settings.canary_share
            if not verdict.deploy:
                events.append((version, "rejected", verdict.reason))
            elif share > 0 and deployed is not None:
                reason = f"gate: {verdict.reason}; serves {share:.0%} of requests beside {deployed.version}"
                report.version = self.registry.start_canary(version.version, share, reason)
                events.append((report.version, "canary", reason))
                self.trial = Trial("canary", version.version, deployed.version)
                self.progress(f"canary {version.version}: {reason}")
            else:
                previous = deployed.version if deployed is not None else None
                report.version = self.registry.deploy(version.version, f"gate: {verdict.reason}")
                events.append((report.version, "deployed", verdict.reason))
                if previous is not None and self.settings.watch_trajectories:
                    # No canary ran beside it: the predecessor's reference is its live reward so far.
                    before = self.live.get(previous, RewardStats())
                    self.trial = Trial("watch", version.version, previous, reference_frozen=True,
                                       reference_stats=RewardStats(before.n, before.total, before.squares))  # fmt: skip
        return events

    def _restore_deployed(self) -> None:
        deployed = self.registry.deployed()
        if deployed is not None:
            self.window_trainer.restore(deployed)

    async def _publish(self, events: list[tuple[VersionInfo, str, str]], report: WindowReport,
                       window: Window[bytes]) -> None:  # fmt: skip
        """The versions' events and the window's dead letters, acknowledged before the checkpoint."""
        assert self.producer is not None
        for info, event, reason in events:
            await announce_async(self.settings, self.codec, self.producer, info, event, reason,
                                 self.settings.canary_share if event == "canary" else 0.0)  # fmt: skip
        letters = []
        for index, reason in report.unreadable:
            p = window.positions[index]
            source = Received(p.topic, p.partition, p.offset, None, window.items[index])
            letters.append(self.dead_letter(source, reason, "MalformedEventError"))
        await self.send(letters)


def _advance(commit: dict[TopicPartition, int], offsets: dict[TopicPartition, int]) -> None:
    """Merge the offsets to commit: a partition's only ever moves forward."""
    for tp, offset in offsets.items():
        commit[tp] = max(commit.get(tp, 0), offset)
