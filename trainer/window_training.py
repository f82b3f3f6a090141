"""Train on one window of scored trajectories: decode, group, weigh, train, and (when it is time) save a
candidate version and gate it.

No Kafka here: ``trainer.loop`` feeds windows in, commits their offsets once this returns, and runs the
candidate's canary. The policy in memory and its optimizer carry from window to window; a version is cut
at most ``trainer_versions_per_hour`` times an hour (the loop says when). With ``trainer_adapter=lora``
(the default) the policy is a LoRA adapter on a fixed base, added through TRL's ``peft_config``, and each
version is saved as an adapter.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.errors import CodecError, TrajstreamError
from trajstream.grouping import Sample, make_groups
from trajstream.trainer.advantages import group_advantages, step_advantages
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.gate import Verdict, judge
from trajstream.trainer.grpo import TrainingRow, build_trainer, deepspeed_config, grpo_config
from trajstream.trainer.live import RewardStats
from trajstream.trainer.offpolicy import drop_stale
from trajstream.trainer.registry import Registry, VersionInfo
from trajstream.trainer.samples import TokenizedSample, step_count, tokenize
from trajstream.trainer.weights import DEEPSPEED_CONFIG_LOCK, base_of, load_full, load_version
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.schemas import CREDIT_ASSIGNMENT, SCORED_TRAJECTORY

DECISION_METHOD = "decision"  # the credit method preferred when enrichment produced it
MAX_HELDOUT = 1024  # the most recent held-out trajectories the gate judges a version on


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
    version: VersionInfo | None = None  # the candidate cut from this window, if one was
    verdict: Verdict | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    # The true rewards of the window's trajectories by the one version that served each (before any
    # control shuffle): the canary's and the watch's live figures. Trajectories served by several
    # versions (a reload mid-trajectory) count in ``mixed_versions`` only.
    live: dict[str, RewardStats] = field(default_factory=dict)
    mixed_versions: int = 0

    def line(self) -> str:
        out = (f"window {self.window_id}: {self.records} trajectories, trained on {self.trained} "
               f"(held out {self.heldout}, stale {self.stale}, unreadable {len(self.unreadable)}, "
               f"no assistant {self.no_assistant}, in groups of one or without reward variance "
               f"{self.skipped_samples})")  # fmt: skip
        if self.version is not None and self.verdict is not None:
            verdict = "passed the gate" if self.verdict.deploy else "rejected"
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
        # The policy in memory and its optimizer, carried across windows while they descend from the deployed
        # version (or the canary): ``_policy_version`` is the version the weights in memory started from.
        self._policy: Any = None
        self._policy_version: str | None = None
        self._optimizer: Any = None
        self._peft_config: Any = None  # set until TRL has wrapped a fresh base in its first adapter
        self._base: str | None = None  # the full weights the adapter applies to (LoRA)
        self._deployed_model: tuple[str, Any] | None = None  # the gate's reference, by version
        self._heldout: list[Scored] = []  # held out since the last version: what the gate judges on

    @property
    def policy(self) -> Any:
        return self._policy

    @property
    def optimizer(self) -> Any:
        return self._optimizer

    def _policy_for(self, deployed: VersionInfo) -> tuple[Any, Any]:
        """The model to train in place, and the optimizer carried with it (None: the trainer makes one).

        It goes on from the weights in memory while they descend from the deployed version or its canary;
        otherwise (the first window, a restart, a version deployed or rolled back by hand) it starts afresh
        from the canary if one serves, else from the deployed version."""
        canary = self.registry.canary()
        lineage = {deployed.version} | ({canary[0].version} if canary else set())
        if self._policy is not None and self._policy_version in lineage:
            return self._policy, self._optimizer
        start = canary[0] if canary else deployed
        self._optimizer, self._peft_config = None, None
        if self.settings.trainer_adapter == "full":
            self._policy, self._base = load_version(start), None  # an adapter version merged into its base
        elif start.base is None:  # full weights: TRL adds a fresh adapter over them
            self._policy, self._base = load_full(self.registry.weights(start.version)), base_of(start)
            self._peft_config = self._lora_config()
        else:
            self._policy, self._base = load_version(start, trainable_adapter=True), start.base
        self._policy_version = start.version
        return self._policy, self._optimizer

    def _reference(self, deployed: VersionInfo) -> Any:
        """The deployed version's model for the gate, loaded once per deployed version."""
        if self._deployed_model is None or self._deployed_model[0] != deployed.version:
            self._deployed_model = (deployed.version, load_version(deployed).eval())
        return self._deployed_model[1]

    def _lora_config(self) -> Any:
        from peft import LoraConfig

        s = self.settings
        targets: Any = s.trainer_lora_targets if s.trainer_lora_targets == "all-linear" else [
            t.strip() for t in s.trainer_lora_targets.split(",") if t.strip()]  # fmt: skip
        return LoraConfig(r=s.trainer_lora_rank, lora_alpha=s.trainer_lora_alpha, lora_dropout=0.0,
                          target_modules=targets, task_type="CAUSAL_LM")  # fmt: skip

    def restore(self, info: VersionInfo) -> None:
        """Put ``info``'s weights back into the policy in memory, in place: the optimizer keeps its state
        (its moments describe the loss surface near these weights as well as near the candidate's)."""
        if self._policy is None:
            return
        if self._base is None:  # full weights
            self._policy.load_state_dict(load_version(info).state_dict())
        else:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            if info.base is None:  # the bare base: an adapter whose B is zero adds nothing
                for name, param in self._policy.named_parameters():
                    if "lora_B" in name:
                        param.data.zero_()
            else:
                set_peft_model_state_dict(self._policy, load_file(self.registry.weights(info.version) /
                                                                 "adapter_model.safetensors"))  # fmt: skip
        self._policy_version = info.version

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

    def train(self, window_id: str, values: Sequence[bytes], cut: bool = True) -> WindowReport:
        """Train the policy in memory on the window; with ``cut``, save it as a candidate and gate it (a
        candidate the gate rejects puts the deployed weights back, and the optimizer goes on)."""
        s = self.settings
        report = WindowReport(window_id, records=len(values))
        deployed = self.registry.deployed()
        if deployed is None:
            raise TrajstreamError(f"no deployed version of {self.registry.model_name} in {self.registry.dir}: "
                                  "run `trajstream model init` first")  # fmt: skip
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(os.path.join(deployed.path, "tokenizer"))
        scored = self.decode(values, tokenizer, report)
        for x in scored:
            served = set(x.sample.model_versions)
            if len(served) == 1:
                report.live.setdefault(served.pop(), RewardStats()).add(x.reward)
            elif served:
                report.mixed_versions += 1
        if s.trainer_reward_control == "shuffled":
            # The control arm: the same trajectories with their rewards permuted within the window (the same
            # permutation when the window is trained again), so whatever it gains is not from the rewards.
            rewards = [x.reward for x in scored]
            random.Random(zlib.crc32(window_id.encode())).shuffle(rewards)
            for x, reward in zip(scored, rewards, strict=True):
                x.reward = reward
        kept = drop_stale([x.sample for x in scored], s.trainer_max_version_lag, self.registry.deployed_since)
        report.stale = kept.stale
        fresh = {id(x) for x in kept.kept}
        scored = [x for x in scored if id(x.sample) in fresh]
        judged = [x for x in scored if heldout(x.sample.trajectory_id, s.trainer_heldout_fraction)]
        train = [x for x in scored if not heldout(x.sample.trajectory_id, s.trainer_heldout_fraction)]
        report.heldout = len(judged)
        # The gate judges on the held-out share of every window since the last version, not of this one
        # alone: a window's few held-out trajectories make an estimate too noisy to refuse a version on.
        self._heldout = (self._heldout + judged)[-MAX_HELDOUT:]
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
            with DEEPSPEED_CONFIG_LOCK:  # see trainer.weights: a model loaded meanwhile reads this config
                config = grpo_config(
                    s.trainer_loss, out, deepspeed=deepspeed_config(s.trainer_zero_stage),
                    learning_rate=s.trainer_learning_rate, beta=s.trainer_beta, per_device_train_batch_size=len(rows),
                    num_generations=len(rows), num_train_epochs=s.trainer_epochs, lr_scheduler_type="constant",
                )  # fmt: skip
                trainer = build_trainer(policy, tokenizer, rows, config, is_cap=s.trainer_is_cap,
                                        optimizer=optimizer, peft_config=self._peft_config)  # fmt: skip
            if self._peft_config is not None:  # TRL wrapped the base in a fresh adapter: that is the policy now
                self._policy, self._peft_config = trainer.model, None
            result = trainer.train()
            report.metrics = {"train_loss": float(result.training_loss), "steps": float(result.global_step),
                              "is_corrected_tokens": float(trainer.corrected_tokens),
                              "policy_tokens": float(trainer.policy_tokens)}  # fmt: skip
            if optimizer is None and s.trainer_zero_stage == 0:
                self._optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else None
            if cut:
                version = self.registry.save(trainer.save_model, tokenizer, self._policy_version, [window_id],
                                             report.metrics, base=self._base)  # fmt: skip
            del trainer
        if s.trainer_zero_stage == 3:
            # The training arguments leave transformers' ZeRO-3 switch on: a model loaded after this (the gate's
            # two, the next window's policy) would come partitioned, empty outside a DeepSpeed engine.
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()  # type: ignore[no-untyped-call]
        if not cut:
            self.progress(report.line())
            return report
        report.version = version
        # The candidate is the policy in memory (under ZeRO-3 its weights are partitioned: the saved copy).
        candidate = self._policy.eval() if s.trainer_zero_stage < 3 else load_version(version)
        verdict = judge(candidate, self._reference(deployed), [(x.sample, x.reward) for x in self._heldout],
                        s.gate_min_gain, s.gate_max_kl)  # fmt: skip
        self._heldout = []
        report.verdict = verdict
        if verdict.deploy:
            report.version = self.registry.mark(version.version, "candidate", "judged", verdict.reason,
                                                verdict.metrics())  # fmt: skip
            self._policy_version = version.version  # the policy in memory now descends from the candidate
        else:
            report.version = self.registry.mark(version.version, "rejected", "rejected", f"gate: {verdict.reason}",
                                                verdict.metrics())  # fmt: skip
            self.restore(deployed)
        self.progress(report.line())
        return report
