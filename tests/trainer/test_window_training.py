"""WindowTrainer without Kafka: the policy and its optimizer carry from window to window, a rejected candidate
puts the deployed weights back, every ZeRO stage trains, LoRA versions are adapters, the control arm permutes
rewards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.trainer import process_group
from trajstream.settings import Settings
from trajstream.streams.in_process import Pipeline
from trajstream.topics import EVENTS_TOPIC
from trajstream.trainer import window_training
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.live import RewardStats
from trajstream.trainer.registry import Registry, size_bytes
from trajstream.trainer.tiny import build_model, build_tokenizer, words
from trajstream.trainer.weights import ADAPTER_CONFIG, load_version
from trajstream.trainer.window_training import WindowTrainer
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, ModelInfo, ToolCall, ToolResponse, end_record, start_record, turn_record

TASKS = ("refund the damaged order", "reset the password")
VOCAB = "call lookup result success error refund the damaged order reset password (step 0) 1) ok"
HELDOUT = 0.25
WINDOW = 12
# Fixed trajectory ids, so that the held-out split (by id) is the same in every run: with these salts each
# window holds out 3 and trains on 9, both tasks among them with successes and failures.
SALT_A, SALT_B, SALT_C = 1, 3, 5


@pytest.fixture(scope="module", autouse=True)
def single_process_group() -> Iterator[None]:
    with process_group():
        yield


def _events(codec: SingleObjectCodec, tid: str, i: int, versions: tuple[str, str]) -> list[tuple[str, bytes]]:
    """Trajectory ``i``: task i % 2, a failure when i % 3 == 0; turn t served by ``versions[t]``."""
    task, ok = TASKS[i % 2], i % 3 != 0
    status = "success" if ok else "error"
    events = [(EVENTS_TOPIC, codec.encode("trajectory_start", start_record(tid, task, agent_id="a", domain="support")))]
    for t in range(2):
        messages = [Message.text("user", f"{task} (step {t})"), Message("assistant", ToolCall("lookup", f"c{t}", {}))]
        if t:
            messages.insert(0, Message("tool", ToolResponse("lookup", f"c{t - 1}", {"ok": ok}, status)))
        turn = turn_record(tid, t, messages, duration_ms=100, model=ModelInfo(model_version=versions[t]))
        events.append((EVENTS_TOPIC, codec.encode("turn", turn)))
    end = end_record(tid, "success" if ok else "failure", turn_count=2)
    return [*events, (EVENTS_TOPIC, codec.encode("trajectory_end", end))]


def _window(pipeline: Pipeline, codec: SingleObjectCodec, salt: int,
            served: Any = lambda i: ("v1", "v1")) -> list[bytes]:  # fmt: skip
    out: list[bytes] = []
    for i in range(WINDOW):
        records = pipeline.run(_events(codec, str(uuid.UUID(int=(salt << 64) + i)), i, served(i)))
        assert len(records) == 1
        out += records
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, codec: SingleObjectCodec) -> Pipeline:
    return Pipeline(Settings(home=tmp_path_factory.mktemp("pipeline")), codec)


@pytest.fixture(scope="module")
def window_a(pipeline: Pipeline, codec: SingleObjectCodec) -> list[bytes]:
    return _window(pipeline, codec, SALT_A)


@pytest.fixture(scope="module")
def window_b(pipeline: Pipeline, codec: SingleObjectCodec) -> list[bytes]:
    return _window(pipeline, codec, SALT_B)


def _line(home: Path, codec: SingleObjectCodec, **update: Any) -> tuple[TrainerSettings, Registry, WindowTrainer]:
    """A model line with v1 (tiny full weights) deployed, and a trainer on it; the gate passes anything it can
    judge unless ``update`` says otherwise."""
    settings = TrainerSettings.extend(Settings(), **{
        "home": home, "trainer_heldout_fraction": HELDOUT, "trainer_learning_rate": 1e-2, "trainer_epochs": 2,
        "gate_max_kl": 10.0, "gate_min_gain": -1e9, **update,
    })  # fmt: skip
    tok = build_tokenizer(words([VOCAB]))
    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    registry.deploy(registry.save(build_model(len(tok), hidden=32).save_pretrained, tok, None, [], {}).version, "init")
    return settings, registry, WindowTrainer(settings, codec, registry, progress=lambda _: None)


def _logits(model: Any) -> Any:
    import torch

    ids = torch.tensor([[1, 4, 6, 9, 10, 11, 12, 5, 8, 13, 2]])
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def _steps(optimizer: Any) -> set[float]:
    """Adam's step count of every parameter it holds state for."""
    assert optimizer.state, "the optimizer holds no state"
    return {float(s["step"]) for s in optimizer.state.values()}


