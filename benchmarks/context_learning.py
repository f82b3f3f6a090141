"""Context learning: do agents that consult past trajectories before acting succeed more often?

    python benchmarks/context_learning.py [--corpus 900] [--requests 900] [--agents 4]

On the learning demo's environment (trainer/learn_env.py: route a support request to one of six tools; the
served model's likeliest answer is a decoy, right about a third of the time), with no training:

1. `trajstream up` on a fresh home and topic prefix (broker, streams, enrichment, the data worker with
   chDB, milvus-lite and MiniLM), the demo's warmed-up v1 registered (cached under HOME/learn, the same
   cache as `trajstream demo --learn`) and served in this process by `trajstream serve`'s server.
2. The corpus: agents without recall ask the served model through `openai` and emit their turns with the
   SDK, ``--corpus`` trajectories (agent ``context-corpus``). The same requests and answers are emitted
   again with their outcomes permuted among them (agent ``context-shuffled``): the control's corpus, as
   large, as successful on the whole, with the link from answer to outcome broken. The run waits until
   every trajectory and decision point is in Milvus.
3. Three arms on the same ``--requests`` requests, interleaved (each request goes to every arm, in
   rotating order), all on v1:
   - baseline: the model's answer, as the corpus's agents;
   - recall: trainer/recall_agent.py's agent (the model's answers, checked with ``/predict`` against the
     corpus; its docstring says why this way and not few-shot recall or tool recommendations), keeping
     each prediction ``REMEMBER_S`` seconds;
   - control: the same agent against the shuffled corpus. It samples, asks and switches the same way, so
     it shows what the sampling and the switching gain without experience behind them.
   The arms emit nothing: all of them consult the same frozen corpus.

The gain is the recall arm's success rate minus the baseline's, in points, with a 95% interval (normal
approximation for two independent proportions); the control's difference is printed on its own line.
Uses the local broker (started if needed) or TRAJSTREAM_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from trajstream.broker import LocalBroker
from trajstream.data_api import api_headers
from trajstream.settings import Settings
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.learn_demo import Pool, difference, learn_settings, register_first_version, warmed_up
from trajstream.trainer.learn_env import TASKS, check, messages
from trajstream.trainer.recall_agent import SAMPLES, Choice, RecallAgent

BIN = Path(sys.executable).parent / "trajstream"
CORPUS_AGENT, SHUFFLED_AGENT = "context-corpus", "context-shuffled"
ARMS = ("baseline", "recall", "control")
TARGET_POINTS = 10.0
# How long an agent keeps a prediction (RecallAgent's remember_s). The corpus is frozen during the arms, so
# this changes what the run costs, not what it decides: on 2 shared cores a prediction took 0.7-3 s.
REMEMBER_S = 300.0
CONTROL_MAX_POINTS = 5.0


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Attempt:
    task: str
    request: list[dict[str, str]]
    completion: dict[str, Any]  # the model's response as `openai` returned it (model_dump)
    success: bool


@dataclass
class Arm:
    successes: list[bool] = field(default_factory=list)
    switched: int = 0  # answers other than the model's first
    right_among: int = 0  # requests whose sampled answers held the right one (the most checking can reach)
    asked: int = 0  # predictions asked of the data API
    helped: int = 0  # switches from a wrong first answer of the model to a right one
    hurt: int = 0  # switches from a right first answer to a wrong one

    @property
    def pool(self) -> Pool:
        return Pool(len(self.successes), sum(self.successes))


# --- the pipeline --------------------------------------------------------------------------------
class Pipeline:
    """`trajstream up` on a fresh home, topic prefix and ports; `down` (the broker kept) on exit."""

    def __init__(self, base: Settings):
        home = Path(tempfile.mkdtemp(prefix="bench-context-"))
        self.settings = base.model_copy(update={"home": home, "topic_prefix": f"cl{uuid.uuid4().hex[:8]}.",
                                                "api_port": free_port(), "gateway_port": free_port(),
                                                "kafka_bootstrap": base.bootstrap})  # fmt: skip
        s = self.settings
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJSTREAM_")}
        self.env.update({"TRAJSTREAM_HOME": str(home), "TRAJSTREAM_TOPIC_PREFIX": s.topic_prefix,
                         "TRAJSTREAM_KAFKA_BOOTSTRAP": s.bootstrap, "TRAJSTREAM_API_PORT": str(s.api_port),
                         "TRAJSTREAM_GATEWAY_PORT": str(s.gateway_port)})  # fmt: skip
        self.url = f"http://127.0.0.1:{s.api_port}"

    def __enter__(self) -> Pipeline:
        log(f"starting the pipeline in {self.settings.home}")
        started = time.monotonic()
        try:
            subprocess.run([str(BIN), "up"], env=self.env, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            self.__exit__()
            sys.exit(f"`trajstream up` failed:\n{exc.stdout}\n{exc.stderr}")
        while httpx.get(f"{self.url}/health", timeout=10).json().get("embedder") != "loaded":
            time.sleep(0.5)  # recall needs the model: wait for it before the clock of anything starts
        log(f"pipeline up, embedder loaded, in {time.monotonic() - started:.0f} s")
        return self

    def __exit__(self, *_: object) -> None:
        subprocess.run([str(BIN), "down", "--keep-broker", "--timeout", "10"], env=self.env, capture_output=True)
        shutil.rmtree(self.settings.home, ignore_errors=True)

    def wait_landed(self, ids: list[str], decision_points: int, timeout_s: float = 400.0) -> None:
        """Until every id is in ClickHouse and Milvus and the Milvus sink has written ``decision_points``."""
        headers = api_headers(self.settings)
        pending = set(ids)
        deadline = time.monotonic() + timeout_s
        shown = 0.0
        while True:
            if pending:
                asked = sorted(pending)[:500]
                found = httpx.post(f"{self.url}/exists", json={"ids": asked}, headers=headers, timeout=60).json()
                pending -= set(found["result"]["clickhouse"]) & set(found["result"]["milvus"] or [])
            written = httpx.get(f"{self.url}/health", timeout=10).json()["sinks"]["milvus"]["decision_points"]
            if not pending and written >= decision_points:
                return
            if time.monotonic() > deadline:
                logs = self.settings.home / "logs"
                sys.exit(f"not landed within {timeout_s:.0f} s: {len(pending)} of {len(ids)} trajectories, "
                         f"{written} of {decision_points} decision points; see {logs}")  # fmt: skip
            if time.monotonic() - shown > 10:
                shown = time.monotonic()
                log(f"landing: {len(ids) - len(pending)} of {len(ids)} trajectories in both stores, "
                    f"{written} decision points")  # fmt: skip
            time.sleep(1.0)


# --- the corpus ----------------------------------------------------------------------------------
async def build_corpus(settings: TrainerSettings, ask_full: Callable[[list[dict[str, str]]], Awaitable[dict[str, Any]]],
                       count: int, agents: int, rng: random.Random) -> tuple[list[Attempt], list[str]]:  # fmt: skip
    """``count`` attempts of agents without recall, emitted as they act, then again with their outcomes
    permuted; the attempts and every emitted trajectory id."""
    from trajstream_sdk.emitter import AsyncEmitter

    tasks = [rng.choice(list(TASKS)) for _ in range(count)]
    attempts: list[Attempt] = []
    ids: list[str] = []

    async with AsyncEmitter(settings) as emitter:

        async def emit(attempt: Attempt, agent_id: str, success: bool) -> None:
            async with emitter.trajectory(attempt.task, agent_id=agent_id, domain="support") as t:
                await t.record_chat_completion(attempt.request, attempt.completion, provider="trajstream",
                                               request_model=settings.trainer_model_name)  # fmt: skip
                await t.end("success" if success else "failure", final_reward=1.0 if success else 0.0)
            ids.append(t.trajectory_id)

        async def agent(mine: list[str]) -> None:
            for task in mine:
                request = messages(task)
                completion = await ask_full(request)
                answer = completion["choices"][0]["message"]["content"] or ""
                attempt = Attempt(task, request, completion, check(task, answer))
                attempts.append(attempt)
                await emit(attempt, CORPUS_AGENT, attempt.success)
                if len(attempts) % 200 == 0:
                    log(f"corpus: {len(attempts)} of {count} attempts")

        await asyncio.gather(*(agent(tasks[i::agents]) for i in range(agents)))
        outcomes = [a.success for a in attempts]
        rng.shuffle(outcomes)
        for attempt, success in zip(attempts, outcomes, strict=True):
            await emit(attempt, SHUFFLED_AGENT, success)
        await emitter.flush()
    return attempts, ids


# --- the arms ------------------------------------------------------------------------------------
async def run_arms(ask: Callable[[str], Awaitable[str]], api: httpx.AsyncClient, requests: list[str],
                   agents: int) -> dict[str, Arm]:  # fmt: skip
    arms = {name: Arm() for name in ARMS}
    with_recall = RecallAgent(api, {"agent_id": CORPUS_AGENT}, remember_s=REMEMBER_S)
    control = RecallAgent(api, {"agent_id": SHUFFLED_AGENT}, remember_s=REMEMBER_S)
    done = 0
    started = time.monotonic()

    def record(arm: Arm, task: str, choice: Choice) -> None:
        arm.successes.append(check(task, choice.answer))
        arm.switched += choice.switched
        if choice.switched:
            arm.helped += check(task, choice.answer) and not check(task, choice.model_answer)
            arm.hurt += check(task, choice.model_answer) and not check(task, choice.answer)
        arm.right_among += any(check(task, a) for a in choice.predictions)

    async def one(index: int, task: str) -> None:
        order = ARMS[index % 3 :] + ARMS[: index % 3]  # interleaved: no arm always goes first
        for name in order:
            if name == "baseline":
                arms[name].successes.append(check(task, await ask(task)))
            else:
                record(arms[name], task, await (with_recall if name == "recall" else control).act(ask, task))

    async def agent(mine: list[tuple[int, str]]) -> None:
        nonlocal done
        for index, task in mine:
            await one(index, task)
            done += 1
            if done % 100 == 0:
                rates = "  ".join(f"{n} {arms[n].pool.rate:.1f}%" for n in ARMS)
                log(f"arms: {done} of {len(requests)} requests in {time.monotonic() - started:.0f} s; {rates}")

    numbered = list(enumerate(requests))
    await asyncio.gather(*(agent(numbered[i::agents]) for i in range(agents)))
    arms["recall"].asked, arms["control"].asked = with_recall.asked, control.asked
    return arms


# --- main ----------------------------------------------------------------------------------------
async def measure(pipeline: Pipeline, settings: TrainerSettings, args: argparse.Namespace) -> dict[str, Arm]:
    import openai
    from aiohttp import web

    from trajstream.trainer.registry import Registry
    from trajstream.trainer.serve import ModelServer

    server = ModelServer(Registry(settings.registry_dir, settings.trainer_model_name), settings.trainer_model_name,
                         concurrency=2)  # fmt: skip
    await server.reload()
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=2)
    name = settings.trainer_model_name

    async def ask_full(request: list[dict[str, str]]) -> dict[str, Any]:
        chat: Any = request  # openai's message types are TypedDicts; these are the environment's plain dicts
        completion = await client.chat.completions.create(model=name, messages=chat, max_tokens=4, temperature=1.0,
                                                          logprobs=True)  # fmt: skip
        data: dict[str, Any] = completion.model_dump()
        if data.get("model_version") != "v1":
            raise RuntimeError(f"served {data.get('model_version')!r}, not v1: every arm must ask the same version")
        return data

    async def ask(task: str) -> str:
        return str((await ask_full(messages(task)))["choices"][0]["message"]["content"] or "")

    rng = random.Random(args.seed)
    try:
        started = time.monotonic()
        attempts, ids = await build_corpus(settings, ask_full, args.corpus, args.agents, rng)
        rate = 100 * sum(a.success for a in attempts) / len(attempts)
        log(f"corpus: {len(attempts)} attempts ({rate:.1f}% successful) and their shuffled copy emitted in "
            f"{time.monotonic() - started:.0f} s; waiting for Milvus")  # fmt: skip
        await asyncio.to_thread(pipeline.wait_landed, ids, len(ids))  # one decision point per trajectory
        log(f"corpus landed {time.monotonic() - started:.0f} s after the first attempt")
        requests = [rng.choice(list(TASKS)) for _ in range(args.requests)]
        async with httpx.AsyncClient(base_url=pipeline.url, headers=api_headers(settings), timeout=60) as api:
            return await run_arms(ask, api, requests, args.agents)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=int, default=900, help="past trajectories of agents without recall")
    parser.add_argument("--requests", type=int, default=900, help="requests each arm answers")
    parser.add_argument("--agents", type=int, default=4, help="agents acting at once")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    base = Settings()
    if not base.uses_external_kafka:
        LocalBroker(base, progress=log).start()
    t0 = time.monotonic()
    with Pipeline(base) as pipeline:
        settings = learn_settings(pipeline.settings)
        register_first_version(settings, log, cache=base.home / "learn")
        _, _, curve = warmed_up(base.home / "learn")
        arms = asyncio.run(measure(pipeline, settings, args))
    baseline, recall, control = (arms[n] for n in ARMS)
    gain, placebo = difference(baseline.pool, recall.pool), difference(baseline.pool, control.pool)
    print(f"v1's exact success rate sampled at T=1 (from the model): {curve['1']:.1f}%")
    for name in ARMS:
        arm = arms[name]
        extra = "" if name == "baseline" else (
            f"; answered other than the model's first answer {arm.switched} times; the right tool was among its "
            f"{SAMPLES} samples for {100 * arm.right_among / max(len(arm.successes), 1):.1f}% of requests; "
            f"{arm.asked} predictions asked; its switches turned {arm.helped} wrong answers right and {arm.hurt} "
            f"right answers wrong: {100 * (arm.helped - arm.hurt) / max(arm.pool.n, 1):+.1f} points against its "
            "own model's first answers")  # fmt: skip
        print(f"{name:<9} {arm.pool.rate:5.1f}% of {arm.pool.n}{extra}")
    print(f"context learning gain (recall - baseline): {gain.points:+.1f} points "
          f"(95% interval {gain.low:+.1f} to {gain.high:+.1f})")  # fmt: skip
    print(f"control (shuffled outcomes - baseline): {placebo.points:+.1f} points "
          f"(95% interval {placebo.low:+.1f} to {placebo.high:+.1f})")  # fmt: skip
    print(f"wall time {time.monotonic() - t0:.0f} s")
    print(f"RESULT context_learning_gain points={gain.points:.1f} target={TARGET_POINTS:g}")
    print(f"RESULT context_learning_control_gain_abs value={abs(placebo.points):.1f} target={CONTROL_MAX_POINTS:g}")


if __name__ == "__main__":
    main()
