"""Recall quality: how good recall's answers are, and whether a faster embedding path keeps them.

    python benchmarks/recall_quality.py [--trajectories 600]

1. recall@5 of the same task on a generated, labelled set of paraphrased requests, for milvus-lite and
   the Milvus server (issue 16, part 3: `RESULT recall_at_5 ratio=<x> target=0.9`): not written yet; it
   goes in `recall_at_5()` below.
2. The faster embedding path's top-5 neighbour agreement with the fp32 PyTorch model on a fixed
   evaluation set, with its speed against fp32 (benchmarks/embedding_agreement.py, which says how).
"""

from __future__ import annotations

import argparse

from embedding_agreement import agreement, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=600, help="generated trajectories of the agreement set")
    args = parser.parse_args()
    # recall_at_5(): the recall@5 part (issue 16, part 3) comes here, before the agreement.
    report(agreement(args.trajectories))


if __name__ == "__main__":
    main()
