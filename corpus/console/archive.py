"""A finished export as a .tar.gz streamed to the client as it is compressed (never whole in memory or on
disk a second time): tarfile writes in a thread, its chunks cross to the event loop through a short queue,
so a slow client slows the compression rather than filling memory."""

from __future__ import annotations

import asyncio
import contextlib
import tarfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

CHUNK = 1 << 16
QUEUE = 8  # chunks in flight between the compressing thread and the response


class _Gone(Exception):
    """The client went away: the thread stops compressing."""


class _Chunks:
    """A write-only file for tarfile that hands on ``CHUNK``-sized pieces."""

    def __init__(self, put: Callable[[bytes], None]):
        self._put, self._buffer = put, bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            self._put(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()


async def stream_tar_gz(request: web.Request, base: Path, files: Sequence[str], root: str,
                        filename: str) -> web.StreamResponse:  # fmt: skip
    """``files`` (paths relative to ``base``) under the folder ``root`` in the archive, sent as ``filename``."""
    response = web.StreamResponse(headers={"Content-Type": "application/gzip",
                                           "Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
    gone = threading.Event()

    def put(chunk: bytes | None) -> None:
        if gone.is_set():
            raise _Gone
        asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()

    def compress() -> None:
        try:
            sink = _Chunks(put)
            with tarfile.open(fileobj=sink, mode="w|gz") as tar:  # type: ignore[call-overload]
                for name in files:
                    tar.add(base / name, arcname=f"{root}/{name}", recursive=False)
            sink.flush()
        finally:
            with contextlib.suppress(_Gone):
                put(None)

    producer = asyncio.ensure_future(asyncio.to_thread(compress))
    try:
        while (chunk := await queue.get()) is not None:
            await response.write(chunk)
        await producer
    finally:
        gone.set()
        while not producer.done():  # let a thread blocked on a full queue see that nobody reads any more
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            await asyncio.sleep(0.01)
    await response.write_eof()
    return response
