"""Rows for ClickHouse from a scored trajectory and from a dead letter. Pure: no I/O.

Every turn, message and tool-call row carries the trajectory's attributes (agent, domain, task,
outcome, reward, model version) as they are in the version that first carried it: dashboards never
join, and rows are only ever inserted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream.content import content_text
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import content_kind
from trajstream_sdk.schemas import CREDIT_ASSIGNMENT, ENRICHMENT_RESULT

# The same call (tool and arguments) this many times in one trajectory is a loop (the Tools page's loops).
LOOP_REPEATS = 3

COLUMNS: dict[str, list[str]] = {
    "trajectories": [
        "trajectory_id", "version", "ended_at", "started_at", "scored_at", "agent_id", "domain", "environment",
        "task_key", "task", "system_message", "tags", "outcome", "reward", "reward_function", "turn_count",
        "tool_calls", "tool_errors", "last_tool", "loop_tools", "loop_repeats", "duration_ms", "model_version",
        "parent_trajectory_id", "timed_out", "extractor", "entities", "reason", "source_partition", "source_offset",
    ],
    "trajectory_deltas": [
        "trajectory_id", "version", "sign", "ended_at", "agent_id", "domain", "model_version", "last_tool", "outcome",
        "reward",
    ],
    "turns": [
        "trajectory_id", "turn_index", "timestamp", "duration_ms", "error", "error_type", "turn_reward", "model",
        "model_version", "input_tokens", "output_tokens", "logprob_tokens", "logprobs", "token_ids", "air",
        "message_count", "agent_id", "domain", "task_key", "outcome", "reward", "first_version",
    ],
    "messages": [
        "trajectory_id", "turn_index", "seq", "timestamp", "role", "kind", "text", "content", "reasoning", "tool_name",
        "call_id", "agent_id", "domain", "task_key",
    ],
    "tool_calls": [
        "trajectory_id", "turn_index", "call_id", "timestamp", "tool", "arguments", "status", "latency_ms",
        "agent_id", "domain", "model_version", "task_key",
    ],
    "rewards": [
        "trajectory_id", "version", "scored_at", "reward_function", "component", "value", "weight", "detail",
        "agent_id", "domain",
    ],
    "credits": [
        "trajectory_id", "version", "scored_at", "method", "step_index", "turn_index", "credit", "air",
        "agent_id", "domain",
    ],
    "decisions": [
        "trajectory_id", "version", "extracted_at", "extractor", "prompt_version", "step_index", "decision_type",
        "chosen_action", "reasoning", "alternatives", "confidence", "implicit", "agent_id", "domain", "outcome",
    ],
    "entities": [
        "trajectory_id", "version", "extracted_at", "extractor", "prompt_version", "name", "entity_type",
        "discovered_at_step", "importance", "relationships", "agent_id", "domain",
    ],
    "dead_letters": [
        "failed_at", "stage", "error_type", "reason", "source", "source_partition", "source_offset",
        "trajectory_id", "payload_bytes", "input_bytes", "payload_cut", "dlq_partition", "dlq_offset",
    ],
    "model_versions": [
        "at", "model_name", "version", "number", "parent", "event", "metrics", "reason", "canary_share", "windows",
    ],
}  # fmt: skip


# What a delta row carries of its version (all of trajectory_deltas but the sign).
DELTA_ATTRIBUTES = tuple(c for c in COLUMNS["trajectory_deltas"] if c != "sign")


@dataclass
class Rows:
    """Rows per table, each a list in COLUMNS order."""

    tables: dict[str, list[list[Any]]] = field(default_factory=lambda: {t: [] for t in COLUMNS})

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        self.tables[table].append([row[c] for c in COLUMNS[table]])

    def extend(self, other: Rows) -> None:
        for table, rows in other.tables.items():
            self.tables[table].extend(rows)

    def count(self) -> int:
        return sum(len(r) for r in self.tables.values())


def epoch_ms(value: datetime) -> int:
    """A time as epoch milliseconds; a time without a zone is UTC (ClickHouse's are)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def scored_rows(scored: Mapping[str, Any], codec: EventCodec, source_partition: int,
                source_offset: int) -> tuple[Rows, dict[str, Any]]:  # fmt: skip
    """The rows of one scored trajectory version, and its attributes (for the delta rows)."""
    view = TrajectoryView.from_bytes(scored["trajectory"], codec)
    tid, version = view.trajectory_id, view.version
    model_version = scored["model_versions"][-1] if scored["model_versions"] else ""
    started, ended = view.times
    if started is None or ended is None:
        raise ValueError("the trajectory has neither a start nor an end time")
    attrs = {
        "agent_id": view["agent_id"] or "", "domain": view["domain"] or "", "task_key": scored["task_key"],
        "outcome": scored["outcome"], "reward": float(scored["reward"]), "model_version": model_version,
    }  # fmt: skip
    rows = Rows()
    calls: dict[str, tuple[int, datetime, Mapping[str, Any]]] = {}
    called: list[tuple[str, str]] = []  # (tool, arguments) of every call, in order
    tool_calls = tool_errors = 0
    # AIR as scoring computed it (scored_trajectory v3), never recomputed here: the sink's own TRAJSTREAM_AIR_*
    # settings may differ from the scoring worker's. Records from before v3 carry none: their turns land with 0.
    air = list(scored.get("turn_air") or []) or [0.0] * len(view.steps)
    if len(air) != len(view.steps):
        raise ValueError(f"turn_air has {len(air)} values for {len(view.steps)} turns")
    for step, turn_air in zip(view.steps, air, strict=True):
        record = step.record
        model = record.get("model") or {}
        logprobs = model.get("logprobs") or []
        rows.add("turns", {
            "trajectory_id": tid, "turn_index": step.turn_index, "timestamp": record["timestamp"],
            "duration_ms": record.get("duration_ms") or 0, "error": step.error,
            "error_type": record.get("error_type") or "", "turn_reward": record.get("turn_reward"),
            "model": model.get("response_model") or model.get("request_model") or "",
            "model_version": step.model_version or "",
            "input_tokens": model.get("input_tokens"), "output_tokens": model.get("output_tokens"),
            "logprob_tokens": [t["token"] for t in logprobs], "logprobs": [float(t["logprob"]) for t in logprobs],
            "token_ids": [t["token_id"] if t["token_id"] is not None else -1 for t in logprobs],
            "air": float(turn_air), "message_count": len(step.messages), "first_version": version,
            **attrs,
        })  # fmt: skip
        for seq, message in enumerate(step.messages):
            content = message["content"]
            kind = content_kind(content)
            rows.add("messages", {
                "trajectory_id": tid, "turn_index": step.turn_index, "seq": seq, "timestamp": message["timestamp"],
                "role": message["role"], "kind": kind, "text": content_text(content),
                "content": json.dumps(content, separators=(",", ":"), ensure_ascii=False),
                "reasoning": message.get("reasoning"),
                "tool_name": content.get("name", "") if kind in ("tool_call", "tool_response") else "",
                "call_id": content.get("call_id", "") if kind in ("tool_call", "tool_response") else "",
                "agent_id": attrs["agent_id"], "domain": attrs["domain"], "task_key": attrs["task_key"],
            })  # fmt: skip
            if kind == "tool_call":
                calls[content["call_id"]] = (step.turn_index, message["timestamp"], content)
                called.append((content["name"], content["arguments"]))
            elif kind == "tool_response":
                call = calls.pop(content["call_id"], None)
                tool_calls += 1
                tool_errors += content["status"] in ("error", "timeout")
                at = call[1] if call else message["timestamp"]
                rows.add("tool_calls", {
                    "trajectory_id": tid, "turn_index": call[0] if call else step.turn_index,
                    "call_id": content["call_id"], "timestamp": at, "tool": content["name"],
                    "arguments": call[2]["arguments"] if call else "", "status": content["status"],
                    "latency_ms": max(0, epoch_ms(message["timestamp"]) - epoch_ms(at)) if call else None,
                    "agent_id": attrs["agent_id"], "domain": attrs["domain"], "model_version": model_version,
                    "task_key": attrs["task_key"],
                })  # fmt: skip
    for call_id, (turn_index, at, content) in calls.items():  # called, never answered
        tool_calls += 1
        rows.add("tool_calls", {
            "trajectory_id": tid, "turn_index": turn_index, "call_id": call_id, "timestamp": at,
            "tool": content["name"], "arguments": content["arguments"], "status": "unanswered", "latency_ms": None,
            "agent_id": attrs["agent_id"], "domain": attrs["domain"], "model_version": model_version,
            "task_key": attrs["task_key"],
        })  # fmt: skip
    attrs["last_tool"] = called[-1][0] if called else ""
    loops = sorted((key, n) for key, n in Counter(called).items() if n >= LOOP_REPEATS)
    rows.add("trajectories", {
        "loop_tools": [tool for (tool, _), _ in loops], "loop_repeats": [n for _, n in loops],
        "trajectory_id": tid, "version": version, "ended_at": ended, "started_at": started,
        "scored_at": scored["scored_at"], "environment": view["environment"] or "", "task": view.task_description,
        "tags": list(view["tags"] or []), "system_message": view["system_message"] or "",
        "reward_function": scored["reward_function"], "turn_count": len(view.steps), "tool_calls": tool_calls,
        "tool_errors": tool_errors, "duration_ms": max(0, epoch_ms(ended) - epoch_ms(started)),
        "parent_trajectory_id": view["parent_trajectory_id"] or "", "timed_out": bool(view["timed_out"]),
        "extractor": scored["extractor"] or "", "entities": list(scored["entities"]), "reason": view["reason"] or "",
        "source_partition": source_partition, "source_offset": source_offset, **attrs,
    })  # fmt: skip
    base = {"trajectory_id": tid, "version": version, "scored_at": scored["scored_at"],
            "agent_id": attrs["agent_id"], "domain": attrs["domain"]}  # fmt: skip
    for component in scored["components"]:
        rows.add("rewards", {**base, "reward_function": scored["reward_function"], "component": component["name"],
                             "value": component["value"], "weight": component["weight"],
                             "detail": component.get("detail") or ""})  # fmt: skip
    for data in scored["credits"]:
        credit = codec.decode(data, expect=CREDIT_ASSIGNMENT).record
        for i, step in enumerate(credit["steps"]):
            rows.add("credits", {**base, "method": credit["method"], "step_index": i, "turn_index": step["turn_index"],
                                 "credit": step["credit"], "air": step["air"]})  # fmt: skip
    if scored.get("enrichment"):
        rows.extend(enrichment_rows(codec.decode(scored["enrichment"], expect=ENRICHMENT_RESULT).record, attrs))
    return rows, {**attrs, "ended_at": ended, "version": version, "trajectory_id": tid}


