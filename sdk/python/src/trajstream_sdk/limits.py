"""Record sizes: every size limit of the clients, the broker and the topics, derived from two knobs.

People set the largest event (``TRAJSTREAM_MAX_EVENT_BYTES``) and the largest trajectory assembly
accepts (``TRAJSTREAM_ASSEMBLY_MAX_BYTES``, the sum of its events' encoded bytes). Everything else is
derived here, so that whatever assembly accepts can also be written: as the assembled record, the
enrichment request, the scored record, the tables' changelog records, and as a dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass

from trajstream_sdk.errors import ConfigurationError
from trajstream_sdk.schemas import (
    ASSEMBLED_TRAJECTORY,
    ASSEMBLY_STATE,
    DEAD_LETTER,
    ENRICHMENT_REQUEST,
    SCORED_TRAJECTORY,
    SCORING_STATE,
)

MiB = 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 1 * MiB
DEFAULT_MAX_TRAJECTORY_BYTES = 8 * MiB
# Room for a record's own fields around what it carries: ids, timestamps, a dead letter's reason
# (clipped to DEAD_LETTER_REASON_CHARS, at most 4 bytes each in UTF-8), source and key.
FRAMING_BYTES = 64 * 1024
DEAD_LETTER_REASON_CHARS = 8 * 1024
# What Kafka adds around a record: the batch header (61 bytes), the record's own header, its key.
KAFKA_FRAMING_BYTES = 4 * 1024

# Records that carry a whole trajectory (its events' bytes, or a record that embeds them): they may
# be as large as a record can be, where every other record is held to the event limit.
TRAJECTORY_RECORDS = frozenset({ASSEMBLED_TRAJECTORY, ENRICHMENT_REQUEST, SCORED_TRAJECTORY, ASSEMBLY_STATE,
                                SCORING_STATE})  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """The two knobs and what follows from them (``Settings.limits``, ``EmitterConfig.limits``)."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_trajectory_bytes: int = DEFAULT_MAX_TRAJECTORY_BYTES

    def __post_init__(self) -> None:
        if self.max_event_bytes < 1024:
            raise ConfigurationError(f"TRAJSTREAM_MAX_EVENT_BYTES={self.max_event_bytes}: at least 1024")
        if self.max_trajectory_bytes < self.max_event_bytes:
            # A trajectory holds at least one event: a smaller limit would refuse every trajectory.
            raise ConfigurationError(
                f"TRAJSTREAM_ASSEMBLY_MAX_BYTES={self.max_trajectory_bytes} is below "
                f"TRAJSTREAM_MAX_EVENT_BYTES={self.max_event_bytes}"
            )

    @property
    def dead_letter_payload_bytes(self) -> int:
        """The most of its input a dead letter carries: the first bytes of a longer input, with its size
        and hash. Twice the event limit, so that every event, even one rejected as too large by a little,
        is kept whole."""
        return 2 * self.max_event_bytes

    @property
    def dead_letter_bytes(self) -> int:
        """The largest encoded dead letter: its payload and its own fields."""
        return self.dead_letter_payload_bytes + FRAMING_BYTES

    @property
    def record_bytes(self) -> int:
        """The largest encoded record: what the codec allows the records that carry a trajectory.

        The assembled record, the enrichment request and the assembly state hold a trajectory's events
        (at most ``max_trajectory_bytes``) with a few dozen bytes of framing per event; the scored record
        and the scoring state add the enrichment result (held to the event limit) and the credits, AIR and
        reward components (a few dozen bytes per turn). One event limit for each of those two, and
        FRAMING_BYTES for the record's own fields. Always above ``dead_letter_bytes``: a trajectory is at
        least one event.
        """
        return self.max_trajectory_bytes + 2 * self.max_event_bytes + FRAMING_BYTES

    @property
    def message_bytes(self) -> int:
        """The largest Kafka message: a record of ``record_bytes`` with its key and the batch's headers.
        The broker's ``message.max.bytes``, every topic's ``max.message.bytes``, every producer's
        ``max_request_size`` and every consumer's fetch size per partition (so no fetch stops at a
        large record)."""
        return self.record_bytes + KAFKA_FRAMING_BYTES

    def encoded_bytes(self, name: str) -> tuple[int, str]:
        """The largest encoding of record ``name`` that the codec writes, and what sets it (for errors)."""
        if name in TRAJECTORY_RECORDS:
            return self.record_bytes, "TRAJSTREAM_ASSEMBLY_MAX_BYTES + 2 x TRAJSTREAM_MAX_EVENT_BYTES + 64 KiB"
        if name == DEAD_LETTER:
            return self.dead_letter_bytes, "2 x TRAJSTREAM_MAX_EVENT_BYTES + 64 KiB"
        return self.max_event_bytes, "TRAJSTREAM_MAX_EVENT_BYTES"
