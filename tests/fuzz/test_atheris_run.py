"""The atheris harness runs: each target fuzzes for a few seconds in a subprocess, finds no crash, and reports
how many inputs it ran (the full runs are `make fuzz`'s, a minute a target)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.atheris_run import TARGETS
from trajstream.settings import PROJECT_ROOT

# 90 s on 2 cores (six fuzzers start): `make fuzz` runs it before a minute of each target; `make soak` too.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_and_reports_its_case_count(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_run", "--target", target, "--seconds", "3", "--corpus",
         str(tmp_path / target)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(rf"RESULT atheris target={target} runs=(\d+) seconds=3 crashes=0", result.stdout)
    assert found and int(found.group(1)) > 0, result.stdout
    assert any(p.name.startswith("seed-") for p in (tmp_path / target).iterdir())  # the corpus was seeded
