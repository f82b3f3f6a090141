"""Read RFT JSONL as Fireworks does: eval-protocol's default dataset adapter, EvaluationRow(**row) per row.

Usage: python load_rft.py FILE.jsonl... Prints one JSON line, {"files": [...]}: per file the row count, and
per row the digest of what EvaluationRow kept: each message's role and content, the ground truth, the tools'
names, the input metadata (row id, dataset info) and any extra keys it accepted, for the test to compare.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# eval-protocol imports litellm, which fetches a model price map from the network on import (retrying for
# seconds offline); its bundled copy is all a loader needs.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from eval_protocol.models import EvaluationRow
from eval_protocol.pytest.default_dataset_adapter import default_dataset_adapter


def digest(row: EvaluationRow) -> dict[str, Any]:
    return {
        "messages": [{"role": m.role, "content": m.content} for m in row.messages],
        "last_role": row.messages[-1].role if row.messages else None,
        "ground_truth": row.ground_truth,
        "tools": [t["function"]["name"] for t in row.tools or []],
        "row_id": row.input_metadata.row_id,
        "dataset_info": row.input_metadata.dataset_info,
        "extra": dict(row.model_extra or {}),
    }


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    loaded = default_dataset_adapter(rows)  # the adapter @evaluation_test uses by default
    assert all(isinstance(r, EvaluationRow) for r in loaded)
    return {"count": len(loaded), "rows": [digest(r) for r in loaded]}


if __name__ == "__main__":
    print(json.dumps({"files": [load(path) for path in sys.argv[1:]]}, ensure_ascii=False))
