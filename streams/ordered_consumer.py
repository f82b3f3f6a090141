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
from typing import Any, cast

from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service, ServiceT

log = logging.getLogger(__name__)


class OrderedConsumer(faust_aiokafka.Consumer):
    """The aiokafka-driver consumer with `_drain_messages` made to seek back over a suspected gap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tp -> (read offset, offset it jumped to): a jump already re-read once.
        self._suspected: dict[TP, tuple[int, int]] = {}
        self.rewinds = 0

    async def perform_seek(self) -> None:
        """Seek the stream partitions to their committed offsets, and those with none to the beginning.

        aiokafka's seek_to_committed leaves a partition without a committed offset (or with 0) where it
        is. Records fetched from there before the seek were cleared from the agents' buffers by the
        recovery, so without a rewind they were never processed (the first records of a fresh partition).
        """
        committed = await self.seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if (not offset or offset < 0) and not self._is_changelog_tp(tp)]
        if fresh:
            await self._thread.seek_to_beginning(*fresh)
        self._read_offset.update(
            {ensure_TP(tp): offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
        )
        self._committed_offset.update({ensure_TP(tp): offset for tp, offset in committed.items() if offset})

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - exercised by the crash test
        # Faust's loop (faust/transport/consumer.py, 0.15.3), kept as is except for the jump handling.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                rewound: set[TP] = set()  # the rest of this batch for these is stale
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    if tp in rewound:
                        continue
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # already delivered
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        if self._suspected.get(tp) != (r_offset, offset):
                            self._suspected[tp] = (r_offset, offset)
                            log.warning("%s jumped from offset %d to %d: reading again from %d",
                                        tp, r_offset, offset, r_offset)  # fmt: skip
                            await self._seek(tp, r_offset)
                            rewound.add(tp)
                            self.rewinds += 1
                            continue
                        await self._add_gap(tp, r_offset + 1, offset)  # the same jump twice: a real gap
                    suspect = self._suspected.get(tp)
                    if suspect is not None and offset >= suspect[1]:
                        del self._suspected[tp]
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    delivery = callback(message)
                    waited = await self.wait_first(delivery, self.suspend_flow.wait())
                    if delivery not in waited.done:
                        # The flow stopped (a rebalance) before the record reached the agent: it is not read.
                        # The seek that follows the rebalance starts again from the committed offset.
                        break
                    set_read_offset(tp, offset)
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
