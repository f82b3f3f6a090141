"""Who owns the stores, and how everyone else reaches them.

chDB and milvus-lite take one process per data directory. The data worker holds the stores lock
(TRAJSTREAM_HOME/run/stores.lock) for its whole life and writes TRAJSTREAM_HOME/api.json once its API
listens; the CLI and `trajstream status` ask that API, and open the stores themselves (taking the lock)
only when no data worker runs or is expected.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from trajstream.errors import TrajstreamError
from trajstream.settings import Settings


def api_file(settings: Settings) -> Path:
    """Where the running data worker says how to reach it."""
    return settings.home / "api.json"


def _api_info(settings: Settings) -> tuple[str, int] | None:
    try:
        info = json.loads(api_file(settings).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(info["url"]), pid


def api_url(settings: Settings) -> str | None:
    """The data API of a running data worker whose process is alive, or None (it may not answer yet)."""
    info = _api_info(settings)
    return info[0] if info else None


def answering_api(settings: Settings, pid: int | None = None) -> str | None:
    """The data API's URL if it answers now, as the process that wrote api.json (and as ``pid`` if given)."""
    info = _api_info(settings)
    if info is None or (pid is not None and info[1] != pid):
        return None
    try:
        health = httpx.get(f"{info[0]}/health", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    return info[0] if isinstance(health, dict) and health.get("pid") == info[1] else None


def stores_lock_file(settings: Settings) -> Path:
    return settings.home / "run" / "stores.lock"


def try_lock_stores(settings: Settings) -> IO[bytes] | None:
    """The stores lock if it is free (keep the handle open to hold it), else None. Released at exit."""
    path = stores_lock_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 (held open for the life of the process: that is the lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def wait_for_api(settings: Settings, expected: Callable[[], bool], timeout_s: float,
                 progress: Callable[[str], None]) -> str | None:  # fmt: skip
    """The answering data API; while ``expected()`` says a data worker is coming, wait for it (up to
    ``timeout_s``). None when none answers and none is expected."""
    deadline = time.monotonic() + timeout_s
    told = False
    while True:
        url = answering_api(settings)
        if url:
            return url
        if not expected():
            return None
        if time.monotonic() > deadline:
            raise TrajstreamError(
                f"the data worker did not answer within {timeout_s:.0f}s (TRAJSTREAM_API_WAIT_S); see "
                f"{settings.home / 'logs' / 'data.log'} and `trajstream status`"
            )
        if not told:
            progress("waiting for the data worker's API (the pipeline is starting)")
            told = True
        time.sleep(0.3)


def api_headers(settings: Settings) -> dict[str, str]:
    """What the CLI presents to the data API: the operator token if it has one, else the read token, and
    the header the API asks of every POST (see consumers/api_access.py)."""
    token = settings.api_operator_token or settings.api_read_token
    auth = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    return {"X-Trajstream-Console": "1", **auth}
