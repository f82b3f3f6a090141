"""Operating the pipeline as a user does: `down`, `up`, `sql` again and again; a command while it starts;
a worker that dies. Every step is the real CLI in its own process, against the session's broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.env import env_for, free_port, trajstream_bin
from tests.support.streams import publish
from trajstream.data_api import try_lock_stores
from trajstream.parts import PARTS, SupervisorState, alive, group_alive
from trajstream.settings import Settings
from trajstream.synthetic import tool_trajectory
from trajstream.topics import create_topics
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

# 1 round in `make test` (CI's budget); `make soak` runs 20 (about 50 s a round on 2 cores with the server).
LOOPS = int(os.environ.get("TRAJSTREAM_TEST_RESTART_LOOPS", "1"))
# What these tests operate is the supervisor and its parts. `make test` runs them with milvus-lite in the data
# worker: the local Milvus server adds about 50 s to every `up`/`down` round on 2 cores (334 s for the 5
# rounds). `make soak` runs its rounds with the server, the default; tests/core/test_milvus_server.py starts,
# stops and restarts it through the CLI, and tests/e2e/test_pipeline_e2e.py runs `up` with it.
OPS_MILVUS = os.environ.get("TRAJSTREAM_TEST_OPS_MILVUS", "lite")
COUNT_SQL = "SELECT count() FROM trajstream.trajectories"


@pytest.fixture(scope="module")
def home(
    broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str]]]:
    settings = broker_settings.model_copy(update={
        "topic_prefix": f"o{uuid.uuid4().hex[:8]}.", "home": tmp_path_factory.mktemp("ops-home"),
        "api_port": free_port(), "gateway_port": free_port(),
        "milvus_server_port": free_port(), "kafka_bootstrap": broker_settings.bootstrap,
        "milvus_local": OPS_MILVUS,
    })  # fmt: skip
    asyncio.run(create_topics(settings))
    env = env_for(settings)
    env.update({"TRAJSTREAM_API_PORT": str(settings.api_port), "TRAJSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
                "TRAJSTREAM_RESTART_BACKOFF_S": "0.5"})  # fmt: skip
    try:
        yield settings, env
    finally:
        _cli(env, "down", "--timeout", "10", check=False)
        for log in sorted((settings.home / "logs").glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-1500:]}")


def _cli(env: dict[str, str], *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(trajstream_bin()), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"trajstream {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def _count(env: dict[str, str]) -> int:
    rows: list[list[int]] = json.loads(_cli(env, "sql", "--json", COUNT_SQL).stdout)["rows"]
    return rows[0][0]


def _pids(settings: Settings) -> list[int]:
    state = SupervisorState.load(settings)
    assert state is not None
    return [state.pid, *(p.pid for p in state.parts.values() if p.pid)]


def _wait_count(env: dict[str, str], expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (n := _count(env)) < expected:
        assert time.monotonic() < deadline, f"{n} of {expected} trajectories landed"
        time.sleep(1)


@pytest.mark.timeout(1500)  # LOOPS rounds of about 24 s each on 2 cores, more with the server
def test_down_up_sql_again_and_again(home: tuple[Settings, dict[str, str]], codec: SingleObjectCodec) -> None:
    """The user's loop that failed with "Cannot lock file .../clickhouse/status": in a home that has run
    the pipeline before, `down`, `up`, `sql`, LOOPS times in a row, each `sql` answered with the data."""
    settings, env = home
    _cli(env, "up")
    messages = []
    for n in range(5):
        tid, events = tool_trajectory(codec, f"Refund order {n}", "lookup", "success", "success")
        messages += [(topic, tid.encode(), value) for topic, value in events]
    asyncio.run(publish(settings, messages))
    _wait_count(env, 5)
    for loop in range(LOOPS):
        before = _pids(settings)
        _cli(env, "down", "--timeout", "20")
        # `down` returned: every process of every part is gone, and the stores are free.
        assert [p for p in before if alive(p) or group_alive(p)] == [], f"loop {loop}: processes left"
        lock = try_lock_stores(settings)
        assert lock is not None, f"loop {loop}: the stores lock is still held"
        lock.close()
        up = _cli(env, "up")
        assert all(f"{part.name}: ready" in up.stderr for part in PARTS), up.stderr
        assert _count(env) == 5, f"loop {loop}"
        print(f"loop {loop}: down, up, sql passed at {time.strftime('%H:%M:%S')}")  # shown if a later loop fails


def test_a_data_command_during_start_waits_for_the_api_and_never_opens_the_stores(
    home: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = home
    _cli(env, "down", "--timeout", "20")
    up = subprocess.Popen([str(trajstream_bin()), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while SupervisorState.load(settings) is None or not any(
            p.pid
            for p in SupervisorState.load(settings).parts.values()  # type: ignore[union-attr]
        ):
            assert time.monotonic() < deadline and up.poll() is None
            time.sleep(0.05)
        # The data worker has just been started: it cannot answer yet.
        sql = _cli(env, "sql", "--json", COUNT_SQL)
        assert "waiting for the data worker's API" in sql.stderr, sql.stderr
        assert json.loads(sql.stdout)["rows"] == [[5]]
    finally:
        assert up.wait(timeout=300) == 0, up.stderr
    assert "Cannot lock" not in (settings.home / "logs" / "data.log").read_text(errors="replace")


def test_up_starts_a_dead_worker_again_and_status_says_so(home: tuple[Settings, dict[str, str]]) -> None:
    settings, env = home
    if _cli(env, "status").stdout.count("ready") < len(PARTS):
        _cli(env, "up")
    state = SupervisorState.load(settings)
    assert state is not None and state.parts["data"].pid is not None
    dead = state.parts["data"].pid
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        state = SupervisorState.load(settings)
        assert state is not None
        pid = state.parts["data"].pid
        if pid and pid != dead and "ready" in _cli(env, "status").stdout.split("data", 1)[1].split("\n", 1)[0]:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    status = _cli(env, "status").stdout
    assert "restarted 1 times, last after signal 9" in " ".join(status.split()), status
    assert _count(env) == 5  # the new worker answers with the same data


def test_status_shows_a_part_waiting_to_start_again(home: tuple[Settings, dict[str, str]]) -> None:
    """A part that keeps dying (here: its API port is taken) is started again with back-off, and `status`
    says when; `up` says it exited and where its log is."""
    _, env = home
    _cli(env, "down", "--timeout", "20")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bad = dict(env, TRAJSTREAM_RESTART_BACKOFF_S="30", TRAJSTREAM_API_PORT=str(taken.getsockname()[1]))
        up = _cli(bad, "up", "--timeout", "120", check=False)
        try:
            assert up.returncode != 0 and "data exited while starting" in up.stderr, up.stderr
            assert "address already in use" in up.stderr.lower(), up.stderr
            status = " ".join(_cli(bad, "status").stdout.split())
            assert "restarting in" in status and "exit code 1" in status, status
        finally:
            _cli(env, "down", "--timeout", "20")
