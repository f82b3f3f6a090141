"""Run a training platform's own loader (anchors/<name>/) in that anchor's environment (.venv-anchors/<name>).

`make anchors` builds the environments; a test whose anchor is missing fails and says how to build it,
rather than being skipped: an export no loader has read is not known to load.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from trajstream.settings import PROJECT_ROOT

ANCHORS = PROJECT_ROOT / "anchors"
ENVIRONMENTS = PROJECT_ROOT / ".venv-anchors"


def anchor_python(name: str) -> Path:
    python = ENVIRONMENTS / name / "bin" / "python"
    if not any((ENVIRONMENTS / name).glob(".installed-*")):
        raise AssertionError(f"the {name} anchor's environment is not built: run `make anchors`")
    return python


def run_anchor(name: str, program: str, *args: str | Path, timeout_s: float = 300) -> Any:
    """Run anchors/<name>/<program> with the anchor's Python; its last stdout line is JSON, returned."""
    done = subprocess.run([str(anchor_python(name)), str(ANCHORS / name / program), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout_s, cwd=ANCHORS / name)  # fmt: skip
    assert done.returncode == 0, f"{name}/{program} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