def _trainable(policy: Any) -> set[int]:
    return {id(p) for p in policy.parameters() if p.requires_grad}


def _optimized(optimizer: Any) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _lora_b(policy: Any) -> list[Any]:
    out = [p for name, p in policy.named_parameters() if "lora_B" in name]
    assert out, "the policy has no LoRA adapter"
    return out


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_a_deployed_version_carries_its_optimizer_into_the_next_window(
    tmp_path: Path, codec: SingleObjectCodec, window_a: list[bytes], window_b: list[bytes], adapter: str
) -> None:
    settings, registry, trainer = _line(tmp_path, codec, trainer_adapter=adapter)
    first = trainer.train("w1", window_a, cut=True)
    assert first.version is not None and first.verdict is not None and first.verdict.deploy, first.line()
    policy, optimizer = trainer.policy, trainer.optimizer
    assert optimizer is not None and _optimized(optimizer) == _trainable(policy)
    assert _steps(optimizer) == {float(settings.trainer_epochs)}
    registry.deploy(first.version.version, "test: canary_share 0 deploys a passed candidate at once")

    second = trainer.train("w2", window_b, cut=False)
    assert second.trained > 0 and second.version is None
    # The same model in memory (not reloaded from the version on disk) and the same optimizer, whose steps
    # went on counting from the first window's.
    assert trainer.policy is policy and trainer.optimizer is optimizer
    assert _optimized(optimizer) == _trainable(policy)
    assert _steps(optimizer) == {2.0 * settings.trainer_epochs}


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_a_rejected_candidate_restores_the_deployed_weights_and_keeps_the_optimizer(
    tmp_path: Path, codec: SingleObjectCodec, window_a: list[bytes], window_b: list[bytes], adapter: str
) -> None:
    import torch

    settings, registry, trainer = _line(tmp_path, codec, trainer_adapter=adapter, gate_max_kl=1e-12)
    deployed = registry.deployed()
    assert deployed is not None
    report = trainer.train("w1", window_a, cut=True)
    assert report.heldout > 0 and report.verdict is not None and not report.verdict.deploy, report.line()
    assert report.version is not None and report.version.status == "rejected"
    assert registry.get(report.version.version).status == "rejected"
    assert registry.deployed() == deployed
    # The candidate had moved away from the deployed weights; the policy in memory is back on them.
    deployed_logits = _logits(load_version(deployed))
    assert not torch.allclose(_logits(load_version(report.version)), deployed_logits, atol=1e-4)
    torch.testing.assert_close(_logits(trainer.policy), deployed_logits, rtol=0, atol=1e-6)
    if adapter == "lora":  # v1 is the bare base: the adapter adds nothing
        assert all(torch.count_nonzero(b) == 0 for b in _lora_b(trainer.policy))
    policy, optimizer = trainer.policy, trainer.optimizer
    assert optimizer is not None and _steps(optimizer) == {float(settings.trainer_epochs)}

    # The next window goes on with the same policy and optimizer, from the deployed weights.
    trainer.train("w2", window_b, cut=False)
    assert trainer.policy is policy and trainer.optimizer is optimizer
    assert _steps(optimizer) == {2.0 * settings.trainer_epochs}


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_lora_versions_are_adapters_and_load_as_the_policy(
    tmp_path: Path, codec: SingleObjectCodec, window_a: list[bytes], adapter: str
) -> None:
    import torch
    from safetensors.torch import load_file

    _, registry, trainer = _line(tmp_path, codec, trainer_adapter=adapter, trainer_lora_rank=2)
    deployed = registry.deployed()
    assert deployed is not None
    report = trainer.train("w1", window_a, cut=True)
    version = report.version
    assert version is not None and report.verdict is not None and report.verdict.deploy, report.line()
    model_dir = Path(version.path) / "model"
    if adapter == "lora":
        assert (model_dir / ADAPTER_CONFIG).is_file() and not (model_dir / "config.json").exists()
        assert version.base == str(Path(deployed.path) / "model")
        # The adapter's tensors alone: rank x (in + out) for each adapted linear layer. With hidden 32 that is a
        # tenth of the base; the files saved beside them (README, training arguments, tokenizer: about 17 kB)
        # weigh as much again, so the directories differ by less.
        tensors = load_file(model_dir / "adapter_model.safetensors")
        base = load_version(deployed)
        linear = [m for name, m in base.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in name]
        assert tensors and all("lora_" in name for name in tensors)
        assert sum(t.numel() for t in tensors.values()) == sum(2 * (m.in_features + m.out_features) for m in linear)
        weights = (model_dir / "adapter_model.safetensors").stat().st_size
        full = (Path(deployed.path) / "model" / "model.safetensors").stat().st_size
        print(
            f"adapter {weights} bytes ({size_bytes(version)} with its files), base {full} bytes "
            f"({size_bytes(deployed)}): {weights / full:.3f}, {size_bytes(version) / size_bytes(deployed):.3f}"
        )
        assert weights / full < 0.15 and size_bytes(version) / size_bytes(deployed) < 0.5
    else:
        assert (model_dir / "config.json").is_file() and not (model_dir / ADAPTER_CONFIG).exists()
        assert version.base is None
    # The version on disk (for LoRA: the adapter merged into its base) is the policy in memory, which moved.
    saved = _logits(load_version(version))
    torch.testing.assert_close(saved, _logits(trainer.policy), rtol=0, atol=1e-5)
    assert not torch.allclose(saved, _logits(load_version(deployed)), atol=1e-4)


