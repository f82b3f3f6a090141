"""The streams stages run in-process (no Kafka): events in, scored trajectory records out."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from streams.assembly import Assembler, Input, Output
from streams.enrichment_worker import EnrichmentWorker
from streams.scoring import Scorer
from trajstream.codec import EventCodec
from trajstream.events import (
    Message,
    ToolCall,
    ToolResponse,
    end_record,
    feedback_record,
    start_record,
    turn_record,
)
from trajstream.settings import Settings
from trajstream.topics import ASSEMBLED, ENRICHMENT_REQUESTS, ENRICHMENT_RESULTS, EVENTS, FEEDBACK, SCORED


def tool_trajectory(codec: EventCodec, task: str, tool: str, status: str, outcome: str, agent: str = "agent-a",
                    turns: int = 2) -> tuple[str, list[tuple[str, bytes]]]:  # fmt: skip
    """A trajectory that calls ``tool`` once per turn with the given result status: (topic, value) events."""
    tid = str(uuid.uuid4())
    events = [(EVENTS, codec.encode("trajectory_start", start_record(tid, task, agent_id=agent, domain="support")))]
    for i in range(turns):
        messages = [Message.text("user", f"{task} (step {i})"), Message("assistant", ToolCall(tool, f"c{i}", {"n": i}))]
        if i:
            messages.insert(0, Message("tool", ToolResponse(tool, f"c{i - 1}", {"ok": status == "success"}, status)))
        events.append((EVENTS, codec.encode("turn", turn_record(tid, i, messages, duration_ms=100))))
    events.append((EVENTS, codec.encode("trajectory_end", end_record(tid, outcome, turn_count=turns))))
    return tid, events


def feedback(codec: EventCodec, tid: str, reward: float) -> tuple[str, bytes]:
    return FEEDBACK, codec.encode("feedback", feedback_record(tid, reward=reward, human_reviewed=True))


class Pipeline:
    """Assembly, heuristic enrichment and scoring, each with its state in a dict."""

    def __init__(self, settings: Settings, codec: EventCodec):
        self.settings = settings
        self.assembler = Assembler(settings, codec)
        self.enricher = EnrichmentWorker(settings, codec)
        self.scorer = Scorer(settings, codec)
        self.assembly: dict[bytes, Any] = {}
        self.scoring: dict[bytes, Any] = {}
        self.offset = 0

    def run(self, events: list[tuple[str, bytes]]) -> list[bytes]:
        """The scored trajectory records these events lead to, in order."""
        return asyncio.run(self._run(events))

    async def _run(self, events: list[tuple[str, bytes]]) -> list[bytes]:
        scored: list[bytes] = []
        pending: list[Output] = []
        for topic, value in events:
            tid = self.assembler.codec.decode(value).record["trajectory_id"].encode()
            pending += self._assemble(Input(self.settings.topic(topic), 0, self._next(), tid, value, 0))
        while pending:
            o = pending.pop(0)
            if o.topic == self.settings.topic(ENRICHMENT_REQUESTS):
                pending += await self.enricher.handle(o.topic, 0, self._next(), o.key, o.value)
            elif o.topic in (self.settings.topic(ASSEMBLED), self.settings.topic(ENRICHMENT_RESULTS)):
                result = await self.scorer.handle(Input(o.topic, 0, self._next(), o.key, o.value, 0),
                                                  self.scoring.get(o.key))  # fmt: skip
                if result.state is not None:
                    self.scoring[o.key] = result.state
                pending += result.outputs
            elif o.topic == self.settings.topic(SCORED):
                scored.append(o.value)
        return scored

    def _assemble(self, record: Input) -> list[Output]:
        result = self.assembler.handle(record, self.assembly.get(record.key or b""))
        if result.state is not None:
            self.assembly[record.key or b""] = result.state
        return result.outputs

    def _next(self) -> int:
        self.offset += 1
        return self.offset
