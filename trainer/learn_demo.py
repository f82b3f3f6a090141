"""`trajstream demo --learn`: agents improve from their own trajectories, shown as a pooled learning curve.

Everything runs on this machine: the pipeline (`trajstream up`: broker, streams, enrichment, sinks), a
small model built and warmed up here and registered as v1, `trajstream serve` in this process, simulated
agents that ask the served model through the `openai` client and emit their turns with the SDK
(log-probabilities and the serving version included), and the trainer, whose candidates serve a share of
requests as canaries and are promoted or rolled back on their live reward.

The figure is pooled, not read off single versions: the success rate of every trajectory from the run's
last ``LAST_S`` seconds minus that of every trajectory the first version served, each side at least
``MIN_SIDE`` trajectories, with a 95% interval. ``--control shuffled`` runs the same loop with the
rewards permuted within each training window: the control arm, which shows what the loop gains without
the reward signal (sharpening, selection by the canary, drift).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trajstream.errors import TrajstreamError
from trajstream.settings import Settings
from trajstream.trainer.config import TrainerSettings

AGENT_ID = "learn-demo"
THINK_S = 0.5  # an agent's tools take time too; and the sinks share these 2 cores
LAST_S = 180.0  # the pooled "after" side: the run's last 3 minutes
MIN_SIDE = 200  # trajectories each side of the gain needs
WARM_UP_STEPS = 800
Control = Literal["none", "shuffled"]


class LearnDemoError(TrajstreamError):
    """The learning demo could not produce an honest figure (an agent died, or too few trajectories)."""


@dataclass(frozen=True)
class Attempt:
    at_s: float  # since the agents started
    version: str
    success: bool


@dataclass
class Pool:
    n: int
    successes: int

    @property
    def rate(self) -> float:
        return 100.0 * self.successes / self.n if self.n else math.nan


@dataclass(frozen=True)
class Gain:
    first: Pool
    last: Pool
    points: float
    low: float
    high: float

    def check(self) -> None:
        """Refuse a figure whose sides hold fewer than MIN_SIDE trajectories."""
        short = [f"{name} has {pool.n}" for name, pool in (("v1", self.first), ("the last 3 minutes", self.last))
                 if pool.n < MIN_SIDE]  # fmt: skip
        if short:
            raise LearnDemoError(f"too few trajectories for a pooled figure ({', '.join(short)}; each side needs "
                                 f"{MIN_SIDE}): run longer (--minutes) or with more agents (--agents)")  # fmt: skip


@dataclass
class Curve:
    attempts: list[Attempt] = field(default_factory=list)

    def add(self, at_s: float, version: str, success: bool) -> None:
        self.attempts.append(Attempt(at_s, version, success))

    def pool(self, keep: Callable[[Attempt], bool]) -> Pool:
        kept = [a for a in self.attempts if keep(a)]
        return Pool(len(kept), sum(a.success for a in kept))

    def since(self, at_s: float, until_s: float = math.inf) -> Pool:
        return self.pool(lambda a: at_s <= a.at_s < until_s)

    def buckets(self, seconds: float) -> list[tuple[float, Pool]]:
        """Pooled success per ``seconds`` of the run: (bucket start, pool)."""
        end = max((a.at_s for a in self.attempts), default=0.0)
        starts = [i * seconds for i in range(int(end // seconds) + 1)]
        return [(start, self.since(start, start + seconds)) for start in starts]

    def versions(self) -> str:
        counts: dict[str, Pool] = {}
        for a in self.attempts:
            pool = counts.setdefault(a.version, Pool(0, 0))
            pool.n, pool.successes = pool.n + 1, pool.successes + a.success
        ordered = sorted(counts, key=lambda v: int(v.lstrip("v")) if v.lstrip("v").isdigit() else 0)
        return "  ".join(f"{v} {counts[v].rate:.0f}% ({counts[v].n})" for v in ordered)

    def gain(self, first_version: str, duration_s: float) -> Gain:
        """The last ``LAST_S`` seconds' success rate minus the first version's, with a 95% interval
        (normal approximation for a difference of two proportions; both sides hold at least MIN_SIDE)."""
        return difference(self.pool(lambda a: a.version == first_version),
                          self.pool(lambda a: a.at_s >= duration_s - LAST_S))  # fmt: skip


def difference(first: Pool, last: Pool) -> Gain:
    """``last``'s success rate minus ``first``'s in points, with a 95% interval (normal approximation for a
    difference of two independent proportions)."""
    p1, p2 = first.successes / max(first.n, 1), last.successes / max(last.n, 1)
    se = math.sqrt(p1 * (1 - p1) / max(first.n, 1) + p2 * (1 - p2) / max(last.n, 1))
    points = 100.0 * (p2 - p1)
    return Gain(first, last, points, points - 196.0 * se, points + 196.0 * se)


def learn_settings(base: Settings, control: Control = "none") -> TrainerSettings:
    """The demo's training settings: a model line of its own per run (so each run starts from a fresh v1 and
    reads only its own trajectories), small windows, LoRA at a learning rate for a small model, a version
    at most every 60 s, a gate that refuses a version that moved far (KL 1.5: the in-memory policy can
    drift into answers its data never showed), canaries on half the requests decided within a few hundred
    trajectories."""
    return TrainerSettings.extend(base, **{
        "trainer_model_name": f"learn-{time.strftime('%Y%m%d-%H%M%S')}", "trainer_start": "latest",
        "trainer_window_count": 48, "trainer_window_seconds": 30.0, "trainer_adapter": "lora",
        "trainer_learning_rate": 2e-3, "trainer_epochs": 4, "trainer_heldout_fraction": 0.25,
        "trainer_max_version_lag": 3, "trainer_versions_per_hour": 60.0, "trainer_is_cap": 2.0,
        "trainer_reward_control": control, "gate_min_gain": 0.0, "gate_max_kl": 1.5,
        "canary_share": 0.5, "canary_margin": 0.1, "canary_alpha": 0.05, "canary_beta": 0.2,
        "canary_min_trajectories": 40, "canary_max_trajectories": 400, "watch_trajectories": 200,
    })  # fmt: skip


def register_first_version(settings: TrainerSettings, progress: Callable[[str], None],
                           cache: Path | None = None) -> None:  # fmt: skip
    """Build, warm up and deploy v1 (the warmed-up model is cached under ``cache``, HOME/learn by default:
    the same seed and settings give the same weights, and on 2 busy cores the warm-up takes minutes)."""
    from trajstream.trainer.learn_env import DECOY_SHARE, RIGHT_SHARE
    from trajstream.trainer.registry import Registry

    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    deployed = registry.deployed()
    if deployed is not None:
        progress(f"model {settings.trainer_model_name}: {deployed.version} already deployed")
        return
    cached, loss, curve = warmed_up(cache or settings.home / "learn")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cached / "tokenizer")
    info = registry.save(lambda d: shutil.copytree(cached / "model", d), tokenizer, None, [], {"warmup_loss": loss})
    registry.deploy(info.version, "the warmed-up starting point")
    progress(f"model {settings.trainer_model_name} v1: built and warmed up (labels: a decoy tool "
             f"{DECOY_SHARE:.0%}, the right one {RIGHT_SHARE:.0%}; loss {loss:.3f}). Its success rate if "
             "sampled colder, so sharpening alone cannot help: "
             + ", ".join(f"T={t} {v:.1f}%" for t, v in curve.items()))  # fmt: skip


def warmed_up(cache_root: Path) -> tuple[Path, float, dict[str, float]]:
    """The warmed-up first model's directory (model/, tokenizer/, warmup.json), built once per recipe."""
    from trajstream.trainer.learn_env import DECOY_SHARE, RIGHT_SHARE, expected_success, vocabulary, warm_up
    from trajstream.trainer.tiny import build_model, build_tokenizer

    recipe = {"right": RIGHT_SHARE, "decoy": DECOY_SHARE, "steps": WARM_UP_STEPS, "seed": 0, "hidden": 64,
              "layers": 2, "heads": 4, "vocabulary": vocabulary()}  # fmt: skip
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    directory = cache_root / f"v1-{key}"
    meta = directory / "warmup.json"
    if not meta.exists():
        tokenizer = build_tokenizer(vocabulary())
        model = build_model(len(tokenizer), hidden=64, layers=2, heads=4, seed=0)
        loss = warm_up(model, tokenizer, steps=WARM_UP_STEPS)
        curve = {f"{t:g}": 100 * expected_success(model, tokenizer, t) for t in (1.0, 0.8, 0.6, 0.4, 0.2)}
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_root))
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "warmup.json").write_text(json.dumps({"loss": loss, "expected_success": curve, "recipe": recipe}))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
    data = json.loads(meta.read_text())
    return directory, float(data["loss"]), dict(data["expected_success"])


