"""The corpus recall's latency is measured on (benchmarks/pipeline.py, section 3): SIZE trajectory vectors in a
Milvus (the local 2.3.5 server, or milvus-lite), and their assistant steps in ClickHouse for the hydration.

What the vectors are: 480 task texts embedded with MiniLM (8 kinds of task, 60 wordings each), and each
corpus vector one of them plus Gaussian noise (sigma 0.02 per dimension, seed 7), normalised. Embedding 1M
texts on 2 cores would take hours; this keeps the neighbourhoods of real task embeddings, which is what
an HNSW search's cost depends on, and the queries are new sentences embedded at query time.

A server corpus of 1M or more is built once and kept in ~/.cache/trajstream/bench-recall-SIZE (the server's
home; `complete` marks a finished build, and says how long it took). Smaller ones live in a temporary
directory. The ClickHouse rows are inserted each run into the benchmark's chDB (one data directory per process).
"""

from __future__ import annotations

import datetime
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from milvus_backends import free_port, wait_indexed
from pydantic import SecretStr

from trajstream.consumers.clickhouse_rows import COLUMNS
from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_store import TRAJECTORIES, connect, ensure_collections
from trajstream.milvus_server import LocalMilvus
from trajstream.settings import Settings

CACHE = Path.home() / ".cache" / "trajstream"
CACHED_FROM = 1_000_000  # a server corpus this large is kept between runs
BATCH = 10_000
KINDS = ["refund a damaged order", "reset a password", "book a flight", "summarise a ticket", "cancel a subscription",
         "translate a document", "update a shipping address", "file an expense report"]  # fmt: skip
TEXTS = [f"task: {kind} number {i} for customer {i * 7 % 13}" for i in range(60) for kind in KINDS]
AGENTS = [f"agent-{i}" for i in range(8)]


@dataclass
class Corpus:
    settings: Settings  # milvus_uri set to the corpus' Milvus
    milvus: Any
    server: LocalMilvus | None
    build_s: float  # this run's build; 0 when the cached corpus was reused

    def close(self) -> None:
        self.milvus.close()
        if self.server is not None:
            self.server.stop()


def _vectors(centers: np.ndarray, size: int) -> Any:
    """The corpus' vectors, BATCH at a time, the same every run: (first index, picks, vectors)."""
    rng = np.random.default_rng(7)
    for first in range(0, size, BATCH):
        n = min(BATCH, size - first)
        picks = rng.integers(0, len(centers), n)
        vectors = centers[picks] + 0.02 * rng.normal(size=(n, centers.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield first, picks, vectors


def _row(n: int, vector: list[float], pick: int) -> dict[str, Any]:
    tid = f"bench-{n}"
    return {"id": tid, "vector": vector, "trajectory_id": tid, "version": 1, "outcome": "success" if n % 4 else
            "failure", "reward": 1.0 if n % 4 else 0.0, "domain": "support", "agent_id": AGENTS[n % len(AGENTS)],
            "model_version": "m1", "ended_ms": int(time.time() * 1000), "task": TEXTS[pick][6:]}  # fmt: skip


def _messages(n: int, now: datetime.datetime) -> list[list[Any]]:
    """A call, its response and a reply: what the sink lands for a one-call trajectory."""
    tid, agent = f"bench-{n}", AGENTS[n % len(AGENTS)]
    rows = [
        {"role": "assistant", "kind": "tool_call", "text": f'{{"n": {n}}}', "content": "", "tool_name": "lookup"},
        {"role": "tool", "kind": "tool_response", "text": '{"ok": true}', "tool_name": "lookup",
         "content": f'{{"name":"lookup","call_id":"c{n}","result":"{{}}","status":"success"}}'},
        {"role": "assistant", "kind": "text", "text": "Done.", "content": "", "tool_name": ""},
    ]  # fmt: skip
    out = []
    for seq, r in enumerate(rows):
        full = {"trajectory_id": tid, "turn_index": seq // 2, "seq": seq % 2, "timestamp": now, "reasoning": None,
                "call_id": f"c{n}" if r["tool_name"] else "", "agent_id": agent, "domain": "support",
                "task_key": "k", **r}  # fmt: skip
        out.append([full[c] for c in COLUMNS["messages"]])
    return out


def build(base: Settings, size: int, backend: str, embedder: Embedder, clickhouse: Any) -> Corpus:
    """The corpus of ``size`` in Milvus (built, or reused from the cache), its messages in ``clickhouse``."""
    centers = np.array(embedder.encode(TEXTS), dtype=np.float32)
    cached = backend == "server" and size >= CACHED_FROM
    home = CACHE / f"bench-recall-{size}" if cached else Path(tempfile.mkdtemp(prefix="bench-recall-"))
    marker = home / "complete"
    reuse = cached and marker.exists()
    if cached and not reuse:
        shutil.rmtree(home, ignore_errors=True)  # an unfinished build is started again
    home.mkdir(parents=True, exist_ok=True)
    server = None
    if backend == "server":
        settings = base.model_copy(update={"home": home, "milvus_uri": None, "milvus_local": "server",
                                           "milvus_server_port": free_port()})  # fmt: skip
        server = LocalMilvus(settings)
        server.start()
        settings = settings.model_copy(update={"milvus_uri": server.uri, "milvus_token": SecretStr(server.token())})
    else:
        settings = base.model_copy(update={"home": home, "milvus_uri": str(home / "milvus.db")})
    milvus = connect(settings)
    t0 = time.perf_counter()
    now = datetime.datetime.now()  # ClickHouse keeps 90 days: current timestamps
    if not reuse:
        ensure_collections(milvus, settings)
    for first, picks, vectors in _vectors(centers, size):
        if not reuse:
            milvus.upsert(
                TRAJECTORIES, [_row(first + j, vectors[j].tolist(), int(picks[j])) for j in range(len(picks))]
            )
        messages = [m for j in range(len(picks)) for m in _messages(first + j, now)]
        clickhouse.insert(f"{settings.clickhouse_database}.messages", messages, column_names=COLUMNS["messages"])
        if (first + len(picks)) % 100_000 == 0 or first + len(picks) == size:
            print(f"# recall corpus ({backend}): {first + len(picks):,} of {size:,}", file=sys.stderr)
    if not reuse:
        milvus.flush(TRAJECTORIES)
        wait_indexed(milvus, "", size)
    build_s = 0.0 if reuse else time.perf_counter() - t0
    if cached and not reuse:
        marker.write_text(f"{size} vectors, built in {build_s:.0f} s on {datetime.date.today()}\n")
    if reuse:
        print(f"# recall corpus reused from {home}: {marker.read_text().strip()}", file=sys.stderr)
    return Corpus(settings, milvus, server, build_s)
