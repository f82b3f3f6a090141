"""Trainer benchmark: the window trainer next to TRL's GRPOTrainer, per training token and per whole window.

    python benchmarks/trainer.py [--steps 30] [--batch 4] [--size tiny|small|0.5b] [--zero 0]
                                 [--windows 6] [--window-rows 64] [--adapter full|lora] [--skip-tokens]

Two figures, each ending in a ``RESULT`` line (the window wall time printed last).

1. Training tokens per second (``RESULT trainer_tokens_per_s``; ``--skip-tokens`` leaves it out). Both step
   on the same batches in this process, one after the other, under the same DeepSpeed config:

   * ours: ``trainer.grpo`` (TRL's GRPO loss, assistant-only mask, per-token advantages, truncated
     importance weights from recorded behaviour log-probabilities);
   * baseline: TRL's ``GRPOTrainer`` with its generation replaced by the same prepared batches, and no
     off-policy correction.

   Tokens are prompt + completion tokens of the batches stepped on; step time is measured from the third
   step on (DeepSpeed and the first steps warm up). On a GPU (``--size 0.5b``: a Qwen2-style model of about
   0.5B parameters built from a config, bf16) it also prints model FLOPs utilisation: 6 x parameters x
   tokens/s over the GPU's dense bf16 peak (``--peak-tflops``, default 989 for an H100/H200).

2. Wall time of one whole window (``RESULT window_wall_time``, ratio = TRL's seconds / ours). ``--windows``
   consecutive windows of ``--window-rows`` fresh scored-trajectory records each (synthetic tool-calling
   trajectories over several tasks, succeeding and failing, run through the in-process streams pipeline;
   made before any timing), a tiny word-level model registered and deployed as the first version:

   * ours: ``WindowTrainer.train(window_id, values)``, what the trainer's Kafka loop calls per window, with
     the trainer carried from window to window as in the loop. Timed: decoding the encoded records,
     tokenizing, the stale filter, the held-out split, grouping and advantages, DeepSpeed start-up, the
     training steps, saving the version in the registry (weights, tokenizer, metadata), and the gate (loading
     the candidate and the deployed version, comparing them on the held-out share, then deploying a version
     that passed, as the loop does with canaries off, or putting the deployed weights back). Where the
     settings exist, every window cuts a version (``trainer_versions_per_hour``), there is no canary or
     watch (``canary_share`` 0, ``watch_trajectories`` 0), and ``--adapter`` sets ``trainer_adapter`` (lora).
     Not timed: Kafka (reading the window, committing offsets, announcing versions).
   * TRL: for the same window, a fresh start: the deployed version's weights and tokenizer loaded from the
     registry, TRL's ``GRPOTrainer`` (generation replaced by the prepared rows, no off-policy correction)
     built over the same training rows with the same config (DeepSpeed config, loss, epochs, learning rate,
     the whole window as one batch), ``train()`` and ``save_model()`` to a temporary directory. Timed from
     the load until the files are written. Not timed: making the rows (decoding, tokenizing, grouping,
     advantages are done beforehand, untimed; a warning says if their count differs from what the window
     trainer reports it trained on), and no gate, no registry. With ``--adapter lora`` it trains a LoRA
     adapter too (a fresh one over full weights, or the deployed adapter over its base).

   The two alternate which goes first from window to window, so that drift touches both. Each window's
   table row shows both; the figure is the median of windows 2..N (the first pays imports and first loads),
   and the first window is printed beside it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

TARGET = 0.80
WINDOW_TARGET = 0.80
TASKS = ["refund the damaged order", "reset the password", "change the delivery address",
         "cancel the subscription", "track the parcel"]  # fmt: skip
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
    # fp32 master weights; DeepSpeed runs bf16 on a GPU
    model = Qwen2ForCausalLM(config)  # type: ignore[no-untyped-call]
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
            return SequentialSampler(dataset if dataset is not None else self.train_dataset)  # type: ignore[arg-type]

        def _generate_and_score_completions(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
            inputs = collate(batch, self.processing_class.pad_token_id, self.accelerator.device)  # type: ignore[union-attr]
            inputs.pop("behaviour_logprobs")
            return inputs

    return PreparedGRPOTrainer


def timed(trainer: Any) -> tuple[float, int]:
    """Seconds and steps, from the third step on."""
    from transformers import TrainerCallback

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    trainer.add_callback(Clock())
    trainer.train()
    return marks[-1] - marks[1], len(marks) - 2


def process_group() -> None:
    """DeepSpeed wants a process group; this process is a group of one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.setdefault("MASTER_PORT", str(s.getsockname()[1]))
    for key, value in {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        os.environ.setdefault(key, value)


def tokens_per_second(args: argparse.Namespace) -> float:
    """Figure 1: ours / TRL's training tokens per second on the same batches."""
    import torch
    from datasets import Dataset

    from trajstream.trainer.grpo import build_trainer, deepspeed_config, grpo_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"# device {device}, {torch.get_num_threads()} CPU threads, model size {args.size}, ZeRO {args.zero}",
          file=sys.stderr)  # fmt: skip
    results: dict[str, float] = {}
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
    return ours / trl