async def agent(settings: TrainerSettings, base_url: str, emitter: Any, curve: Curve, stop: asyncio.Event,
                rng: random.Random, started: float) -> None:  # fmt: skip
    import openai

    from trajstream.trainer.learn_env import TASKS, check, messages

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=2)
    while not stop.is_set():
        task = rng.choice(list(TASKS))
        request: Any = messages(task)
        completion = await client.chat.completions.create(
            model=settings.trainer_model_name, messages=request, max_tokens=4, temperature=1.0, logprobs=True
        )
        data = completion.model_dump()
        answer = data["choices"][0]["message"]["content"] or ""
        ok = check(task, answer)
        async with emitter.trajectory(task, agent_id=AGENT_ID, domain="support") as t:
            await t.record_chat_completion(request, data, request_model=settings.trainer_model_name,
                                           provider="trajstream")  # fmt: skip
            await t.end("success" if ok else "failure", final_reward=1.0 if ok else 0.0)
        curve.add(time.monotonic() - started, data["model_version"], ok)
        await asyncio.sleep(THINK_S)


def run_learn_demo(base: Settings, minutes: float, agents: int, out: Any, err: Any,
                   control: Control = "none") -> Gain:  # fmt: skip
    """Run the loop for ``minutes``; the pooled gain. Raises LearnDemoError when it cannot be measured."""
    from trajstream.pipeline import up

    settings = learn_settings(base, control)
    arm = "control arm: rewards shuffled within each window" if control == "shuffled" else "rewards as scored"
    t0 = time.monotonic()
    up(settings, lambda msg: err.print(f"[dim]{msg}[/]"))
    out.print(f"[bold]1. pipeline up[/] in {time.monotonic() - t0:.1f}s ({arm})")
    register_first_version(settings, lambda m: out.print(f"[bold]2.[/] {m}"))
    curve = Curve()
    since = time.time()
    duration = asyncio.run(_loop(settings, minutes, agents, curve, out))
    out.print(f"[bold]5. ClickHouse[/], this run's trajectories by model version: {_clickhouse_curve(settings, since)}")
    _save_curve(settings, curve, control, duration)
    gain = curve.gain("v1", duration)
    out.print("pooled success per 30 s: " + "  ".join(f"{int(s)}s {p.rate:.0f}% ({p.n})" for s, p in curve.buckets(30)))
    out.print(f"first version v1: {gain.first.rate:.1f}% of {gain.first.n}; last {LAST_S:.0f} s: "
              f"{gain.last.rate:.1f}% of {gain.last.n}; gain {gain.points:+.1f} points "
              f"(95% interval {gain.low:+.1f} to {gain.high:+.1f})")  # fmt: skip
    gain.check()
    if control == "shuffled":
        print(f"RESULT control_gain_abs value={abs(gain.points):.1f} target=5")
    else:
        print(f"RESULT success_rate_gain points={gain.points:.1f} target=20")
        print(f"RESULT success_rate_gain_ci_low points={gain.low:.1f} target=10")
    return gain


