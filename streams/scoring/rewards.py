"""Named, versioned reward functions, and a RULER-style group judge.

A reward function turns one trajectory (and its enrichment, when there is one) into weighted
components; the scalar reward is ``sum(weight * value)``. Every component is kept in the scored
record so that a reward can be audited and recomputed. Names and versions travel with the reward
(``reward_function = "name@version"``): change a function's behaviour, bump its version.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import openai

from trajstream.assembled import Step, TrajectoryView
from trajstream.content import clip, fit_lines, render_content
from trajstream.errors import ConfigurationError, TrajstreamError
from trajstream.settings import Settings

# The reward of an episode that carries no explicit final_reward, by outcome.
OUTCOME_REWARDS: Mapping[str, float] = {"success": 1.0, "partial": 0.5}

_SPACES = re.compile(r"\s+")


def episode_reward(view: TrajectoryView) -> float:
    """The trajectory's final_reward when it has one, else 1.0 for success, 0.5 for partial, 0.0 otherwise."""
    if view.final_reward is not None:
        return view.final_reward
    return OUTCOME_REWARDS.get(view.outcome, 0.0)


@dataclass(frozen=True)
class Component:
    """One reward component, shaped as RewardComponent in schemas/scored_trajectory."""

    name: str
    version: str
    value: float
    weight: float
    detail: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "value": self.value,
            "weight": self.weight,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ScoreResult:
    """The scalar reward, the function that produced it (name@version) and its components."""

    reward: float
    reward_function: str
    components: list[Component]

    def component_records(self) -> list[dict[str, Any]]:
        return [c.to_record() for c in self.components]


