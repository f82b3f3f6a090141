"""A version's weights as a model: full weights, or a LoRA adapter applied to its base.

The one place that knows how a version is stored, for the trainer (the policy it trains and the models
the gate compares), serving and the deployer's checks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from trajstream.errors import TrajstreamError
from trajstream.trainer.registry import VersionInfo

ADAPTER_CONFIG = "adapter_config.json"
# transformers keeps DeepSpeed's config in a process-wide weak reference, set while a trainer's arguments are
# built and read by every from_pretrained (is ZeRO-3 on?). A model loaded while the trainer builds its
# arguments in another thread (serving's reload, in the learning demo's one process) read it half-made and
# failed; both hold this lock.
DEEPSPEED_CONFIG_LOCK = threading.Lock()


class WeightsError(TrajstreamError):
    """A version's or an adapter's files are missing or do not fit the base they are meant for."""


def is_adapter(directory: str | Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def load_full(directory: str | Path) -> Any:
    from transformers import AutoModelForCausalLM

    if not (Path(directory) / "config.json").is_file():
        raise WeightsError(f"{directory} holds no model weights (no config.json)")
    with DEEPSPEED_CONFIG_LOCK:
        return AutoModelForCausalLM.from_pretrained(directory)


def load_adapter(base: Any, adapter: str | Path, trainable: bool = False) -> Any:
    """``base`` (a model, changed in place) with the adapter in ``adapter``: merged into it for inference,
    or as a trainable ``PeftModel``."""
    from peft import PeftModel

    if not is_adapter(adapter):
        raise WeightsError(f"{adapter} is not a LoRA adapter (no {ADAPTER_CONFIG})")
    model = PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    return model if trainable else model.merge_and_unload()


def load_version(info: VersionInfo, trainable_adapter: bool = False) -> Any:
    """The version as a model: its full weights, or its base with its adapter (merged unless
    ``trainable_adapter``, which keeps the adapter apart for more training)."""
    weights = Path(info.path) / "model"
    if info.base is None:
        return load_full(weights)
    return load_adapter(load_full(info.base), weights, trainable=trainable_adapter)


def base_of(info: VersionInfo) -> str:
    """The full weights a LoRA line's adapters apply to: a LoRA version's base, or a full version itself."""
    return info.base if info.base is not None else str(Path(info.path) / "model")
