"""Trainer benchmark: training tokens per second of the window trainer next to TRL's GRPOTrainer.

    python benchmarks/trainer.py [--steps 30] [--batch 4] [--size tiny|small|0.5b] [--zero 0]

Both step on the same batches in this process, one after the other, under the same DeepSpeed config:

* ours: ``trainer.grpo`` (TRL's GRPO loss, assistant-only mask, per-token advantages, truncated
  importance weights from recorded behaviour log-probabilities);
* baseline: TRL's ``GRPOTrainer`` with its generation replaced by the same prepared batches, and no
  off-policy correction.

Tokens are prompt + completion tokens of the batches stepped on; step time is measured from the third
step on (DeepSpeed and the first steps warm up). On a GPU (``--size 0.5b``: a Qwen2-style model of about
0.5B parameters built from a config, bf16) it also prints model FLOPs utilisation: 6 x parameters x
tokens/s over the GPU's dense bf16 peak (``--peak-tflops``, default 989 for an H100/H200).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import socket
import sys
import tempfile
import time
from typing import Any

TARGET = 0.80
SIZES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (256, 4, 4, 2, 1024, 8192),
    "small": (512, 8, 8, 2, 2048, 32000),
    "0.5b": (896, 24, 14, 2, 4864, 151936),
}


def build(size: str, device: str) -> tuple[Any, Any, int]:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from trajstream.trainer.tiny import build_tokenizer

    hidden, layers, heads, kv, inter, vocab = SIZES[size]
    tokenizer = build_tokenizer([f"w{i}" for i in range(vocab - 16)])
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                         max_position_embeddings=4096, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)  # fp32 master weights; DeepSpeed runs bf16 on a GPU
    params = sum(p.numel() for p in model.parameters())
    return model, tokenizer, params


def rows(tokenizer: Any, n: int, prompt: int, completion: int, seed: int = 0) -> list[Any]:
    from trajstream.trainer.grpo import TrainingRow
    from trajstream.trainer.samples import TokenizedSample

    rng = random.Random(seed)
    vocab = len(tokenizer)
    out = []
    for i in range(n):
        mask = [1 if (j // 16) % 3 != 2 else 0 for j in range(completion)]  # tool results in between
        steps = [j // 48 if m else -1 for j, m in enumerate(mask)]
        prompt_ids = [rng.randrange(8, vocab) for _ in range(prompt)]
        completion_ids = [rng.randrange(8, vocab) for _ in range(completion)]
        behaviour = [-rng.uniform(0.5, 6.0) if m else math.nan for m in mask]
        sample = TokenizedSample(f"t{i}", 1, prompt_ids, completion_ids, mask, steps, behaviour, ("v1",))
        n_steps = max(steps) + 1
        out.append(TrainingRow(sample, [rng.uniform(-1, 1)] * n_steps))
    return out


def baseline_class() -> type:
    from torch.utils.data import SequentialSampler
    from trl import GRPOTrainer  # type: ignore[attr-defined]

    from trajstream.trainer.grpo import collate

    class PreparedGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer on batches prepared elsewhere: its loss and training step, no generation."""

        def _get_train_sampler(self, dataset: Any = None) -> Any:
            return SequentialSampler(dataset if dataset is not None else self.train_dataset)

        def _generate_and_score_completions(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
            inputs = collate(batch, self.processing_class.pad_token_id, self.accelerator.device)
            inputs.pop("behaviour_logprobs")
            return inputs

    return PreparedGRPOTrainer


def timed(trainer: Any) -> tuple[float, int]:
    """Seconds and steps, from the third step on."""
    from transformers import TrainerCallback

    marks: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *_: Any, **__: Any) -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    trainer.add_callback(Clock())
    trainer.train()
    return marks[-1] - marks[1], len(marks) - 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4, help="trajectories per step")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--completion", type=int, default=192)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--zero", type=int, default=0, help="DeepSpeed ZeRO stage")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    import torch
    from datasets import Dataset

    from trajstream.trainer.grpo import build_trainer, deepspeed_config, grpo_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.setdefault("MASTER_PORT", str(s.getsockname()[1]))
    for key, value in {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        os.environ.setdefault(key, value)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"# device {device}, {torch.get_num_threads()} CPU threads, model size {args.size}, ZeRO {args.zero}",
          file=sys.stderr)  # fmt: skip
    results = {}
    for name in ("trl", "ours", "trl_again", "ours_again"):
        model, tokenizer, params = build(args.size, device)
        data = rows(tokenizer, args.steps * args.batch, args.prompt, args.completion)
        with tempfile.TemporaryDirectory() as out:
            extra: dict[str, Any] = {"bf16": True} if device == "cuda" else {}
            config = grpo_config("grpo", out, deepspeed=deepspeed_config(args.zero), max_steps=args.steps,
                                 per_device_train_batch_size=args.batch, num_generations=2, learning_rate=1e-5,
                                 logging_steps=10_000, **extra)  # fmt: skip
            if name.startswith("ours"):
                trainer = build_trainer(model, tokenizer, data, config)
            else:
                dataset = Dataset.from_list([r.as_row() for r in data])
                trainer = baseline_class()(model=model, reward_funcs=lambda **_: [], args=config,
                                           processing_class=tokenizer, train_dataset=dataset)  # fmt: skip
            seconds, steps = timed(trainer)
        tokens = steps * args.batch * (args.prompt + args.completion)
        results[name] = tokens / seconds
        print(f"{name:>11}: {tokens / seconds:>10,.0f} training tokens/s ({steps} steps, {seconds:.2f} s)")
        del trainer, model
        if device == "cuda":
            torch.cuda.empty_cache()
    # Alternating runs, best of two each: the second run of either side had warm caches.
    ours = max(results["ours"], results["ours_again"])
    trl = max(results["trl"], results["trl_again"])
    print(f"window trainer {ours:,.0f} tokens/s, TRL GRPOTrainer {trl:,.0f} tokens/s on the same batches "
          f"({params / 1e6:,.1f}M parameters)")  # fmt: skip
    if device == "cuda":
        mfu = 6 * params * ours / (args.peak_tflops * 1e12)
        print(f"model FLOPs utilisation {mfu:.1%} of {args.peak_tflops:g} TFLOPS (6 x params x tokens/s)")
    print(f"RESULT trainer_tokens_per_s ratio={ours / trl:.2f} target={TARGET}")


if __name__ == "__main__":
    main()
