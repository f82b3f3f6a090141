"""The chaos suite's load: trajectories at a steady rate, with feedback, late turns, sub-agents, a share
through the gateway, and bad input, each recorded in a ledger once the broker (or the gateway) acknowledged it.

Kafka sends are retried until acknowledged (the broker may be the thing that was killed): a retry sends
the same bytes, whose event ids the assembler has seen, so it cannot make a second trajectory. The
gateway's trajectories carry an ``id``, so a retried request after a killed gateway is the same events.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from trajstream.settings import Settings
from trajstream.synthetic import feedback, tool_trajectory
from trajstream.topics import EVENTS_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import Message, end_record, start_record, turn_record

VOCABULARY = "look up the order refund the damaged order reset the password call lookup result success error"
TASKS = ("refund the damaged order", "reset the password", "look up the order")
BAD_EVERY = 250  # one undecodable event and one refused gateway trajectory per this many trajectories


@dataclass
class Ledger:
    """What was acknowledged: each trajectory's turns, and the bad inputs by where they went in."""

    turns: dict[str, int] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # sub-agent -> parent
    late: set[str] = field(default_factory=set)
    feedback: set[str] = field(default_factory=set)
    via_gateway: set[str] = field(default_factory=set)
    bad_events: list[bytes] = field(default_factory=list)  # undecodable values on the events topic
    bad_gateway: list[str] = field(default_factory=list)  # markers of refused gateway trajectories
    agents: set[str] = field(default_factory=set)
    send_retries: int = 0
    gateway_retries: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def trajectories(self) -> int:
        return len(self.turns)