# --- figure 2: one whole window ------------------------------------------------------------------------


def window_settings(home: Path, args: argparse.Namespace) -> Any:
    from trajstream.settings import Settings
    from trajstream.trainer.config import TrainerSettings

    # Every window cuts a version, and one that passes the gate is deployed at once (no canary, no watch):
    # each window then trains, saves and gates, and the next goes on from the deployed weights in memory.
    return TrainerSettings.extend(Settings(), **{
        "home": home, "trainer_heldout_fraction": 0.25, "gate_max_kl": 10.0, "trainer_zero_stage": args.zero,
        "trainer_epochs": args.epochs, "trainer_learning_rate": args.learning_rate, "trainer_adapter": args.adapter,
        "trainer_versions_per_hour": 1e9, "canary_share": 0.0, "watch_trajectories": 0,
    })  # fmt: skip


def scored_records(settings: Any, codec: Any, n: int, start: int) -> list[bytes]:
    """``n`` encoded scored trajectories over several tasks, succeeding and failing (reward variance within
    each task's group), with 2 to 4 turns."""
    from trajstream.streams.in_process import Pipeline
    from trajstream.synthetic import tool_trajectory

    pipeline = Pipeline(settings, codec)
    out: list[bytes] = []
    for i in range(start, start + n):
        ok = i % 3 != 0
        _, events = tool_trajectory(codec, TASKS[i % len(TASKS)], "lookup", "success" if ok else "error",
                                    "success" if ok else "failure", turns=2 + i % 3)  # fmt: skip
        out += pipeline.run(events)
    return out


def texts(codec: Any, values: list[bytes]) -> list[str]:
    from trajstream.assembled import TrajectoryView
    from trajstream.trainer.samples import chat_messages
    from trajstream_sdk.schemas import SCORED_TRAJECTORY

    out = []
    for value in values:
        view = TrajectoryView.from_bytes(codec.decode(value, expect=SCORED_TRAJECTORY).record["trajectory"], codec)
        out += [m.content for m in chat_messages(view)]
    return out


def is_heldout(trajectory_id: str, fraction: float) -> bool:
    """The window trainer's held-out split (``window_training.heldout``), copied: stable per trajectory id."""
    return zlib.crc32(trajectory_id.encode()) % 10_000 < fraction * 10_000


def training_rows(settings: Any, codec: Any, registry: Any, deployed: Any, values: list[bytes]) -> list[Any]:
    """The rows ``WindowTrainer.train`` trains on for this window, made the same way (outside any timing).

    The synthetic trajectories record no behaviour version, so the trainer's stale filter keeps them all
    and is left out here; the table's check compares the row count with the trainer's report."""
    from transformers import AutoTokenizer

    from trajstream.assembled import TrajectoryView
    from trajstream.grouping import Sample, make_groups
    from trajstream.trainer.advantages import group_advantages, step_advantages
    from trajstream.trainer.grpo import TrainingRow
    from trajstream.trainer.samples import step_count, tokenize
    from trajstream_sdk.schemas import CREDIT_ASSIGNMENT, SCORED_TRAJECTORY

    s = settings
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(deployed.path, "tokenizer"))
    decoded = []  # (sample, task key, reward, entities, step credits)
    for value in values:
        record = codec.decode(value, expect=SCORED_TRAJECTORY).record
        sample = tokenize(TrajectoryView.from_bytes(record["trajectory"], codec), tokenizer)
        if sample is None:
            continue
        credits = [codec.decode(c, expect=CREDIT_ASSIGNMENT).record for c in record["credits"]]
        chosen = next((c for c in credits if c["method"] == "decision"), credits[0] if credits else None)
        steps = [float(x["credit"]) for x in chosen["steps"]] if chosen else None
        decoded.append((sample, record["task_key"], float(record["reward"]), frozenset(record["entities"]), steps))
    train = [d for d in decoded if not is_heldout(d[0].trajectory_id, s.trainer_heldout_fraction)]
    samples = [Sample(d[0].trajectory_id, d[0].version, d[1], d[2], d[3]) for d in train]
    advantages = group_advantages(make_groups(samples, s.trainer_group_by, s.trainer_entity_threshold))
    by_id = {d[0].trajectory_id: d for d in train}
    out = []
    for a in advantages.kept:
        sample, shares = by_id[a.sample.trajectory_id][0], by_id[a.sample.trajectory_id][4]
        out.append(TrainingRow(sample, step_advantages(a.advantage, shares, step_count(sample))))
    return out


