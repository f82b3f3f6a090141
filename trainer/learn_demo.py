"""`trajstream demo --learn`: agents improve from their own trajectories, shown as a learning curve.

Everything runs on this machine: the pipeline (`trajstream up`: broker, streams, enrichment, sinks), a
small model built and warmed up here and registered as v1, `trajstream serve` in this process, simulated
agents that ask the served model through the `openai` client and emit their turns with the SDK
(log-probabilities and the serving version included), and the trainer, whose deployed versions the
server reloads. It prints the success rate per model version as it goes; the same curve is in
ClickHouse (`trajectories` by `model_version`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trajstream.settings import Settings
from trajstream.trainer.config import TrainerSettings

AGENT_ID = "learn-demo"
MIN_TRAJECTORIES = 40
THINK_S = 0.5  # a version's rate counts once this many of its trajectories are in


@dataclass
class Curve:
    attempts: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))

    def rate(self, version: str) -> float:
        results = self.attempts[version]
        return 100.0 * sum(results) / len(results) if results else float("nan")

    def versions(self) -> list[str]:
        return sorted(self.attempts, key=lambda v: int(v.lstrip("v")))

    def counted(self) -> list[str]:
        return [v for v in self.versions() if len(self.attempts[v]) >= MIN_TRAJECTORIES]

    def gain(self) -> float:
        counted = self.counted()
        return self.rate(counted[-1]) - self.rate(counted[0]) if len(counted) >= 2 else 0.0

    def line(self) -> str:
        return "  ".join(f"{v} {self.rate(v):.0f}% ({len(self.attempts[v])})" for v in self.versions())


def learn_settings(base: Settings) -> TrainerSettings:
    """The demo's training settings: a model line of its own per run (so each run starts from a fresh v1 and
    reads only its own trajectories), small windows, a learning rate for a small model, the gate on."""
    return TrainerSettings.extend(base, **{
        "trainer_model_name": f"learn-{time.strftime('%Y%m%d-%H%M%S')}", "trainer_start": "latest",
        "trainer_window_count": 48, "trainer_window_seconds": 60.0,
        "trainer_learning_rate": 3e-4, "trainer_epochs": 4, "trainer_heldout_fraction": 0.25,
        "trainer_max_version_lag": 12,
        "trainer_is_cap": 2.0, "gate_min_gain": 0.0, "gate_max_kl": 0.3,
    })  # fmt: skip


def register_first_version(settings: TrainerSettings, progress: Callable[[str], None]) -> None:
    from trajstream.trainer.learn_env import vocabulary, warm_up
    from trajstream.trainer.registry import Registry
    from trajstream.trainer.tiny import build_model, build_tokenizer

    registry = Registry(settings.registry_dir, settings.trainer_model_name)
    deployed = registry.deployed()
    if deployed is not None:
        progress(f"model {settings.trainer_model_name}: {deployed.version} already deployed")
        return
    tokenizer = build_tokenizer(vocabulary())
    model = build_model(len(tokenizer), hidden=64, layers=2, heads=4, seed=0)
    loss = warm_up(model, tokenizer)
    info = registry.save(model.save_pretrained, tokenizer, None, [], {"warmup_loss": loss})
    registry.deploy(info.version, "the warmed-up starting point")
    progress(f"model {settings.trainer_model_name} v1: built and warmed up (the answer format, the right tool "
             f"30% of the time; loss {loss:.3f})")  # fmt: skip


async def agent(settings: TrainerSettings, base_url: str, emitter: Any, curve: Curve, stop: asyncio.Event,
                rng: random.Random) -> None:  # fmt: skip
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
        curve.attempts[data["model_version"]].append(ok)
        await asyncio.sleep(THINK_S)  # an agent's tools take time too; and the sinks share these 2 cores


def run_learn_demo(base: Settings, minutes: float, agents: int, out: Any, err: Any) -> float:
    """Run the loop for ``minutes``; the gain in success-rate points of the latest version over the first."""
    from trajstream.pipeline import up

    settings = learn_settings(base)
    t0 = time.monotonic()
    up(settings, lambda msg: err.print(f"[dim]{msg}[/]"))
    out.print(f"[bold]1. pipeline up[/] in {time.monotonic() - t0:.1f}s")
    register_first_version(settings, lambda m: out.print(f"[bold]2.[/] {m}"))
    curve = Curve()
    since = time.time()
    asyncio.run(_loop(settings, minutes, agents, curve, out))
    out.print(f"[bold]5. ClickHouse[/], this run's trajectories by model version: {_clickhouse_curve(settings, since)}")
    gain = curve.gain()
    counted = curve.counted()
    if len(counted) >= 2:
        first, last = counted[0], counted[-1]
        out.print(f"first version {first} {curve.rate(first):.1f}%, latest {last} {curve.rate(last):.1f}% "
                  f"(versions with at least {MIN_TRAJECTORIES} trajectories)")  # fmt: skip
    print(f"RESULT success_rate_gain points={gain:.1f} target=20")
    return gain


async def _loop(settings: TrainerSettings, minutes: float, agents: int, curve: Curve, out: Any) -> None:
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
              f"{agents} agents; trainer windows of {settings.trainer_window_count}")  # fmt: skip
    tasks = [asyncio.create_task(watch_announcements(server, settings, codec, stop)),
             asyncio.create_task(trainer.run(stop))]  # fmt: skip
    deadline = time.monotonic() + minutes * 60
    try:
        async with AsyncEmitter(settings, codec=codec) as emitter:
            rng = random.Random(7)
            workers = [asyncio.create_task(agent(settings, f"http://127.0.0.1:{port}/v1", emitter, curve, stop,
                                                 random.Random(rng.random()))) for _ in range(agents)]  # fmt: skip
            started = time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(20)
                out.print(f"[bold]4. {int(time.monotonic() - started):>4}s[/] success rate by version: {curve.line()}")
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()


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