class Load:
    """Emits ``rate`` trajectories a second for ``seconds`` on a thread of its own (``start``, ``join``)."""

    def __init__(self, settings: Settings, codec: EventCodec, gateway_url: str, agent: str,
                 rate: float = 50.0, seconds: float = 60.0):  # fmt: skip
        self.settings, self.codec, self.gateway_url, self.agent = settings, codec, gateway_url, agent
        self.rate, self.seconds = rate, seconds
        self.ledger = Ledger(agents={agent})
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"load-{agent}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> Ledger:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the load did not finish its sends in {timeout_s:.0f} s")
        if self.error is not None:
            raise self.error
        return self.ledger

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(**self.settings.durable_producer_options())
        await _until_started(producer)
        pending: set[asyncio.Task[None]] = set()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                self.ledger.started_at = time.monotonic()
                total = int(self.rate * self.seconds)
                for i in range(total):
                    # Paced by the clock, not by the sends: a stalled broker delays acks, not the schedule.
                    await asyncio.sleep(max(0.0, self.ledger.started_at + i / self.rate - time.monotonic()))
                    task = asyncio.create_task(self._one(producer, http, i))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                while pending:
                    await asyncio.gather(*pending)
                self.ledger.finished_at = time.monotonic()
        finally:
            await producer.stop()

    async def _one(self, producer: AIOKafkaProducer, http: httpx.AsyncClient, i: int) -> None:
        task = TASKS[i % len(TASKS)]
        ok = i % 3 != 0
        turns = 2 + i % 3
        tid = str(uuid.uuid4())
        kind = i % 20
        if i % BAD_EVERY == 7:
            await self._bad(producer, http, i)
        if kind == 0:
            await self._via_gateway(http, tid, task, ok, turns)
            return
        _, events = tool_trajectory(self.codec, task, "lookup", "success" if ok else "error",
                                    "success" if ok else "failure", agent=self.agent, turns=turns,
                                    trajectory_id=tid)  # fmt: skip
        await self._send(producer, tid, events)
        self.ledger.turns[tid] = turns
        if kind == 1:  # feedback a moment after the end
            await asyncio.sleep(2.0)
            await self._send(producer, tid, [feedback(self.codec, tid, 0.5 if ok else -0.5)])
            self.ledger.feedback.add(tid)
        elif kind == 2:  # a turn after the end: a new version
            await asyncio.sleep(2.0)
            late = turn_record(tid, turns, [Message.text("user", f"{task} (late)"), Message.text("assistant", "ok")])
            await self._send(producer, tid, [(EVENTS_TOPIC, self.codec.encode("turn", late))])
            self.ledger.turns[tid] = turns + 1
            self.ledger.late.add(tid)
        elif kind == 3:  # a sub-agent after the parent's end: a child of its own, a new version of the parent
            await asyncio.sleep(1.0)
            child = str(uuid.uuid4())
            await self._send(producer, child, self._child(child, tid, task))
            self.ledger.turns[child] = 1
            self.ledger.parents[child] = tid

    def _child(self, child: str, parent: str, task: str) -> list[tuple[str, bytes]]:
        start = start_record(child, f"sub-task of {task}", agent_id=self.agent, domain="support",
                             parent_trajectory_id=parent)  # fmt: skip
        turn = turn_record(child, 0, [Message.text("user", "look it up"), Message.text("assistant", "found it")])
        end = end_record(child, "success", turn_count=1)
        return [(EVENTS_TOPIC, self.codec.encode("trajectory_start", start)),
                (EVENTS_TOPIC, self.codec.encode("turn", turn)),
                (EVENTS_TOPIC, self.codec.encode("trajectory_end", end))]  # fmt: skip

    async def _send(self, producer: AIOKafkaProducer, key: str, events: list[tuple[str, bytes]]) -> None:
        """Every event of ``events`` acknowledged (acks=all), in order, retrying what failed."""
        for topic, value in events:
            while True:
                try:
                    await (await producer.send(self.settings.topic(topic), value, key=key.encode()))
                    break
                except Exception:  # a broker away: try the same bytes again
                    self.ledger.send_retries += 1
                    await asyncio.sleep(0.5)

    async def _post(self, http: httpx.AsyncClient, doc: dict[str, Any]) -> httpx.Response:
        while True:
            try:
                answer = await http.post(f"{self.gateway_url}/v1/trajectories", json={"trajectories": [doc]})
                if answer.status_code < 500:
                    return answer
            except httpx.HTTPError:
                pass  # the gateway away: the same request again
            self.ledger.gateway_retries += 1
            await asyncio.sleep(0.5)

    async def _via_gateway(self, http: httpx.AsyncClient, tid: str, task: str, ok: bool, turns: int) -> None:
        messages: list[dict[str, Any]] = []
        for n in range(turns):
            messages += [{"role": "user", "content": f"{task} (step {n})"}, {"role": "assistant", "content": "done"}]
        doc = {"id": tid, "task": task, "agent_id": self.agent, "messages": messages,
               "outcome": "success" if ok else "failure"}  # fmt: skip
        answer = await self._post(http, doc)
        if answer.status_code != 200:
            raise AssertionError(f"the gateway refused a good trajectory: {answer.status_code} {answer.text}")
        self.ledger.turns[tid] = turns
        self.ledger.via_gateway.add(tid)

    async def _bad(self, producer: AIOKafkaProducer, http: httpx.AsyncClient, i: int) -> None:
        marker = f"chaos-bad-{self.agent}-{i}"
        value = marker.encode()  # no codec header: undecodable
        await self._send(producer, marker, [(EVENTS_TOPIC, value)])
        self.ledger.bad_events.append(value)
        answer = await self._post(http, {"id": marker, "task": marker, "agent_id": self.agent, "messages": "none"})
        if answer.status_code != 207 or answer.json().get("refused") != 1:
            raise AssertionError(f"the gateway took a bad trajectory: {answer.status_code} {answer.text}")
        self.ledger.bad_gateway.append(marker)


async def _until_started(producer: AIOKafkaProducer, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await producer.start()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def ledger_summary(ledger: Ledger) -> dict[str, Any]:
    return {
        "trajectories": ledger.trajectories, "late": len(ledger.late), "feedback": len(ledger.feedback),
        "sub_agents": len(ledger.parents), "via_gateway": len(ledger.via_gateway),
        "bad_events": len(ledger.bad_events), "bad_gateway": len(ledger.bad_gateway),
        "send_retries": ledger.send_retries, "gateway_retries": ledger.gateway_retries,
        "seconds": round(ledger.finished_at - ledger.started_at, 1),
    }  # fmt: skip
