"""A deterministic extractor that reads decisions and entities off a trajectory's structure.

It needs no network and costs nothing, so it runs wherever no LLM is configured. Its results name
the extractor "heuristic" so that nobody mistakes them for a model's interpretation, and its rules
are versioned (``PROMPT_VERSION``) like a prompt: change the rules, bump the version.
"""

from __future__ import annotations

import json
import re
import time
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from trajstream.assembled import Step, TrajectoryView
from trajstream.content import clip, render_content
from trajstream.streams.enrichment.model import Decision, DecisionType, Entity, Extraction, Importance, Relationship
from trajstream_sdk.events import content_kind

NAME = "heuristic"
# v2: a reply's action describes any content the way every transcript does (trajstream.content).
PROMPT_VERSION = "heuristic-v2"

MAX_ENTITIES = 50  # tool results can name hundreds of things; keep the most important
# Names whose mentions are counted across all steps (each a search of the whole text): the rest are dropped.
MAX_CANDIDATES = 4 * MAX_ENTITIES
UNKNOWN = "unknown"

_FAILED = frozenset({"error", "timeout"})
# Handoff conventions: delegate_*, handoff / hand_off, transfer_to_* (OpenAI Agents, Swarm), sub-agents.
_DELEGATION = re.compile(r"delegat|hand_?off|^transfer(?:_?to|$)|sub_?agent|(?:^|_)agent(?:$|_)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_ID_KEY = re.compile(r"(?:(?P<kind>[a-z][a-z0-9_]*?)_)?ids?")
# Keys whose (string) values name something, and what that something is.
_NAMED_KEYS = {
    "name": UNKNOWN,
    "city": "location",
    "country": "location",
    "location": "location",
    "address": "location",
    "customer": "person",
    "user": "person",
    "person": "person",
    "company": "org",
    "organization": "org",
    "org": "org",
    "vendor": "org",
    "merchant": "org",
    "product": "product",
    "service": "service",
}
# Nouns that introduce an identifier in prose ("order 1042", "ticket #77"); id keys in tool arguments add more.
_ID_NOUNS = frozenset(
    {"order", "account", "booking", "case", "customer", "incident", "invoice", "issue", "item", "payment"}
    | {"product", "reservation", "shipment", "ticket", "transaction", "user"}
)
_CAPS_RUN = re.compile(r"\b[A-Z][\w&]*(?:[ \t]+[A-Z][\w&]*)*")
_QUOTED = re.compile(r"[\"“]([^\"“”\n]{2,60})[\"”]")
_STOP_WORDS = frozenset({"I", "OK", "ID", "The", "A", "An", "Please", "Thanks", "Hi", "Hello", "Yes", "No"})
_ORG_SUFFIXES = frozenset({"Inc", "Corp", "Ltd", "LLC", "GmbH", "Co", "AG", "SA", "PLC"})
_SENTENCE_END = ".!?:\n-*•"


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- decisions --------------------------------------------------------------------------------


def _confidence(base: float, failures_before: int) -> float:
    """Confidence falls with each earlier failure (up to three): an agent recovering is less sure."""
    return round(max(0.1, base - 0.1 * min(failures_before, 3)), 2)


@dataclass(frozen=True)
class _Call:
    name: str
    arguments: str
    failed: bool
    status: str | None


def _call_statuses(view: TrajectoryView) -> dict[str, str]:
    """call_id -> status of its tool response, wherever in the trajectory the response arrived."""
    statuses: dict[str, str] = {}
    for step in view.steps:
        for response in step.tool_responses:
            statuses.setdefault(response["call_id"], response["status"])
    return statuses


class _DecisionReader:
    """Walks the steps in order, remembering each tool's last call (for retries) and failures so far."""

    def __init__(self, view: TrajectoryView):
        self.statuses = _call_statuses(view)
        self.last_call: dict[str, tuple[int, _Call]] = {}
        self.failures = 0

    def step(self, step: Step) -> list[Decision]:
        decisions: list[Decision] = []
        calls: list[tuple[_Call, Decision]] = []
        for message in step.messages:
            if message["role"] != "assistant":
                continue
            content = message["content"]
            stated = (message.get("reasoning") or "").strip()
            if content_kind(content) == "tool_call":
                calls.append(self._tool_decision(step, message, stated))
            elif stated:
                # Stated reasoning behind a reply; behind a tool call it explains that call's decision instead.
                decisions.append(
                    Decision(
                        "reasoning",
                        step.turn_index,
                        f"reply: {render_content(content, 80)}",
                        _confidence(0.8, self.failures),
                        reasoning=clip(stated, 500),
                    )
                )
        if len(calls) > 1:
            decisions.append(
                Decision(
                    "sequencing",
                    step.turn_index,
                    "call " + ", then ".join(c.name for c, _ in calls),
                    round(sum(d.confidence for _, d in calls) / len(calls), 2),
                    reasoning=f"made {len(calls)} tool calls in one turn",
                    implicit=True,
                )
            )
        decisions.extend(d for _, d in calls)
        # Only later steps can retry these calls: their results arrive after this turn.
        for call, _ in calls:
            self.last_call[call.name] = (step.turn_index, call)
            self.failures += call.failed
        if step.error and not any(c.failed for c, _ in calls):
            self.failures += 1  # a failed turn without a failed call (a model error, say) still counts
        return decisions

    def _tool_decision(self, step: Step, message: Mapping[str, Any], stated: str) -> tuple[_Call, Decision]:
        content = message["content"]
        name = str(content["name"])
        status = self.statuses.get(content["call_id"])
        call = _Call(name, content["arguments"], status in _FAILED or step.error, status)
        snapshot = message.get("context_snapshot") or {}
        alternatives = tuple(t for t in dict.fromkeys(snapshot.get("available_tools") or []) if t != name)
        previous = self.last_call.get(name)
        kind: DecisionType
        if previous is not None and previous[1].failed:
            # A retry is a backtrack whatever the tool: the agent returns to an action that failed.
            prev_step, prev = previous
            same = "the same" if _json(prev.arguments) == _json(call.arguments) else "changed"
            kind, why = "backtrack", f"retried {name} with {same} arguments after it failed at step {prev_step}"
        elif _DELEGATION.search(_snake(name)):
            kind, why = "delegation", f"handed work off through {name}"
        else:
            kind = "tool_selection"
            why = f"chose {name} over {', '.join(alternatives)}" if alternatives else f"called {name}"
        base = 0.9 if status == "success" and not call.failed else 0.5 if call.failed else 0.7
        decision = Decision(
            kind,
            step.turn_index,
            f"call {name}",
            _confidence(base, self.failures),
            reasoning=clip(stated, 500) if stated else why,
            alternatives=alternatives,
            implicit=not stated,
        )
        return call, decision


def extract_decisions(view: TrajectoryView) -> list[Decision]:
    reader = _DecisionReader(view)
    return [d for step in view.steps for d in reader.step(step)]


# --- entities ---------------------------------------------------------------------------------


@dataclass
class _Found:
    name: str
    entity_type: str
    order: int
    declared: bool = False  # named in the start context
    in_task: bool = False
    steps: set[int] = field(default_factory=set)
    relations: dict[tuple[str, str], None] = field(default_factory=dict)  # an ordered set


class _Registry:
    """Entities by case-folded name, with where each was mentioned."""

    def __init__(self) -> None:
        self.found: dict[str, _Found] = {}

    def add(self, name: str, entity_type: str, step: int | None, *, mention: bool = True) -> _Found | None:
        """Record a mention at ``step`` (None: in the task description), or only the name (``mention=False``)."""
        name = " ".join(name.split())
        if not name or len(name) > 100:
            return None
        entry = self.found.get(name.casefold())
        if entry is None:
            entry = self.found[name.casefold()] = _Found(name, entity_type, len(self.found))
        elif entry.entity_type == UNKNOWN:
            entry.entity_type = entity_type
        entry.declared = entry.declared or not mention
        if mention and step is None:
            entry.in_task = True
        elif mention and step is not None:
            entry.steps.add(step)
        return entry


def _argument_entities(value: Any, key: str | None = None) -> Iterator[tuple[str, str, bool]]:
    """(name, entity_type, is_id) for identifiers and names among a tool call's (nested) arguments."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _argument_entities(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _argument_entities(v, key)
    elif key is not None and isinstance(value, str | int) and not isinstance(value, bool):
        text, k = str(value).strip(), _snake(key)
        id_key = _ID_KEY.fullmatch(k)
        if id_key:
            kind = id_key.group("kind")
            yield (f"{kind.replace('_', ' ')} {text}", kind, True) if kind else (text, "identifier", False)
        elif isinstance(value, str) and (k in _NAMED_KEYS or k.endswith("_name")):
            prefix = k.removesuffix("_name")
            yield text, _NAMED_KEYS.get(k, _NAMED_KEYS.get(prefix, prefix)), False


def _id_pattern(kinds: set[str]) -> re.Pattern[str]:
    nouns = "|".join(re.escape(k.replace("_", " ")) for k in sorted(kinds, key=lambda k: (-len(k), k)))
    return re.compile(rf"\b({nouns})\s+(?:#|no\.?|number)?\s*([A-Za-z]{{0,4}}-?\d[\w-]*)\b", re.IGNORECASE)


def _text_entities(text: str, ids: re.Pattern[str], id_nouns: set[str]) -> Iterator[tuple[str, str]]:
    """(name, entity_type) for ids ("order 1042"), capitalised names and acronyms, and quoted strings."""
    for match in ids.finditer(text):
        yield f"{match.group(1).lower()} {match.group(2)}", match.group(1).lower().replace(" ", "_")
    for match in _CAPS_RUN.finditer(text):
        words = match.group(0).split()
        before = text[: match.start()].rstrip(" \t")
        # Any word opens a sentence capitalised; only an acronym there is a name by its looks.
        if (not before or before[-1] in _SENTENCE_END) and not (words[0].isupper() and len(words[0]) > 1):
            words = words[1:]
        while words and words[0] in _STOP_WORDS:
            words = words[1:]
        while words and words[-1] in _STOP_WORDS:
            words = words[:-1]
        name = " ".join(words)
        if len(name) > 1 and name.casefold() not in id_nouns:
            yield name, "org" if words[-1] in _ORG_SUFFIXES else UNKNOWN
    for match in _QUOTED.finditer(text):
        if any(ch.isalnum() for ch in match.group(1)):
            yield match.group(1).strip(), UNKNOWN


def _step_prose(step: Step) -> Iterator[str]:
    for message in step.messages:
        if message.get("reasoning"):
            yield message["reasoning"]
        if content_kind(message["content"]) == "text":
            yield message["content"]["text"]


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class _Haystack:
    """All the steps' text, arguments and results, case-folded, in one string: where mentions are counted.

    One string searched with ``str.find`` keeps a 1000-step trajectory with a thousand candidate names
    fast (a search per name, not per name and step); a hit jumps to the next step, one mention is enough.
    """

    def __init__(self, texts: list[tuple[int, str]]):
        self.steps = [index for index, _ in texts]
        self.starts: list[int] = []
        position = 0
        for _, text in texts:
            self.starts.append(position)
            position += len(text) + 1
        self.text = "\x00".join(text for _, text in texts)

    @classmethod
    def of_steps(cls, steps: tuple[Step, ...]) -> _Haystack:
        texts = []
        for step in steps:
            parts = [message.get("reasoning") or "" for message in step.messages]
            parts += [str(v) for message in step.messages for v in message["content"].values()]
            texts.append((step.turn_index, "\n".join(parts).casefold()))
        return cls(texts)

    def steps_mentioning(self, name: str) -> set[int]:
        needle, text, found = name.casefold(), self.text, set()
        position = 0
        while (hit := text.find(needle, position)) != -1:
            end = hit + len(needle)
            if (hit == 0 or not _is_word(text[hit - 1])) and (end == len(text) or not _is_word(text[end])):
                k = bisect_right(self.starts, hit) - 1
                found.add(self.steps[k])
                position = self.starts[k + 1] if k + 1 < len(self.starts) else len(text)
            else:
                position = hit + 1
        return found


def extract_entities(view: TrajectoryView) -> list[Entity]:
    registry = _Registry()
    for entity in view.context_entities:
        registry.add(entity.name, entity.entity_type or UNKNOWN, None, mention=False)  # known from the start
    # Per step, (tool, entities in its arguments); parsed once.
    calls = [
        [(str(c["name"]), list(_argument_entities(_json(c["arguments"])))) for c in step.tool_calls]
        for step in view.steps
    ]
    # Id keys of this agent's tools (booking_id...) teach the prose reader new id nouns ("booking 77").
    id_nouns = set(_ID_NOUNS) | {kind for found in calls for _, args in found for _, kind, is_id in args if is_id}
    ids = _id_pattern(id_nouns)

    for name, entity_type in _text_entities(view.task_description, ids, id_nouns):
        registry.add(name, entity_type, None)
    for step, step_calls in zip(view.steps, calls, strict=True):
        for text in _step_prose(step):
            for name, entity_type in _text_entities(text, ids, id_nouns):
                registry.add(name, entity_type, step.turn_index)
        for tool, args in step_calls:
            for name, entity_type, _ in args:
                entry = registry.add(name, entity_type, step.turn_index)
                if entry is not None:
                    entry.relations[(tool, "argument_of")] = None
        # Tool results are where agents discover things: the same keys name entities there.
        for response in step.tool_responses:
            for name, entity_type, _ in _argument_entities(_json(response["result"])):
                entry = registry.add(name, entity_type, step.turn_index)
                if entry is not None:
                    entry.relations[(str(response["name"]), "returned_by")] = None

    # A name found once is counted wherever else it occurs: in other steps' text, arguments and results.
    task = _Haystack([(-1, view.task_description.casefold())])
    steps = _Haystack.of_steps(view.steps)
    candidates = sorted(registry.found.values(), key=_candidate_rank)[:MAX_CANDIDATES]
    for entry in candidates:
        entry.in_task = entry.in_task or bool(task.steps_mentioning(entry.name))
        entry.steps |= steps.steps_mentioning(entry.name)

    first_step = view.steps[0].turn_index if view.steps else 0
    entities = [(_entity(f, first_step), f.order) for f in candidates]
    rank = {"critical": 0, "relevant": 1, "peripheral": 2}
    kept = sorted(entities, key=lambda e: (rank[e[0].importance], e[0].discovered_at_step, e[1]))[:MAX_ENTITIES]
    return [e for e, _ in sorted(kept, key=lambda e: (e[0].discovered_at_step, e[1]))]


def _candidate_rank(found: _Found) -> tuple[bool, int, int]:
    """Context and task names first, then the most mentioned so far, then the first seen."""
    return (not (found.declared or found.in_task), -len(found.steps), found.order)


def _entity(found: _Found, first_step: int) -> Entity:
    importance: Importance = "critical" if found.in_task else "relevant" if len(found.steps) >= 2 else "peripheral"
    return Entity(
        found.name,
        found.entity_type,
        min(found.steps) if found.steps else first_step,
        importance,
        tuple(Relationship(target, relation) for target, relation in found.relations),
    )


class HeuristicExtractor:
    """Decisions from the tool-call structure, entities from context, prose and tool arguments."""

    name = NAME
    prompt_version = PROMPT_VERSION

    async def extract(self, view: TrajectoryView) -> Extraction:
        started = time.perf_counter()
        decisions = tuple(extract_decisions(view))
        entities = tuple(extract_entities(view))
        latency_ms = int((time.perf_counter() - started) * 1000)
        return Extraction(decisions, entities, NAME, PROMPT_VERSION, None, None, 1, latency_ms)

    async def aclose(self) -> None:
        """Nothing to release; present so that every extractor closes the same way."""
