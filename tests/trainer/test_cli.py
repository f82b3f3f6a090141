"""`trajstream model init|list|promote|rollback`: the registry by hand, each change announced on Kafka."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.env import env_for, trajstream_bin
from tests.support.trainer import read_decoded
from trajstream.settings import Settings
from trajstream.topics import MODEL_VERSIONS, create_topics
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration


def test_model_commands(broker_settings: Settings, codec: SingleObjectCodec, tmp_path: Path) -> None:
    settings = TrainerSettings.extend(
        broker_settings, **{"topic_prefix": f"mc{uuid.uuid4().hex[:8]}.", "home": tmp_path}
    )
    asyncio.run(create_topics(settings))
    env = env_for(settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([trajstream_bin(), "model", *args], env=env, capture_output=True, text=True, timeout=120)

    words = tmp_path / "words.txt"
    words.write_text("call lookup refund the order")
    assert "exactly one of" in cli("init").stderr
    first = cli("init", "--tiny-vocab", str(words))
    assert first.returncode == 0, first.stderr
    assert "v1 registered and deployed" in first.stdout
    assert "already has versions" in cli("init", "--tiny-vocab", str(words)).stderr
    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    v1 = registry.get("v1")
    registry.save(lambda d: Path(d).mkdir(parents=True), _Tok(), "v1", ["w"], {"loss": 0.5})
    assert "v2" in cli("list").stdout and "deployed" in cli("list").stdout
    missing = cli("promote", "v9")
    assert missing.returncode != 0 and "no version 'v9'" in missing.stderr
    assert cli("promote", "v2").returncode == 0 and registry.deployed().version == "v2"  # type: ignore[union-attr]
    back = cli("rollback", "--reason", "bad answers")
    assert back.returncode == 0 and "v1 deployed again" in back.stdout
    assert registry.deployed().version == v1.version  # type: ignore[union-attr]
    assert cli("rollback").returncode != 0  # nothing before v1
    events = [(e["version"], e["event"]) for e in asyncio.run(read_decoded(settings, codec, MODEL_VERSIONS))]
    assert events == [("v1", "deployed"), ("v2", "deployed"), ("v1", "rolled_back")]


class _Tok:
    def save_pretrained(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
