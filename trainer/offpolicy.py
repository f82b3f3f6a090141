"""Off-policy correction: drop samples from versions too old, weight the rest by truncated importance ratios.

The trajectories in a window were sampled by earlier model versions (the behaviour policies). A sample
whose behaviour version is more than ``max_lag`` deployments behind the deployed version is dropped and
counted (deployments, not version numbers: candidates that were rejected or never served do not age
anything). For the rest, each policy token's advantage is weighted by min(pi(token) / mu(token), cap), with
pi the current policy before the update and mu the behaviour policy's recorded probability (truncated
importance sampling, as TRL does with vLLM's log-probabilities in ``token_truncate`` mode). Tokens whose
behaviour probability was not recorded keep weight 1 and are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trajstream.trainer.samples import TokenizedSample


@dataclass
class StaleFilter:
    kept: list[TokenizedSample]
    stale: int  # dropped: behaviour version more than max_lag deployments behind
    unversioned: int  # kept, but no behaviour version was recorded


def drop_stale(
    samples: Sequence[TokenizedSample], max_lag: int, deployed_since: Callable[[str], int | None]
) -> StaleFilter:
    """Keep samples whose oldest behaviour version is at most ``max_lag`` deployments old.

    ``deployed_since`` maps a version name to the deployments that came after it (``Registry.deployed_since``;
    None when unknown: such a version cannot be placed, so the sample is treated as stale).
    """
    out = StaleFilter([], 0, 0)
    for sample in samples:
        if not sample.model_versions:
            out.unversioned += 1
            out.kept.append(sample)
            continue
        lags = [deployed_since(v) for v in sample.model_versions]
        if any(lag is None for lag in lags) or max(lag for lag in lags if lag is not None) > max_lag:
            out.stale += 1
            continue
        out.kept.append(sample)
    return out


def truncated_weights(current_logps: Any, behaviour_logps: Any, mask: Any, cap: float) -> tuple[Any, int]:
    """(per-token weights, tokens corrected): min(exp(current - behaviour), cap) where the behaviour
    log-probability is known and the token is the policy's, 1 elsewhere. Tensors of shape (B, T)."""
    import torch

    known = ~torch.isnan(behaviour_logps) & mask.bool()
    ratio = torch.exp(current_logps - torch.nan_to_num(behaviour_logps, nan=0.0)).clamp(max=cap)
    weights = torch.where(known, ratio, torch.ones_like(ratio))
    return weights.detach(), int(known.sum().item())
