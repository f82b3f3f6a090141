"""What an extractor finds in a trajectory, and the ``enrichment_result`` records that carry it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from trajstream_sdk.events import utcnow

DecisionType = Literal["tool_selection", "reasoning", "branching", "backtrack", "delegation", "sequencing"]
Importance = Literal["critical", "relevant", "peripheral"]

DECISION_TYPES: tuple[str, ...] = get_args(DecisionType)
IMPORTANCE_LEVELS: tuple[str, ...] = get_args(Importance)

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    """One choice the agent made at a step (turn index). ``implicit`` when inferred rather than stated."""

    decision_type: DecisionType
    step_index: int
    chosen_action: str
    confidence: float
    reasoning: str = ""
    alternatives: tuple[str, ...] = ()
    implicit: bool = False

    def __post_init__(self) -> None:
        # Extractors validate their own input with better messages; this guards the record contract.
        if self.decision_type not in DECISION_TYPES:
            raise ValueError(f"decision_type {self.decision_type!r} is not one of {', '.join(DECISION_TYPES)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")

    def to_record(self) -> dict[str, Any]:
        return {
            "decision_type": self.decision_type,
            "step_index": self.step_index,
            "reasoning": self.reasoning,
            "alternatives": list(self.alternatives),
            "chosen_action": self.chosen_action,
            "confidence": float(self.confidence),
            "implicit": self.implicit,
        }


@dataclass(frozen=True, slots=True)
class Relationship:
    """A link from an entity to another one, named by ``target``."""

    target: str
    relation: str

    def to_record(self) -> dict[str, Any]:
        return {"target": self.target, "relation": self.relation}


@dataclass(frozen=True, slots=True)
class Entity:
    """Something the trajectory refers to: first seen at ``discovered_at_step`` (a turn index)."""

    name: str
    entity_type: str
    discovered_at_step: int
    importance: Importance
    relationships: tuple[Relationship, ...] = ()

    def __post_init__(self) -> None:
        if self.importance not in IMPORTANCE_LEVELS:
            raise ValueError(f"importance {self.importance!r} is not one of {', '.join(IMPORTANCE_LEVELS)}")

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entity_type": self.entity_type,
            "discovered_at_step": self.discovered_at_step,
            "importance": self.importance,
            "relationships": [r.to_record() for r in self.relationships],
        }


@dataclass(frozen=True, slots=True)
class Extraction:
    """One extractor's output for one trajectory, with what it cost (tokens, attempts, wall time)."""

    decisions: tuple[Decision, ...]
    entities: tuple[Entity, ...]
    extractor: str
    prompt_version: str
    input_tokens: int | None
    output_tokens: int | None
    attempts: int
    latency_ms: int


def to_result_record(extraction: Extraction, trajectory_id: str, trajectory_version: int) -> dict[str, Any]:
    """The ``enrichment_result`` record (status ok) for a successful extraction."""
    return {
        "trajectory_id": trajectory_id,
        "trajectory_version": trajectory_version,
        "extracted_at": utcnow(),
        "extractor": extraction.extractor,
        "prompt_version": extraction.prompt_version,
        "status": STATUS_OK,
        "error": None,
        "input_tokens": extraction.input_tokens,
        "output_tokens": extraction.output_tokens,
        "latency_ms": extraction.latency_ms,
        "attempts": extraction.attempts,
        "decisions": [d.to_record() for d in extraction.decisions],
        "entities": [e.to_record() for e in extraction.entities],
    }


def failed_result_record(
    trajectory_id: str,
    trajectory_version: int,
    extractor: str,
    prompt_version: str,
    error: str,
    attempts: int,
    latency_ms: int,
) -> dict[str, Any]:
    """The ``enrichment_result`` record (status failed, no decisions or entities) for a failed extraction.

    Downstream stages then know the trajectory was tried and why it has no enrichment, rather than waiting.
    """
    return {
        "trajectory_id": trajectory_id,
        "trajectory_version": trajectory_version,
        "extracted_at": utcnow(),
        "extractor": extractor,
        "prompt_version": prompt_version,
        "status": STATUS_FAILED,
        "error": error,
        "input_tokens": None,
        "output_tokens": None,
        "latency_ms": latency_ms,
        "attempts": attempts,
        "decisions": [],
        "entities": [],
    }
