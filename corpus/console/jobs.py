"""Long reads the data worker runs for the console (an export, a report): one at a time, in a thread of
their own, so the event loop keeps serving while the corpus is read; their state for the page to poll."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def new_job_id() -> str:
    """A UTC time and a random tail: sorts by start, and cannot be guessed from another job's."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


@dataclass
class Job:
    id: str
    what: dict[str, Any]  # what was asked (format or kind, filters), as the answer shows it
    state: str = "running"  # running, done, failed
    read: int = 0
    total: int | None = None
    started_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    finished_at_ms: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.what, "state": self.state,
                "progress": {"read": self.read, "total": self.total}, "started_at_ms": self.started_at_ms,
                "finished_at_ms": self.finished_at_ms, "error": self.error}  # fmt: skip


class BusyError(Exception):
    """Another job is running; the message says which."""


class Jobs:
    """The jobs of one kind of work: at most one running; the others kept to be asked about."""

    def __init__(self, noun: str, keep: int = 50):
        self.noun, self.keep = noun, keep
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)

    def start(self, what: dict[str, Any], work: Callable[[Job], dict[str, Any]], job_id: str | None = None) -> Job:
        """Run ``work(job)`` in a thread (it updates ``job.read``/``total``; what it returns is the result)."""
        with self._lock:
            running = next((j for j in self._jobs.values() if j.state == "running"), None)
            if running is not None:
                raise BusyError(f"{self.noun} {running.id} is still running ({running.read} of "
                                f"{running.total if running.total is not None else '?'} trajectories read): one "
                                f"{self.noun} at a time; wait for it, then start again")  # fmt: skip
            job = Job(job_id or new_job_id(), what)
            self._jobs[job.id] = job
            for old in sorted(self._jobs)[: max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old]
        threading.Thread(target=self._run, args=(job, work), name=f"{self.noun}-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        try:
            result = work(job)
        except Exception as exc:  # the job says why; the worker goes on
            log.error("%s %s failed", self.noun, job.id, exc_info=True)
            job.error, job.state = f"{exc}" if str(exc) else type(exc).__name__, "failed"
        else:
            job.result, job.state = result, "done"
        job.finished_at_ms = int(time.time() * 1000)
