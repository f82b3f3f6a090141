"""Checks on the deployment description (docker-compose.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
REQUIRED_SERVICES = {"kafka", "schema-registry", "topics"}

# `image: name[:tag][@digest]`, optionally quoted, with an optional trailing comment.
_IMAGE_LINE = re.compile(r"""^\s*image:\s*["']?([^"'\s#]+)["']?\s*(?:#.*)?$""")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip(
            "docker-compose is not on PATH; run scripts/check-compose.sh "
            "(installs Debian's docker-compose when run as root) and re-run the tests"
        )
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_validates() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed (exit {result.returncode}):\n{result.stderr}"

    services = _compose("config", "--services")
    assert services.returncode == 0, (
        f"docker-compose config --services failed (exit {services.returncode}):\n{services.stderr}"
    )
    names = {line.strip() for line in services.stdout.splitlines() if line.strip()}
    missing = REQUIRED_SERVICES - names
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)} (found {sorted(names)})"


def _image_refs(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := _IMAGE_LINE.match(line))]


def _is_pinned(ref: str) -> bool:
    if "@" in ref:  # pinned by digest
        return True
    last = ref.rsplit("/", 1)[-1]  # a registry host may carry a :port
    if ":" not in last:
        return False
    tag = last.rsplit(":", 1)[1]
    return bool(tag) and tag != "latest"


def test_images_are_pinned() -> None:
    refs = _image_refs(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert refs, "no image: lines found in docker-compose.yml"
    unpinned = [ref for ref in refs if not _is_pinned(ref)]
    assert not unpinned, f"unpinned images (no tag or :latest): {unpinned}"


@pytest.mark.parametrize(
    ("ref", "pinned"),
    [
        ("apache/kafka:4.1.1", True),
        ("apache/kafka", False),
        ("apache/kafka:latest", False),
        ("localhost:5000/trajstream", False),
        ("localhost:5000/trajstream:0.1.0", True),
        ("python@sha256:" + "0" * 64, True),
    ],
)
def test_pin_rule(ref: str, pinned: bool) -> None:
    assert _is_pinned(ref) is pinned
