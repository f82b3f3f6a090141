"""The soak: the whole pipeline at 50 trajectories a second for 10 minutes, memory and lag sampled throughout.

After the warm-up, each of the project's processes must hold its resident memory flat (the mean of the last
samples within 10% of the mean of the first samples after the warm-up), every consumer group's oldest
unprocessed record must stay younger than LAG_BOUND_S, and the counts must reconcile as in the chaos
cases. The stores (the broker, Milvus) hold the data itself and grow with it: their figures are reported,
per trajectory, not held to the 10%. The assembly retention is short (RETENTION_S), so that its sweep
runs all along.

The curves go to docs/soak.png and the numbers to soak.json beside it (TRAJSTREAM_SOAK_OUT, a directory).
Slow: `make soak`. TRAJSTREAM_SOAK_SECONDS shortens it for a try.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.load import Load, ledger_summary
from tests.chaos.memory import group_of, resident_by_group
from tests.chaos.pipeline import PART_KINDS, ChaosPipeline
from tests.chaos.reconcile import drain, letter_refs, reconcile
from trajstream.broker import LocalBroker
from trajstream.parts import PARTS, SUPERVISOR, pid_file
from trajstream.pipeline import group_backlog
from trajstream.settings import PROJECT_ROOT
from trajstream.topics import SCORED, trainer_group
from trajstream_sdk.codec import EventCodec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 50.0
SOAK_S = float(os.environ.get("TRAJSTREAM_SOAK_SECONDS", "600"))
WARMUP_S = min(120.0, SOAK_S / 4)
SAMPLE_S = 10.0
EDGE = 3  # samples averaged at each end of the flat part
GROWTH = 0.10
LAG_BOUND_S = 60.0
RETENTION_S = 60
STORES = ("broker", "data/milvus")  # what holds the data grows with it
OUT = Path(os.environ.get("TRAJSTREAM_SOAK_OUT", str(PROJECT_ROOT / "docs")))


def _groups(pipe: ChaosPipeline) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in (SUPERVISOR, *PART_KINDS):
        try:
            out[name] = int(pid_file(pipe.settings, name).read_text())
        except (OSError, ValueError):
            continue
    if pipe.trainer is not None:
        out["trainer"] = pipe.trainer.pid
    broker = LocalBroker(pipe.settings).pid()
    if broker is not None and (pgid := group_of(broker)) is not None:
        out["broker"] = pgid
    return out


def _lag_ages(pipe: ChaosPipeline) -> dict[str, float]:
    """Seconds since the oldest record each group has yet to process was written (0 with no backlog)."""
    now_ms = time.time() * 1000
    groups = [(p.name, p.group(pipe.settings), p.topics) for p in PARTS if p.topics]
    groups.append(("trainer", pipe.settings.consumer_group(trainer_group(pipe.settings.trainer_model_name)),
                   (SCORED,)))  # fmt: skip
    out: dict[str, float] = {}
    for name, group, topics in groups:
        backlog = group_backlog(pipe.settings, group, topics, oldest=True)
        if backlog is not None:
            out[name] = 0.0 if backlog.oldest_ms is None else max(0.0, (now_ms - backlog.oldest_ms) / 1000)
    return out


class Sampler:
    def __init__(self, pipe: ChaosPipeline):
        self.pipe = pipe
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.begun = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self.stop.is_set():
            at = time.monotonic() - self.begun
            rss = {k: v / 2**20 for k, v in resident_by_group(_groups(self.pipe)).items()}
            self.samples.append({"t": round(at, 1), "rss_mb": rss, "lag_s": _lag_ages(self.pipe)})
            self.stop.wait(max(0.0, SAMPLE_S - (time.monotonic() - self.begun - at)))


def _growth(samples: list[dict[str, Any]], name: str) -> tuple[float, float, float] | None:
    """(MB after the warm-up, MB at the end, growth) of one process, from EDGE samples at each end."""
    flat = [s["rss_mb"][name] for s in samples if s["t"] >= WARMUP_S and name in s["rss_mb"]]
    if len(flat) < 2 * EDGE:
        return None
    first, last = statistics.mean(flat[:EDGE]), statistics.mean(flat[-EDGE:])
    return round(first, 1), round(last, 1), round(last / first - 1, 4)


def _plot(samples: list[dict[str, Any]], path: Path, summary: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, lag) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    names = sorted({n for s in samples for n in s["rss_mb"]})
    for name in names:
        points = [(s["t"] / 60, s["rss_mb"][name]) for s in samples if name in s["rss_mb"]]
        mem.plot(*zip(*points, strict=True), label=name, linestyle="--" if name in STORES else "-")
    mem.set_ylabel("resident memory (MB)")
    mem.set_title(f"soak: {RATE:.0f} trajectories/s for {SOAK_S / 60:.0f} min ({summary})", fontsize=10)
    mem.legend(fontsize=8, ncol=3)
    for name in sorted({n for s in samples for n in s["lag_s"]}):
        points = [(s["t"] / 60, s["lag_s"][name]) for s in samples if name in s["lag_s"]]
        lag.plot(*zip(*points, strict=True), label=name)
    lag.axhline(LAG_BOUND_S, color="red", linewidth=0.8, linestyle=":", label=f"bound {LAG_BOUND_S:.0f} s")
    lag.set_ylabel("consumer lag: age of the oldest unprocessed record (s)")
    lag.set_xlabel("minutes since the load began")
    lag.legend(fontsize=8, ncol=3)
    for axis in (mem, lag):
        axis.axvline(WARMUP_S / 60, color="grey", linewidth=0.8, linestyle=":")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@pytest.mark.timeout(int(SOAK_S) + 2400)
def test_a_long_run_at_50_per_second_holds_memory_flat_and_lag_bounded(
    tmp_path_factory: pytest.TempPathFactory, codec: EventCodec
) -> None:
    pipe = ChaosPipeline(tmp_path_factory.mktemp("soak"), milvus=os.environ.get("TRAJSTREAM_SOAK_MILVUS", "lite"))
    pipe.env["TRAJSTREAM_ASSEMBLY_RETENTION_S"] = str(RETENTION_S)
    try:
        pipe.up()
        earlier = letter_refs(pipe, codec)
        load = Load(pipe.settings, codec, pipe.gateway_url, "soak", RATE, SOAK_S)
        sampler = Sampler(pipe)
        sampler.start()
        load.start()
        ledger = load.join(SOAK_S + 900)
        sampler.join()
        drain(pipe, ledger)
        counts = reconcile(pipe, codec, ledger, earlier)
    finally:
        pipe.down()
        print(pipe.logs(1500))
    samples = sampler.samples
    growth = {n: g for n in sorted({n for s in samples for n in s["rss_mb"]}) if (g := _growth(samples, n))}
    flat = {n: g for n, g in growth.items() if n not in STORES}
    lag_max = {n: max(s["lag_s"].get(n, 0.0) for s in samples if s["t"] >= WARMUP_S) for n in samples[-1]["lag_s"]}
    stores_per_trajectory_kb = {
        n: round((g[1] - g[0]) * 1024 / max(1, ledger.trajectories * (SOAK_S - WARMUP_S) / SOAK_S), 2)
        for n, g in growth.items() if n in STORES
    }  # fmt: skip
    result = {"seconds": SOAK_S, "rate": RATE, "warmup_s": WARMUP_S, "load": ledger_summary(ledger),
              "growth": growth, "lag_max_s": lag_max, "store_growth_kb_per_trajectory": stores_per_trajectory_kb,
              "counts": {k: v for k, v in counts.__dict__.items() if k != "lags"}, "problems": counts.problems(),
              "samples": samples}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    worst = max(flat.items(), key=lambda kv: kv[1][2])
    summary = f"worst growth {worst[0]} {worst[1][2]:+.1%}, worst lag {max(lag_max.values()):.0f} s"
    _plot(samples, OUT / "soak.png", summary)
    for name, (first, last, g) in growth.items():
        print(f"SOAK memory {name}: {first} MB after warm-up -> {last} MB at the end ({g:+.1%})")
    print(f"SOAK lag max (s) {lag_max}; stores KB/trajectory {stores_per_trajectory_kb}")
    print(counts.line("soak"))
    assert not counts.problems(), counts.problems()
    grew = {n: g for n, g in flat.items() if g[2] >= GROWTH}
    assert not grew, f"resident memory grew by {GROWTH:.0%} or more after the warm-up: {grew}"
    late = {n: s for n, s in lag_max.items() if s > LAG_BOUND_S}
    assert not late, f"consumer lag over {LAG_BOUND_S:.0f} s: {late}"
