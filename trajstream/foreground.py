"""Run a worker's coroutine in the foreground until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``work(stop)`` runs until it returns; SIGTERM and SIGINT set ``stop`` so that it can finish cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    asyncio.run(main())