class RewardFunction(Protocol):
    """A named, versioned reward: components for one trajectory; the reward is sum(weight * value)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def __call__(
        self, view: TrajectoryView, enrichment: Mapping[str, Any] | None, settings: Settings
    ) -> list[Component]: ...


def _detail(**fields: Any) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _outcome_component(view: TrajectoryView, weight: float) -> Component:
    source = "final_reward" if view.final_reward is not None else "outcome"
    return Component("outcome", OutcomeReward.version, episode_reward(view), weight, _detail(source=source))


class OutcomeReward:
    """The episode reward alone: final_reward when set, else 1.0 success / 0.5 partial / 0.0."""

    name = "outcome"
    version = "1"

    def __call__(
        self, view: TrajectoryView, enrichment: Mapping[str, Any] | None, settings: Settings
    ) -> list[Component]:
        return [_outcome_component(view, 1.0)]


def normalise_entity(name: str) -> str:
    """Entity names compare case- and spacing-insensitively ("ACME  Corp" is "acme corp")."""
    return _SPACES.sub(" ", name.strip()).casefold()


def extracted_entities(enrichment: Mapping[str, Any] | None) -> set[str]:
    """Normalised names of the entities enrichment extracted (empty without a successful enrichment)."""
    if not enrichment or enrichment.get("status", "ok") != "ok":
        return set()
    return {normalise_entity(str(e["name"])) for e in enrichment.get("entities", ()) if e.get("name")}


def mentions(text: str, name: str) -> bool:
    """Whether normalised ``text`` names ``name`` as whole words ("acme" is not in "acmeco")."""
    return bool(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def expected_entities(view: TrajectoryView, candidates: set[str]) -> set[str]:
    """Context entities, plus every candidate name (extracted entity) the task description mentions.

    There is no ground truth per task, so "expected" is what the task's own inputs name: the
    entities the agent was started with and the names that appear in the task text. Without an
    entity recogniser the task's names are only known when the extractor found them, so for
    recall the context list is what counts; a task mention raises precision.
    """
    task = normalise_entity(view.task_description)
    context = {normalise_entity(e.name) for e in view.context_entities}
    return context | {name for name in candidates if mentions(task, name)}


def entity_f1(extracted: set[str], expected: set[str]) -> tuple[float, float, float]:
    """(precision, recall, F1) of extracted against expected names; 0 where undefined, as in the seed."""
    hits = len(extracted & expected)
    precision = hits / len(extracted) if extracted else 0.0
    recall = hits / len(expected) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


class EntityAwareReward:
    """outcome_weight * outcome + entity_weight * F1(extracted entities, expected entities).

    Without expected entities (or without a successful enrichment) entity coverage cannot be
    measured: precision has nothing to be measured against, and scoring it 0 would punish tasks
    that simply name no entities. The entity component is then kept with weight 0 and the outcome
    takes both weights, so rewards stay on the same scale; the detail says why.
    """

    name = "entity_aware"
    version = "1"

    def __call__(
        self, view: TrajectoryView, enrichment: Mapping[str, Any] | None, settings: Settings
    ) -> list[Component]:
        w_outcome, w_entity = settings.reward_outcome_weight, settings.reward_entity_weight
        if not enrichment or enrichment.get("status", "ok") != "ok":
            return self._outcome_only(view, w_outcome + w_entity, "no_enrichment", 0)
        extracted = extracted_entities(enrichment)
        expected = expected_entities(view, extracted)
        if not expected:
            return self._outcome_only(view, w_outcome + w_entity, "no_expected_entities", len(extracted))
        precision, recall, f1 = entity_f1(extracted, expected)
        detail = _detail(precision=precision, recall=recall, extracted=sorted(extracted), expected=sorted(expected))
        return [_outcome_component(view, w_outcome), Component("entity_f1", self.version, f1, w_entity, detail)]

    def _outcome_only(self, view: TrajectoryView, weight: float, rule: str, n_extracted: int) -> list[Component]:
        entity = Component("entity_f1", self.version, 0.0, 0.0, _detail(rule=rule, extracted=n_extracted))
        return [_outcome_component(view, weight), entity]


REWARD_FUNCTIONS: dict[str, RewardFunction] = {f.name: f for f in (OutcomeReward(), EntityAwareReward())}


def get_reward_function(name: str) -> RewardFunction:
    try:
        return REWARD_FUNCTIONS[name]
    except KeyError:
        known = ", ".join(sorted(REWARD_FUNCTIONS))
        raise ConfigurationError(f"unknown reward function {name!r}; known: {known}") from None


JUDGE_NAME = "ruler_judge"
JUDGE_VERSION = "2"  # 2: the transcript renders content as every stage does (trajstream.content)


def score(
    view: TrajectoryView,
    enrichment: Mapping[str, Any] | None,
    function_name: str,
    settings: Settings,
    judge_score: float | None = None,
    judge_rationale: str | None = None,
) -> ScoreResult:
    """The named function's reward, blended with a judge score (weight reward_judge_weight) when given.

    With a judge the function's component weights are scaled by (1 - judge_weight) and the judge
    joins as a component, so the reward is still sum(weight * value) over the components.
    """
    function = get_reward_function(function_name)
    components = function(view, enrichment, settings)
    if judge_score is not None:
        _check_score(judge_score, "judge_score")
        w = settings.reward_judge_weight
        components = [Component(c.name, c.version, c.value, c.weight * (1 - w), c.detail) for c in components]
        detail = _detail(rationale=judge_rationale) if judge_rationale is not None else None
        components.append(Component(JUDGE_NAME, JUDGE_VERSION, judge_score, w, detail))
    reward = math.fsum(c.value * c.weight for c in components)
    return ScoreResult(reward, f"{function.name}@{function.version}", components)


# --- RULER-style group judge ---------------------------------------------------------------


class JudgeError(TrajstreamError):
    """The judge's answer is missing, malformed, or does not score every trajectory exactly once."""


@dataclass(frozen=True)
class JudgeVerdict:
    trajectory_id: str
    score: float
    rationale: str


_JUDGE_SYSTEM = (
    "You are a strict reviewer of AI agent trajectories. You are shown several attempts at the same task, "
    "each under its trajectory id. Judge how well each attempt accomplished the task: correct and complete "
    "results, sensible tool use, no wasted or repeated actions, honest communication. Score each attempt "
    "between 0 and 1, relative to the others (the best attempt near 1 if it actually succeeded). Give every "
    "trajectory id exactly once, with a one-sentence rationale."
)

_JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "trajectory_id": {"type": "string"},
                    "score": {"type": "number", "description": "0 (failed) to 1 (excellent)"},
                    "rationale": {"type": "string"},
                },
                "required": ["trajectory_id", "score", "rationale"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["scores"],
    "additionalProperties": False,
}

