"""The model registry (versions, deploy, rollback) and the gate that refuses a worse version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.trainer import imitate, model, tokenizer, view
from trajstream.trainer.gate import judge
from trajstream.trainer.registry import Registry
from trajstream.trainer.samples import tokenize
from trajstream_sdk.codec import SingleObjectCodec


def test_versions_deploy_and_roll_back(tmp_path: Path) -> None:
    tok = tokenizer()
    registry = Registry(tmp_path, "policy")
    v1 = registry.save(model(tok).save_pretrained, tok, None, ["w0"], {"loss": 1.0})
    v2 = registry.save(model(tok, seed=1).save_pretrained, tok, "v1", ["w1", "w2"], {"loss": 0.5})
    assert [v.version for v in registry.versions()] == ["v1", "v2"] and v2.parent == "v1"
    assert registry.deployed() is None and registry.number_of("v2") == 2 and registry.number_of("v9") is None
    registry.deploy("v1", "first")
    registry.deploy("v2", "gate passed")
    assert registry.deployed().version == "v2"  # type: ignore[union-attr]
    assert registry.get("v1").status == "retired"
    back = registry.rollback("bad answers")
    assert back.version == "v1" and registry.deployed().version == "v1"  # type: ignore[union-attr]
    assert [h["event"] for h in registry.get("v2").history] == ["created", "deployed", "rolled_back"]
    with pytest.raises(ValueError, match="nothing to roll back to"):
        registry.rollback("again")
    with pytest.raises(KeyError, match="known: v1, v2"):
        registry.get("v7")
    assert (Path(v1.path) / "model" / "config.json").exists() and registry.weights("v2").is_dir()


def test_staleness_counts_deployments_and_a_canary_has_a_pointer(tmp_path: Path) -> None:
    tok = tokenizer()
    registry = Registry(tmp_path, "policy")
    for seed in range(4):
        registry.save(model(tok, seed=seed).save_pretrained, tok, None, [], {})
    registry.deploy("v1", "first")
    assert registry.deployed_since("v1") == 0
    registry.mark("v2", "rejected", "rejected", "gate")  # a rejected candidate ages nothing
    registry.deploy("v3", "gate passed")
    assert [v for v, _ in registry.deployments()] == ["v1", "v3"]
    assert (registry.deployed_since("v1"), registry.deployed_since("v3")) == (1, 0)
    assert registry.deployed_since("v2") == 2  # never deployed: deployments since it was created (before v1)
    assert registry.deployed_since("v9") is None
    assert registry.canary() is None
    registry.start_canary("v4", 0.25, "gate passed")
    canary = registry.canary()
    assert canary is not None and canary[0].version == "v4" and canary[0].status == "canary" and canary[1] == 0.25
    with pytest.raises(ValueError, match="between 0 and 1"):
        registry.start_canary("v4", 1.0, "all of it")
    registry.end_canary()
    assert registry.canary() is None
    registry.rollback("live reward fell")  # a rollback is a deployment too
    assert [v for v, _ in registry.deployments()] == ["v1", "v3", "v1"] and registry.deployed_since("v3") == 1


def test_the_gate_refuses_a_worse_version_and_deploys_a_better_one(codec: SingleObjectCodec) -> None:
    tok = tokenizer()
    deployed = model(tok).eval()
    good = tokenize(view(codec, answer="refund done thanks"), tok)
    bad = tokenize(view(codec, answer="error lookup error"), tok)
    assert good is not None and bad is not None
    heldout = [(good, 1.0), (bad, 0.0)]
    same = judge(deployed, deployed, heldout, min_gain=0.0, max_kl=0.1)
    assert same.deploy and same.kl == pytest.approx(0.0, abs=1e-6)
    assert same.reward_candidate == pytest.approx(same.reward_deployed)

    worse = judge(imitate(deployed, bad), deployed, heldout, min_gain=0.0, max_kl=100.0)
    assert not worse.deploy and worse.reward_candidate < worse.reward_deployed and "held-out reward" in worse.reason
    better = judge(imitate(deployed, good), deployed, heldout, min_gain=0.0, max_kl=100.0)
    assert better.deploy and better.reward_candidate > better.reward_deployed and better.kl > 0
    too_far = judge(imitate(deployed, good), deployed, heldout, min_gain=0.0, max_kl=better.kl / 2)
    assert not too_far.deploy and "KL" in too_far.reason
    assert not judge(deployed, deployed, [], 0.0, 1.0).deploy
