"""TRL's GRPO objectives on trajectories sampled elsewhere: one training window at a time, under DeepSpeed.

``WindowGRPOTrainer`` is TRL's ``GRPOTrainer`` with generation replaced by the window's samples. TRL
computes the loss (grpo, dapo, dr_grpo, or GSPO's sequence-level importance sampling), the clipping and
the optional KL penalty to the reference model; its ``tool_mask`` input keeps the loss on the assistant's
tokens. TRL applies rollout log-probabilities only when it generates with vLLM, so the off-policy
correction is done here: the truncated importance weight of each token multiplies its advantage, which is
the same as TRL's per-token ``importance_sampling_ratio`` factor (the weight is non-negative, so it passes
through the clipped minimum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trajstream.trainer.offpolicy import truncated_weights
from trajstream.trainer.samples import TokenizedSample, per_token

LossType = Literal["grpo", "dapo", "dr_grpo", "gspo"]


@dataclass(frozen=True)
class TrainingRow:
    """A sample with its per-step advantages, as the trainer's dataset holds it."""

    sample: TokenizedSample
    step_advantages: list[float]

    def as_row(self) -> dict[str, Any]:
        s = self.sample
        return {
            "prompt": s.trajectory_id,  # TRL's dataset checks want a prompt column; generation never reads it
            "prompt_ids": s.prompt_ids,
            "completion_ids": s.completion_ids,
            "assistant_mask": s.assistant_mask,
            "behaviour_logprobs": s.behaviour_logprobs,
            "advantages": per_token(self.step_advantages, s),
        }


def _no_reward(*_: Any, **__: Any) -> list[float]:
    raise RuntimeError("rewards come from the scored trajectories; the window trainer never generates")


def grpo_config(loss_type: LossType, output_dir: str, **overrides: Any) -> Any:
    """A ``GRPOConfig`` for window training; GSPO is TRL's grpo loss with sequence-level importance sampling."""
    import torch
    from trl import GRPOConfig  # type: ignore[attr-defined]

    level = "sequence" if loss_type == "gspo" else "token"
    options: dict[str, Any] = {
        "output_dir": output_dir, "loss_type": "grpo" if loss_type == "gspo" else loss_type,
        "importance_sampling_level": level, "num_generations": 2, "per_device_train_batch_size": 2,
        "report_to": [], "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True,
        "max_completion_length": 1024, "num_train_epochs": 1,
    }  # fmt: skip
    if not torch.cuda.is_available():
        options.update(use_cpu=True, bf16=False)  # TRL defaults to bf16, which the CPU path refuses
    options.update(overrides)
    return GRPOConfig(**options)


def deepspeed_config(stage: int) -> dict[str, Any]:
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, not {stage}")
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        # ZeRO-3 partitions the weights: saving gathers them into whole weights (not a DeepSpeed checkpoint).
        "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True},
        "bf16": {"enabled": "auto"},  # follows the training arguments (bf16 on a GPU, fp32 on the CPU)
        "zero_allow_untested_optimizer": True,
    }


def collate(rows: Sequence[dict[str, Any]], pad: int, device: Any) -> dict[str, Any]:
    """The window rows as the tensors TRL's loss reads: prompts left-padded, completions right-padded,
    ``tool_mask`` marking the assistant's tokens, per-token ``advantages``, and the behaviour
    log-probabilities (NaN where unknown) for the off-policy weights."""
    import torch

    width_p = max(len(r["prompt_ids"]) for r in rows)
    width_c = max(len(r["completion_ids"]) for r in rows)

    def tensor(values: Sequence[Sequence[float]], dtype: Any) -> Any:
        return torch.tensor(values, dtype=dtype, device=device)

    def right(key: str, fill: float) -> list[list[float]]:
        return [list(r[key]) + [fill] * (width_c - len(r[key])) for r in rows]

    completion_mask = tensor([[1] * len(r["completion_ids"]) + [0] * (width_c - len(r["completion_ids"]))
                              for r in rows], torch.long)  # fmt: skip
    tool_mask = tensor(right("assistant_mask", 0), torch.long)
    return {
        "prompt_ids": tensor([[pad] * (width_p - len(r["prompt_ids"])) + r["prompt_ids"] for r in rows], torch.long),
        "prompt_mask": tensor([[0] * (width_p - len(r["prompt_ids"])) + [1] * len(r["prompt_ids"]) for r in rows],
                              torch.long),
        "completion_ids": tensor(right("completion_ids", pad), torch.long),
        "completion_mask": completion_mask,
        "tool_mask": tool_mask,
        "advantages": tensor(right("advantages", 0.0), torch.float32),
        "behaviour_logprobs": tensor(right("behaviour_logprobs", math.nan), torch.float32),
        "num_items_in_batch": (completion_mask * tool_mask).sum().clamp(min=1),
    }  # fmt: skip


