"""A trajectory handle: start, turns, end, with an exception inside ending it with outcome error."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from trajstream_sdk.events import Message, ModelInfo, Outcome, end_record, start_record, turn_record
from trajstream_sdk.openai_chat import ChatRecorder
from trajstream_sdk.schemas import TRAJECTORY_END, TRAJECTORY_START, TURN

if TYPE_CHECKING:
    from trajstream_sdk.emitter import AsyncEmitter


class Trajectory:
    """One attempt at one task. Sends its start on entry and its end on exit.

    Leaving the block normally without calling ``end`` ends it with ``default_outcome``;
    an exception ends it with outcome ``error`` and is re-raised.
    """

    def __init__(
        self,
        emitter: AsyncEmitter,
        task_description: str,
        *,
        agent_id: str,
        trajectory_id: str | None = None,
        default_outcome: Outcome = "success",
        **start_fields: Any,
    ):
        self.emitter = emitter
        self.trajectory_id = trajectory_id or str(uuid.uuid4())
        self.task_description = task_description
        self.agent_id = agent_id
        self.default_outcome: Outcome = default_outcome
        self._start_fields = start_fields
        self.turn_count = 0
        self.started = False
        self.ended = False
        self._chat = ChatRecorder()

    async def start(self) -> None:
        if self.started:
            return
        record = start_record(
            self.trajectory_id,
            self.task_description,
            agent_id=self.agent_id,
            scrub=self.emitter.redactor,
            **self._start_fields,
        )
        await self.emitter.emit(TRAJECTORY_START, record, key=self.trajectory_id)
        self.started = True

    async def turn(
        self,
        messages: Iterable[Message],
        *,
        model: ModelInfo | None = None,
        duration_ms: int = 0,
        error: bool = False,
        error_type: str | None = None,
        turn_reward: float | None = None,
        span_id: str | None = None,
        parent_span_id: str | None = None,
    ) -> int:
        """Publish one turn; returns its index."""
        self._check_open()
        index = self.turn_count
        record = turn_record(
            self.trajectory_id,
            index,
            messages,
            span_id=span_id,
            parent_span_id=parent_span_id,
            duration_ms=duration_ms,
            error=error,
            error_type=error_type,
            turn_reward=turn_reward,
            model=model,
            scrub=self.emitter.redactor,
        )
        await self.emitter.emit(TURN, record, key=self.trajectory_id)
        self.turn_count += 1
        return index

    async def record_chat_completion(
        self,
        request_messages: Sequence[Mapping[str, Any] | Any],
        completion: Any,
        *,
        request_model: str | None = None,
        provider: str | None = "openai",
        model_version: str | None = None,
        duration_ms: int | None = None,
        tool_statuses: Mapping[str, str] | None = None,
        available_tools: Sequence[str] = (),
        active_entities: Sequence[str] = (),
        private: bool = False,
    ) -> int:
        """Record an ``openai`` chat completion as a turn: the request messages not yet recorded
        (user input, tool results) followed by the response (text, reasoning and tool calls).

        ``tool_statuses`` maps a tool call id to success, error or timeout; ``private=True``
        marks the new messages persist=false, so only placeholders leave the process.
        """
        messages, model = self._chat.convert(
            request_messages,
            completion,
            request_model=request_model,
            provider=provider,
            model_version=model_version,
            tool_statuses=tool_statuses or {},
            available_tools=available_tools,
            active_entities=active_entities,
            persist=not private,
        )
        return await self.turn(messages, model=model, duration_ms=duration_ms or 0)

    async def end(
        self,
        outcome: Outcome,
        *,
        final_reward: float | None = None,
        feedback_score: float | None = None,
        human_reviewed: bool = False,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self._check_open()
        record = end_record(
            self.trajectory_id,
            outcome,
            final_reward=final_reward,
            feedback_score=feedback_score,
            human_reviewed=human_reviewed,
            turn_count=self.turn_count,
            error_type=error_type,
            error_message=error_message,
            scrub=self.emitter.redactor,
        )
        await self.emitter.emit(TRAJECTORY_END, record, key=self.trajectory_id)
        self.ended = True

    def _check_open(self) -> None:
        if not self.started:
            raise RuntimeError(f"trajectory {self.trajectory_id} has not started: use `async with` or start()")
        if self.ended:
            raise RuntimeError(f"trajectory {self.trajectory_id} has already ended")

    async def __aenter__(self) -> Trajectory:
        self._t0 = time.monotonic()
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ended:
            return
        if exc is not None:
            await self.end("error", error_type=type(exc).__name__, error_message=str(exc)[:2000])
        else:
            await self.end(self.default_outcome)
