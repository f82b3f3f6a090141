"""A ClickHouse client shared by threads: chDB's embedded engine is one per process, so calls take turns."""

from __future__ import annotations

import threading
from typing import Any


class LockedClient:
    """Wraps a clickhouse-connect client; ``query``, ``insert`` and ``command`` run one at a time."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()

    def query(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.query(*args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.insert(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.command(*args, **kwargs)

    @property
    def database(self) -> str | None:
        return getattr(self._client, "database", None)

    @database.setter
    def database(self, name: str) -> None:
        with self._lock:
            self._client.database = name
