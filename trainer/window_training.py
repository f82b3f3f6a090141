"""Train on one window of scored trajectories: decode, group, weigh, train, save a version, gate it.

No Kafka here: ``trainer.loop`` feeds windows in and commits their offsets once this returns.
"""

from __future__ import annotations

import os
import socket
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.errors import CodecError, TrajstreamError
from trajstream.trainer.advantages import group_advantages, step_advantages
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.gate import Verdict, judge
from trajstream.trainer.grouping import Sample, make_groups
from trajstream.trainer.grpo import TrainingRow, build_trainer, deepspeed_config, grpo_config
from trajstream.trainer.offpolicy import drop_stale
from trajstream.trainer.registry import Registry, VersionInfo
from trajstream.trainer.samples import TokenizedSample, step_count, tokenize
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.schemas import CREDIT_ASSIGNMENT, SCORED_TRAJECTORY

DECISION_METHOD = "decision"  # the credit method preferred when enrichment produced it


@dataclass
class Scored:
    sample: TokenizedSample
    task_key: str
    reward: float
    entities: frozenset[str]
    credits: list[float] | None


@dataclass
class WindowReport:
    """What one window came to; every record is counted once."""

    window_id: str
    records: int = 0
    unreadable: list[tuple[int, str]] = field(default_factory=list)  # (index in window, reason)
    no_assistant: int = 0
    stale: int = 0
    heldout: int = 0
    singleton_groups: int = 0
    flat_groups: int = 0
    skipped_samples: int = 0
    trained: int = 0
    version: VersionInfo | None = None
    verdict: Verdict | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        out = (f"window {self.window_id}: {self.records} trajectories, trained on {self.trained} "
               f"(held out {self.heldout}, stale {self.stale}, unreadable {len(self.unreadable)}, "
               f"no assistant {self.no_assistant}, in groups of one or without reward variance "
               f"{self.skipped_samples})")  # fmt: skip
        if self.version is not None and self.verdict is not None:
            verdict = "deployed" if self.verdict.deploy else "rejected"
            out += f" -> {self.version.version} {verdict}: {self.verdict.reason}"
        return out