def _save_curve(settings: TrainerSettings, curve: Curve, control: Control, duration: float) -> None:
    """The run's attempts, for `python benchmarks/learning_curves.py` to draw beside other runs."""
    path = settings.home / "learn" / f"{settings.trainer_model_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "model": settings.trainer_model_name,
                "control": control,
                "duration_s": duration,
                "attempts": [[round(a.at_s, 2), a.version, a.success] for a in curve.attempts],
            }
        )
    )
    print(f"curve saved to {path}")


async def _loop(settings: TrainerSettings, minutes: float, agents: int, curve: Curve, out: Any) -> float:
    """Serve, run the agents and the trainer for ``minutes``; the seconds the agents ran. Any of them dying
    stops the run with its error."""
    from aiohttp import web

    from trajstream.trainer.loop import TrainerLoop
    from trajstream.trainer.registry import Registry
    from trajstream.trainer.serve import ModelServer, watch_announcements
    from trajstream_sdk.codec import codec_for
    from trajstream_sdk.emitter import AsyncEmitter

    codec = codec_for(settings)
    server = ModelServer(Registry(settings.registry_dir, settings.trainer_model_name), settings.trainer_model_name,
                         concurrency=2)  # fmt: skip
    await server.reload()
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = settings.api_port + 1
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    trainer = TrainerLoop(settings, codec, progress=lambda m: out.print(f"   [dim]trainer: {m}[/]"))
    serving = server.current.version if server.current else "-"
    out.print(f"[bold]3. serving[/] {settings.trainer_model_name} {serving} at http://127.0.0.1:{port}/v1; "
              f"{agents} agents; trainer windows of {settings.trainer_window_count}, canaries on "
              f"{settings.canary_share:.0%} of requests")  # fmt: skip
    services = [asyncio.create_task(watch_announcements(server, settings, codec, stop), name="serving reload"),
                asyncio.create_task(trainer.run(stop), name="trainer")]  # fmt: skip
    started = time.monotonic()
    deadline = started + minutes * 60
    try:
        async with AsyncEmitter(settings, codec=codec) as emitter:
            rng = random.Random(7)
            workers = [asyncio.create_task(agent(settings, f"http://127.0.0.1:{port}/v1", emitter, curve, stop,
                                                 random.Random(rng.random()), started), name=f"agent {i}")
                       for i in range(agents)]  # fmt: skip
            shown = started
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                _raise_if_died([*workers, *services])
                if time.monotonic() - shown >= 20:
                    shown = time.monotonic()
                    recent = curve.since(shown - started - 30)
                    canary = f", canary {server.canary.version}" if server.canary else ""
                    out.print(f"[bold]4. {int(shown - started):>4}s[/] last 30 s {recent.rate:.0f}% ({recent.n}); "
                              f"deployed {server.current.version if server.current else '-'}{canary}; "
                              f"by version: {curve.versions()}")  # fmt: skip
            duration = time.monotonic() - started
            stop.set()
            await asyncio.gather(*workers)  # an agent's error surfaces here
    finally:
        stop.set()
        results = await asyncio.gather(*services, return_exceptions=True)
        await runner.cleanup()
    for task, result in zip(services, results, strict=True):
        if isinstance(result, BaseException):
            raise LearnDemoError(f"{task.get_name()} failed: {type(result).__name__}: {result}") from result
    return duration


