"""Data access for the CLI: through the data API when `trajstream up` runs, else the stores directly.

chDB and milvus-lite take one process per data directory, so while the pipeline runs its data
worker is the only one that opens them; everyone else asks it over HTTP. While it starts (or the
supervisor is about to start it again) a command waits for its API; it opens the stores itself only
when no data worker runs or is expected, and then holds the stores lock so none starts meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

import httpx

from trajstream.console import err
from trajstream.data_api import api_headers, stores_lock_file, try_lock_stores, wait_for_api
from trajstream.errors import TrajstreamError
from trajstream.parts import data_worker_expected
from trajstream.settings import Settings


class DataAccess:
    def __init__(
        self, settings: Settings, progress: Callable[[str], None] = lambda m: err.print(m, style="dim", markup=False)
    ):
        self.settings = settings
        self._lock: IO[bytes] | None = None
        self.url = self._route(progress)
        self._recall: Any = None
        self._clickhouse: Any = None

    def _route(self, progress: Callable[[str], None]) -> str | None:
        """The data API's URL, or None after taking the stores lock (the stores are then ours to open)."""
        s = self.settings
        deadline = time.monotonic() + s.api_wait_s
        told = False
        while True:
            left = max(0.1, deadline - time.monotonic())
            url = wait_for_api(s, lambda: data_worker_expected(s), left, progress)
            if url:
                return url
            self._lock = try_lock_stores(s)
            if self._lock is not None:
                return None
            if time.monotonic() > deadline:
                raise TrajstreamError(f"another process holds the stores lock {stores_lock_file(s)} and no data "
                                      f"API answered within {s.api_wait_s:.0f}s")  # fmt: skip
            if not told:
                progress(f"waiting for the stores: another process holds {stores_lock_file(s)}")
                told = True
            time.sleep(0.3)

    @property
    def via(self) -> str:
        return f"the data API at {self.url}" if self.url else "the stores directly"

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        assert self.url is not None
        try:
            response = httpx.post(self.url + path, json=body, headers=api_headers(self.settings), timeout=60.0)
        except httpx.HTTPError as exc:
            raise TrajstreamError(f"the data API at {self.url} did not answer: {exc}") from exc
        data = response.json()
        if response.status_code != 200:
            raise TrajstreamError(data.get("error", response.text))
        return data["result"]

    def _stores(self) -> Any:
        if self._recall is None:
            from trajstream.consumers.clickhouse_store import connect, migrate
            from trajstream.consumers.embedding import Embedder
            from trajstream.consumers.milvus_store import connect as connect_milvus
            from trajstream.consumers.milvus_store import ensure_collections
            from trajstream.consumers.recall import Recall

            self._clickhouse = connect(self.settings)
            migrate(self._clickhouse, self.settings)
            milvus = connect_milvus(self.settings)
            ensure_collections(milvus, self.settings)
            self._recall = Recall(self.settings, milvus, self._clickhouse, Embedder.for_settings(self.settings))
        return self._recall

    def sql(self, query: str) -> dict[str, Any]:
        if self.url:
            result: dict[str, Any] = self._post("/sql", {"query": query})
            return result
        from trajstream.consumers.clickhouse_store import connect, migrate, read_only_query, sql_limits

        client = connect(self.settings)
        migrate(client, self.settings)
        return read_only_query(client, query, self.settings.clickhouse_database, **sql_limits(self.settings))

    def recall(self, query: str, k: int, filters: dict[str, Any]) -> dict[str, Any]:
        if self.url:
            result: dict[str, Any] = self._post("/recall", {"query": query, "k": k, "filters": filters})
            return result
        out: dict[str, Any] = self._stores().recall(query, k, filters)
        return out

    def predict(self, state: str, action: str, k: int) -> dict[str, Any]:
        if self.url:
            result: dict[str, Any] = self._post("/predict", {"state": state, "action": action, "k": k})
            return result
        return asdict(self._stores().predict_outcome(state, action, k))

    def counterfactual(self, trajectory_id: str, step: int, alternative: str) -> dict[str, Any]:
        body = {"trajectory_id": trajectory_id, "step": step, "alternative_action": alternative}
        if self.url:
            result: dict[str, Any] = self._post("/counterfactual", body)
            return result
        out: dict[str, Any] = self._stores().counterfactual(trajectory_id, step, alternative)
        return out

    def recommend(self, context: str, k: int) -> list[dict[str, Any]]:
        if self.url:
            result: list[dict[str, Any]] = self._post("/recommend", {"context": context, "k": k})
            return result
        out: list[dict[str, Any]] = self._stores().recommend_tools(context, k)
        return out