def ensure_process_group() -> None:
    """DeepSpeed wants a process group; a trainer started alone is a group of one."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
                       "WORLD_SIZE": "1"})  # fmt: skip


def heldout(trajectory_id: str, fraction: float) -> bool:
    """A stable split: the same trajectory is held out in every run."""
    return zlib.crc32(trajectory_id.encode()) % 10_000 < fraction * 10_000


class WindowTrainer:
    def __init__(self, settings: TrainerSettings, codec: EventCodec, registry: Registry,
                 progress: Callable[[str], None] = print):  # fmt: skip
        self.settings = settings
        self.codec = codec
        self.registry = registry
        self.progress = progress
        # The policy in memory and its optimizer, carried across windows while they hold the deployed version.
        self._policy: Any = None
        self._policy_version: str | None = None
        self._optimizer: Any = None

    def _policy_for(self, deployed: VersionInfo) -> tuple[Any, Any]:
        """The deployed version as a model to train in place, and the optimizer carried with it (None: the
        trainer makes one). After a version is deployed or rolled back by hand, both start afresh."""
        from transformers import AutoModelForCausalLM

        if self._policy is None or self._policy_version != deployed.version:
            self._policy = AutoModelForCausalLM.from_pretrained(self.registry.weights(deployed.version))
            self._policy_version = deployed.version
            self._optimizer = None
        return self._policy, self._optimizer

    def decode(self, values: Sequence[bytes], tokenizer: Any, report: WindowReport) -> list[Scored]:
        out = []
        for index, value in enumerate(values):
            try:
                record = self.codec.decode(value, expect=SCORED_TRAJECTORY).record
                view = TrajectoryView.from_bytes(record["trajectory"], self.codec)
                credits = [self.codec.decode(c, expect=CREDIT_ASSIGNMENT).record for c in record["credits"]]
            except CodecError as exc:
                report.unreadable.append((index, f"{type(exc).__name__}: {exc}"))
                continue
            sample = tokenize(view, tokenizer)
            if sample is None:
                report.no_assistant += 1
                continue
            chosen = next((c for c in credits if c["method"] == DECISION_METHOD), credits[0] if credits else None)
            steps = [float(s["credit"]) for s in chosen["steps"]] if chosen else None
            out.append(Scored(sample, record["task_key"], float(record["reward"]), frozenset(record["entities"]),
                              steps))  # fmt: skip
        return out

    def train(self, window_id: str, values: Sequence[bytes]) -> WindowReport:
        s = self.settings
        report = WindowReport(window_id, records=len(values))
        deployed = self.registry.deployed()
        if deployed is None:
            raise TrajstreamError(f"no deployed version of {self.registry.model_name} in {self.registry.dir}: "
                                  "run `trajstream model init` first")  # fmt: skip
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(os.path.join(deployed.path, "tokenizer"))
        scored = self.decode(values, tokenizer, report)
        kept = drop_stale([x.sample for x in scored], deployed.number, s.trainer_max_version_lag,
                          self.registry.number_of)  # fmt: skip
        report.stale = kept.stale
        fresh = {id(x) for x in kept.kept}
        scored = [x for x in scored if id(x.sample) in fresh]
        judged = [x for x in scored if heldout(x.sample.trajectory_id, s.trainer_heldout_fraction)]
        train = [x for x in scored if not heldout(x.sample.trajectory_id, s.trainer_heldout_fraction)]
        report.heldout = len(judged)
        samples = [Sample(x.sample.trajectory_id, x.sample.version, x.task_key, x.reward, x.entities) for x in train]
        advantages = group_advantages(make_groups(samples, s.trainer_group_by, s.trainer_entity_threshold))
        report.singleton_groups, report.flat_groups = advantages.singleton_groups, advantages.flat_groups
        report.skipped_samples = advantages.skipped_samples
        by_id = {x.sample.trajectory_id: x for x in train}
        rows = [
            TrainingRow(by_id[a.sample.trajectory_id].sample,
                        step_advantages(a.advantage, by_id[a.sample.trajectory_id].credits,
                                        step_count(by_id[a.sample.trajectory_id].sample)))
            for a in advantages.kept
        ]  # fmt: skip
        report.trained = len(rows)
        if not rows:
            self.progress(report.line())
            return report
        ensure_process_group()
        policy, optimizer = self._policy_for(deployed)
        with tempfile.TemporaryDirectory(prefix="trajstream-trainer-") as out:
            # The whole window is one batch (every group's advantages sum to zero within a step), stepped
            # on TRAJSTREAM_TRAINER_EPOCHS times, at a constant learning rate.
            config = grpo_config(
                s.trainer_loss, out, deepspeed=deepspeed_config(s.trainer_zero_stage),
                learning_rate=s.trainer_learning_rate, beta=s.trainer_beta, per_device_train_batch_size=len(rows),
                num_generations=len(rows), num_train_epochs=s.trainer_epochs, lr_scheduler_type="constant",
            )  # fmt: skip
            trainer = build_trainer(policy, tokenizer, rows, config, is_cap=s.trainer_is_cap, optimizer=optimizer)
            result = trainer.train()
            report.metrics = {"train_loss": float(result.training_loss), "steps": float(result.global_step),
                              "is_corrected_tokens": float(trainer.corrected_tokens),
                              "policy_tokens": float(trainer.policy_tokens)}  # fmt: skip
            version = self.registry.save(trainer.save_model, tokenizer, deployed.version, [window_id], report.metrics)
            if optimizer is None and s.trainer_zero_stage == 0:
                self._optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else None
            del trainer
        report.version = version
        candidate: Any = AutoModelForCausalLM.from_pretrained(self.registry.weights(version.version))
        current: Any = AutoModelForCausalLM.from_pretrained(self.registry.weights(deployed.version))
        verdict = judge(candidate, current, [(x.sample, x.reward) for x in judged], s.gate_min_gain, s.gate_max_kl)
        report.verdict = verdict
        if verdict.deploy:
            self.registry.mark(version.version, "candidate", "judged", verdict.reason, verdict.metrics())
            report.version = self.registry.deploy(version.version, f"gate: {verdict.reason}")
            self._policy_version = version.version  # the policy in memory is the new deployed version
        else:
            report.version = self.registry.mark(version.version, "rejected", "rejected", f"gate: {verdict.reason}",
                                                verdict.metrics())  # fmt: skip
            policy.load_state_dict(current.state_dict())  # back to the deployed weights; the optimizer goes on
        self.progress(report.line())
        return report
