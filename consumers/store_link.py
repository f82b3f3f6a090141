"""A store the data worker opens, and opens again, in the background: while it is away, what needs it
gets a clear error and everything else goes on.

The data worker holds one link per store (ClickHouse, Milvus). A sink runs on the client its link
opened; the data API asks the link for the client on each request, so a store that is away fails
only the requests that need it (HTTP 503), never the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from trajstream.errors import TrajstreamError

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreUnavailableError(TrajstreamError):
    """A store the request needs is not open now (starting, or away)."""


class StoreLink(Generic[T]):
    """``opener`` makes a ready client (connect, migrate, collections); ``open()`` calls it until it works."""

    def __init__(self, name: str, opener: Callable[[], T]):
        self.name = name
        self._opener = opener
        self._client: T | None = None
        self.error = ""  # why the last open failed
        self.opened_at: float | None = None

    @property
    def client(self) -> T:
        if self._client is None:
            why = f": {self.error}" if self.error else " yet"
            raise StoreUnavailableError(f"{self.name} is not open{why}")
        return self._client

    @property
    def is_open(self) -> bool:
        return self._client is not None

    async def open(self) -> T:
        """The client, opened now if it is not (the opener runs in a thread: stores block)."""
        if self._client is None:
            try:
                self._client = await asyncio.to_thread(self._opener)
            except Exception as exc:  # each store raises its own types
                self.error = f"{type(exc).__name__}: {exc}"[:2000]
                raise
            self.error = ""
            self.opened_at = time.time()
            log.warning("%s open", self.name)
        return self._client

    def state(self) -> dict[str, Any]:
        return {"open": self.is_open, "error": self.error}
