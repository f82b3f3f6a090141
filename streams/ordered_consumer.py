"""A Faust consumer that never skips a source offset it has not delivered.

faust-streaming 0.15.3 treats any jump in a partition's offsets as a gap of records that will never come
(compaction, transaction markers) and marks the gap as processed. After a restart its recovery resumes the
flow before it seeks the stream partitions to their committed offsets, so a record batch fetched from a
stale position can arrive right after the seek: the jump looked like a gap, the records in between were
then dropped as already read, and the next commit went past them. A SIGKILLed worker lost trajectories.

This consumer answers a jump on a source topic by seeking back and reading again. Only when the same jump
shows up again from the same position is it a real gap, and it is handled as Faust does. Records are thus
delivered in offset order, which assembly relies on (a start before its turns before its end).

Two more paths lost records, also closed here: a partition without a committed offset was not rewound by
the seek after recovery (see `perform_seek`), and a record whose delivery the stopped flow interrupted was
still counted as read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service, ServiceT

log = logging.getLogger(__name__)

# Called with the records of one fetched batch, in offset order per partition; they are acked when it returns.
BatchHandler = Callable[[list[Message]], Awaitable[None]]


class OrderedConsumer(faust_aiokafka.Consumer):
    """The aiokafka-driver consumer with `_drain_messages` made to seek back over a suspected gap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The next offset each source partition must deliver, exactly. Faust's own read offset means
        # "last delivered" or "next to read" depending on who set it, which let one record slip by.
        self._next: dict[TP, int] = {}
        # tp -> (expected offset, offset it jumped to): a jump already re-read once.
        self._suspected: dict[TP, tuple[int, int]] = {}
        self.rewinds = 0

    async def perform_seek(self) -> None:
        """Seek the stream partitions to their committed offsets, and those with none to the beginning.

        aiokafka's seek_to_committed leaves a partition without a committed offset (or with 0) where it
        is. Records fetched from there before the seek were cleared from the agents' buffers by the
        recovery, so without a rewind they were never processed (the first records of a fresh partition).
        """
        committed = await self.seek_to_committed()
        self._next.clear()
        fresh = []
        for tp, offset in committed.items():
            if self._is_changelog_tp(ensure_TP(tp)):
                continue
            if offset is not None and offset > 0:
                self._next[ensure_TP(tp)] = offset
            else:
                fresh.append(tp)
        if fresh:
            await self._thread.seek_to_beginning(*fresh)
            for tp in fresh:
                start = await self._thread.position(ensure_TP(tp))
                if start is not None:
                    self._next[ensure_TP(tp)] = start
        self._read_offset.update(
            {ensure_TP(tp): offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
        )
        self._committed_offset.update({ensure_TP(tp): offset for tp, offset in committed.items() if offset})

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - exercised by the crash test
        # Faust's loop (faust/transport/consumer.py, 0.15.3), changed in the jump handling and in handing the
        # records of batch topics to their handler, one call per fetched batch.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        handlers: dict[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                rewound: set[TP] = set()  # the rest of this batch for these is stale
                batches: dict[BatchHandler, list[Message]] = {}
                batched_from: dict[TP, int] = {}  # first batched offset per partition
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    if tp in rewound:
                        continue
                    offset = message.offset
                    expected = self._next.get(tp)
                    if expected is not None:
                        if offset < expected:
                            continue  # already delivered
                        if offset > expected and acks_enabled_for(message.topic):
                            if self._suspected.get(tp) != (expected, offset):
                                self._suspected[tp] = (expected, offset)
                                log.warning("%s jumped from offset %d to %d: reading again from %d",
                                            tp, expected, offset, expected)  # fmt: skip
                                await self._seek(tp, expected)
                                rewound.add(tp)
                                self.rewinds += 1
                                continue
                            await self._add_gap(tp, expected, offset - 1)  # the same jump twice: a real gap
                        self._next[tp] = offset + 1
                    else:  # not a stream source (a changelog in recovery): Faust's rule
                        r_offset = self._read_offset.get(tp)
                        if r_offset is not None and offset < r_offset:
                            continue
                    suspect = self._suspected.get(tp)
                    if suspect is not None and offset >= suspect[1]:
                        del self._suspected[tp]
                    handler = handlers.get(message.topic)
                    if handler is not None:
                        batches.setdefault(handler, []).append(message)
                        batched_from.setdefault(tp, offset)
                        set_read_offset(tp, offset)
                        continue
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    delivery = callback(message)
                    waited = await self.wait_first(delivery, self.suspend_flow.wait())
                    if delivery not in waited.done:
                        # The flow stopped (a rebalance) before the record reached the agent: it is not read.
                        # The seek that follows the rebalance starts again from the committed offset.
                        if expected is not None:
                            self._next[tp] = expected
                        break
                    set_read_offset(tp, offset)
                if batches and self.flow_active:
                    # Unacked until the handler returns: a commit (which flushes the producer first) can
                    # only cover records whose state and outputs are already in the producer.
                    for handler, messages in batches.items():
                        await handler(messages)
                        for message in messages:
                            self.ack(message)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                elif batches:
                    # The flow stopped: the batch is not handled and stays unacked. It must be read again
                    # even if the flow resumes without a seek, or its first record would be a hole Faust
                    # never commits past (the partition stalls at its committed offset). Expecting it again
                    # turns the next record seen into a jump, which seeks back to it.
                    for tp, first in batched_from.items():
                        if tp in self._next:
                            self._next[tp] = min(self._next[tp], first)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class OrderedTransport(faust_aiokafka.Transport):
    Consumer = OrderedConsumer
