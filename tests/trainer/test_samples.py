"""Trajectories as training tokens: assistant-only masks, behaviour log-probabilities, stale versions."""

from __future__ import annotations

import math

import pytest

from tests.support.trainer import tokenizer, view
from trajstream.trainer.offpolicy import drop_stale, truncated_weights
from trajstream.trainer.samples import chat_messages, step_count, tokenize
from trajstream_sdk.codec import SingleObjectCodec


def test_only_the_assistants_tokens_are_trained_on(codec: SingleObjectCodec) -> None:
    tok = tokenizer()
    sample = tokenize(view(codec), tok)
    assert sample is not None
    roles = [m.role for m in chat_messages(view(codec))]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    prompt = tok.decode(sample.prompt_ids)
    assert "<|system|>" in prompt and "<|user|>" in prompt and "<|assistant|>" not in prompt
    trained = tok.decode([t for t, m in zip(sample.completion_ids, sample.assistant_mask, strict=True) if m])
    context = tok.decode([t for t, m in zip(sample.completion_ids, sample.assistant_mask, strict=True) if not m])
    assert "refund done thanks" in trained and "call lookup" in trained
    assert "result lookup success" in context and "<|tool|>" in context  # the tool's result is masked
    assert "result" not in trained and "<|tool|>" not in trained
    assert step_count(sample) == 2
    assert all(math.isnan(x) for x in sample.behaviour_logprobs)  # nothing recorded
    assert sample.model_versions == ("v1",)


def test_recorded_tokens_and_logprobs_line_up(codec: SingleObjectCodec) -> None:
    tok = tokenizer()
    sampled = [(tok.convert_tokens_to_ids(w), lp) for w, lp in [("refund", -0.5), ("done", -1.0), ("thanks", -2.0)]]
    sample = tokenize(view(codec, logprobs=sampled), tok)
    assert sample is not None
    known = [(t, lp) for t, lp in zip(sample.completion_ids, sample.behaviour_logprobs, strict=True)
             if not math.isnan(lp)]  # fmt: skip
    assert known == sampled
    # In the recorded turn only the sampled tokens are the policy's, not the template's markers.
    last = [m for t, m in zip(sample.completion_ids, sample.assistant_mask, strict=True)][-5:]
    assert last == [0, 1, 1, 1, 0]  # <|assistant|> refund done thanks </s>


def test_a_trajectory_without_assistant_messages_gives_nothing(codec: SingleObjectCodec) -> None:
    v = view(codec)
    no_assistant = type(v)(v.record, tuple(s for s in v.steps if False))
    assert tokenize(no_assistant, tokenizer()) is None


def test_stale_samples_are_dropped_and_counted(codec: SingleObjectCodec) -> None:
    tok = tokenizer()
    deployments_since = {"v1": 4, "v2": 3, "v5": 0}  # what Registry.deployed_since answers
    samples = [tokenize(view(codec, version=v), tok) for v in ("v1", "v2", "v5", None, "v-unknown")]
    kept = drop_stale([s for s in samples if s], max_lag=3, deployed_since=deployments_since.get)
    assert [s.model_versions for s in kept.kept] == [("v2",), ("v5",), ()]
    assert (kept.stale, kept.unversioned) == (2, 1)  # v1 is 4 deployments old; an unknown version cannot be placed


def test_truncated_weights() -> None:
    import torch

    current = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    behaviour = torch.tensor([[-1.0, -3.0, float("nan"), -0.5]])
    mask = torch.tensor([[1, 1, 1, 0]])
    weights, corrected = truncated_weights(current, behaviour, mask, cap=2.0)
    assert weights.tolist()[0] == pytest.approx([1.0, 2.0, 1.0, 1.0])  # e^2 capped at 2; unknown and masked: 1
    assert corrected == 2
    weights, _ = truncated_weights(current, torch.tensor([[-0.5, -0.5, -0.5, -0.5]]), mask, cap=2.0)
    assert weights.tolist()[0][:3] == pytest.approx([math.exp(-0.5)] * 3)  # below 1 is kept as is
