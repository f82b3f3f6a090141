"""Kill each part of the running pipeline at random moments under load, then count: nothing lost, nothing twice.

One pipeline (`trajstream up` on a broker of its own, and the trainer) serves every case; each case's load
has an agent id of its own, so that its counts are its own. Each fault kind is one case (KILLS kills at
random moments while LOAD_S seconds of trajectories go in at RATE a second), and the mix kills a random
part every MIX_EVERY_S seconds for MIX_S seconds. Slow: `make chaos` runs them (see the README for how long).

TRAJSTREAM_CHAOS_SEED replays a run's kill moments; TRAJSTREAM_CHAOS_SECONDS and _MIX_SECONDS change the
load's length; TRAJSTREAM_CHAOS_MILVUS=server runs the data worker on the local Milvus server.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.load import Load, ledger_summary
from tests.chaos.pipeline import KINDS, ChaosPipeline, running_pipeline
from tests.chaos.reconcile import Counts, drain, letter_refs, reconcile
from trajstream_sdk.codec import EventCodec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 50.0
LOAD_S = float(os.environ.get("TRAJSTREAM_CHAOS_SECONDS", "60"))
KILLS = 2
MIX_S = float(os.environ.get("TRAJSTREAM_CHAOS_MIX_SECONDS", "180"))
MIX_EVERY_S = 15.0
SEED = int(os.environ.get("TRAJSTREAM_CHAOS_SEED", str(int(time.time()))))
RESULTS = Path(os.environ.get("TRAJSTREAM_CHAOS_RESULTS", "chaos-results.jsonl"))


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosPipeline]:
    print(f"chaos seed {SEED} (TRAJSTREAM_CHAOS_SEED={SEED} replays the kill moments)")
    with running_pipeline(tmp_path_factory.mktemp("chaos")) as pipeline:
        yield pipeline


def _run(
    pipe: ChaosPipeline, codec: EventCodec, case: str, seconds: float, schedule: list[tuple[float, str]]
) -> Counts:
    agent = f"chaos-{case}-{SEED % 100000}"
    restarts_before = pipe.restarts()
    earlier_letters = letter_refs(pipe, codec)
    load = Load(pipe.settings, codec, pipe.gateway_url, agent, RATE, seconds)
    begun = time.monotonic()
    load.start()
    for at, kind in schedule:
        time.sleep(max(0.0, begun + at - time.monotonic()))
        print(f"{time.monotonic() - begun:6.1f}s kill {kind}", flush=True)
        pipe.kill(kind)
    ledger = load.join(seconds + 900)
    drained_from = time.monotonic()
    drain(pipe, ledger)
    counts = reconcile(pipe, codec, ledger, earlier_letters)
    restarts = {k: v - restarts_before.get(k, 0) for k, v in pipe.restarts().items()}
    drain_s = round(time.monotonic() - drained_from, 1)
    record = {"case": case, "seed": SEED, "load": ledger_summary(ledger), "kills": [k for _, k in schedule],
              "restarts": restarts, "drain_s": drain_s, **counts.__dict__}  # fmt: skip
    print(counts.line(case), json.dumps(record), flush=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(record) + "\n")
    return counts


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", KINDS)
def test_a_part_killed_under_load_loses_nothing_and_repeats_nothing(
    pipe: ChaosPipeline, codec: EventCodec, kind: str
) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    # KILLS moments in the load's middle, at least 10 s apart so each kill meets a part that came back.
    slots = sorted(rng.uniform(5, LOAD_S - 5) for _ in range(KILLS))
    schedule = [(max(at, 5 + 12 * n), kind) for n, at in enumerate(slots)]
    counts = _run(pipe, codec, kind, LOAD_S, schedule)
    assert not counts.problems(), f"{kind}: {counts.problems()}"


@pytest.mark.timeout(3600)
def test_every_kind_of_fault_mixed_under_load_loses_nothing(pipe: ChaosPipeline, codec: EventCodec) -> None:
    rng = random.Random(f"{SEED}-mix")
    schedule = [(at + rng.uniform(0, 5), rng.choice(KINDS)) for at in range(10, int(MIX_S) - 5, int(MIX_EVERY_S))]
    counts = _run(pipe, codec, "mix", MIX_S, schedule)
    assert not counts.problems(), f"mix: {counts.problems()}"
