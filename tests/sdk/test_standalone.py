"""The SDK stands alone: `pip install ./sdk/python` into a clean virtual environment brings no torch, Faust,
chDB or pymilvus, carries the whole contract, and a trajectory it sends is assembled by the platform."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.env import SCHEMAS, env_for
from tests.support.streams import running_worker
from trajstream.reader import read_topic
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.topics import ASSEMBLED
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

HEAVY = ("torch", "faust", "chdb", "pymilvus", "milvus_lite", "pydantic", "clickhouse_connect", "transformers")

# Runs inside the clean environment, from an empty directory: only what the SDK installed is importable.
AGENT = """
import asyncio, hashlib, json, sys
from trajstream_sdk import AsyncEmitter, Message, ToolCall, ToolResponse
from trajstream_sdk.config import PACKAGED_SCHEMAS

async def main():
    async with AsyncEmitter() as emitter:  # settings from TRAJSTREAM_* variables
        async with emitter.trajectory("Refund order 42", agent_id="standalone", domain="billing") as t:
            await t.turn([Message.text("user", "Refund order 42"),
                          Message("assistant", ToolCall("issue_refund", "c1", {"order": 42}))])
            await t.turn([Message("tool", ToolResponse("issue_refund", "c1", {"ok": True})),
                          Message.text("assistant", "Refunded.")])
            await t.end("success", final_reward=1.0)
    return t.trajectory_id

trajectory_id = asyncio.run(main())
try:
    import trajstream
    platform = trajstream.__file__
except ImportError:
    platform = None
schemas = {str(p.relative_to(PACKAGED_SCHEMAS)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(PACKAGED_SCHEMAS.glob("*/*.avsc"))}
print(json.dumps({"trajectory_id": trajectory_id, "modules": sorted(sys.modules), "platform": platform,
                  "schemas": schemas}))
"""


def _clean_venv(root: Path) -> Path:
    """A new virtual environment with the SDK installed by pip from the checkout, and nothing else."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    sdk = PROJECT_ROOT / "sdk" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(sdk)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return python


def test_the_sdk_installs_alone_and_its_trajectory_is_assembled(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    python = _clean_venv(tmp_path)
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                               check=True)  # fmt: skip
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert not names & {"torch", "faust-streaming", "chdb", "pymilvus", "milvus-lite", "pydantic"}, names

    workdir = tmp_path / "agent"
    workdir.mkdir()
    env = {k: v for k, v in env_for(topics).items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(python), "-c", AGENT], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])

    assert report["platform"] is None, "the platform must not be importable beside the SDK"
    loaded = {m.split(".")[0] for m in report["modules"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # The contract shipped as package data is schemas/, every version, byte for byte.
    expected = {str(p.relative_to(SCHEMAS)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(SCHEMAS.glob("*/*.avsc"))}  # fmt: skip
    assert report["schemas"] == expected

    # The platform's streams worker assembles what the standalone SDK sent.
    trajectory_id = report["trajectory_id"]
    with running_worker(topics, tmp_path / "streams.log"):
        deadline = time.monotonic() + 90
        assembled: list[dict[str, object]] = []
        while time.monotonic() < deadline and not assembled:
            records = asyncio.run(_assembled(topics, codec))
            assembled = [r for r in records if r["trajectory_id"] == trajectory_id]
            time.sleep(0.5)
    assert assembled, f"trajectory {trajectory_id} was not assembled"
    record = assembled[-1]
    assert record["outcome"] == "success" and record["agent_id"] == "standalone" and len(record["turns"]) == 2  # type: ignore[arg-type]


async def _assembled(settings: Settings, codec: SingleObjectCodec) -> list[dict[str, object]]:
    return [r.event.record async for r in read_topic(settings, settings.topic(ASSEMBLED), codec) if r.event]
