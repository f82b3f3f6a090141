"""The pipeline's parts and what says how each is doing: pid files, ready marks, the supervisor's state.

Files under TRAJSTREAM_HOME:
- ``run/NAME.pid``: the part's current process (written by the supervisor);
- ``run/NAME.ready``: written by the part's own process once it is ready, with its pid, so a mark
  left by an earlier process never counts;
- ``run/supervisor.pid`` and ``run/supervisor.json``: the supervisor, and each part's restarts;
- ``logs/NAME.log``: the part's output, appended across runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trajstream.settings import Settings
from trajstream.topics import (
    ASSEMBLED,
    ASSEMBLY_CONTROL_TOPIC,
    CLICKHOUSE_SINK_GROUP,
    DEAD_LETTER_TOPIC,
    ENRICHMENT_GROUP,
    ENRICHMENT_REQUESTS,
    ENRICHMENT_RESULTS,
    EVENTS_TOPIC,
    FEEDBACK_TOPIC,
    MODEL_VERSIONS,
    OTLP_SPANS_TOPIC,
    SCORED,
    SCORING_CONTROL_TOPIC,
    faust_app_id,
)

SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class Part:
    name: str
    args: tuple[str, ...]  # the `trajstream` command that runs it
    group: Callable[[Settings], str]  # its consumer group, for the lag
    topics: tuple[str, ...]


PARTS = (
    Part("streams", ("worker", "streams", "--loglevel", "info"), faust_app_id,
         (EVENTS_TOPIC, FEEDBACK_TOPIC, ASSEMBLY_CONTROL_TOPIC, ASSEMBLED, ENRICHMENT_RESULTS, SCORING_CONTROL_TOPIC,
          OTLP_SPANS_TOPIC)),
    Part("enrich", ("worker", "enrich"), lambda s: s.consumer_group(ENRICHMENT_GROUP), (ENRICHMENT_REQUESTS,)),
    Part("data", ("worker", "data"), lambda s: s.consumer_group(CLICKHOUSE_SINK_GROUP),
         (SCORED, DEAD_LETTER_TOPIC, MODEL_VERSIONS)),
    Part("gateway", ("gateway",), lambda s: "", ()),  # reads no topic: no lag
)  # fmt: skip


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def ready_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.ready"


def log_file(settings: Settings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def state_file(settings: Settings) -> Path:
    return run_dir(settings) / "supervisor.json"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def group_alive(pgid: int) -> bool:
    """Some process of group ``pgid`` is alive (a part's own children count: milvus-lite, tokenizers)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except OSError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def stop_group(pgid: int, timeout_s: float) -> bool:
    """SIGTERM process group ``pgid``, SIGKILL it after ``timeout_s``; return once none of it is left.
    True if it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not group_alive(pgid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    while group_alive(pgid):
        time.sleep(0.1)
    return True


def recorded_pid(settings: Settings, name: str) -> int | None:
    """The pid in the part's pid file, alive or not."""
    try:
        return int(pid_file(settings, name).read_text())
    except (OSError, ValueError):
        return None


def running_pid(settings: Settings, name: str) -> int | None:
    pid = recorded_pid(settings, name)
    return pid if pid is not None and alive(pid) else None


def trajstream_binary() -> str:
    """The `trajstream` console script beside this interpreter: what runs the parts."""
    return str(Path(sys.executable).parent / "trajstream")


def supervisor_pid(settings: Settings) -> int | None:
    return running_pid(settings, SUPERVISOR)


def mark_ready(settings: Settings, name: str) -> None:
    """Called by a part's own process once it is ready."""
    path = ready_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({"pid": os.getpid(), "at": time.time()}))


def ready_pid(settings: Settings, name: str) -> int | None:
    """The pid in the part's ready mark, if that process is alive."""
    try:
        pid = int(json.loads(ready_file(settings, name).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if alive(pid) else None


def data_worker_expected(settings: Settings) -> bool:
    """A data worker runs, or the supervisor will start one: the CLI waits for its API."""
    return supervisor_pid(settings) is not None or running_pid(settings, "data") is not None


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass
class PartState:
    """What the supervisor knows of one part."""

    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    failures_in_a_row: int = 0  # exits since it last ran a minute: what the back-off doubles on
    last_exit: str = ""  # "exit code 1", "signal 9"
    last_exit_at: float | None = None
    next_start_at: float | None = None  # set while it waits to be started again


@dataclass
class SupervisorState:
    pid: int
    stopping: bool = False
    parts: dict[str, PartState] = field(default_factory=dict)

    def save(self, settings: Settings) -> None:
        write_atomically(state_file(settings), json.dumps(asdict(self)))

    @classmethod
    def load(cls, settings: Settings) -> SupervisorState | None:
        try:
            data: dict[str, Any] = json.loads(state_file(settings).read_text())
            return cls(int(data["pid"]), bool(data.get("stopping")),
                       {n: PartState(**p) for n, p in data["parts"].items()})  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            return None
