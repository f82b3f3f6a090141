"""The ONNX Runtime path (same packaged weights, exported at first use) agrees with the fp32 PyTorch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trajstream.consumers.embedding import MAX_TOKENS, Embedder, TorchEncoder, model_dir
from trajstream.consumers.embedding_eval import cosines, evaluation_set, neighbour_agreement
from trajstream.settings import Settings
from trajstream_sdk.codec import SingleObjectCodec

pytest.importorskip("onnxruntime", reason="the ONNX Runtime path needs onnxruntime")


@pytest.mark.timeout(600)
def test_onnx_vectors_agree_with_the_fp32_model_on_a_small_evaluation_set(
    codec: SingleObjectCodec, tmp_path: Path
) -> None:
    from trajstream.consumers.onnx_embedding import OnnxEncoder

    corpus, queries = evaluation_set(Settings(), codec, trajectories=80)
    assert len(corpus) > 300 and len(queries) == 16
    reference = TorchEncoder("cpu", 64)
    ref = reference.encode(corpus), reference.encode(queries)
    onnx = OnnxEncoder(model_dir(), MAX_TOKENS, 64, threads=2, export_dir=tmp_path / "cache")  # exported now
    assert list((tmp_path / "cache").glob("*/model.onnx")) == [onnx.path]
    ours = onnx.encode(corpus, pooled=True), onnx.encode(queries)  # a lane's own session, and the shared one
    assert neighbour_agreement(ref, ours, k=5) >= 0.95
    assert cosines(ref[0], ours[0]).min() > 0.999
    # Through the embedder, in the order given and unsorted: the same vectors.
    embedder = Embedder(runtime="onnx", cache_entries=0, export_dir=tmp_path / "cache")
    through = np.array(embedder.in_fresh(lambda: embedder.encode(corpus[:50])), dtype=np.float32)
    assert cosines(ref[0][:50], through).min() > 0.999
    assert cosines(ours[0][:50], onnx.encode(corpus[:50], sort=False)).min() > 0.9999
