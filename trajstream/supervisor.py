"""The supervisor of `trajstream up`: starts each part, starts again a part that died, stops them all.

It runs detached (`trajstream supervise`, started by `up`; its log is logs/supervisor.log). A part that
exits while the pipeline is up is started again after a back-off that doubles from
TRAJSTREAM_RESTART_BACKOFF_S up to TRAJSTREAM_RESTART_MAX_BACKOFF_S, and starts over once a run lasted
a minute; its restarts and last exit are in run/supervisor.json for `trajstream status`. On SIGTERM it
stops the parts in reverse order (SIGTERM to each part's process group, SIGKILL after the timeout `down`
asked for) and exits only once no process of any part's group is left, so their stores are released.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType

from trajstream.local_process import log_tail
from trajstream.oom_kills import oom_kills
from trajstream.parts import (
    PARTS,
    SUPERVISOR,
    Part,
    PartState,
    SupervisorState,
    group_alive,
    log_file,
    pid_file,
    ready_file,
    run_dir,
    stop_group,
    trajstream_binary,
    write_atomically,
)
from trajstream.settings import Settings

log = logging.getLogger("trajstream.supervisor")

STEADY_S = 60.0  # a part that ran this long before it died is started again after the shortest back-off


def stop_request_file(settings: Settings) -> Path:
    """Written by `down` before it signals: how long the parts get before SIGKILL."""
    return run_dir(settings) / "stop.json"


def _describe_exit(code: int, output: str = "", oom_killed: bool = False) -> str:
    """How a part ended, with the why its own last output gives: a MemoryError says it reached its memory limit;
    a SIGKILL while its cgroup counted an OOM kill, that the kernel ended it at its cgroup's memory limit."""
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    if code == -signal.SIGKILL and oom_killed:
        return f"{how} (SIGKILL): out of memory (the kernel's OOM killer, at its cgroup's memory limit)"
    if "MemoryError" in output or "Cannot allocate memory" in output:
        return f"{how}: out of memory (reached its memory limit)"
    if code == -signal.SIGKILL:
        return f"{how} (SIGKILL: a person, or the kernel's OOM killer at a memory limit)"
    errors = [line.strip() for line in output.splitlines() if _ERROR_LINE.match(line.strip())]
    return f"{how}: {errors[-1][:200]}" if errors else how


_RUN_MARK = "--- started "  # the line each start writes into a part's log: what came before is an earlier run

# The last line of a Python traceback: "SomeError: what".
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)(: |$)")


class Supervisor:
    def __init__(self, settings: Settings, parts: tuple[Part, ...] = PARTS):
        self.settings = settings
        self.parts = parts
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.oom_kills: dict[str, int | None] = {}  # the cgroup's OOM-kill count when each part's run began
        self.state = SupervisorState(os.getpid(), parts={p.name: PartState() for p in parts})
        self._stopping = False

    def _start(self, part: Part) -> None:
        path = log_file(self.settings, part.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        ready_file(self.settings, part.name).unlink(missing_ok=True)
        with open(path, "ab") as handle:
            handle.write(f"\n{_RUN_MARK}{time.strftime('%Y-%m-%d %H:%M:%S')} by the supervisor ---\n".encode())
            handle.flush()
            # Its own session: a stop reaches the part's children too (and only them).
            proc = subprocess.Popen([trajstream_binary(), *part.args], stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=os.environ.copy())  # fmt: skip
        self.procs[part.name] = proc
        self.oom_kills[part.name] = oom_kills()
        pid_file(self.settings, part.name).write_text(str(proc.pid))
        state = self.state.parts[part.name]
        state.pid, state.started_at, state.next_start_at = proc.pid, time.time(), None
        log.warning("%s: started (pid %d)", part.name, proc.pid)

    def _backoff(self, state: PartState, ran_s: float) -> float:
        if ran_s >= STEADY_S:
            state.failures_in_a_row = 0
        delay = self.settings.restart_backoff_s * 2**state.failures_in_a_row
        state.failures_in_a_row += 1
        return float(min(delay, self.settings.restart_max_backoff_s))

    def _check(self) -> bool:
        """Reap parts that exited, start those whose back-off is over; True when something changed."""
        changed = False
        now = time.time()
        for part in self.parts:
            state = self.state.parts[part.name]
            proc = self.procs.get(part.name)
            if proc is not None and (code := proc.poll()) is not None:
                del self.procs[part.name]
                self._wait_group(proc.pid, 5.0)  # its children go with it before a new one opens the stores
                ran = now - (state.started_at or now)
                delay = self._backoff(state, ran)
                state.pid, state.restarts = None, state.restarts + 1
                state.last_exit = _describe_exit(code, self._output(part.name), self._oom_killed(part.name))
                state.last_exit_at = now
                state.next_start_at = now + delay
                pid_file(self.settings, part.name).unlink(missing_ok=True)
                log.error("%s: %s after %.0fs; starting it again in %.0fs (see %s)", part.name, state.last_exit,
                          ran, delay, log_file(self.settings, part.name))  # fmt: skip
                changed = True
            if part.name not in self.procs and (state.next_start_at or 0) <= now:
                self._start(part)
                changed = True
        return changed

    def _oom_killed(self, name: str) -> bool:
        """Whether the part's cgroup (this supervisor's, which it inherited) counted an OOM kill during its run.
        Another process of the cgroup killed at the same time would count too: the part's own SIGKILL is what
        the caller checks it against."""
        before, now = self.oom_kills.get(name), oom_kills()
        return before is not None and now is not None and now > before

    def _output(self, name: str) -> str:
        """What the part's last run wrote: its log after the line this supervisor wrote when it started it (as
        the broker reads its own last run)."""
        return log_tail(log_file(self.settings, name), 2000).rpartition(_RUN_MARK)[2]

    def _wait_group(self, pgid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while group_alive(pgid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _stop_all(self) -> None:
        try:
            timeout = float(json.loads(stop_request_file(self.settings).read_text())["timeout_s"])
        except (OSError, ValueError, KeyError, TypeError):
            timeout = 20.0
        # All at once: each stage commits only what it wrote, so no order is needed, and each part's
        # shutdown (consumers leaving their groups) takes seconds.
        for running in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.pid, signal.SIGTERM)
        for part in self.parts:
            proc = self.procs.pop(part.name, None)
            if proc is None:
                continue
            if stop_group(proc.pid, timeout):
                log.error("%s: no exit %.0fs after SIGTERM; killed", part.name, timeout)
            proc.wait()  # reap it
            pid_file(self.settings, part.name).unlink(missing_ok=True)
            ready_file(self.settings, part.name).unlink(missing_ok=True)
            self.state.parts[part.name].pid = None
            log.warning("%s: stopped", part.name)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> None:
        run_dir(self.settings).mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        pid_file(self.settings, SUPERVISOR).write_text(str(os.getpid()))
        stop_request_file(self.settings).unlink(missing_ok=True)
        try:
            self.state.save(self.settings)
            while not self._stopping:
                if self._check():
                    self.state.save(self.settings)
                time.sleep(0.2)
            self.state.stopping = True
            self.state.save(self.settings)
            self._stop_all()
            self.state.save(self.settings)
        finally:
            for proc in self.procs.values():  # an error in the loop: leave nothing behind
                stop_group(proc.pid, 0)
            pid_file(self.settings, SUPERVISOR).unlink(missing_ok=True)
            log.warning("supervisor: stopped")


def request_stop(settings: Settings, timeout_s: float) -> None:
    write_atomically(stop_request_file(settings), json.dumps({"timeout_s": timeout_s}))
