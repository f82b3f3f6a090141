"""A corpus with planted defects, built with the SDK's own event builders: what the reports must find.

Two agents and five task groups with realistic turns (a user's request, tool calls, the tools' answers,
a closing text), and three defects that can each be left out (the control corpus):

- ``international``: ``lookup_order`` fails (status error) whenever the order id is international
  (``INT-`` ids); the agent sometimes retries it in a loop, then gives up (tools report).
- ``missing_instruction``: in the refund group the agent sometimes skips ``verify_identity``; those
  trajectories fail, the ones that verify first succeed (instructions report).
- ``improvised_skill``: in three groups of both agents the agent improvises ``search_kb`` → ``summarise``
  → ``reply``, a sequence that is no registered skill (skills report).

Noise everywhere: a small share of failures for no planted reason, occasional ``search_kb`` timeouts with
a retry, a ``log_note`` tool called at random that changes nothing, and a registered skill
(``escalate_ticket``) used now and then. The generator is seeded, so a corpus is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import Message, ModelInfo, ToolCall, ToolResponse, end_record, start_record, turn_record

DEFECTS = ("international", "missing_instruction", "improvised_skill")
REGISTERED_SKILLS = ("escalate_ticket",)

SUPPORT_SYSTEM = """\
You are the support agent of Acme Shop.
Be concise and polite.
Use the tools to look things up; never guess an order's status.
"""
KB_SYSTEM = """\
You answer questions about Acme's products from the knowledge base.
Quote the knowledge base; say so when it has no answer.
"""

REFUND = "Refund a damaged order"
TRACK = "Track an order"
KB_GROUPS = (("kb-bot", "Answer a product question"), ("support-bot", "Explain a billing charge"),
             ("kb-bot", "Troubleshoot a login problem"))  # fmt: skip


@dataclass
class Step:
    tool: str
    arguments: dict[str, Any]
    status: str = "success"
    result: Any = field(default_factory=lambda: {"ok": True})


@dataclass
class Plan:
    agent: str
    task: str
    request: str
    steps: list[Step]
    final: str
    outcome: str


@dataclass
class PlantedCorpus:
    events: list[tuple[str, bytes]]
    plans: dict[str, Plan]  # by trajectory id
    defects: tuple[str, ...]

    def ids(self, predicate: Callable[[Plan], bool]) -> set[str]:
        return {tid for tid, p in self.plans.items() if predicate(p)}


def _order_id(rng: random.Random, international: bool) -> str:
    number = str(rng.randint(10000, 99999))
    return f"INT-{number}" if international else number


def _noise(rng: random.Random, steps: list[Step], agent: str) -> list[Step]:
    if agent == "support-bot" and rng.random() < 0.3:
        steps.insert(rng.randint(0, len(steps)), Step("log_note", {"note": "customer contacted"}))
    return steps


def _refund(rng: random.Random, defects: tuple[str, ...], noise_fail: float) -> Plan:
    order = _order_id(rng, False)
    skip = "missing_instruction" in defects and rng.random() < 0.45
    steps = [] if skip else [Step("verify_identity", {"customer": f"c-{rng.randint(100, 999)}"},
                                  result={"verified": True})]  # fmt: skip
    steps += [Step("lookup_order", {"order_id": order}, result={"status": "delivered", "damaged": True}),
              Step("issue_refund", {"order_id": order, "amount": round(rng.uniform(5, 200), 2)},
                   result={"refund": "issued"})]  # fmt: skip
    fail = skip or rng.random() < noise_fail
    final = ("The refund was issued, but it was reversed: the account holder was never verified." if skip
             else "Your refund is issued; it reaches your account in 3–5 days.")  # fmt: skip
    return Plan("support-bot", REFUND, f"My order {order} arrived broken, I want my money back.",
                _noise(rng, steps, "support-bot"), final, "failure" if fail else "success")  # fmt: skip


def _track(rng: random.Random, defects: tuple[str, ...], noise_fail: float) -> Plan:
    international = rng.random() < 0.35
    order = _order_id(rng, international)
    broken = international and "international" in defects
    request = f"Where is my order {order}?" + (" It ships from abroad." if international else "")
    if broken:
        error = {"error": "order service: region not supported", "order_id": order}
        steps = [Step("lookup_order", {"order_id": order}, "error", error) for _ in range(rng.choice((1, 3, 3)))]
        if rng.random() < 0.4:
            steps.append(Step("escalate_ticket", {"reason": "lookup failed"}, result={"ticket": rng.randint(1, 999)}))
        return Plan("support-bot", TRACK, request, _noise(rng, steps, "support-bot"),
                    "Sorry, I cannot find that order right now.", "failure")  # fmt: skip
    steps = [Step("lookup_order", {"order_id": order}, result={"status": "in transit", "eta_days": rng.randint(1, 6)})]
    return Plan("support-bot", TRACK, request, _noise(rng, steps, "support-bot"),
                "Your order is in transit and arrives within the week.",
                "failure" if rng.random() < noise_fail else "success")  # fmt: skip


def _kb(rng: random.Random, defects: tuple[str, ...], noise_fail: float, agent: str, task: str) -> Plan:
    topic = rng.choice(("the X200 battery", "two-factor login", "a duplicate charge", "warranty terms", "export"))
    steps = [Step("search_kb", {"query": topic}, result={"hits": rng.randint(1, 9)})]
    if rng.random() < 0.05:  # an occasional timeout, retried
        steps.insert(0, Step("search_kb", {"query": topic}, "timeout", {"error": "timed out"}))
    if "improvised_skill" in defects and rng.random() < 0.9:
        steps.append(Step("summarise", {"max_words": 80}, result={"summary": f"About {topic}: ..."}))
    steps.append(Step("reply", {"channel": "chat"}, result={"sent": True}))
    return Plan(agent, task, f"Can you help me with {topic}?", _noise(rng, steps, agent),
                f"Here is what the knowledge base says about {topic}.",
                "failure" if rng.random() < noise_fail else "success")  # fmt: skip


def plans(defects: tuple[str, ...] = DEFECTS, seed: int = 7, scale: int = 1, noise_fail: float = 0.08) -> list[Plan]:
    """The trajectories to emit: 40 refunds, 50 trackings and 3×24 knowledge-base answers per ``scale``."""
    unknown = set(defects) - set(DEFECTS)
    if unknown:
        raise ValueError(f"unknown planted defects {sorted(unknown)}; known: {', '.join(DEFECTS)}")
    rng = random.Random(seed)
    out = [_refund(rng, defects, noise_fail) for _ in range(40 * scale)]
    out += [_track(rng, defects, noise_fail) for _ in range(50 * scale)]
    out += [_kb(rng, defects, noise_fail, agent, task) for agent, task in KB_GROUPS for _ in range(24 * scale)]
    rng.shuffle(out)
    return out


def events(codec: EventCodec, plan: Plan, tid: str) -> list[tuple[str, bytes]]:
    """The plan as the agent's events: a turn per model call (the request and the first call; then each
    tool's answer and the next call; the closing text last)."""
    system = SUPPORT_SYSTEM if plan.agent == "support-bot" else KB_SYSTEM
    out = [("events", codec.encode("trajectory_start", start_record(
        tid, plan.task, agent_id=plan.agent, domain="support" if plan.agent == "support-bot" else "docs",
        tags=("planted",), system_message=system)))]  # fmt: skip
    turns: list[list[Message]] = [[Message.text("user", plan.request)]]
    for n, step in enumerate(plan.steps):
        call_id = f"call-{n}"
        turns[-1].append(Message("assistant", ToolCall(step.tool, call_id, step.arguments)))
        turns.append([Message("tool", ToolResponse(step.tool, call_id, step.result, step.status))])  # type: ignore[arg-type]
    turns[-1].append(Message.text("assistant", plan.final))
    for i, messages in enumerate(turns):
        model = ModelInfo(response_model="acme-agent-1", model_version="v1", input_tokens=200 + 40 * i,
                          output_tokens=30)  # fmt: skip
        out.append(("events", codec.encode("turn", turn_record(tid, i, messages, duration_ms=300, model=model))))
    out.append(("events", codec.encode("trajectory_end", end_record(tid, plan.outcome, turn_count=len(turns)))))  # type: ignore[arg-type]
    return out


def planted_corpus(codec: EventCodec, defects: tuple[str, ...] = DEFECTS, seed: int = 7, scale: int = 1,
                   prefix: str = "pl") -> PlantedCorpus:  # fmt: skip
    chosen: dict[str, Plan] = {}
    emitted: list[tuple[str, bytes]] = []
    for n, plan in enumerate(plans(defects, seed, scale)):
        tid = f"{prefix}-{n:04d}"
        chosen[tid] = plan
        emitted += events(codec, plan, tid)
    return PlantedCorpus(emitted, chosen, defects)
