"""Assembly: fold a trajectory's events into its state and decide what to emit.

Pure logic, no Kafka: the Faust agent in ``streams.app`` feeds each input record to
``Assembler.handle`` with the trajectory's table entry and sends what it returns.

Delivery is at least once. A version is emitted with a deterministic body (emitted_at is the
triggering event's time), and a replayed event for a closed trajectory re-emits the current
version byte for byte: after a crash, an emission whose input offset was not committed is made
again rather than lost, and downstream stages drop (trajectory_id, version) pairs they have seen.

A closed trajectory's state leaves the table once it has been quiet for the retention (an ``expire``
control message, which the agent checks like a timeout). A later event for it starts from
``Assembler.resumed_state``: nothing of the earlier events, but the version count goes on, so the new
version is above every version downstream has seen and is not dropped as a repeat. The same expire tells
the scoring agent (on ``scoring.control``) to slim its state of the trajectory to its version counts.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trajstream.errors import CodecError, EventTooLargeError
from trajstream.settings import Settings
from trajstream.sink import Output, dead_letter
from trajstream.topics import (
    ASSEMBLED,
    ASSEMBLY_CONTROL_TOPIC,
    DEAD_LETTER_TOPIC,
    ENRICHMENT_REQUESTS,
    EVENTS_TOPIC,
    FEEDBACK_TOPIC,
    SCORING_CONTROL_TOPIC,
)
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import dead_letter_record
from trajstream_sdk.schemas import (
    ASSEMBLED_TRAJECTORY,
    ASSEMBLY_CONTROL,
    ASSEMBLY_STATE,
    DEAD_LETTER,
    ENRICHMENT_REQUEST,
    FEEDBACK,
    TRAJECTORY_END,
    TRAJECTORY_START,
    TURN,
)

# A turn is stored as the agent's own bytes; assembly reads only what orders and dedupes it. Its
# content is decoded downstream (scoring, enrichment), where a body that does not decode is dead-lettered.
ENVELOPE_FIELDS = {TURN: frozenset({"event_id", "trajectory_id", "turn_index", "timestamp"})}
_EVENT_TOPICS = {EVENTS_TOPIC: (TRAJECTORY_START, TURN, TRAJECTORY_END), FEEDBACK_TOPIC: (FEEDBACK,)}
# What the assembly state holds per event besides the event's bytes: its event id (37 bytes), and for a
# turn its index, length and timestamp (at most 21). The state must fit a changelog record.
_STATE_BYTES_PER_EVENT = 64


@dataclass(frozen=True, slots=True)
class Input:
    """One record from Kafka, with where it came from (for dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


State = dict[str, Any]
# Kept in a decoded state next to the stored bytes, never written: the start and end records as read by
# the fold, so that an emission in the same batch (or with a cached state) does not decode them again.
_DECODED = "_decoded"


@dataclass
class Result:
    state: State | None  # the new state (encode with Assembler.dump); None: leave the table as it is
    outputs: list[Output] = field(default_factory=list)
    expired: bool = False  # remove the trajectory's state from the table (a tombstone on the changelog)


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def _has_turn(turns: list[dict[str, Any]], index: int) -> bool:
    """Whether the sorted ``turns`` hold ``index``."""
    if not turns or turns[-1]["turn_index"] < index:
        return False
    indices = [t["turn_index"] for t in turns]
    at = bisect.bisect_left(indices, index)
    return at < len(indices) and indices[at] == index


def new_state(trajectory_id: str) -> dict[str, Any]:
    return {
        "trajectory_id": trajectory_id,
        "start": None,
        "end": None,
        "turns": [],
        "feedback": [],
        "seen_event_ids": [],
        "children": [],
        "version": 0,
        "closed": False,
        "timed_out": False,
        "closed_at_ms": None,
        "last_activity_ms": 0,
        "total_bytes": 0,
        "duplicate_events": 0,
        "dead_lettered": None,
        "last_reason": "",
        "emitted_at_ms": None,
    }


class Assembler:
    """Folds events into per-trajectory state. One instance per worker; holds no per-trajectory data."""

    def __init__(self, settings: Settings, codec: EventCodec):
        self.settings = settings
        self.codec = codec
        self.topic_kind = {settings.topic(name): name for name in (*_EVENT_TOPICS, ASSEMBLY_CONTROL_TOPIC)}
        self.assembled_topic = settings.topic(ASSEMBLED)
        self.requests_topic = settings.topic(ENRICHMENT_REQUESTS)
        self.dlq_topic = settings.topic(DEAD_LETTER_TOPIC)
        self.control_topic = settings.topic(ASSEMBLY_CONTROL_TOPIC)
        self.scoring_control_topic = settings.topic(SCORING_CONTROL_TOPIC)
        self.timeout_ms = int(settings.assembly_inactivity_timeout_s * 1000)
        self.retention_ms = int(settings.assembly_retention_s * 1000)
        self.limits = settings.limits

    # --- state (de)serialisation -------------------------------------------------------------
    def load(self, data: bytes | State | None, trajectory_id: str) -> State:
        """A table value, or a state already decoded (the agent keeps a batch's states decoded)."""
        if data is None:
            return new_state(trajectory_id)
        if isinstance(data, dict):
            return data
        return self.codec.decode(data, expect=ASSEMBLY_STATE).record

    def dump(self, state: dict[str, Any]) -> bytes:
        if _DECODED in state:
            state = {k: v for k, v in state.items() if k != _DECODED}
        return self.codec.encode(ASSEMBLY_STATE, state)

    def _decoded(self, state: dict[str, Any], name: str) -> dict[str, Any] | None:
        data = state[name]
        if data is None:
            return None
        cached = state.get(_DECODED, {}).get(name)
        if cached is not None and cached[0] is data:
            return cached[1]  # type: ignore[no-any-return]
        return self.codec.decode(data).record

    # --- entry point ---------------------------------------------------------------------------
    def handle(self, record: Input, state_data: bytes | State | None) -> Result:
        kind = self.topic_kind.get(record.topic)
        if kind is None:
            return self._reject(record, f"topic {record.topic} is not an assembly input", "UnexpectedTopic")
        try:
            event = self.codec.peek(record.value, ENVELOPE_FIELDS)
        except CodecError as exc:
            return self._reject(record, str(exc), type(exc).__name__)
        if kind == ASSEMBLY_CONTROL_TOPIC:
            if event.name != ASSEMBLY_CONTROL:
                return self._reject(record, f"a {event.name} record on the control topic", "UnexpectedEventType")
            return self._control(event.record, state_data, record)
        if event.name not in _EVENT_TOPICS[kind]:
            reason = f"a {event.name} event does not belong on {record.topic}"
            return self._reject(record, reason, "UnexpectedEventType")
        body = event.record
        tid = body["trajectory_id"]
        if record.key is not None and record.key.decode(errors="replace") != tid:
            reason = f"Kafka key {record.key!r} is not the event's trajectory_id {tid!r}: its order is not guaranteed"
            return self._reject(record, reason, "KeyMismatch", tid)
        state = self.load(state_data, tid)
        return self._fold(state, event.name, body, record)

    # --- folding -------------------------------------------------------------------------------
    def _fold(self, state: dict[str, Any], name: str, body: dict[str, Any], record: Input) -> Result:
        tid = state["trajectory_id"]
        event_id = body["event_id"]
        if event_id in state["seen_event_ids"]:
            state["duplicate_events"] += 1
            result = Result(state)
            if state["closed"] and state["version"] and not state["dead_lettered"]:
                result.outputs = self._emission(state)  # replay after a crash: emit again, byte-identical
            return result
        if state["dead_lettered"]:
            state["seen_event_ids"].append(event_id)
            dead = self._reject(record, f"trajectory already dead-lettered: {state['dead_lettered']}", "Rejected", tid)
            dead.state = state
            return dead

        conflict = self._conflict(state, name, body)
        if conflict:
            return self._reject(record, conflict, "ConflictingEvent", tid)

        over = self._over_limit(state, name, len(record.value))
        if over and state["version"]:
            # Already emitted: the versions out there stay valid; only what does not fit is rejected.
            state["seen_event_ids"].append(event_id)
            rejected = self._reject(record, f"trajectory would exceed its limit: {over}", "TrajectoryTooLarge", tid)
            rejected.state = state
            return rejected
        state["seen_event_ids"].append(event_id)
        state["total_bytes"] += len(record.value)
        state["last_activity_ms"] = max(state["last_activity_ms"], record.timestamp_ms)
        outputs: list[Output] = []
        reason = ""
        if name == TRAJECTORY_START:
            state["start"] = record.value
            state.setdefault(_DECODED, {})["start"] = (record.value, body)
            parent = body.get("parent_trajectory_id")
            if parent:
                outputs.append(self._control_message("child", parent, record.timestamp_ms, child_id=tid))
            reason = "late_start" if state["closed"] else ""
        elif name == TURN:
            entry = {"turn_index": body["turn_index"], "data": record.value, "timestamp_ms": _ms(body["timestamp"])}
            turns = state["turns"]
            if not turns or turns[-1]["turn_index"] < body["turn_index"]:
                turns.append(entry)  # in order, the usual case
            else:
                turns.insert(bisect.bisect([t["turn_index"] for t in turns], body["turn_index"]), entry)
            reason = "late_turn" if state["closed"] else ""
        elif name == TRAJECTORY_END:
            state["end"] = record.value
            state.setdefault(_DECODED, {})["end"] = (record.value, body)
            state["closed"], state["timed_out"] = True, False
            state["closed_at_ms"] = _ms(body["timestamp"])
            reason = "ended"
        else:  # feedback
            state["feedback"].append(record.value)
            reason = "feedback" if state["closed"] else ""

        if over:
            return self._dead_letter_trajectory(state, over, record)
        if reason:
            return self._emit_new(state, reason, record.timestamp_ms, record, outputs)
        return Result(state, outputs)

    def _conflict(self, state: dict[str, Any], name: str, body: dict[str, Any]) -> str:
        if name == TRAJECTORY_START and state["start"] is not None:
            return "a second start event (different event_id) for this trajectory"
        if name == TRAJECTORY_END and state["end"] is not None:
            return "a second end event (different event_id) for this trajectory"
        if name == TURN and _has_turn(state["turns"], body["turn_index"]):
            return f"turn {body['turn_index']} already received with a different event_id"
        return ""

    def _over_limit(self, state: dict[str, Any], name: str, size: int) -> str:
        """The limit this event would break, if any."""
        s, limits = self.settings, self.limits
        if len(state["turns"]) + (name == TURN) > s.assembly_max_turns:
            return f"more than {s.assembly_max_turns} turns (TRAJSTREAM_ASSEMBLY_MAX_TURNS)"
        if state["total_bytes"] + size > limits.max_trajectory_bytes:
            return f"events exceed {limits.max_trajectory_bytes} bytes (TRAJSTREAM_ASSEMBLY_MAX_BYTES)"
        # Belt and braces: only a flood of tiny events (feedback, say) gets here, whose ids outweigh them.
        events = len(state["seen_event_ids"]) + len(state["children"]) + 1
        if state["total_bytes"] + size + events * _STATE_BYTES_PER_EVENT > limits.record_bytes:
            return f"its state would exceed the record limit of {limits.record_bytes} bytes ({events} events)"
        return ""

    def _dead_letter_trajectory(self, state: dict[str, Any], reason: str, record: Input) -> Result:
        """Every stored event goes to the dead-letter topic with the reason; later events follow."""
        tid = state["trajectory_id"]
        stored = [state["start"], *(t["data"] for t in state["turns"]), state["end"], *state["feedback"]]
        outputs = []
        for data in stored:
            if data is None:
                continue
            why = f"trajectory over the limit: {reason}"
            if data is record.value:
                outputs.append(self._letter(record, why, "TrajectoryTooLarge", tid))
                continue
            # A stored event: its source is the assembly state, not a topic position.
            letter = dead_letter_record(
                stage="assembly", reason=why, error_type="TrajectoryTooLarge", source="assembly-state",
                trajectory_id=tid, key=tid.encode(), payload=data,
                max_payload_bytes=self.codec.limits.dead_letter_payload_bytes,
            )  # fmt: skip
            outputs.append(Output(self.dlq_topic, tid.encode(), self.codec.encode(DEAD_LETTER, letter)))
        state.update(start=None, end=None, turns=[], feedback=[], total_bytes=0, dead_lettered=reason)
        return Result(state, outputs)

    # --- control messages ------------------------------------------------------------------------
    def _control(self, body: dict[str, Any], state_data: bytes | State | None, record: Input) -> Result:
        tid = body["trajectory_id"]
        state = self.load(state_data, tid)
        if body["kind"] == "child":
            child = body["child_id"]
            if child in state["children"]:
                replay = state["closed"] and state["version"] and not state["dead_lettered"]
                return Result(None, self._emission(state) if replay else [])
            state["children"].append(child)
            if state["closed"] and not state["dead_lettered"]:
                return self._emit_new(state, "child_added", record.timestamp_ms, record)
            return Result(state)
        if body["kind"] == "timeout":
            if state_data is None or state["dead_lettered"]:
                return Result(None)
            if state["closed"]:
                replay = state["timed_out"] and state["last_activity_ms"] == body["last_activity_ms"]
                return Result(None, self._emission(state) if replay else [])
            if state["last_activity_ms"] != body["last_activity_ms"]:
                return Result(None)  # something happened since the sweep looked: not idle any more
            state["closed"], state["timed_out"] = True, True
            state["closed_at_ms"] = state["last_activity_ms"] + self.timeout_ms
            return self._emit_new(state, "timed_out", state["closed_at_ms"], record)
        if body["kind"] == "expire":
            # Scoring's state of the trajectory goes with it: scoring's agent owns that table, so it is told.
            slim = self._control_message("expire", tid, _ms(body["issued_at"]), self.scoring_control_topic,
                                         last_activity_ms=body["last_activity_ms"])  # fmt: skip
            if state_data is None:
                # Already gone: asked twice, or by a worker that owned it before. Told again all the same (slimming
                # is idempotent): a crash may have left the tombstone on the changelog and the request unsent.
                return Result(None, [slim])
            since = self.closed_since(state)
            # Anything folded in since the sweep looked moves last_activity_ms: then it is not quiet any more.
            if since is None or state["last_activity_ms"] != body["last_activity_ms"]:
                return Result(None)
            if _ms(body["issued_at"]) - since[0] < self.retention_ms:
                return Result(None)
            return Result(None, [slim], expired=True)
        return self._reject(record, f"unknown control kind {body['kind']!r}", "UnexpectedEventType", tid)

    def _emit_new(self, state: dict[str, Any], reason: str, at_ms: int, record: Input,
                  outputs: list[Output] | None = None) -> Result:  # fmt: skip
        """A new version, after ``outputs``; a trajectory whose records would not fit is dead-lettered."""
        state["last_reason"] = reason
        state["version"] += 1
        state["emitted_at_ms"] = at_ms
        try:
            emission = self._emission(state)
        except EventTooLargeError as exc:
            # Belt and braces: the limits leave room for what a trajectory under them adds (record_bytes),
            # but a start event's context, re-encoded as JSON, can outgrow its Avro bytes.
            state["version"] -= 1
            return self._dead_letter_trajectory(state, f"its assembled record would not fit: {exc}", record)
        return Result(state, [*(outputs or ()), *emission])

    def _control_message(self, kind: str, target: str, at_ms: int, topic: str | None = None, **fields: Any) -> Output:
        body = {"kind": kind, "trajectory_id": target, "issued_at": at_ms, "last_activity_ms": None, "child_id": None}
        body.update(fields)
        return Output(topic or self.control_topic, target.encode(), self.codec.encode(ASSEMBLY_CONTROL, body))

    def idle_since(self, state_data: bytes | State) -> tuple[str, int] | None:
        """(trajectory_id, last_activity_ms) of an open trajectory, for the inactivity sweep."""
        state = self.load(state_data, "")
        if state["closed"] or state["dead_lettered"] or not state["last_activity_ms"]:
            return None
        return state["trajectory_id"], state["last_activity_ms"]

    def timeout_message(self, trajectory_id: str, last_activity_ms: int, now_ms: int) -> Output:
        return self._control_message("timeout", trajectory_id, now_ms, last_activity_ms=last_activity_ms)

    # --- retention -------------------------------------------------------------------------------
    def closed_since(self, state_data: bytes | State) -> tuple[int, int] | None:
        """(quiet since, last_activity_ms) of a closed trajectory, for the retention sweep.

        Measured from its last event or its close, whichever is later, so that late feedback keeps a
        trajectory's state for another retention. A dead-lettered trajectory keeps its state: it is what
        rejects the trajectory's later events.
        """
        state = self.load(state_data, "")
        if not state["closed"] or state["dead_lettered"]:
            return None
        return max(state["last_activity_ms"], state["closed_at_ms"] or 0), state["last_activity_ms"]

    def expire_message(self, trajectory_id: str, last_activity_ms: int, now_ms: int) -> Output:
        """Ask the agent that owns the trajectory to drop its state (it checks that nothing came since)."""
        return self._control_message("expire", trajectory_id, now_ms, last_activity_ms=last_activity_ms)

    def resumed_state(self, trajectory_id: str, last_version: int) -> State:
        """The state of a trajectory whose state the sweep removed, when an event for it comes after all.

        Closed, so that the event emits a new version at once, as a late event does; numbered after
        ``last_version`` (what downstream has), which it would otherwise drop as already seen.
        """
        state = new_state(trajectory_id)
        state["version"], state["closed"] = last_version, True
        return state

    # --- emission --------------------------------------------------------------------------------
    def assembled_record(self, state: dict[str, Any]) -> dict[str, Any]:
        start = self._decoded(state, "start")
        end = self._decoded(state, "end")
        feedback = [self.codec.decode(f).record for f in state["feedback"]]
        turns = state["turns"]
        declared = end["turn_count"] if end else None
        expected = declared if declared is not None else (turns[-1]["turn_index"] + 1 if turns else 0)
        present = {t["turn_index"] for t in turns}
        final_reward = end["final_reward"] if end else None
        feedback_score = end["feedback_score"] if end else None
        human_reviewed = bool(end and end["human_reviewed"])
        for f in feedback:
            final_reward = f["reward"] if f["reward"] is not None else final_reward
            feedback_score = f["score"] if f["score"] is not None else feedback_score
            human_reviewed = human_reviewed or f["human_reviewed"]
        started = _ms(start["timestamp"]) if start else (turns[0]["timestamp_ms"] if turns else None)
        s = start or {}
        return {
            "trajectory_id": state["trajectory_id"],
            "version": state["version"],
            "emitted_at": state["emitted_at_ms"],
            "reason": state["last_reason"],
            "timed_out": state["timed_out"],
            "task_description": s.get("task_description", ""),
            "domain": s.get("domain", ""),
            "agent_id": s.get("agent_id", ""),
            "agent_name": s.get("agent_name"),
            "conversation_id": s.get("conversation_id"),
            "framework": s.get("framework", ""),
            "environment": s.get("environment", "dev"),
            "tags": s.get("tags", []),
            "parent_trajectory_id": s.get("parent_trajectory_id"),
            "children": list(state["children"]),
            "system_message": s.get("system_message"),
            "context": json.dumps(s["context"], sort_keys=True, default=str) if start else None,
            "started_at": started,
            "ended_at": _ms(end["timestamp"]) if end else state["closed_at_ms"],
            "outcome": end["outcome"] if end else "abandoned",
            "final_reward": final_reward,
            "feedback_score": feedback_score,
            "human_reviewed": human_reviewed,
            "error_type": end["error_type"] if end else None,
            "error_message": end["error_message"] if end else None,
            "turn_count_declared": declared,
            "missing_turns": [i for i in range(expected) if i not in present],
            "turns": [t["data"] for t in turns],
            "feedback": [
                {k: f[k] for k in ("timestamp", "source", "reward", "score", "human_reviewed", "reviewer", "comment")}
                for f in feedback
            ],
            "event_count": (start is not None) + len(turns) + (end is not None) + len(feedback),
        }

    def _emission(self, state: dict[str, Any]) -> list[Output]:
        key = state["trajectory_id"].encode()
        assembled = self.codec.encode(ASSEMBLED_TRAJECTORY, self.assembled_record(state))
        request = {
            "request_id": f"{state['trajectory_id']}:{state['version']}",
            "trajectory_id": state["trajectory_id"],
            "trajectory_version": state["version"],
            "requested_at": state["emitted_at_ms"],
            "requested_by": "assembly",
            "prompt_version": None,
            "trajectory": assembled,
        }
        return [
            Output(self.assembled_topic, key, assembled),
            Output(self.requests_topic, key, self.codec.encode(ENRICHMENT_REQUEST, request)),
        ]

    # --- dead letters ----------------------------------------------------------------------------
    def _letter(self, record: Input, reason: str, error_type: str, tid: str | None) -> Output:
        return dead_letter(self.codec, self.dlq_topic, "assembly", record, reason, error_type, tid)

    def _reject(self, record: Input, reason: str, error_type: str, tid: str | None = None) -> Result:
        if tid is None and record.key:
            # Unreadable events are still keyed by their trajectory: say which one, for `dlq list`.
            tid = record.key.decode(errors="replace")
        return Result(None, [self._letter(record, reason, error_type, tid)])
