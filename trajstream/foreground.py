"""Run a worker's coroutine in the foreground until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from trajstream.out_of_memory import exit_on_memory_error


def run_until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``work(stop)`` runs until it returns; SIGTERM and SIGINT set ``stop`` so that it can finish cleanly. A
    MemoryError anywhere ends the process (trajstream.out_of_memory)."""
    exit_on_memory_error()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    asyncio.run(main())