def _trainer_class() -> type:
    import torch
    from torch.utils.data import SequentialSampler
    from trl import GRPOTrainer  # type: ignore[attr-defined]

    class WindowGRPOTrainer(GRPOTrainer):
        is_cap: float = 2.0
        persistent_optimizer: Any = None  # carried from window to window (see build_trainer)
        corrected_tokens: int = 0
        policy_tokens: int = 0
        _weigh: dict[str, Any] | None = None  # the inputs whose advantages the next policy forward weighs

        def _get_train_sampler(self, dataset: Any = None) -> Any:
            # Each sample once, in window order: TRL's sampler repeats prompts for its generations.
            return SequentialSampler(dataset if dataset is not None else self.train_dataset)  # type: ignore[arg-type]

        def _generate_and_score_completions(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
            # The model's device: DeepSpeed places it on its accelerator, which use_cpu does not override.
            device = getattr(self.model, "device", self.accelerator.device)
            inputs = collate(rows, self.processing_class.pad_token_id, device)  # type: ignore[union-attr]
            if self.beta != 0.0 and self.ref_model is not None:
                with torch.no_grad():
                    inputs["ref_per_token_logps"] = self._get_per_token_logps_and_entropies(
                        self.ref_model,
                        torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
                        torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
                        inputs["completion_ids"].size(1),
                    )[0]
            return inputs

        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            if self.persistent_optimizer is None:
                return super().create_optimizer(*args, **kwargs)
            self.optimizer = self.persistent_optimizer
            return self.optimizer

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:  # fmt: skip
            self._weigh = inputs
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self._weigh = None

        def _get_per_token_logps_and_entropies(self, model: Any, *args: Any, **kwargs: Any) -> Any:
            out = super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
            pending, self._weigh = self._weigh, None
            if pending is not None:
                # TRL's loss computes the policy's log-probabilities first and reads the advantages after:
                # weighing them here uses that same forward, not a second one. The weights are constants
                # (detached), computed from the policy before this update, as with vLLM rollouts in TRL.
                policy = pending["completion_mask"] * pending["tool_mask"]
                weights, corrected = truncated_weights(out[0].detach(), pending["behaviour_logprobs"], policy,
                                                       self.is_cap)  # fmt: skip
                # From the unweighted ones: with num_iterations > 1 TRL steps on the same inputs again.
                raw = pending.setdefault("unweighted_advantages", pending["advantages"])
                pending["advantages"] = raw * weights
                self.corrected_tokens += corrected
                self.policy_tokens += int(policy.sum().item())
            return out

    return WindowGRPOTrainer


def build_trainer(
    model: Any,
    tokenizer: Any,
    rows: Sequence[TrainingRow],
    config: Any,
    is_cap: float = 2.0,
    optimizer: Any = None,
    peft_config: Any = None,
) -> Any:
    """A window trainer over ``rows`` (``model`` is a model or a local model directory; with ``peft_config``
    TRL wraps it in a fresh LoRA adapter, and ``trainer.model`` is that ``PeftModel``).

    ``optimizer``, built over ``model``'s parameters, carries its state from one window to the next: a
    fresh AdamW per window makes every window's steps first steps, each moving every parameter by about
    the learning rate in the sign of a noisy gradient (ZeRO stage 0 only: later stages partition it).
    """
    from datasets import Dataset

    if not rows:
        raise ValueError("a window with nothing to train on")
    cls = _trainer_class()
    trainer = cls(model=model, reward_funcs=_no_reward, args=config, peft_config=peft_config,
                  train_dataset=Dataset.from_list([r.as_row() for r in rows]), processing_class=tokenizer)  # fmt: skip
    trainer.is_cap = is_cap
    trainer.persistent_optimizer = optimizer
    return trainer
