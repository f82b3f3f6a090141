"""Milvus backends side by side: milvus-lite (in-process) and the Milvus server of the `milvus` package, as
TRAJSTREAM_MILVUS_LOCAL chooses them, doing the same work in the same run (the figures of docs/milvus.md).

    python benchmarks/milvus_backends.py [--rows 100000] [--queries 200] [--fresh 50]

Each backend runs in a child process of its own, on a fresh directory, with the collections and index
`ensure_collections` makes for it (milvus-lite: IVF_FLAT; the server: HNSW with the settings' M,
efConstruction and ef):
- start: from nothing to the first answer (the server: `LocalMilvus.start()`, its binaries already unpacked;
  milvus-lite: opening the client and listing collections);
- upserts: --rows trajectory rows of 384-dimensional vectors (clustered like task texts) in batches of 1,000,
  rows per second until the last upsert returned, then a flush and (the server) a wait until its index holds
  every row (index_wait_s): searches then measure the index, not a brute-force scan of unindexed segments;
- memory: the server's process RSS after the load and the searches; milvus-lite's growth of its own process'
  RSS over the same span (it runs in-process);
- search at --rows with recall's filter (``outcome == "success"``, k=3) and the search parameters recall uses,
  --queries queries: p50 and p99;
- fresh: one new row upserted, then searched for by its own vector (with a filter on its id) until found, the
  clock started before the upsert: p50 and p99 of --fresh rows, one after the other. A row not found in 30 s
  is a miss and counts as infinitely late.

RESULT lines: the server's filtered search p50 and p99 at --rows (targets 20 and 50 ms: recall's whole call
must fit under them, docs/milvus.md), its freshness p99 (target 2000 ms), and the server's search p50 against
milvus-lite's as a speed-up ratio (target 1: the server is the faster one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from trajstream.consumers.embedding import DIM
from trajstream.consumers.milvus_store import TRAJECTORIES, connect, ensure_collections, index_type, search_params
from trajstream.milvus_server import LocalMilvus, binaries
from trajstream.settings import Settings

BATCH = 1000
FRESH_TIMEOUT_S = 30.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.inf
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def row(tid: str, vector: list[float], n: int) -> dict[str, Any]:
    return {"id": tid, "vector": vector, "trajectory_id": tid, "version": 1,
            "outcome": "success" if n % 4 else "failure", "reward": 1.0 if n % 4 else 0.0, "domain": "support",
            "agent_id": "bench", "model_version": "m1", "ended_ms": int(time.time() * 1000),
            "task": f"task {n}"}  # fmt: skip


def wait_indexed(client: Any, kind: str, rows: int) -> float:
    """Seconds until the server's index holds every row (it builds sealed segments' indexes in the background;
    until then they are searched by brute force). milvus-lite reports no index progress: 0."""
    t0 = time.perf_counter()
    (name,) = client.list_indexes(TRAJECTORIES, field_name="vector")
    while True:
        described = client.describe_index(TRAJECTORIES, index_name=name)
        if "indexed_rows" not in described or int(described["indexed_rows"]) >= rows:
            return time.perf_counter() - t0
        time.sleep(0.5)


def measure(backend: str, rows: int, queries: int, fresh: int) -> dict[str, float]:
    """One backend's figures, in this process."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-milvus-{backend}-"))
    server: LocalMilvus | None = None
    own_rss_before = rss_mb(os.getpid())
    t0 = time.perf_counter()
    if backend == "server":
        settings = Settings(home=home, milvus_server_port=free_port(), milvus_local="server")
        server = LocalMilvus(settings)
        server.start()
    else:
        settings = Settings(home=home, milvus_local="lite")
    client = connect(settings)
    client.list_collections()
    start_s = time.perf_counter() - t0
    try:
        ensure_collections(client, settings)
        rng = np.random.default_rng(7)
        centers = rng.normal(size=(480, DIM)).astype(np.float32)
        t0 = time.perf_counter()
        for first in range(0, rows, BATCH):
            n = min(BATCH, rows - first)
            vectors = centers[rng.integers(0, len(centers), n)] + 0.3 * rng.normal(size=(n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            client.upsert(TRAJECTORIES, [row(f"b-{first + j}", vectors[j].tolist(), first + j) for j in range(n)])
        upsert_s = time.perf_counter() - t0
        client.flush(TRAJECTORIES)
        print(f"# {backend}: {rows:,} rows upserted in {upsert_s:.1f} s", file=sys.stderr)
        kind = index_type(client, TRAJECTORIES)
        index_s = wait_indexed(client, kind, rows)
        params = search_params(settings, kind, 3)
        query_vectors = centers[rng.integers(0, len(centers), queries)] + 0.3 * rng.normal(size=(queries, DIM))
        query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)

        def search(vector: list[float], expr: str, k: int = 3) -> list[Any]:
            hits: list[Any] = client.search(TRAJECTORIES, data=[vector], limit=k, filter=expr, search_params=params,
                                            output_fields=["trajectory_id", "outcome"])[0]  # fmt: skip
            return hits

        for v in query_vectors[:10]:  # warm up (first searches load segments and caches)
            search(v.tolist(), 'outcome == "success"')
        took = []
        for v in query_vectors:
            t0 = time.perf_counter()
            search(v.tolist(), 'outcome == "success"')
            took.append((time.perf_counter() - t0) * 1000)
        late = []
        for n in range(fresh):
            tid = f"fresh-{uuid.uuid4().hex[:8]}"
            vector = rng.normal(size=DIM).astype(np.float32)
            vector /= np.linalg.norm(vector)
            t0 = time.perf_counter()
            client.upsert(TRAJECTORIES, [row(tid, vector.tolist(), n + 1)])
            while not search(vector.tolist(), f'trajectory_id == "{tid}"', 1):
                if time.perf_counter() - t0 > FRESH_TIMEOUT_S:
                    late.append(math.inf)
                    break
            else:
                late.append((time.perf_counter() - t0) * 1000)
        memory = rss_mb(server.pid() or 0) if server is not None else rss_mb(os.getpid()) - own_rss_before
        return {"start_s": start_s, "index_wait_s": index_s, "memory_mb": memory, "upserts_per_s": rows / upsert_s,
                "search_p50_ms": pct(took, 50), "search_p99_ms": pct(took, 99),
                "fresh_p50_ms": pct(late, 50), "fresh_p99_ms": pct(late, 99),
                "fresh_missed": float(sum(math.isinf(x) for x in late))}  # fmt: skip
    finally:
        client.close()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--fresh", type=int, default=50)
    parser.add_argument("--child", choices=["lite", "server"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rows, args.queries, args.fresh)))
        return
    binaries()  # unpacked once per machine: not part of a start
    print(f"# load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    figures: dict[str, dict[str, float]] = {}
    for backend in ("lite", "server"):
        child = subprocess.run(
            [sys.executable, __file__, "--child", backend, "--rows", str(args.rows), "--queries", str(args.queries),
             "--fresh", str(args.fresh)], stdout=subprocess.PIPE, text=True, check=True,
        )  # fmt: skip
        figures[backend] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"# load average after: {os.getloadavg()[0]:.1f} (other work on the machine moves these figures)")
    size = f"{args.rows // 1000}k" if args.rows % 1000 == 0 else str(args.rows)
    print(f"{'':24}{'milvus-lite':>14}{'server':>14}")
    for key in figures["lite"]:
        print(f"{key:24}{figures['lite'][key]:>14.1f}{figures['server'][key]:>14.1f}")
    server, lite = figures["server"], figures["lite"]
    print(f"RESULT milvus_server_search_p50_{size} value={server['search_p50_ms']:.1f} target=20")
    print(f"RESULT milvus_server_search_p99_{size} value={server['search_p99_ms']:.1f} target=50")
    print(f"RESULT milvus_server_fresh_p99 value={server['fresh_p99_ms']:.0f} target=2000")
    speedup = lite["search_p50_ms"] / server["search_p50_ms"] if server["search_p50_ms"] else math.inf
    print(f"RESULT milvus_server_vs_lite_search_p50_{size} ratio={speedup:.2f} target=1")


if __name__ == "__main__":
    main()