# Transcripts are compact: long tool results and texts are cut, the judge needs the gist.
_MAX_PART_CHARS = 400
_MAX_TRANSCRIPT_CHARS = 8000


def _render_step(step: Step) -> list[str]:
    lines = [
        f"[turn {step.turn_index}] {m['role']}: {render_content(m['content'], _MAX_PART_CHARS)}" for m in step.messages
    ]
    if step.error:
        lines.append(f"[turn {step.turn_index}] (turn failed)")
    return lines


def transcript(view: TrajectoryView) -> str:
    """A compact text transcript of the trajectory for the judge (no outcome: it judges the process).

    Past its budget the middle goes: the judge needs how the attempt began and how it ended.
    """
    lines = [line for step in view.steps for line in _render_step(step)]
    return fit_lines(lines, _MAX_TRANSCRIPT_CHARS)


def _judge_prompt(views: Sequence[TrajectoryView]) -> str:
    parts = [f"Task: {views[0].task_description}"]
    for view in views:
        parts.append(f'<trajectory id="{view.trajectory_id}">\n{transcript(view)}\n</trajectory>')
    return "\n\n".join(parts)


def _check_score(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise JudgeError(f"{what}: score {value!r} is not a number between 0 and 1")
    return float(value)


def parse_verdicts(content: str | None, ids: Sequence[str]) -> list[JudgeVerdict]:
    """The judge's JSON answer, checked: every id exactly once, scores in [0, 1]; in the order of ``ids``."""
    if not content:
        raise JudgeError("the judge returned no content")
    try:
        entries = json.loads(content)["scores"]
        verdicts = [JudgeVerdict(str(e["trajectory_id"]), e["score"], str(e.get("rationale", ""))) for e in entries]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise JudgeError(f"the judge's answer is not the expected JSON: {exc}: {clip(content, 200)}") from exc
    by_id: dict[str, JudgeVerdict] = {}
    for v in verdicts:
        if v.trajectory_id in by_id:
            raise JudgeError(f"the judge scored trajectory {v.trajectory_id} twice")
        by_id[v.trajectory_id] = JudgeVerdict(v.trajectory_id, _check_score(v.score, v.trajectory_id), v.rationale)
    unknown, missing = set(by_id) - set(ids), [i for i in ids if i not in by_id]
    if unknown or missing:
        raise JudgeError(f"the judge's ids do not match: missing {missing}, unknown {sorted(unknown)}")
    return [by_id[i] for i in ids]


def _check_group(views: Sequence[TrajectoryView]) -> list[str]:
    if not views:
        raise ValueError("ruler_judge needs at least one trajectory")
    if len({v.task_key for v in views}) != 1:
        raise ValueError("ruler_judge compares attempts at one task; got several task keys")
    ids = [v.trajectory_id for v in views]
    if len(set(ids)) != len(ids):
        raise ValueError("ruler_judge got the same trajectory id twice")
    return ids


async def judge_group(views: Sequence[TrajectoryView], client: openai.AsyncOpenAI, model: str) -> list[JudgeVerdict]:
    """One chat-completions request scoring every attempt at one task against the others (RULER).

    Judging the group together is the point of RULER: relative judgements are more consistent than
    absolute ones, and GRPO only uses scores relative to the group anyway.
    """
    ids = _check_group(views)
    response = await client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": _JUDGE_SYSTEM},
            {"role": "user", "content": _judge_prompt(views)},
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "trajectory_scores", "strict": True, "schema": _JUDGE_SCHEMA},
        },
    )
    if not response.choices:
        raise JudgeError("the judge returned no choices")
    message = response.choices[0].message
    if message.refusal:
        raise JudgeError(f"the judge refused: {message.refusal}")
    return parse_verdicts(message.content, ids)


async def ruler_judge(views: list[TrajectoryView], client: openai.AsyncOpenAI, model: str) -> list[float]:
    """Scores in [0, 1] for attempts at one task, in the order of ``views``; raises JudgeError on a bad answer."""
    return [v.score for v in await judge_group(views, client, model)]
