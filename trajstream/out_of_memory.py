"""A worker that ran out of memory exits, rather than going on half alive.

At its memory limit (RLIMIT_AS, a container's) allocations fail with MemoryError wherever they happen, and
aiokafka catches those in its connection and fetch tasks, logs them and tries again: the worker keeps its
process but takes nothing, for ever (seen in tests/chaos/test_exhaustion.py: thousands of logged
MemoryErrors, no exit). Any MemoryError that reaches the log ends the process instead, with a line that
says so, so the supervisor starts a fresh one and `trajstream status` shows why it exited.
"""

from __future__ import annotations

import logging
import os
import sys

EXIT_CODE = 3  # what a worker that ran out of memory exits with


class _ExitOnMemoryError(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], MemoryError):
            # No cleanup: it may need memory there is not. Nothing uncommitted is lost: it is read again.
            os.write(2, b"\nMemoryError: out of memory (its memory limit reached); exiting, to be started again\n")
            sys.stderr.flush()
            os._exit(EXIT_CODE)


def exit_on_memory_error() -> None:
    """From now on, a MemoryError logged anywhere in this process ends it (exit code ``EXIT_CODE``)."""
    root = logging.getLogger()
    if not any(isinstance(h, _ExitOnMemoryError) for h in root.handlers):
        root.addHandler(_ExitOnMemoryError())
