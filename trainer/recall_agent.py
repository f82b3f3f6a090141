"""An agent of the learning demo's environment that consults past trajectories before it acts.

It asks the served model as any agent does, then asks the data API's ``/predict`` (``Recall.predict_outcome``)
how each of the model's answers turned out in the most similar past situations, and answers with another of
them only when that evidence is clearly better than for the model's own first answer. A team with a small,
fixed model would do this: sample a few answers, check them against experience, keep the model's choice
unless experience clearly disagrees (best-of-n with a verifier learned from past outcomes, no training).

Why ``predict_outcome`` and not the other two ways of asking:
- ``recall`` (similar successful trajectories as few-shot messages) needs a model that reads examples in its
  prompt. The demo's model is a word-level model of 0.08M parameters that has never seen one: recalled
  steps would test its reading, not recall.
- ``recommend_tools`` ranks the tools called at similar decision points. The demo's agents answer in text
  (``call refund_order``), which the sink records as the action ``reply``: every decision point's tool is
  ``reply`` and the ranking says nothing. ``predict_outcome`` compares whole actions, text included.

Why a margin: the environment's likeliest answer is wrong by design (its warm-up teaches a decoy), so *any*
departure from the model's first answer, even a random one, tends to help. Switching on evidence no
stronger than chance would be a gain without learning from experience; the margin keeps the agent from
acting on noise, and the benchmark's control arm (the same agent over a corpus whose outcomes are shuffled)
measures what is left.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from trajstream.consumers.recall import Prediction
from trajstream.consumers.summaries import reply_action
from trajstream.errors import TrajstreamError

SAMPLES = 4  # answers asked of the model per request: candidates for the check
NEIGHBOURS = 50  # decision points each prediction weighs (predict_outcome's k)
MARGIN = 0.3  # how much higher another answer's predicted success must be than the first answer's
MIN_CONFIDENCE = 0.5  # below it a prediction is not evidence (predict_outcome's confidence)
NO_EVIDENCE = 0.5  # the first answer's success when nothing similar is known: a coin flip

Ask = Callable[[str], Awaitable[str]]  # a request's text -> one answer of the served model


class RecallAgentError(TrajstreamError):
    """The data API refused or failed a prediction."""


@dataclass(frozen=True)
class Choice:
    answer: str  # what the agent answers
    model_answer: str  # the model's first answer: what an agent without recall answers
    predictions: dict[str, Prediction] = field(default_factory=dict)  # per distinct answer

    @property
    def switched(self) -> bool:
        return self.answer != self.model_answer


def choose(answers: Sequence[str], predictions: Mapping[str, Prediction]) -> Choice:
    """The first of ``answers`` unless another's predicted success beats it by MARGIN; answers without
    confident evidence are never chosen over it."""
    if not answers:
        raise ValueError("no answer to choose from")
    first = answers[0]

    def evidence(answer: str) -> float | None:
        prediction = predictions.get(answer)
        if prediction is None or prediction.p_success is None or prediction.confidence < MIN_CONFIDENCE:
            return None
        return prediction.p_success

    own = evidence(first)
    bar = (NO_EVIDENCE if own is None else own) + MARGIN
    scored = [(p, a) for a in dict.fromkeys(answers) if a != first and (p := evidence(a)) is not None]
    best = max(scored, default=None, key=lambda pa: pa[0])
    answer = best[1] if best is not None and best[0] >= bar else first
    return Choice(answer, first, dict(predictions))


class RecallAgent:
    """Asks the model ``samples`` times, then the data API about each distinct answer (within ``filters``:
    e.g. one agent's past trajectories), and answers as ``choose`` decides.

    With ``remember_s`` it keeps each answer's prediction that long, as an agent serving many requests
    would: the same request and answer get the same prediction until the corpus has moved on, and a
    prediction (a query embedding and a search) costs far more than the model's answer here."""

    def __init__(self, api: httpx.AsyncClient, filters: Mapping[str, Any] | None = None, samples: int = SAMPLES,
                 remember_s: float = 0.0):  # fmt: skip
        self.api = api  # base_url: the data API; headers: data_api.api_headers
        self.filters = dict(filters or {})
        self.samples = samples
        self.remember_s = remember_s
        self.asked = 0  # predictions asked of the data API (not remembered ones)
        self._remembered: dict[tuple[str, str], tuple[float, Prediction]] = {}

    async def act(self, ask: Ask, task: str) -> Choice:
        answers = [await ask(task) for _ in range(self.samples)]
        return await self.decide(task, answers)

    async def decide(self, task: str, answers: Sequence[str]) -> Choice:
        predictions = {answer: await self.predict(task, answer) for answer in dict.fromkeys(answers)}
        return choose(answers, predictions)

    async def predict(self, task: str, answer: str) -> Prediction:
        kept = self._remembered.get((task, answer))
        if kept is not None and time.monotonic() - kept[0] < self.remember_s:
            return kept[1]
        prediction = await self._ask(task, answer)
        if self.remember_s > 0:
            self._remembered[task, answer] = (time.monotonic(), prediction)
        return prediction

    async def _ask(self, task: str, answer: str) -> Prediction:
        # The state and action as the Milvus sink wrote them for a one-step trajectory: its task, and the
        # answer in the notation of a reply (consumers.summaries).
        body = {"state": task, "action": reply_action({"text": answer}), "k": NEIGHBOURS, "filters": self.filters}
        response = await self.api.post("/predict", json=body)
        if response.status_code != 200:
            raise RecallAgentError(f"/predict answered {response.status_code}: {response.text[:300]}")
        result = response.json()["result"]
        self.asked += 1
        return Prediction(result["p_success"], float(result["confidence"]), result.get("support", []))
