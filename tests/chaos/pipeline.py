"""The whole pipeline as a user runs it, on a broker of its own, with a hand that kills any part of it.

`trajstream up` starts the broker and the supervised parts (streams, enrich, data, gateway); the trainer
runs beside them as `trajstream worker trainer`, restarted by this harness as the supervisor restarts
the others. ``kill(kind)`` is SIGKILL: no shutdown, no final commit. The broker is restarted on the same
data directory; every other part comes back by itself (the supervisor) or by ``tick`` (the trainer).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.load import VOCABULARY
from tests.support.env import env_for, free_port, trajstream_bin
from trajstream.broker import LocalBroker
from trajstream.data_api import answering_api, api_headers
from trajstream.parts import PARTS, SupervisorState, log_file, pid_file, stop_group
from trajstream.pipeline import group_backlog
from trajstream.reader import topic_partitions
from trajstream.settings import Settings
from trajstream.topics import SCORED, trainer_group
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry

PART_KINDS = ("streams", "enrich", "data", "gateway")
KINDS = (*PART_KINDS, "trainer", "broker")
# The trainer as deployed: a candidate version at most 12 times an hour (the default), windows in between train
# on. A version every window (saved, gated) took the trainer to 40 records/s on 2 cores: behind a 50/s load.
WINDOW = 500  # trajectories per trainer window
WINDOW_S = 20.0  # ... or this long after its first record


@dataclass
class Kills:
    done: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.done[kind] = self.done.get(kind, 0) + 1


class ChaosPipeline:
    def __init__(self, home: Path, milvus: str = "lite", partitions: int = 6):
        self.settings = TrainerSettings.extend(Settings(
            home=home, broker_port=free_port(), controller_port=free_port(), api_port=free_port(),
            gateway_port=free_port(), milvus_server_port=free_port(), milvus_local=milvus,
            topic_prefix="chaos.", topic_partitions=partitions,
        ), trainer_window_count=WINDOW, trainer_window_seconds=WINDOW_S)  # fmt: skip
        self.env = env_for(self.settings)
        self.env.update({
            "TRAJSTREAM_RESTART_BACKOFF_S": "0.5", "TRAJSTREAM_RESTART_MAX_BACKOFF_S": "2",
            "TRAJSTREAM_TRAINER_WINDOW_COUNT": str(WINDOW), "TRAJSTREAM_TRAINER_WINDOW_SECONDS": str(WINDOW_S),
        })  # fmt: skip
        self.kills = Kills()
        self.trainer: subprocess.Popen[bytes] | None = None
        self.broker_down_since: float | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(trajstream_bin()), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"trajstream {' '.join(args)} ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    # --- up and down -------------------------------------------------------------------------------------
    def up(self) -> None:
        vocab = self.settings.home / "vocab.txt"
        vocab.parent.mkdir(parents=True, exist_ok=True)
        vocab.write_text(VOCABULARY)
        self.cli("up", timeout=600)
        self.cli("model", "init", "--tiny-vocab", str(vocab))
        self._start_trainer()
        self.wait_gateway()

    def down(self) -> None:
        if self.trainer is not None:
            _stop(self.trainer)
        self.cli("down", "--timeout", "20", check=False)

    def logs(self, chars: int = 2000) -> str:
        out = []
        for log in sorted((self.settings.home / "logs").glob("*.log")):
            out.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def start_extra_streams(self, n: int) -> subprocess.Popen[bytes]:
        """Another streams worker in the same consumer group (its own state directory and log)."""
        home = self.settings.home / f"streams-{n}"
        home.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "TRAJSTREAM_HOME": str(home)}
        with open(log_file(self.settings, f"streams-{n}"), "ab") as handle:
            return subprocess.Popen([str(trajstream_bin()), "worker", "streams", "--loglevel", "info"], env=env,
                                    stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def _start_trainer(self) -> None:
        path = log_file(self.settings, "trainer")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            command = [str(trajstream_bin()), "worker", "trainer"]
            self.trainer = subprocess.Popen(command, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    # --- faults ------------------------------------------------------------------------------------------
    def kill(self, kind: str) -> None:
        """SIGKILL one part (its whole process group) in the middle of whatever it does."""
        if kind in PART_KINDS:
            pid = self._part_pid(kind)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        elif kind == "trainer":
            assert self.trainer is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.trainer.pid, signal.SIGKILL)
            self.trainer.wait()
            self._start_trainer()
        elif kind == "broker":
            broker = LocalBroker(self.settings)
            pid = broker.pid()
            assert pid is not None, "no broker to kill"
            os.kill(pid, signal.SIGKILL)
            while broker.pid() == pid:
                time.sleep(0.1)
            time.sleep(2.0)  # a real outage: the clients notice before it is back
            broker.start()  # the same data directory and cluster id
        else:
            raise ValueError(f"no such fault kind: {kind}")
        self.kills.add(kind)

    def _part_pid(self, kind: str, timeout_s: float = 120.0) -> int:
        """The part's pid once the supervisor has it running (it may still be starting it again)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int(pid_file(self.settings, kind).read_text())
            time.sleep(0.2)
        raise AssertionError(f"{kind} was not running again {timeout_s:.0f} s after its last kill\n{self.logs()}")

    def wait_gateway(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.gateway_url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.5)
        raise AssertionError(f"the gateway did not answer in {timeout_s:.0f} s\n{self.logs()}")

    def log_lines(self, part: str, text: str) -> int:
        """Lines of ``part``'s logs (its extra workers' too) that hold ``text``."""
        logs = sorted((self.settings.home / "logs").glob(f"{part}*.log"))
        return sum(line.count(text) for log in logs for line in log.read_text(errors="replace").splitlines())

    def restarts(self) -> dict[str, int]:
        state = SupervisorState.load(self.settings)
        return {name: part.restarts for name, part in state.parts.items()} if state else {}

    # --- reading back --------------------------------------------------------------------------------------
    def _ask(self, path: str, body: dict[str, Any], answered: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The data API's result for ``body``, once it answers one that ``answered`` takes (the data worker may
        be starting again after a kill)."""
        deadline = time.monotonic() + 120
        while True:
            url = answering_api(self.settings)
            if url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    answer = httpx.post(f"{url}{path}", json=body, headers=api_headers(self.settings), timeout=120)
                    result: dict[str, Any] = answer.json().get("result") or {} if answer.status_code == 200 else {}
                    if answered(result):
                        return result
            if time.monotonic() > deadline:
                raise AssertionError(f"the data API did not answer {path} {str(body)[:200]}\n{self.logs()}")
            time.sleep(1.0)

    def sql(self, query: str) -> list[list[Any]]:
        rows: list[list[Any]] = self._ask("/sql", {"query": query}, lambda r: "rows" in r)["rows"]
        return rows

    def exists(self, ids: list[str]) -> dict[str, Any]:
        """Which ids ClickHouse and Milvus hold (an answer without Milvus, while it is away, is asked again)."""
        return self._ask("/exists", {"ids": ids}, lambda r: r.get("milvus") is not None)

    def lags(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for part in PARTS:
            if part.topics:
                backlog = group_backlog(self.settings, part.group(self.settings), part.topics)
                out[part.name] = backlog.records if backlog is not None else None
        group = self.settings.consumer_group(trainer_group(self.settings.trainer_model_name))
        backlog = group_backlog(self.settings, group, (SCORED,))
        out["trainer"] = backlog.records if backlog is not None else None
        return out

    def trained_windows(self) -> dict[str, int]:
        path = Registry(self.settings.registry_dir, self.settings.trainer_model_name).dir / "trainer_state.json"
        if not path.exists():
            return {}
        windows: dict[str, int] = json.loads(path.read_text())["trained_windows"]
        return windows

    async def scored_ends(self) -> dict[int, int]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options(), enable_auto_commit=False)
        await consumer.start()
        try:
            tps = await topic_partitions(consumer, self.settings.topic(SCORED))
            ends = await consumer.end_offsets(tps)
            return {tp.partition: end for tp, end in ends.items()}
        finally:
            await consumer.stop()


@contextlib.contextmanager
def running_pipeline(home: Path) -> Iterator[ChaosPipeline]:
    """A pipeline up for the block (TRAJSTREAM_CHAOS_MILVUS: lite, the default, or server), down after it with
    the end of each log printed."""
    pipeline = ChaosPipeline(home, milvus=os.environ.get("TRAJSTREAM_CHAOS_MILVUS", "lite"))
    try:
        pipeline.up()
        yield pipeline
    finally:
        pipeline.down()
        print(pipeline.logs(1500))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_group(proc.pid, 20.0)
    proc.wait()
