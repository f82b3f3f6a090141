"""The exports' settings, beside the exports (the trainer's habit): the core settings plus ``TRAJSTREAM_EXPORT_*``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trajstream.settings import Settings


class ExportSettings(Settings):
    """Every core setting (ClickHouse above all), and the exports' own knobs."""

    export_weight_by: Literal["reward", "credit"] = Field(
        default="reward",
        description="What gives an assistant message weight 1 in the SFT formats: the trajectory's reward "
        "(every assistant message of a good trajectory is learned) or the turn's credit (only the steps "
        "scoring credited; a turn with no recorded credit falls back to the reward).",
    )
    export_weight_threshold: float = Field(
        default=0.5,
        description="An assistant message is learned (weight 1) when its reward or credit is at least this.",
    )
