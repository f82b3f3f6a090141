"""Fuzz the single-object codec: any bytes into decode (and peek, assembly's envelope read) either decode or
raise CodecError with a reason, never another exception, never a hang.

Three sources of bytes: anything at all; a valid header (marker and a fingerprint of any version in the
catalog, so schema resolution runs too) before a random body; and real encoded events, flipped,
truncated, extended or spliced.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.profiles import examples
from tests.support.env import SCHEMAS
from trajstream.errors import CodecError
from trajstream.streams.assembly import ENVELOPE_FIELDS
from trajstream.synthetic import feedback, tool_trajectory
from trajstream_sdk.codec import SINGLE_OBJECT_MARKER, DecodedEvent, SingleObjectCodec
from trajstream_sdk.schemas import SchemaCatalog

CATALOG = SchemaCatalog.from_directory(SCHEMAS)
CODEC = SingleObjectCodec(CATALOG)
HEADERS = sorted(SINGLE_OBJECT_MARKER + v.fingerprint for name in CATALOG.names for v in CATALOG.versions(name))
# Real events of every kind the SDK sends: start, turns (with tool calls and results), end, feedback.
_tid, _events = tool_trajectory(CODEC, "Refund order 42", "lookup", "error", "failure", turns=3, model="m",
                                tokens=(10, 20), tags=("fuzz",))  # fmt: skip
VALID = [data for _, data in _events] + [feedback(CODEC, _tid, 0.5)[1]]


def _decodes_or_refuses(data: bytes) -> None:
    """What every consumer of the codec relies on: an event, or a CodecError that says why."""
    reads: list[Callable[[], DecodedEvent]] = [
        lambda: CODEC.decode(data),
        lambda: CODEC.peek(data, ENVELOPE_FIELDS),  # assembly's envelope read
        lambda: CODEC.decode(data, expect="turn", fields=ENVELOPE_FIELDS),
    ]
    for read in reads:
        try:
            event = read()
        except CodecError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a reason"
        else:
            assert isinstance(event, DecodedEvent) and isinstance(event.record, dict)


@given(st.binary(max_size=512))
@example(b"")
@example(SINGLE_OBJECT_MARKER)
def test_any_bytes(data: bytes) -> None:
    _decodes_or_refuses(data)


@given(st.sampled_from(HEADERS), st.binary(max_size=2048))
@example(HEADERS[0], b"\x80" * 11)  # a varint longer than Avro allows
@example(HEADERS[0], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")  # the largest negative length
def test_known_header_random_body(header: bytes, body: bytes) -> None:
    _decodes_or_refuses(header + body)


def _flip(data: bytes, at: int, bits: int) -> bytes:
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ (bits or 1)]) + data[i + 1 :]


MUTATIONS: dict[str, Callable[[bytes, int, int, bytes], bytes]] = {
    "flip": lambda d, at, bits, extra: _flip(d, at, bits),
    "truncate": lambda d, at, bits, extra: d[: at % len(d)],
    "extend": lambda d, at, bits, extra: d + extra,
    "insert": lambda d, at, bits, extra: d[: at % len(d)] + extra + d[at % len(d) :],
    "delete": lambda d, at, bits, extra: d[: at % len(d)] + d[at % len(d) + 1 + bits % 8 :],
    "overwrite": lambda d, at, bits, extra: d[: at % len(d)] + extra + d[at % len(d) + len(extra) :],
}


@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(
            st.sampled_from(sorted(MUTATIONS)),
            st.integers(0, 10_000),
            st.integers(0, 255),
            st.binary(min_size=1, max_size=16),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_real_events(data: bytes, mutations: list[tuple[str, int, int, bytes]]) -> None:
    for name, at, bits, extra in mutations:
        data = MUTATIONS[name](data, at, bits, extra) or b"\x00"
    _decodes_or_refuses(data)


@examples(50)
@given(st.sampled_from(VALID), st.sampled_from(HEADERS))
def test_real_body_under_another_schema(data: bytes, header: bytes) -> None:
    """A body read with the wrong writer schema: resolution and projection must refuse it, not crash."""
    _decodes_or_refuses(header + data[10:])


def test_valid_events_decode() -> None:
    """The fuzzing above starts from events that decode: else it would only ever test refusals."""
    assert [CODEC.decode(d).name for d in VALID] == ["trajectory_start", "turn", "turn", "turn", "trajectory_end",
                                                     "feedback"]  # fmt: skip
