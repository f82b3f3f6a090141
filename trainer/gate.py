"""The deployment gate: a candidate version is deployed only if, on a held-out replay window, its estimated
reward is not worse than the deployed version's and it has not moved too far from it.

Both figures come from the held-out trajectories alone, without running agents:

* the candidate's reward is estimated by self-normalised importance sampling: each trajectory's reward
  weighted by the ratio pi_candidate / pi_deployed of its assistant tokens (the window was sampled by the
  deployed version or close to it), taken per token on average, as GSPO's sequence-level ratio is, and
  clipped to [1/weight_cap, weight_cap]: a product over hundreds of tokens would let one trajectory
  outweigh all the others;
* the KL divergence KL(deployed || candidate) per assistant token, with the k3 estimator
  (exp(r) - r - 1, r = log pi_candidate - log pi_deployed), which is never negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trajstream.trainer.samples import TokenizedSample


@dataclass(frozen=True)
class Verdict:
    deploy: bool
    reward_candidate: float
    reward_deployed: float
    kl: float
    reason: str

    def metrics(self) -> dict[str, float]:
        return {"heldout_reward": self.reward_candidate, "heldout_reward_deployed": self.reward_deployed,
                "kl_from_deployed": self.kl}  # fmt: skip


def policy_logps(model: Any, sample: TokenizedSample) -> Any:
    """log pi(token) for the sample's assistant tokens, in order (a 1-D tensor)."""
    return batch_logps(model, [sample])[0]


def batch_logps(model: Any, samples: Sequence[TokenizedSample], batch: int = 32) -> list[Any]:
    """``policy_logps`` for many samples, ``batch`` sequences per forward (right-padded, masked)."""
    import torch

    out: list[Any] = []
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        seqs = [s.prompt_ids + s.completion_ids for s in chunk]
        width = max(len(x) for x in seqs)
        ids = torch.tensor([x + [0] * (width - len(x)) for x in seqs], device=model.device)
        attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in seqs], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        logps = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None])[:, :, 0]
        for row, s in enumerate(chunk):
            completion = logps[row, len(s.prompt_ids) - 1 : len(s.prompt_ids) - 1 + len(s.completion_ids)]
            mask = torch.tensor(s.assistant_mask, dtype=torch.bool, device=completion.device)
            out.append(completion[mask])
    return out


def judge(candidate: Any, deployed: Any, heldout: Sequence[tuple[TokenizedSample, float]], min_gain: float,
          max_kl: float, weight_cap: float = 10.0) -> Verdict:  # fmt: skip
    """Compare two models on held-out (sample, reward) pairs; deploy the candidate when it passes both checks."""
    if not heldout:
        return Verdict(False, math.nan, math.nan, math.nan, "no held-out trajectories to judge on")
    log_weights, rewards, kl_sum, tokens = [], [], 0.0, 0
    samples = [sample for sample, _ in heldout]
    for candidate_logps, deployed_logps, (_, reward) in zip(
        batch_logps(candidate, samples), batch_logps(deployed, samples), heldout, strict=True
    ):
        delta = candidate_logps - deployed_logps
        bound = math.log(weight_cap)
        log_weights.append(max(-bound, min(float(delta.mean()), bound)))
        rewards.append(reward)
        kl_sum += float((delta.exp() - delta - 1).sum())
        tokens += int(delta.numel())
    top = max(log_weights)
    weights = [math.exp(w - top) for w in log_weights]
    estimate = sum(w * r for w, r in zip(weights, rewards, strict=True)) / sum(weights)
    baseline = sum(rewards) / len(rewards)
    kl = kl_sum / max(tokens, 1)
    if kl > max_kl:
        return Verdict(False, estimate, baseline, kl, f"KL from the deployed version {kl:.4f} > {max_kl}")
    if estimate < baseline + min_gain:
        return Verdict(False, estimate, baseline, kl,
                       f"held-out reward {estimate:.4f} < deployed {baseline:.4f} + {min_gain}")  # fmt: skip
    return Verdict(True, estimate, baseline, kl, f"held-out reward {estimate:.4f} >= {baseline:.4f} + {min_gain}, "
                   f"KL {kl:.4f} <= {max_kl}")  # fmt: skip
