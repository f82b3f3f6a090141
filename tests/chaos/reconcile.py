"""Counting after the faults: what the load had acknowledged against what every store holds.

``drain`` waits until the stores hold every acknowledged trajectory and every consumer group caught up;
``reconcile`` then counts, and ``problems`` lists each count that does not match exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.chaos.load import Ledger
from tests.chaos.pipeline import ChaosPipeline
from tests.support.streams import latest_by_trajectory, read
from trajstream.dlq import list_letters
from trajstream_sdk.codec import EventCodec

CHUNK = 2000  # ids per /exists call and per IN list


@dataclass
class Counts:
    acknowledged: int = 0  # trajectories the load had acknowledged
    in_clickhouse: int = 0  # ... whose latest version is in ClickHouse
    duplicate_rows: int = 0  # (trajectory, version) rows beyond the first
    wrong_latest: int = 0  # latest version in ClickHouse is not the latest scored one
    wrong_turns: int = 0  # latest version's turn count is not what was sent
    rollup_trajectories: int = 0  # the per-minute rollup's count for the load's agent
    in_milvus: int = 0
    bad_inputs: int = 0  # injected: undecodable events + refused gateway trajectories
    dead_lettered: int = 0  # ... found on the dead-letter topic, each once however often it was written
    repeated_letters: int = 0  # letters written again after a crash (at-least-once), same source record
    unexplained_letters: int = 0  # letters of this load that are not one of its bad inputs
    letters_on_topic: int = 0  # the whole dead-letter topic
    letters_in_clickhouse: int = 0  # ... and its rows in ClickHouse, each once
    scored_records: int = 0  # the scored topic, all partitions
    trained_windows: int = 0
    window_gaps_or_overlaps: int = 0  # offsets trained twice or never
    untrained_records: int = 0  # scored records past the last trained window
    resumed_unswept: int = 0  # trajectories continued as swept though the retention (an hour) never came
    lags: dict[str, int | None] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        expect = {
            "in_clickhouse": self.acknowledged, "rollup_trajectories": self.acknowledged,
            "in_milvus": self.acknowledged, "dead_lettered": self.bad_inputs, "duplicate_rows": 0,
            "wrong_latest": 0, "wrong_turns": 0, "unexplained_letters": 0, "window_gaps_or_overlaps": 0,
            "untrained_records": 0, "letters_in_clickhouse": self.letters_on_topic, "resumed_unswept": 0,
        }  # fmt: skip
        for name, want in expect.items():
            got = getattr(self, name)
            if got != want:
                out.append(f"{name}={got}, expected {want}")
        return out

    def line(self, case: str) -> str:
        d = asdict(self)
        d.pop("lags")
        return f"CHAOS {case} " + " ".join(f"{k}={v}" for k, v in d.items())


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _in(ids: list[str]) -> str:
    return "[" + ",".join(f"'{i}'" for i in ids) + "]"  # uuids and the load's own agent names only


def landed(pipe: ChaosPipeline, ledger: Ledger) -> tuple[int, int]:
    """Trajectories (of ``ledger``) whose sent turns are all in ClickHouse, and those searchable in Milvus."""
    ids = list(ledger.turns)
    complete = 0
    for chunk in _chunks(ids):
        rows = pipe.sql(f"SELECT trajectory_id, max(turn_count) FROM trajstream.trajectories "
                        f"WHERE trajectory_id IN {_in(chunk)} GROUP BY trajectory_id")  # fmt: skip
        complete += sum(1 for tid, turns in rows if turns == ledger.turns[tid])
    in_milvus = sum(len(pipe.exists(chunk)["milvus"]) for chunk in _chunks(ids))
    return complete, in_milvus


def drain(pipe: ChaosPipeline, ledger: Ledger, timeout_s: float = 600.0) -> None:
    """Until everything acknowledged landed and no group has a backlog (or the time is up: counted as is)."""
    deadline = time.monotonic() + timeout_s
    want = ledger.trajectories
    while time.monotonic() < deadline:
        complete, in_milvus = landed(pipe, ledger)
        lags = pipe.lags()
        print(f"drain: {complete}/{want} in ClickHouse, {in_milvus}/{want} in Milvus, lags {lags}", flush=True)
        if complete == want and in_milvus == want and all(v == 0 for v in lags.values()):
            return
        time.sleep(5.0)


def _windows(windows: dict[str, int], ends: dict[int, int]) -> tuple[int, int]:
    """Offsets trained twice or never among the trained windows, and records after the last window."""
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for wid, end in windows.items():
        _topic_and_partition, first = wid.rsplit("@", 1)
        partition = int(_topic_and_partition.rsplit(":", 1)[1])
        by_partition.setdefault(partition, []).append((int(first), end))
    bad = untrained = 0
    for partition, end_offset in ends.items():
        spans = sorted(by_partition.get(partition, []))
        at = 0
        for first, end in spans:
            bad += abs(first - at)  # a gap (never trained) or an overlap (trained twice)
            at = end
        untrained += end_offset - at
    return bad, untrained


def letter_refs(pipe: ChaosPipeline, codec: EventCodec) -> set[str]:
    """The dead letters so far (partition:offset): a case counts only those written after."""
    return {letter.ref for letter in asyncio.run(list_letters(pipe.settings, codec))}


def reconcile(pipe: ChaosPipeline, codec: EventCodec, ledger: Ledger, earlier_letters: set[str]) -> Counts:
    counts = Counts(acknowledged=ledger.trajectories, lags=pipe.lags())
    ids = list(ledger.turns)
    scored = latest_by_trajectory(asyncio.run(read(pipe.settings, codec, "trajectories.scored")), "trajectory_version")
    for chunk in _chunks(ids):
        rows = pipe.sql(f"SELECT trajectory_id, version, count(), any(turn_count) FROM trajstream.trajectories "
                        f"WHERE trajectory_id IN {_in(chunk)} GROUP BY trajectory_id, version")  # fmt: skip
        latest: dict[str, tuple[int, int]] = {}
        for tid, version, n, turns in rows:
            counts.duplicate_rows += n - 1
            if tid not in latest or version > latest[tid][0]:
                latest[tid] = (version, turns)
        counts.in_clickhouse += len(latest)
        for tid, (version, turns) in latest.items():
            want = scored.get(tid)
            counts.wrong_latest += want is None or want["trajectory_version"] != version
            counts.wrong_turns += turns != ledger.turns[tid]
    agent = next(iter(ledger.agents))
    rollup = pipe.sql(f"SELECT sum(trajectories) FROM trajstream.trajectory_metrics_minute WHERE agent_id = '{agent}'")
    counts.rollup_trajectories = int(rollup[0][0] or 0)
    counts.in_milvus = sum(len(pipe.exists(chunk)["milvus"]) for chunk in _chunks(ids))

    letters = asyncio.run(list_letters(pipe.settings, codec))
    counts.letters_on_topic = len(letters)
    in_ch = pipe.sql("SELECT count(), uniqExact(dlq_partition, dlq_offset) FROM trajstream.dead_letters")
    counts.letters_in_clickhouse = int(in_ch[0][1]) if in_ch[0][0] == in_ch[0][1] else -int(in_ch[0][0])
    bad_events = set(ledger.bad_events)
    markers = {f'"{m}"'.encode() for m in ledger.bad_gateway}  # quoted: marker -7 is not inside -757
    counts.bad_inputs = len(bad_events) + len(markers)
    sources: Counter[tuple[str, Any]] = Counter()
    for letter in letters:
        body = letter.record
        payload: bytes = body["payload"] or b""
        if payload in bad_events:
            sources[("event", payload)] += 1
        elif (marker := next((m for m in markers if m in payload), None)) is not None:
            sources[("gateway", marker)] += 1
        elif letter.ref not in earlier_letters:  # this case's, and none of its bad inputs
            counts.unexplained_letters += 1
            print(f"unexplained dead letter {letter.ref}: {body['stage']} {body['error_type']}: {body['reason']}")
    counts.dead_lettered = len(sources)
    counts.repeated_letters = sum(n - 1 for n in sources.values())

    # The chaos cases keep the default retention (an hour): no trajectory is swept, so none may be resumed.
    if pipe.env.get("TRAJSTREAM_ASSEMBLY_RETENTION_S") is None:
        counts.resumed_unswept = pipe.log_lines("streams", "going on from it (swept)")
    ends = asyncio.run(pipe.scored_ends())
    counts.scored_records = sum(ends.values())
    windows = pipe.trained_windows()
    counts.trained_windows = len(windows)
    counts.window_gaps_or_overlaps, counts.untrained_records = _windows(windows, ends)
    return counts
