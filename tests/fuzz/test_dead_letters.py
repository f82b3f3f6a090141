"""Fuzzed input that came from Kafka or a file ends in the dead-letter topic with its reason, and the counts
reconcile: accepted + dead-lettered = input. Against the real broker, through the real paths: `trajstream
emit FILE`, and the streams worker reading the events topic.

The inputs are the fuzzers' own: emit lines mutated as test_emit_lines mutates them (with the lines that
crashed emit before json_input.py), and events mutated as test_codec mutates them, kept when they no longer
decode. A fixed seed keeps each run the same.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.fuzz.test_codec import CODEC, MUTATIONS, VALID
from tests.fuzz.test_emit_lines import LINES
from tests.support.env import env_for, trajstream_bin
from tests.support.streams import publish, read, running_worker, wait_for
from trajstream.emit_file import parse_line
from trajstream.errors import CodecError, InputRecordError
from trajstream.settings import Settings
from trajstream_sdk.codec import SingleObjectCodec

pytestmark = pytest.mark.integration

CRASHED_EMIT = [  # RecursionError and ValueError out of json.loads stopped the whole run before json_input.py
    '{"task": "t", "messages": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"task": "t", "messages": [1], "reward": 1' + "0" * 5000 + "}",
]


def _edited(line: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(line))
        line = line[:i] + rng.choice(['"', "{", "]", ",", ":", "null", "1e999", "\\", "\u00e9", ""]) + line[i + 3 :]
    return line


def _events(line: str) -> int | None:
    """How many events the line makes, or None if emit refuses it."""
    try:
        events = parse_line(line)[1]
        for name, record in events:
            CODEC.encode(name, record)
    except (InputRecordError, CodecError):
        return None
    return len(events)


def test_emit_dead_letters_every_fuzzed_line_it_refuses(topics: Settings, codec: SingleObjectCodec,
                                                        tmp_path: Path) -> None:  # fmt: skip
    rng = random.Random(17)
    lines = [*CRASHED_EMIT, *LINES, *(_edited(rng.choice(LINES), rng) for _ in range(60))]
    lines = [line for line in lines if line.strip() and "\n" not in line and "\r" not in line]
    counts = [_events(line) for line in lines]
    refused = [n for n, count in enumerate(counts, start=1) if count is None]
    assert 0 < len(refused) < len(lines)  # both kinds, or the count proves nothing
    path = tmp_path / "fuzzed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    result = subprocess.run([trajstream_bin(), "emit", str(path)], env=env_for(topics), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr  # some lines rejected; the run went to the end
    sent = len(lines) - len(refused)
    assert f"{len(lines)} line(s): {sent} trajectories sent" in result.stdout, result.stdout
    assert f"{len(refused)} rejected ({len(refused)} to the dead-letter topic)" in result.stdout, result.stdout

    letters = [r.event.record for r in asyncio.run(read(topics, codec, "deadletter")) if r.event]
    assert sorted(letter["source_offset"] for letter in letters) == refused
    assert all(letter["reason"].strip() and letter["stage"] == "emit" for letter in letters)
    assert {letter["source_offset"]: letter["reason"] for letter in letters}[1].startswith("invalid JSON: nested")
    # accepted + dead-lettered = lines, and every accepted line's events are on the topic
    assert len(asyncio.run(read(topics, codec, "events"))) == sum(c for c in counts if c is not None)


def _undecodable(rng: random.Random) -> list[bytes]:
    out: list[bytes] = [b"", b"\xc3\x01", bytes(rng.randrange(256) for _ in range(40))]
    while len(out) < 40:
        data = rng.choice(VALID)
        for _ in range(rng.randint(1, 3)):
            extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            data = MUTATIONS[rng.choice(sorted(MUTATIONS))](data, rng.randrange(10_000), rng.randrange(256), extra)
        try:
            CODEC.decode(data)
        except CodecError:
            out.append(data or b"\x00")
    return out


def test_undecodable_bytes_on_the_events_topic_are_dead_lettered_with_a_reason(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    garbage = _undecodable(random.Random(17))
    key = f"fuzz-{uuid.uuid4()}".encode()
    with running_worker(topics, tmp_path / "streams.log"):
        asyncio.run(publish(topics, [("events", key, data) for data in garbage]))

        async def letters() -> list[dict[str, object]] | None:
            found = [r.event.record for r in await read(topics, codec, "deadletter") if r.event and r.key == key]
            return found if len(found) >= len(garbage) else None

        found = wait_for(letters, timeout_s=120)
    assert len(found) == len(garbage)  # every input once: none dropped, none twice
    assert sorted(f["payload"] for f in found) == sorted(garbage)  # the same bytes
    assert all(str(f["reason"]).strip() and f["error_type"] for f in found)
