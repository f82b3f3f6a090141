"""The trainer's settings, beside the trainer (TRL's habit: GRPOConfig sits next to GRPOTrainer).

``TrainerSettings`` is the platform's one settings object with the trainer's section added: the same
``TRAJSTREAM_*`` variables (``TRAJSTREAM_TRAINER_*``, ``TRAJSTREAM_GATE_*``, ``TRAJSTREAM_CANARY_*``),
read by the trainer and serving alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from trajstream.settings import Settings


class TrainerSettings(Settings):
    """Every core setting, and the trainer's: windows, grouping, the loss, DeepSpeed, the registry, the gate."""

    trainer_model_name: str = Field(default="policy", description="The model line the trainer improves.")
    trainer_registry: Path | None = Field(default=None, description="Model registry directory (default: HOME/models).")
    trainer_window_count: int = Field(
        default=64, ge=2, description="A training window closes at this many trajectories."
    )
    trainer_window_seconds: float = Field(default=60.0, gt=0, description="... or this long after its first one.")
    trainer_group_by: Literal["task", "entities"] = "task"
    trainer_start: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a trainer with no committed offset starts reading scored trajectories."
    )
    trainer_entity_threshold: float = Field(default=0.3, ge=0, le=1, description="Jaccard overlap to join a group.")
    trainer_loss: Literal["grpo", "dapo", "dr_grpo", "gspo"] = "grpo"
    trainer_beta: float = Field(default=0.0, ge=0, description="KL penalty to the reference model (0: none).")
    trainer_is_cap: float = Field(default=2.0, ge=1, description="Truncation of the off-policy importance weights.")
    trainer_max_version_lag: int = Field(default=4, ge=0, description="Older behaviour versions are dropped.")
    trainer_zero_stage: int = Field(default=0, ge=0, le=3, description="DeepSpeed ZeRO stage.")
    trainer_learning_rate: float = Field(default=1e-5, gt=0)
    trainer_epochs: int = Field(default=1, ge=1, description="Steps on each window (the whole window per step).")
    trainer_heldout_fraction: float = Field(
        default=0.25, ge=0, lt=1, description="Share of a window the gate judges on."
    )
    trainer_adapter: Literal["lora", "full"] = Field(
        default="lora", description="Train LoRA adapters on a fixed base (each version an adapter) or full weights."
    )
    trainer_lora_rank: int = Field(default=8, ge=1, description="LoRA rank r.")
    trainer_lora_alpha: int = Field(default=16, ge=1, description="LoRA alpha (the update is scaled by alpha / r).")
    trainer_lora_targets: str = Field(
        default="all-linear", description="Modules LoRA adapts: all-linear, or comma-separated module names."
    )
    trainer_versions_per_hour: float = Field(
        default=12.0, gt=0, description="At most this many candidate versions an hour; windows in between train on."
    )
    trainer_reward_control: Literal["none", "shuffled"] = Field(
        default="none", description="shuffled: permute the rewards within each window (a control arm, no signal)."
    )
    gate_min_gain: float = Field(default=0.0, description="Held-out reward a version must gain over the deployed one.")
    gate_max_kl: float = Field(default=0.05, gt=0, description="Largest KL from the deployed version the gate accepts.")

    canary_share: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Share of requests a candidate serves before promotion (0: deploy at once).",
    )
    canary_margin: float = Field(
        default=0.05, gt=0, description="Live reward a candidate may lose and still count as not worse."
    )
    canary_alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Chance to promote a version worse by the margin."
    )
    canary_beta: float = Field(default=0.2, gt=0, lt=0.5, description="Chance to roll back a version as good.")
    canary_min_trajectories: int = Field(default=30, ge=2, description="Live trajectories per side before deciding.")
    canary_max_trajectories: int = Field(
        default=2000, ge=2, description="A canary undecided at this many trajectories is rolled back."
    )
    watch_trajectories: int = Field(
        default=1000, ge=0, description="A promoted version is watched against its predecessor this long (0: off)."
    )

    @property
    def registry_dir(self) -> Path:
        return self.trainer_registry or self.home / "models"

    @classmethod
    def extend(cls, settings: Settings, **update: Any) -> TrainerSettings:
        """``settings`` with the trainer's section: from ``update``, else from the environment, else defaults."""
        if isinstance(settings, TrainerSettings) and not update:
            return settings
        return cls(**{**dict(settings), **update})
