"""Two streams workers in one consumer group, each killed and started again under load: partitions move
from one to the other and back, and the counts hold as with one worker; no trajectory's state is split
between owners: every copy of a version is byte-identical, and each latest version has every turn sent.

Two data workers are not run: each opens its ClickHouse store in-process (chDB allows one process per
data directory), so two of them need a ClickHouse server, which this machine cannot install (no
registry package; see the README's chaos section). Slow: `make chaos`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.chaos.load import Load, ledger_summary
from tests.chaos.pipeline import ChaosPipeline, running_pipeline
from tests.chaos.reconcile import drain, letter_refs, reconcile
from tests.support.streams import copies_by_key, read
from trajstream_sdk.codec import EventCodec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 50.0
LOAD_S = float(os.environ.get("TRAJSTREAM_CHAOS_SECONDS", "60"))


@pytest.fixture
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosPipeline]:
    with running_pipeline(tmp_path_factory.mktemp("scale")) as pipeline:
        yield pipeline


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.timeout(1800)
def test_two_streams_workers_killed_in_turn_share_the_partitions_without_splitting_a_trajectory(
    pipe: ChaosPipeline, codec: EventCodec
) -> None:
    second = pipe.start_extra_streams(2)
    try:
        time.sleep(20)  # the group rebalances onto both before the load
        earlier = letter_refs(pipe, codec)
        load = Load(pipe.settings, codec, pipe.gateway_url, "chaos-scale", RATE, LOAD_S)
        begun = time.monotonic()
        load.start()
        time.sleep(max(0.0, begun + LOAD_S * 0.25 - time.monotonic()))
        pipe.kill("streams")  # the supervisor starts it again: its partitions go to the second and come back
        time.sleep(max(0.0, begun + LOAD_S * 0.6 - time.monotonic()))
        _kill(second)
        time.sleep(3)
        second = pipe.start_extra_streams(2)
        ledger = load.join(LOAD_S + 900)
        drain(pipe, ledger)
        counts = reconcile(pipe, codec, ledger, earlier)
    finally:
        _kill(second)
    print(counts.line("scale-out"), ledger_summary(ledger))
    assert not counts.problems(), counts.problems()

    mine = set(ledger.turns)
    for topic, field in (("trajectories.assembled", "version"), ("trajectories.scored", "trajectory_version")):
        copies = {k: v for k, v in copies_by_key(asyncio.run(read(pipe.settings, codec, topic)), field).items()
                  if k[0] in mine}  # fmt: skip
        differing = [k for k, values in copies.items() if len(set(values)) > 1]
        assert not differing, f"{topic}: versions emitted with different contents by two owners: {differing[:5]}"