def test_the_control_arm_permutes_rewards_within_the_window(
    tmp_path: Path, codec: SingleObjectCodec, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What grouping receives: with the control arm, the window's rewards permuted among its trajectories (the
    same permutation each time the window is trained); the live figures keep the true rewards by version."""
    seen: list[dict[str, float]] = []

    def groups(samples: Any, *_: Any) -> list[Any]:
        seen.append({s.trajectory_id: s.reward for s in samples})
        return []  # nothing to train on: the window ends here

    monkeypatch.setattr(window_training, "make_groups", groups)
    _, registry, _ = _line(tmp_path, codec, trainer_heldout_fraction=0.0)
    v1 = registry.get("v1")
    registry.deploy(registry.save(load_version(v1).save_pretrained, build_tokenizer(words([VOCAB])), "v1", [],
                                  {}).version, "test: a second version serves")  # fmt: skip

    def served(i: int) -> tuple[str, str]:  # successes mostly by v1, failures by v2, one trajectory by both
        return ("v1", "v2") if i == 1 else ("v2", "v2") if i % 3 == 0 or i % 4 == 0 else ("v1", "v1")

    values = _window(pipeline, codec, SALT_C, served)
    ids = [str(uuid.UUID(int=(SALT_C << 64) + i)) for i in range(WINDOW)]
    true = {tid: 0.0 if i % 3 == 0 else 1.0 for i, tid in enumerate(ids)}  # scoring: 1 for a success
    live: dict[str, RewardStats] = {}
    for i, tid in enumerate(ids):
        if i != 1:
            live.setdefault(served(i)[0], RewardStats()).add(true[tid])
    assert live["v1"].mean != live["v2"].mean
    for control in ["none", "shuffled", "shuffled"]:
        settings = TrainerSettings.extend(Settings(), home=tmp_path, trainer_heldout_fraction=0.0,
                                          trainer_reward_control=control)  # fmt: skip
        report = WindowTrainer(settings, codec, registry, progress=lambda _: None).train("w1", values, cut=False)
        assert report.trained == 0 and report.stale == 0 and report.mixed_versions == 1
        assert report.live == live  # the true rewards by the version that served each, not the permuted ones
    none, shuffled, again = seen
    assert none == true
    assert shuffled.keys() == none.keys() and sorted(shuffled.values()) == sorted(none.values())
    assert shuffled != none  # moved: some trajectories got another's reward
    assert again == shuffled  # the same permutation for the same window
    other = WindowTrainer(TrainerSettings.extend(settings, trainer_reward_control="shuffled"), codec, registry,
                          progress=lambda _: None).train("w2", values, cut=False)  # fmt: skip
    assert other.trained == 0 and seen[-1] != shuffled  # another window, another permutation


@pytest.mark.parametrize(("stage", "adapter"), [(1, "lora"), (2, "lora"), (3, "lora"), (3, "full")])
def test_every_zero_stage_trains_a_window(
    tmp_path: Path, codec: SingleObjectCodec, window_a: list[bytes], stage: int, adapter: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import torch

    built: list[Any] = []
    original = window_training.build_trainer

    def build(*args: Any, **kwargs: Any) -> Any:
        built.append(original(*args, **kwargs))
        return built[-1]

    _, registry, trainer = _line(tmp_path, codec, trainer_zero_stage=stage, trainer_adapter=adapter)
    deployed = registry.deployed()
    assert deployed is not None
    monkeypatch.setattr(window_training, "build_trainer", build)
    report = trainer.train("w1", window_a, cut=True)
    assert built and built[0].model_wrapped.zero_optimization_stage() == stage
    assert report.version is not None and report.verdict is not None and report.verdict.deploy, report.line()
    assert trainer.optimizer is None  # carried at stage 0 only: the later stages partition it
    model_dir = Path(report.version.path) / "model"
    if adapter == "lora":
        assert (model_dir / ADAPTER_CONFIG).is_file()
        assert any(torch.count_nonzero(b) > 0 for b in _lora_b(load_version(report.version, trainable_adapter=True)))
    else:  # whole weights, not a ZeRO-3 checkpoint of partitions
        assert (model_dir / "model.safetensors").is_file()
    # The saved version loads (whole, not as ZeRO-3 partitions) and moved away from the deployed one.
    saved = _logits(load_version(report.version))
    assert not torch.allclose(saved, _logits(load_version(deployed)), atol=1e-4)


def test_the_gate_judges_on_every_window_held_out_since_the_last_version(
    tmp_path: Path, codec: SingleObjectCodec, window_a: list[bytes], window_b: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A window's few held-out trajectories make a noisy estimate: windows trained without a cut keep theirs
    for the next version's gate, and a cut starts the count again."""
    judged: list[int] = []
    real_judge = window_training.judge

    def counting(candidate: Any, deployed: Any, heldout: Any, *args: Any) -> Any:
        judged.append(len(heldout))
        return real_judge(candidate, deployed, heldout, *args)

    monkeypatch.setattr(window_training, "judge", counting)
    _, _, trainer = _line(tmp_path, codec)
    reports = [trainer.train("w1", window_a, cut=False), trainer.train("w2", window_b, cut=True)]
    assert judged == [sum(r.heldout for r in reports)] and all(r.heldout > 0 for r in reports)
    third = trainer.train("w3", window_a, cut=True)
    assert judged[-1] == third.heldout
