"""The exports' settings, beside the exports (the trainer's habit): the core settings plus ``TRAJSTREAM_EXPORT_*``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trajstream.settings import Settings


class ExportSettings(Settings):
    """Every core setting (ClickHouse above all), and the exports' own knobs."""

    export_weight_by: Literal["reward", "credit"] = Field(
        default="reward",
        description="What makes an assistant message learned (weight 1) in the SFT formats: the trajectory's "
        "reward (every assistant message of a good trajectory) or its turn's credit (the credited steps only; "
        "a turn with no recorded credit falls back to the reward).",
    )
    export_weight_threshold: float | None = Field(
        default=None,
        description="Weight 1 when the reward or credit is at least this. Unset: reward >= 0.5 (rewards are in "
        "[0, 1]), or credit > 0 (credits are shares of the reward summing to it, so a step's is small).",
    )

    export_pair_margin: float = Field(
        default=0.2,
        ge=0,
        description="The DPO formats pair a task group's highest- and lowest-reward trajectories "
        "only when their rewards differ by at least this (rewards are in [0, 1]).",
    )
    export_kto_label_by: Literal["reward", "outcome"] = Field(
        default="reward",
        description="trl-kto's label: reward at least the weight threshold, or the outcome "
        "(success True, failure and error False, any other outcome skipped).",
    )

    # ART's groups are formed as the trainer forms them (trajstream.grouping): its window, its rule, its
    # threshold; the defaults are the trainer's (TRAJSTREAM_TRAINER_WINDOW_COUNT, _GROUP_BY, _ENTITY_THRESHOLD).
    export_group_by: Literal["task", "entities"] = Field(
        default="task", description="How ART's trajectory groups are formed: by task key, or by entity overlap."
    )
    export_group_threshold: float = Field(
        default=0.3, ge=0, le=1, description="Jaccard overlap of entities to join a group (export_group_by=entities)."
    )
    export_group_window: int = Field(
        default=64, ge=1, description="Trajectories grouped together, in the corpus's order (the trainer's window)."
    )

    def learned(self, reward: float, credit: float | None) -> bool:
        """Whether an assistant message with this trajectory reward and turn credit is learned (weight 1)."""
        if self.export_weight_by == "credit" and credit is not None:
            return credit >= self.export_weight_threshold if self.export_weight_threshold is not None else credit > 0
        threshold = self.export_weight_threshold if self.export_weight_threshold is not None else 0.5
        return reward >= threshold

    @classmethod
    def extend(cls, settings: Settings, **update: Any) -> ExportSettings:
        """``settings`` with the exports' section: from ``update``, else from the environment, else defaults."""
        if isinstance(settings, ExportSettings) and not update:
            return settings
        return cls(**{**dict(settings), **update})
