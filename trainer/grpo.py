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

from trainer.offpolicy import truncated_weights
from trainer.samples import TokenizedSample, per_token

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
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
    }


def _trainer_class() -> type:
    import torch
    from torch.utils.data import SequentialSampler
    from trl import GRPOTrainer  # type: ignore[attr-defined]

    class WindowGRPOTrainer(GRPOTrainer):
        is_cap: float = 2.0
        corrected_tokens: int = 0
        policy_tokens: int = 0

        def _get_train_sampler(self, dataset: Any = None) -> Any:
            # Each sample once, in window order: TRL's sampler repeats prompts for its generations.
            return SequentialSampler(dataset if dataset is not None else self.train_dataset)  # type: ignore[arg-type]

        def _generate_and_score_completions(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
            device = self.accelerator.device
            pad: int = self.processing_class.pad_token_id  # type: ignore[union-attr]
            width_p = max(len(r["prompt_ids"]) for r in rows)
            width_c = max(len(r["completion_ids"]) for r in rows)

            def tensor(values: Sequence[Sequence[float]], dtype: Any) -> Any:
                return torch.tensor(values, dtype=dtype, device=device)

            prompt_ids = tensor([[pad] * (width_p - len(r["prompt_ids"])) + r["prompt_ids"] for r in rows], torch.long)
            prompt_mask = tensor([[0] * (width_p - len(r["prompt_ids"])) + [1] * len(r["prompt_ids"]) for r in rows],
                                 torch.long)  # fmt: skip

            def right(key: str, fill: float) -> list[list[float]]:
                return [list(r[key]) + [fill] * (width_c - len(r[key])) for r in rows]

            completion_ids = tensor(right("completion_ids", pad), torch.long)
            completion_mask = tensor([[1] * len(r["completion_ids"]) + [0] * (width_c - len(r["completion_ids"]))
                                      for r in rows], torch.long)  # fmt: skip
            tool_mask = tensor(right("assistant_mask", 0), torch.long)
            behaviour = tensor(right("behaviour_logprobs", math.nan), torch.float32)
            advantages = tensor(right("advantages", 0.0), torch.float32)
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
            with torch.no_grad():
                old_logps = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, width_c, batch_size=len(rows)
                )[0]
                ref_logps = None
                if self.beta != 0.0 and self.ref_model is not None:
                    ref_logps = self._get_per_token_logps_and_entropies(
                        self.ref_model, input_ids, attention_mask, width_c, batch_size=len(rows)
                    )[0]
            policy = completion_mask * tool_mask
            weights, corrected = truncated_weights(old_logps, behaviour, policy, self.is_cap)
            self.corrected_tokens += corrected
            self.policy_tokens += int(policy.sum().item())
            inputs = {
                "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
                "completion_mask": completion_mask, "tool_mask": tool_mask, "advantages": advantages * weights,
                "old_per_token_logps": old_logps, "num_items_in_batch": policy.sum().clamp(min=1),
            }  # fmt: skip
            if ref_logps is not None:
                inputs["ref_per_token_logps"] = ref_logps
            return inputs

    return WindowGRPOTrainer


def build_trainer(model: Any, tokenizer: Any, rows: Sequence[TrainingRow], config: Any, is_cap: float = 2.0) -> Any:
    """A window trainer over ``rows`` (``model`` is a model or a local model directory)."""
    from datasets import Dataset

    if not rows:
        raise ValueError("a window with nothing to train on")
    cls = _trainer_class()
    trainer = cls(model=model, reward_funcs=_no_reward, args=config,
                  train_dataset=Dataset.from_list([r.as_row() for r in rows]), processing_class=tokenizer)  # fmt: skip
    trainer.is_cap = is_cap
    return trainer
