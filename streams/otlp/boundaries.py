"""Where a trace's trajectories are, by the first rule that applies (docs/otlp-mapping.md):

1. an explicit ``trajstream.trajectory.id``: the outermost span carrying an id, with its descendants;
2. else each outermost agent span (``invoke_agent``, OpenInference AGENT, Vercel ``ai.generateText`` /
   ``ai.streamText``); an agent span inside another becomes a child trajectory;
3. else the trace's root span, when the trace holds an inference span.

Spans arrive in any order and some not yet: an inference span whose ancestors are missing before any
boundary is found belongs to the trace's *pending* trajectory (no boundary span, not complete).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from trajstream.streams.otlp.kinds import explicit_trajectory_id, is_agent, is_inference
from trajstream.streams.otlp.spans import Span

# Trajectory ids are uuid5(NAMESPACE, "trace_id:boundary_span_id"): the same spans give the same ids.
NAMESPACE = uuid.UUID("a4706dd3-223f-4fec-ae17-5ff7447d6bb6")
OUTSIDE = "an inference span outside every trajectory boundary of its trace"


@dataclass
class Planned:
    trajectory_id: str
    boundary: Span | None  # None: the pending trajectory, whose boundary has not arrived
    parent_trajectory_id: str | None = None
    parent_span_id: str | None = None
    turns: list[Span] = field(default_factory=list)
    children: int = 0


def order(span: Span) -> tuple[int, str]:
    return span.start_ns, span.span_id


class _Tree:
    def __init__(self, spans: list[Span]):
        self.by_id = {s.span_id: s for s in spans}

    def ancestors(self, span: Span) -> tuple[list[Span], bool]:
        """The span's arrived ancestors, nearest first, and whether the chain reaches the root."""
        chain: list[Span] = []
        seen = {span.span_id}
        parent = span.parent_span_id
        while parent is not None:
            up = self.by_id.get(parent)
            if up is None or up.span_id in seen:
                return chain, False
            chain.append(up)
            seen.add(up.span_id)
            parent = up.parent_span_id
        return chain, True


def _boundaries(spans: list[Span], tree: _Tree) -> list[Span]:
    explicit = []
    for span in spans:
        tid = explicit_trajectory_id(span)
        if tid is not None and all(explicit_trajectory_id(a) != tid for a in tree.ancestors(span)[0]):
            explicit.append(span)
    agents = [
        s
        for s in spans
        if is_agent(s)
        and explicit_trajectory_id(s) is None
        and all(explicit_trajectory_id(a) is None for a in tree.ancestors(s)[0])
    ]
    return explicit + agents


def trajectory_id(trace_id: str, boundary: Span | None) -> str:
    explicit = explicit_trajectory_id(boundary) if boundary is not None else None
    if explicit is not None:
        return explicit
    return str(uuid.uuid5(NAMESPACE, f"{trace_id}:{boundary.span_id if boundary else ''}"))


def plan(trace_id: str, spans: list[Span]) -> tuple[list[Planned], list[tuple[str, str]]]:
    """The trace's trajectories (their turns in start order; those without turns or children left out) and
    the inference spans that belong to none, with why."""
    spans = sorted(spans, key=order)
    tree = _Tree(spans)
    inferences = [s for s in spans if is_inference(s)]
    boundaries = _boundaries(spans, tree)
    root_rule = not boundaries
    if root_rule and inferences:
        boundaries = [s for s in spans if s.parent_span_id is None][:1]  # none yet: every turn is pending
    planned = {b.span_id: Planned(trajectory_id(trace_id, b), b) for b in boundaries}
    for b in boundaries:
        parent = next((a for a in tree.ancestors(b)[0] if a.span_id in planned), None)
        if parent is not None:
            planned[b.span_id].parent_trajectory_id = planned[parent.span_id].trajectory_id
            planned[b.span_id].parent_span_id = b.parent_span_id
            planned[parent.span_id].children += 1
    pending = Planned(trajectory_id(trace_id, None), None)
    skipped: list[tuple[str, str]] = []
    for span in inferences:
        chain, whole = tree.ancestors(span)
        if root_rule:
            home = planned[boundaries[0].span_id] if boundaries else None  # the root holds the whole trace
        else:
            home = next((planned[a.span_id] for a in [span, *chain] if a.span_id in planned), None)
        if home is not None:
            home.turns.append(span)
        elif whole:
            skipped.append((span.span_id, OUTSIDE))
        else:
            pending.turns.append(span)
    out = [p for p in planned.values() if p.turns or p.children]
    return ([*out, pending] if pending.turns else out), skipped