def enrichment_rows(result: Mapping[str, Any], attrs: Mapping[str, Any]) -> Rows:
    rows = Rows()
    base = {
        "trajectory_id": result["trajectory_id"], "version": result["trajectory_version"],
        "extracted_at": result["extracted_at"], "extractor": result["extractor"],
        "prompt_version": result["prompt_version"], "agent_id": attrs["agent_id"], "domain": attrs["domain"],
    }  # fmt: skip
    for d in result["decisions"]:
        rows.add("decisions", {**base, "step_index": d["step_index"], "decision_type": d["decision_type"],
                               "chosen_action": d["chosen_action"], "reasoning": d["reasoning"],
                               "alternatives": list(d["alternatives"]), "confidence": d["confidence"],
                               "implicit": d["implicit"], "outcome": attrs["outcome"]})  # fmt: skip
    for e in result["entities"]:
        links = [f"{r['relation']}:{r['target']}" for r in e["relationships"]]
        rows.add("entities", {**base, "name": e["name"], "entity_type": e["entity_type"],
                              "discovered_at_step": e["discovered_at_step"], "importance": e["importance"],
                              "relationships": links})  # fmt: skip
    return rows


def delta_rows(new: Mapping[str, Any], previous: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """+1 for the new version, -1 for each earlier version it replaces (its stored values)."""
    keep = DELTA_ATTRIBUTES
    out = [{**{k: p[k] for k in keep}, "sign": -1} for p in previous]
    out.append({**{k: new[k] for k in keep}, "sign": 1})
    return out


def dead_letter_row(letter: Mapping[str, Any], partition: int, offset: int) -> dict[str, Any]:
    carried = len(letter["payload"])
    return {
        "failed_at": letter["timestamp"], "stage": letter["stage"], "error_type": letter["error_type"],
        "reason": letter["reason"], "source": letter["source"],
        "source_partition": letter["source_partition"] if letter["source_partition"] is not None else -1,
        "source_offset": letter["source_offset"] if letter["source_offset"] is not None else -1,
        "trajectory_id": letter["trajectory_id"] or "", "payload_bytes": carried,
        # A letter written before dead_letter v2 has no size: it carried its input whole.
        "input_bytes": letter["payload_size"] if letter["payload_size"] is not None else carried,
        "payload_cut": letter["payload_cut"], "dlq_partition": partition, "dlq_offset": offset,
    }  # fmt: skip


def model_version_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """One event of the trainer's model.versions topic (schema model_version)."""
    return {
        "at": event["at"], "model_name": event["model_name"], "version": event["version"], "number": event["number"],
        "parent": event["parent"] or "", "event": event["event"], "metrics": dict(event["metrics"]),
        "reason": event["reason"], "canary_share": float(event.get("canary_share") or 0.0),
        "windows": len(event["windows"]),
    }  # fmt: skip
