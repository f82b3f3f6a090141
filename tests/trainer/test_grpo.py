"""TRL's GRPO objectives on window samples: the losses run, the off-policy weights act, DeepSpeed trains."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import free_port
from tests.support.trainer import model, tokenizer, view
from trajstream.trainer.grpo import TrainingRow, build_trainer, deepspeed_config, grpo_config
from trajstream.trainer.samples import tokenize
from trajstream_sdk.codec import SingleObjectCodec


@pytest.fixture(scope="module", autouse=True)
def single_process_group() -> Iterator[None]:
    """DeepSpeed (gloo on the CPU) wants a process group, even of one."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _rows(codec: SingleObjectCodec, tok: Any, logprobs: list[tuple[int, float]] | None = None,
          advantages: tuple[float, ...] = (1.0, -1.0)) -> list[TrainingRow]:  # fmt: skip
    rows = []
    for advantage in advantages:
        sample = tokenize(view(codec, logprobs=logprobs), tok)
        assert sample is not None
        rows.append(TrainingRow(sample, [advantage, advantage]))
    return rows


def _loss(trainer: Any) -> float:
    import torch

    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    inputs = trainer._generate_and_score_completions(rows)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this bypasses
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, inputs))


def test_importance_weights_scale_the_loss(codec: SingleObjectCodec, tmp_path: Path) -> None:
    """GRPO's first step is on-policy (ratio 1), so its loss is minus the mean weighted advantage over the
    policy's tokens. Behaviour log-probabilities far below the current policy's put the three recorded
    tokens at the cap, and the loss moves by exactly what those tokens carry."""
    tok = tokenizer()
    policy = model(tok)
    sampled = [(tok.convert_tokens_to_ids(w), -30.0) for w in ("refund", "done", "thanks")]

    def loss(logprobs: list[tuple[int, float]] | None, cap: float, name: str) -> tuple[float, Any]:
        rows = _rows(codec, tok, logprobs, advantages=(1.0,))
        trainer = build_trainer(policy, tok, rows, grpo_config("grpo", str(tmp_path / name)), is_cap=cap)
        return _loss(trainer), trainer

    base, plain = loss(None, 3.0, "a")
    corrected, weighted = loss(sampled, 3.0, "b")
    policy_tokens = weighted.policy_tokens
    assert (plain.corrected_tokens, weighted.corrected_tokens) == (0, 3)
    assert base == pytest.approx(-1.0)
    assert corrected == pytest.approx(-(policy_tokens - 3 + 3 * 3.0) / policy_tokens)
    capped_at_one, _ = loss(sampled, 1.0, "c")
    assert capped_at_one == pytest.approx(base)  # a cap of 1 takes the correction back out
    close = [(t, -0.01) for t, _ in sampled]  # the behaviour policy was surer than the current one: weights < 1
    below, _ = loss(close, 3.0, "d")
    assert below > base


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo", "gspo"])
def test_a_window_trains_under_deepspeed(codec: SingleObjectCodec, tmp_path: Path, loss_type: str) -> None:
    import torch

    tok = tokenizer()
    policy = model(tok)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    # On the CPU here (gloo); on a GPU where one exists.
    config = grpo_config(loss_type, str(tmp_path), deepspeed=deepspeed_config(0), learning_rate=1e-2, max_steps=1)
    trainer = build_trainer(policy, tok, _rows(codec, tok), config)
    result = trainer.train()
    assert result.global_step == 1
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach().cpu(), before[n])]
    assert changed, "no parameter moved"


def test_bad_stage_and_empty_window_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ZeRO stage"):
        deepspeed_config(4)
    with pytest.raises(ValueError, match="nothing to train"):
        build_trainer(None, None, [], grpo_config("grpo", str(tmp_path)))


def test_a_kl_penalty_to_the_reference_model(codec: SingleObjectCodec, tmp_path: Path) -> None:
    """With beta > 0 TRL loads the reference model from the version's directory and adds the KL term."""
    tok = tokenizer()
    directory = tmp_path / "v1"
    model(tok).save_pretrained(directory)
    tok.save_pretrained(directory)
    config = grpo_config("grpo", str(tmp_path / "out"), deepspeed=deepspeed_config(0), learning_rate=1e-2,
                         max_steps=2, beta=0.1)  # fmt: skip
    trainer = build_trainer(str(directory), tok, _rows(codec, tok), config)
    trainer.train()
    kl = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert trainer.ref_model is not None and kl and kl[-1] > 0  # the policy moved away from the reference