def _raise_if_died(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            raise LearnDemoError(f"{task.get_name()} died: {type(exc).__name__}: {exc}") from exc


def _clickhouse_curve(settings: TrainerSettings, since: float) -> str:
    """Success rate per model version in ClickHouse, for this run (its model line's versions are named
    v1, v2... like every other line's, so the run is told apart by time)."""
    from trajstream.consumers.access import DataAccess

    db = settings.clickhouse_database
    result = DataAccess(settings).sql(
        f"SELECT model_version, count() AS n, round(100 * avg(outcome = 'success'), 1) AS success FROM "
        f"(SELECT * FROM {db}.trajectories WHERE agent_id = '{AGENT_ID}' AND started_at >= "
        f"fromUnixTimestamp64Milli({int(since * 1000)}) ORDER BY version DESC LIMIT 1 BY trajectory_id) "
        f"GROUP BY model_version ORDER BY toUInt32OrZero(substring(model_version, 2))"
    )
    return "  ".join(f"{row[0]} {row[2]}% ({row[1]})" for row in result["rows"])


def load_curve(path: Path) -> tuple[Curve, str, float]:
    """A saved run: (curve, control, duration)."""
    data = json.loads(path.read_text())
    curve = Curve([Attempt(float(t), str(v), bool(ok)) for t, v, ok in data["attempts"]])
    return curve, str(data["control"]), float(data["duration_s"])
