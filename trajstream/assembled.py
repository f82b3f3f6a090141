"""A decoded view of an assembled trajectory, for the stages that score and enrich it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import content_kind
from trajstream_sdk.schemas import ASSEMBLED_TRAJECTORY, TURN

_SPACES = re.compile(r"\s+")


def task_key(task_description: str) -> str:
    """Attempts at the same task share a key: case, spacing and trailing punctuation do not matter."""
    return _SPACES.sub(" ", task_description.strip().lower()).rstrip(" .!?")


@dataclass(frozen=True)
class Step:
    """One turn, decoded. Its messages' ``content`` are plain dicts (see ``content_kind``)."""

    record: Mapping[str, Any]

    @property
    def turn_index(self) -> int:
        return int(self.record["turn_index"])

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        return list(self.record["messages"])

    @property
    def error(self) -> bool:
        return bool(self.record["error"])

    @property
    def model_version(self) -> str | None:
        model = self.record.get("model")
        return model.get("model_version") if model else None

    def contents(self, kind: str, role: str | None = None) -> list[Mapping[str, Any]]:
        return [
            m["content"]
            for m in self.record["messages"]
            if content_kind(m["content"]) == kind and (role is None or m["role"] == role)
        ]

    @property
    def tool_calls(self) -> list[Mapping[str, Any]]:
        """{name, call_id, arguments (JSON text)} of the tool calls the model made in this turn."""
        return self.contents("tool_call")

    @property
    def tool_responses(self) -> list[Mapping[str, Any]]:
        """{name, call_id, status, result} of the tool results that arrived in this turn."""
        return self.contents("tool_response")

    @property
    def is_llm_call(self) -> bool:
        """A turn with an assistant message: one action of the policy (a step for credit assignment)."""
        return any(m["role"] == "assistant" for m in self.record["messages"])


@dataclass(frozen=True)
class ContextEntity:
    """An entity the agent was started with: its name, and its type when the context gave one."""

    name: str
    entity_type: str | None = None


def _context_entities(raw: str | None) -> tuple[ContextEntity, ...]:
    if not raw:
        return ()
    try:
        context = json.loads(raw)
    except ValueError:
        return ()
    entities = context.get("entities") if isinstance(context, dict) else None
    found: list[ContextEntity] = []
    for entity in entities if isinstance(entities, list) else ():
        # The context is the agent's own JSON: anything but a named object is skipped, not trusted.
        name = entity.get("name") if isinstance(entity, dict) else None
        if isinstance(name, str) and name.strip():
            kind = entity.get("entity_type")
            found.append(ContextEntity(name.strip(), kind if isinstance(kind, str) and kind else None))
    return tuple(found)


@dataclass(frozen=True)
class TrajectoryView:
    """An AssembledTrajectory record with its turns decoded, in turn order."""

    record: Mapping[str, Any]
    steps: tuple[Step, ...]

    @classmethod
    def from_record(cls, record: Mapping[str, Any], codec: EventCodec) -> TrajectoryView:
        steps = tuple(Step(codec.decode(data, expect=TURN).record) for data in record["turns"])
        return cls(record, steps)

    @classmethod
    def from_bytes(cls, data: bytes, codec: EventCodec) -> TrajectoryView:
        return cls.from_record(codec.decode(data, expect=ASSEMBLED_TRAJECTORY).record, codec)

    def __getitem__(self, field: str) -> Any:
        return self.record[field]

    @property
    def trajectory_id(self) -> str:
        return str(self.record["trajectory_id"])

    @property
    def version(self) -> int:
        return int(self.record["version"])

    @property
    def task_description(self) -> str:
        return str(self.record["task_description"])

    @property
    def times(self) -> tuple[Any, Any]:
        """(started, ended), each standing in for the other when one is missing: a trajectory assembled from
        an end event alone started when it ended, as far as anyone knows; a version emitted before any end
        (a sub-agent linked to a parent still open) ended, so far, when it started. (None, None) when neither."""
        started, ended = self.record["started_at"], self.record["ended_at"]
        return started or ended, ended or started

    @cached_property
    def task_key(self) -> str:
        return task_key(self.task_description)

    @cached_property
    def context_entities(self) -> tuple[ContextEntity, ...]:
        """The entities named in the start event's context, in its order; none without a readable context."""
        return _context_entities(self.record.get("context"))

    @property
    def outcome(self) -> str:
        return str(self.record["outcome"])

    @property
    def final_reward(self) -> float | None:
        value = self.record["final_reward"]
        return None if value is None else float(value)

    @property
    def llm_steps(self) -> list[Step]:
        return [s for s in self.steps if s.is_llm_call]

    @property
    def model_versions(self) -> list[str]:
        return sorted({v for s in self.steps if (v := s.model_version)})