def trl_window(settings: Any, registry: Any, deployed: Any, data: list[Any], adapter: str) -> float:
    """Seconds for TRL's GRPOTrainer to train ``data`` from a fresh start: load, build, train, save."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajstream.trainer.grpo import deepspeed_config, grpo_config

    s = settings
    start = time.perf_counter()
    weights = registry.weights(deployed.version)
    base = getattr(deployed, "base", None)  # a LoRA version: an adapter over these full weights
    extra: dict[str, Any] = {}
    model: Any
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(weights),
                                          is_trainable=adapter == "lora")  # fmt: skip
        if adapter != "lora":
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(weights)
        if adapter == "lora":  # a fresh adapter over full weights, configured as the window trainer's
            from peft import LoraConfig

            targets = getattr(s, "trainer_lora_targets", "all-linear")
            extra["peft_config"] = LoraConfig(
                r=getattr(s, "trainer_lora_rank", 8), lora_alpha=getattr(s, "trainer_lora_alpha", 16),
                lora_dropout=0.0, task_type="CAUSAL_LM",
                target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
            )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(deployed.path, "tokenizer"))
    with tempfile.TemporaryDirectory(prefix="trl-window-") as out:
        config = grpo_config(
            s.trainer_loss, out, deepspeed=deepspeed_config(s.trainer_zero_stage),
            learning_rate=s.trainer_learning_rate, beta=s.trainer_beta, per_device_train_batch_size=len(data),
            num_generations=len(data), num_train_epochs=s.trainer_epochs, lr_scheduler_type="constant",
        )  # fmt: skip
        dataset = Dataset.from_list([r.as_row() for r in data])
        trainer = baseline_class()(model=model, reward_funcs=lambda **_: [], args=config, processing_class=tokenizer,
                                   train_dataset=dataset, **extra)  # fmt: skip
        trainer.train()
        trainer.save_model(os.path.join(out, "model"))
        seconds = time.perf_counter() - start
        del trainer, model
    return seconds


def deploy_passed(registry: Any, report: Any) -> None:
    """What the loop does with a window's candidate when canaries are off: deploy it if it passed the gate
    (a window trainer that deploys by itself has done so already)."""
    version, verdict = report.version, report.verdict
    if version is None or verdict is None or not verdict.deploy:
        return
    deployed = registry.deployed()
    if deployed is None or deployed.version != version.version:
        report.version = registry.deploy(version.version, f"gate: {verdict.reason}")


def window_wall_time(args: argparse.Namespace) -> float:
    """Figure 2: TRL's seconds / ours for one whole window (median of windows 2..N)."""
    import gc

    import torch

    from trajstream.trainer.registry import Registry
    from trajstream.trainer.tiny import build_model, build_tokenizer, words
    from trajstream.trainer.window_training import WindowTrainer
    from trajstream_sdk.codec import codec_for

    with tempfile.TemporaryDirectory(prefix="trajstream-bench-") as home:
        settings = window_settings(Path(home), args)
        codec = codec_for(settings)
        windows = [scored_records(settings, codec, args.window_rows, w * args.window_rows)
                   for w in range(args.windows)]  # fmt: skip
        tokenizer = build_tokenizer(words(texts(codec, [v for w in windows for v in w])))
        model = build_model(len(tokenizer), hidden=args.hidden, layers=args.layers)
        params = sum(p.numel() for p in model.parameters())
        registry = Registry(settings.registry_dir, settings.trainer_model_name)
        registry.deploy(registry.save(model.save_pretrained, tokenizer, None, [], {}).version, "start")
        del model
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"# window wall time: device {device}, {args.windows} windows of {args.window_rows} records, "
              f"model {params / 1e6:.2f}M parameters (hidden {args.hidden}, {args.layers} layers, vocabulary "
              f"{len(tokenizer)}), ZeRO {args.zero}, adapter {args.adapter}, epochs {args.epochs}",
              file=sys.stderr)  # fmt: skip
        trainer = WindowTrainer(settings, codec, registry, progress=lambda line: print(f"# {line}", file=sys.stderr))
        print(f"{'window':>6} {'first':>5} {'records':>7} {'trained':>7} {'held out':>8} {'ours s':>8} "
              f"{'TRL s':>8} {'TRL/ours':>8}  version")  # fmt: skip
        table = []
        for w, values in enumerate(windows, start=1):
            deployed = registry.deployed()
            assert deployed is not None
            data = training_rows(settings, codec, registry, deployed, values)
            if not data:  # the window trainer would return at once, and TRL has nothing to train on
                print(f"# window {w}: nothing to train on (no group with reward variance), left out", file=sys.stderr)
                continue
            times: dict[str, float] = {}
            order = ("ours", "trl") if w % 2 else ("trl", "ours")
            for side in order:
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()
                if side == "ours":
                    start = time.perf_counter()
                    report = trainer.train(f"bench-{w}", values)
                    deploy_passed(registry, report)
                    times["ours"] = time.perf_counter() - start
                else:
                    times["trl"] = trl_window(settings, registry, deployed, data, args.adapter)
            if report.trained != len(data):
                print(f"# WARNING window {w}: the window trainer trained {report.trained} rows, the baseline "
                      f"{len(data)}", file=sys.stderr)  # fmt: skip
            outcome = "-"
            if report.version is not None:
                outcome = f"{report.version.version} {report.version.status}"
            print(f"{w:>6} {order[0]:>5} {report.records:>7} {report.trained:>7} {report.heldout:>8} "
                  f"{times['ours']:>8.2f} {times['trl']:>8.2f} {times['trl'] / times['ours']:>8.2f}  {outcome}",
                  flush=True)  # fmt: skip
            table.append(times)
        if not table:
            raise SystemExit("no window had anything to train on: use more --window-rows")
        later = table[1:] or table
        ours = statistics.median(t["ours"] for t in later)
        trl = statistics.median(t["trl"] for t in later)
        span = f"windows 2..{len(table)}" if len(table) > 1 else "window 1 (the only one)"
        print(f"first window: window trainer {table[0]['ours']:.2f} s, TRL GRPOTrainer from a fresh start "
              f"{table[0]['trl']:.2f} s")  # fmt: skip
        print(f"median of {span}: window trainer {ours:.2f} s per window (decode, train, save, gate), "
              f"TRL GRPOTrainer {trl:.2f} s (load, train, save) on the same rows")  # fmt: skip
    return trl / ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4, help="trajectories per step")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--completion", type=int, default=192)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--zero", type=int, default=0, help="DeepSpeed ZeRO stage (both figures)")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--skip-tokens", action="store_true", help="leave out the tokens/s figure")
    parser.add_argument("--windows", type=int, default=6, help="consecutive windows timed")
    parser.add_argument("--window-rows", type=int, default=64, help="scored trajectories per window")
    parser.add_argument(
        "--adapter",
        choices=("full", "lora"),
        default="lora",
        help="what the window trainer trains (TRAJSTREAM_TRAINER_ADAPTER; both sides train the same)",
    )
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the window figure's tiny model")
    parser.add_argument("--layers", type=int, default=2, help="layers of the window figure's tiny model")
    parser.add_argument("--epochs", type=int, default=1, help="steps on each window")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    args = parser.parse_args()
    if args.windows < 1 or args.window_rows < 2:
        parser.error("--windows must be at least 1 and --window-rows at least 2")

    process_group()
    results = []
    if not args.skip_tokens:
        results.append(f"RESULT trainer_tokens_per_s ratio={tokens_per_second(args):.2f} target={TARGET}")
    results.append(f"RESULT window_wall_time ratio={window_wall_time(args):.2f} target={WINDOW_TARGET}")
    print("\n".join(results))


if __name__ == "__main__":
    main()
