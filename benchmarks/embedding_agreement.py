"""Embedding paths against the fp32 PyTorch model: top-5 neighbour agreement and speed, same texts, same run.

    python benchmarks/embedding_agreement.py [--trajectories 600]

The fixed evaluation set (consumers/embedding_eval.py: the trajectory and decision-point texts the Milvus
sinks embed for generated trajectories, and recall-shaped queries paraphrasing their tasks) is embedded
by the fp32 PyTorch model (sentence-transformers: the reference, and the baseline of the speed ratio) and
by ONNX Runtime on the same packaged weights (exported from them at first use into
~/.cache/trajstream/embedding, or TRAJSTREAM_EMBED_EXPORT_DIR; the export's time is printed, not
counted). For each query, the top 5 corpus neighbours of each path are compared: the agreement is the
mean share of the reference's 5 that the candidate finds too (target 0.95).

Speed: texts per second over the whole corpus in batches of 64, each path warmed up first, on every core
this process may use; ONNX Runtime both with its batches grouped by token length and in the given order
(what grouping saves). sentence-transformers sorts each call's texts by character length itself.

`agreement()` is what benchmarks/recall_quality.py reports as `embedding_neighbour_agreement`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trajstream.consumers.embedding import MAX_TOKENS, Embedder, TorchEncoder, model_dir
from trajstream.consumers.embedding_eval import cosines, evaluation_set, neighbour_agreement
from trajstream.settings import Settings
from trajstream_sdk.codec import codec_for

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Agreement:
    path: str  # the candidate path
    texts: int
    queries: int
    ratio: float  # top-5 neighbour agreement with fp32 PyTorch
    cosine_min: float  # the least cosine between a text's two vectors
    cosine_mean: float
    torch_rate: float  # texts/s, fp32 PyTorch
    rate: float  # texts/s, the candidate, batches grouped by length
    unsorted_rate: float  # texts/s, the candidate, batches in the given order
    export_s: float  # the candidate's one-time export (0 when its file was cached)


def _timed(what: str, encode: Callable[[list[str]], Vectors], texts: list[str]) -> tuple[Vectors, float]:
    encode(texts[:64])  # warm up: first-call allocations are no part of the rate
    t0 = time.perf_counter()
    vectors = encode(texts)
    rate = len(texts) / (time.perf_counter() - t0)
    print(f"# {what}: {rate:,.0f} texts/s", file=sys.stderr, flush=True)
    return vectors, rate


def agreement(trajectories: int = 600) -> Agreement:
    """ONNX Runtime on the packaged weights against the fp32 PyTorch model, on the fixed evaluation set."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise SystemExit("onnxruntime is not installed: there is no faster path to compare")
    from trajstream.consumers.onnx_embedding import OnnxEncoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings()
    corpus, queries = evaluation_set(settings, codec_for(settings), trajectories)
    print(f"# evaluation set: {len(corpus):,} texts, {len(queries)} queries", file=sys.stderr)
    threads = len(os.sched_getaffinity(0))
    reference = TorchEncoder("cpu", 64)
    t0 = time.perf_counter()
    candidate = OnnxEncoder(model_dir(), MAX_TOKENS, 64, threads, Embedder.for_settings(settings).export_dir)
    export_s = time.perf_counter() - t0
    ref_corpus, torch_rate = _timed("fp32 PyTorch", reference.encode, corpus)
    ours_corpus, rate = _timed("onnxruntime", lambda texts: candidate.encode(texts, pooled=True), corpus)
    _, unsorted_rate = _timed("onnxruntime, given order",
                              lambda texts: candidate.encode(texts, pooled=True, sort=False), corpus)  # fmt: skip
    ref_queries, ours_queries = reference.encode(queries), candidate.encode(queries, pooled=True)
    ratio = neighbour_agreement((ref_corpus, ref_queries), (ours_corpus, ours_queries), k=5)
    both = cosines(np.vstack([ref_corpus, ref_queries]), np.vstack([ours_corpus, ours_queries]))
    return Agreement(f"onnxruntime fp32, {threads} threads", len(corpus), len(queries), ratio, float(both.min()),
                     float(both.mean()), torch_rate, rate, unsorted_rate, export_s)  # fmt: skip


def report(result: Agreement) -> None:
    print(f"{result.path}: top-5 neighbour agreement with fp32 PyTorch {result.ratio:.4f} over {result.queries} "
          f"queries and {result.texts:,} texts; cosine with the fp32 vectors min {result.cosine_min:.5f}, "
          f"mean {result.cosine_mean:.6f}")  # fmt: skip
    print(f"speed: fp32 PyTorch {result.torch_rate:,.0f} texts/s; {result.path} {result.rate:,.0f} texts/s "
          f"({result.rate / result.torch_rate:.2f}x) with batches grouped by token length, "
          f"{result.unsorted_rate:,.0f} texts/s in the given order; export {result.export_s:.1f} s (once)")  # fmt: skip
    print(f"RESULT embedding_neighbour_agreement ratio={result.ratio:.4f} target=0.95")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=600, help="generated trajectories of the corpus")
    report(agreement(parser.parse_args().trajectories))


if __name__ == "__main__":
    main()
