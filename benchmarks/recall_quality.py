"""Recall quality: how good recall's answers are, and whether a faster embedding path keeps them.

    python benchmarks/recall_quality.py [--paraphrases 4] [--backends lite,server] [--trajectories 600]

1. recall@5 of the same task on a generated, labelled set of paraphrased requests (benchmarks/labelled_recall.py:
27 tasks of six kinds, 7 of them near twins of others, each written 4 ways, deterministic): one paraphrase of
each task is landed as a trajectory through the real code path (scored in process by the streams code,
embedded and upserted by the Milvus sink), and every other paraphrase is asked through `Recall.similar` (any
outcome, k=5); a hit is the task's own trajectory among the five.
On milvus-lite and on the local Milvus 2.3.5 server, each from empty.
Target (issue 16): 0.9; `recall_at_5` is the worse backend's. recall@1 is printed beside it: a near twin
(book or cancel the same flight) ranked above the task's own trajectory shows there first.
2. The faster embedding path's top-5 neighbour agreement with the fp32 PyTorch model on a fixed evaluation set,
   with its speed against fp32 (benchmarks/embedding_agreement.py, which says how). Target: 0.95.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from aiokafka.structs import ConsumerRecord
from embedding_agreement import agreement, report
from labelled_recall import Task, labelled_set, recall_at_k
from milvus_backends import free_port

from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_sink import TrajectorySink
from trajstream.consumers.milvus_store import TRAJECTORIES, connect
from trajstream.consumers.recall import Recall
from trajstream.milvus_server import LocalMilvus
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream.topics import SCORED
from trajstream_sdk.codec import codec_for

K = 5


def recall_at_5(backend: str, tasks: list[Task], embedder: Embedder) -> tuple[float, float, list[str]]:
    """recall@5 and recall@1 on ``backend`` (lite or server), and the queries recall@5 missed."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-quality-{backend}-"))
    settings = Settings(home=home, milvus_local=backend, milvus_server_port=free_port())  # type: ignore[arg-type]
    server = LocalMilvus(settings) if backend == "server" else None
    if server:
        server.start()
    try:
        codec = codec_for(settings)
        pipeline = Pipeline(settings, codec)
        milvus = connect(settings)
        by_task: dict[str, str] = {}
        records = []
        for n, task in enumerate(tasks):
            tid, events = tool_trajectory(codec, task.landed, "lookup", "success", "success")
            (value,) = pipeline.run(events)
            records.append(ConsumerRecord(SCORED, 0, n, 0, 0, b"k", value, None, 0, len(value), []))
            by_task[task.key] = tid
        TrajectorySink(settings, milvus, embedder, codec).land(records)  # a record it skips is never searchable below
        deadline = time.monotonic() + 60
        while len(milvus.query(TRAJECTORIES, filter='outcome != ""', output_fields=["id"])) < len(tasks):
            if time.monotonic() > deadline:  # the server's consistency is bounded: searchable soon, not at once
                raise SystemExit(f"{backend}: not every landed trajectory searchable within 60 s")
            time.sleep(0.2)
        recall = Recall(settings, milvus, clickhouse=None, embedder=embedder)
        answers, expected, queries = [], [], []
        for task in tasks:
            for query in task.queries:
                hits = recall.similar(query, K, default_outcome=None)
                answers.append([h["trajectory_id"] for h in hits])
                expected.append(by_task[task.key])
                queries.append(f"{task.key}: {query!r} (landed {task.landed!r})")
        missed = [q for q, got, want in zip(queries, answers, expected, strict=True) if want not in got[:K]]
        milvus.close()
        return recall_at_k(answers, expected, K), recall_at_k(answers, expected, 1), missed
    finally:
        if server:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paraphrases", type=int, default=4, help="texts per task: one landed, the rest queried")
    parser.add_argument("--backends", default="lite,server")
    parser.add_argument("--trajectories", type=int, default=600, help="generated trajectories of the agreement set")
    args = parser.parse_args()
    tasks = labelled_set(args.paraphrases)
    embedder = Embedder(runtime=Settings().embed_runtime)  # the path recall runs on (ONNX by default)
    figures = {}
    for backend in args.backends.split(","):
        figures[backend], first, missed = recall_at_5(backend, tasks, embedder)
        queries = sum(len(t.queries) for t in tasks)
        print(f"{backend}: recall@{K} {figures[backend]:.3f}, recall@1 {first:.3f}, over {queries} queries of "
              f"{len(tasks)} tasks; missed at {K}:",
              *missed, sep="\n  ", flush=True)  # fmt: skip
    for backend, value in figures.items():
        print(f"RESULT recall_at_5_{backend} ratio={value:.3f} target=0.9")
    print(f"RESULT recall_at_5 ratio={min(figures.values()):.3f} target=0.9")
    report(agreement(args.trajectories))  # prints RESULT embedding_neighbour_agreement


if __name__ == "__main__":
    main()
