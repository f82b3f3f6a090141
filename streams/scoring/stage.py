"""Scoring: join an assembled trajectory with its enrichment into a scored trajectory.

Pure logic, no Kafka: the Faust agent in ``streams.app`` feeds assembled trajectories and
enrichment results (both keyed by trajectory id) with the trajectory's table entry. A version is
scored once both halves of the same version are there; a replayed or older input changes nothing.

When the assembly stage sweeps a closed trajectory out of its table (the retention), it tells this stage
on ``scoring.control``, and the state is slimmed to its version counts (``Scorer._slim``): otherwise every
trajectory ever scored would keep a copy of its scored record in the worker's memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.errors import CodecError, TrajstreamError
from trajstream.settings import Settings
from trajstream.sink import Output, dead_letter
from trajstream.streams.assembly import Input, Result
from trajstream.streams.scoring.air import AirRules, air_rewards
from trajstream.streams.scoring.credit import DECISION, assign, to_record
from trajstream.streams.scoring.rewards import extracted_entities, score
from trajstream.topics import ASSEMBLED, DEAD_LETTER_TOPIC, ENRICHMENT_RESULTS, REWARDS, SCORED, SCORING_CONTROL_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.limits import FRAMING_BYTES
from trajstream_sdk.schemas import (
    ASSEMBLED_TRAJECTORY,
    ASSEMBLY_CONTROL,
    CREDIT_ASSIGNMENT,
    ENRICHMENT_RESULT,
    SCORED_TRAJECTORY,
    SCORING_STATE,
)

log = logging.getLogger(__name__)

# (views of the same task, newest last) -> one score per view; None when no judge is configured.
Judge = Callable[[Sequence[TrajectoryView]], Awaitable[list[tuple[float, str]]]]


@dataclass
class TaskWindow:
    """Recent trajectories per task key, the group a RULER-style judge compares (in memory only)."""

    size: int = 8
    max_tasks: int = 10_000
    groups: OrderedDict[str, deque[TrajectoryView]] = field(default_factory=OrderedDict)

    def group_with(self, view: TrajectoryView) -> list[TrajectoryView]:
        group = self.groups.pop(view.task_key, None) or deque(maxlen=self.size)
        peers = [v for v in group if v.trajectory_id != view.trajectory_id]
        group = deque([*peers, view], maxlen=self.size)
        self.groups[view.task_key] = group
        while len(self.groups) > self.max_tasks:
            self.groups.popitem(last=False)
        return list(group)


class Scorer:
    def __init__(self, settings: Settings, codec: EventCodec, judge: Judge | None = None):
        self.settings = settings
        self.codec = codec
        self.judge = judge
        self.window = TaskWindow()
        self.air_rules = AirRules.from_settings(settings)
        self.kinds = {
            settings.topic(ASSEMBLED): ASSEMBLED_TRAJECTORY,
            settings.topic(ENRICHMENT_RESULTS): ENRICHMENT_RESULT,
            # The assembly stage's expire, forwarded: the same record, so no schema of its own.
            settings.topic(SCORING_CONTROL_TOPIC): ASSEMBLY_CONTROL,
        }
        self.scored_topic = settings.topic(SCORED)
        self.rewards_topic = settings.topic(REWARDS)
        self._logical = {self.scored_topic: SCORED, self.rewards_topic: REWARDS}
        self.dlq_topic = settings.topic(DEAD_LETTER_TOPIC)
        self.limits = settings.limits

    def dump(self, state: dict[str, Any]) -> bytes:
        return self.codec.encode(SCORING_STATE, state)

    def load(self, data: bytes | dict[str, Any] | None, trajectory_id: str) -> dict[str, Any]:
        """A table value, or a state already decoded (the agent keeps a batch's states decoded)."""
        if isinstance(data, dict):
            return data
        if data is None:
            return {
                "trajectory_id": trajectory_id,
                "assembled_version": 0,
                "assembled": None,
                "enrichment_version": 0,
                "enrichment": None,
                "scored_version": 0,
                "emitted": [],
            }
        return self.codec.decode(data, expect=SCORING_STATE).record

    async def handle(self, record: Input, state_data: bytes | dict[str, Any] | None) -> Result:
        expected = self.kinds.get(record.topic)
        try:
            if expected is None:
                raise CodecError(f"topic {record.topic} is not a scoring input")
            event = self.codec.decode(record.value, expect=expected)
        except CodecError as exc:
            return self._reject(record, str(exc), type(exc).__name__, None)
        body = event.record
        if event.name == ASSEMBLY_CONTROL:
            if body["kind"] != "expire":
                return self._reject(record, f"unknown control kind {body['kind']!r}", "UnexpectedEventType",
                                    body["trajectory_id"])  # fmt: skip
            return self._slim(state_data, body["trajectory_id"])
        state = self.load(state_data, body["trajectory_id"])
        version = body["version"] if event.name == ASSEMBLED_TRAJECTORY else body["trajectory_version"]
        if version and version == state["scored_version"]:
            return Result(None, self._emitted_again(state))
        if event.name == ASSEMBLED_TRAJECTORY:
            if version <= max(state["assembled_version"], state["scored_version"]):
                return Result(None)  # a replay, or older than what is already here
            state["assembled_version"], state["assembled"] = version, record.value
        else:
            if version <= max(state["enrichment_version"], state["scored_version"] - 1):
                return Result(None)
            state["enrichment_version"], state["enrichment"] = version, record.value
        ready = (
            state["assembled"] is not None
            and state["assembled_version"] == state["enrichment_version"]
            and state["assembled_version"] > state["scored_version"]
        )
        if not ready:
            return Result(state)
        try:
            outputs = await self._score(state)
        except CodecError as exc:  # a stored turn that does not decode, or a scored record over its limit
            return self._reject(record, f"cannot score: {exc}", type(exc).__name__, state["trajectory_id"])
        emitted = sum(len(o.value) for o in outputs)
        if emitted + FRAMING_BYTES > self.limits.record_bytes:
            # Belt and braces: the state keeps what was emitted, and must fit a changelog record.
            reason = (f"cannot score: its outputs ({emitted} bytes) would not fit a scoring state of at most "
                      f"{self.limits.record_bytes} bytes")  # fmt: skip
            return self._reject(record, reason, "TrajectoryTooLarge", state["trajectory_id"])
        state["scored_version"] = state["assembled_version"]
        # The scored record carries the trajectory; the table need not keep it any more.
        state["assembled"] = None
        state["enrichment"] = None
        state["emitted"] = [{"topic": self._logical[o.topic], "value": o.value} for o in outputs]
        return Result(state, outputs)

    def _slim(self, state_data: bytes | dict[str, Any] | None, trajectory_id: str) -> Result:
        """Assembly swept the trajectory (closed and quiet for the retention): keep its version counts only.

        What goes is ``emitted``, the scored version's records kept for a replay (the scored record carries
        the whole trajectory: most of the state). A replay needs them only until the batch that scored the
        version is committed, a second or so; the sweep comes a retention after the trajectory's last event
        (only an enrichment lagging by about a retention would score the version within that second).
        The counts stay: they keep a replayed or older input a no-op, and ``resumed`` in ``streams.app``
        numbers a later event's version after them. A version still waiting for its other half is kept.
        """
        if state_data is None:
            return Result(None)  # never seen here (or tombstoned): nothing to slim
        state = self.load(state_data, trajectory_id)
        if not state["emitted"]:
            return Result(None)  # slim already (asked again), or nothing scored: no changelog write
        state["emitted"] = []
        return Result(state)

    def _emitted_again(self, state: dict[str, Any]) -> list[Output]:
        """A replayed input of the scored version: what was sent for it, again and byte for byte.

        The state and the outputs travel separately; a crash can leave the state on the changelog and
        the outputs unsent. Re-sending keeps delivery at least once without scoring twice (a judge is
        not deterministic), and downstream drops the repeat by (trajectory_id, version). A slimmed state
        sends nothing: its outputs were sent and committed long before the sweep.
        """
        key = state["trajectory_id"].encode()
        return [Output(self.settings.topic(e["topic"]), key, e["value"]) for e in state["emitted"]]

    async def _score(self, state: dict[str, Any]) -> list[Output]:
        view = TrajectoryView.from_bytes(state["assembled"], self.codec)
        enrichment = self.codec.decode(state["enrichment"], expect=ENRICHMENT_RESULT).record
        judge_score, rationale = await self._judge(view)
        result = score(view, enrichment, self.settings.reward_function, self.settings, judge_score, rationale)
        credits = [assign(view, self.settings.credit_method, None, self.air_rules, self.settings.credit_discount)]
        if enrichment["status"] == "ok":
            credits.append(assign(view, DECISION, None, self.air_rules, self.settings.credit_discount, enrichment))
        scored_at = max(view["emitted_at"], enrichment["extracted_at"])
        credit_records = [self._credit_record(c, view, scored_at) for c in credits]
        scored = {
            "trajectory_id": view.trajectory_id,
            "trajectory_version": view.version,
            "scored_at": scored_at,
            "task_key": view.task_key,
            "outcome": view.outcome,
            "reward": result.reward,
            "reward_function": result.reward_function,
            "components": result.component_records(),
            "entities": sorted(extracted_entities(enrichment)),
            "extractor": enrichment["extractor"],
            "model_versions": view.model_versions,
            "credits": credit_records,
            "trajectory": state["assembled"],
            "enrichment": state["enrichment"],
            # Per turn, so that the sinks land what scoring computed instead of recomputing with their settings.
            "turn_air": [turn.reward for turn in air_rewards(view, self.air_rules)],
        }
        key = view.trajectory_id.encode()
        return [
            *(Output(self.rewards_topic, key, data) for data in credit_records),
            Output(self.scored_topic, key, self.codec.encode(SCORED_TRAJECTORY, scored)),
        ]

    def _credit_record(self, credit: Any, view: TrajectoryView, at: Any) -> bytes:
        record = to_record(credit, view.trajectory_id, view.version)
        record["created_at"] = at  # deterministic, so that a replay re-emits the same bytes
        return self.codec.encode(CREDIT_ASSIGNMENT, record)

    async def _judge(self, view: TrajectoryView) -> tuple[float | None, str | None]:
        if self.judge is None:
            return None, None
        group = self.window.group_with(view)
        if len(group) < 2:
            return None, None  # relative judging needs at least two attempts at the task
        try:
            verdicts = await self.judge(group)
        except TrajstreamError as exc:
            # The trajectory is still scored, by the reward function alone; the failure is logged.
            log.warning("judge failed for %s v%s: %s", view.trajectory_id, view.version, exc)
            return None, None
        value, rationale = verdicts[-1]
        return value, rationale

    def _reject(self, record: Input, reason: str, error_type: str, tid: str | None) -> Result:
        return Result(None, [dead_letter(self.codec, self.dlq_topic, "scoring", record, reason, error_type, tid)])
