"""A synchronous facade for agents that are not async: the async emitter runs on its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from trajstream_sdk.emitter import AsyncEmitter, EmitterStats
from trajstream_sdk.events import Message, ModelInfo, Outcome
from trajstream_sdk.trajectory import Trajectory

T = TypeVar("T")


class SyncEmitter:
    """``with SyncEmitter(settings) as emitter: with emitter.trajectory(...) as t: t.turn(...)``."""

    def __init__(self, settings: Any = None, **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="trajstream-emitter", daemon=True)
        self._thread.start()
        self._async = self._call(self._make(settings, kwargs))
        self._call(self._async.start())

    async def _make(self, settings: Any, kwargs: dict[str, Any]) -> AsyncEmitter:
        # Built on the loop's thread: asyncio primitives bind to the running loop.
        return AsyncEmitter(settings, **kwargs)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def stats(self) -> EmitterStats:
        return self._async.stats

    def emit(self, name: str, record: Mapping[str, Any], *, key: str, topic: str | None = None) -> None:
        self._call(self._async.emit(name, record, key=key, topic=topic))

    def feedback(self, trajectory_id: str, **kwargs: Any) -> None:
        self._call(self._async.feedback(trajectory_id, **kwargs))

    def flush(self) -> None:
        self._call(self._async.flush())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._async.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def trajectory(self, task_description: str, *, agent_id: str, **kwargs: Any) -> SyncTrajectory:
        return SyncTrajectory(self, self._async.trajectory(task_description, agent_id=agent_id, **kwargs))

    def __enter__(self) -> SyncEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncTrajectory:
    def __init__(self, emitter: SyncEmitter, inner: Trajectory):
        self._emitter = emitter
        self._inner = inner

    @property
    def trajectory_id(self) -> str:
        return self._inner.trajectory_id

    @property
    def turn_count(self) -> int:
        return self._inner.turn_count

    def start(self) -> None:
        self._emitter._call(self._inner.start())

    def turn(self, messages: Iterable[Message], *, model: ModelInfo | None = None, **kwargs: Any) -> int:
        return self._emitter._call(self._inner.turn(list(messages), model=model, **kwargs))

    def record_chat_completion(self, request_messages: Sequence[Any], completion: Any, **kwargs: Any) -> int:
        return self._emitter._call(self._inner.record_chat_completion(request_messages, completion, **kwargs))

    def end(self, outcome: Outcome, **kwargs: Any) -> None:
        self._emitter._call(self._inner.end(outcome, **kwargs))

    def __enter__(self) -> SyncTrajectory:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._emitter._call(self._inner.__aexit__(exc_type, exc, tb))
