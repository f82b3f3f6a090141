"""`trajstream emit FILE`: valid lines go out whole, bad lines are reported and dead-lettered."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import env_for, trajstream_bin
from trajstream.emit_file import parse_line
from trajstream.errors import InputRecordError
from trajstream.reader import read_topic
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream_sdk.codec import SingleObjectCodec

EXAMPLES = PROJECT_ROOT / "examples" / "trajectories.jsonl"


def _good(task: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task": task,
        "agent_id": "test-agent",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": task},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "[]", "status": "error"},
            {"role": "assistant", "content": "done"},
        ],
        "outcome": "success",
        "reward": 1.0,
        **extra,
    }


BAD_LINES: list[tuple[bytes, str]] = [
    (b'{"task": "unterminated', "invalid JSON"),
    (b'["a list"]', "must be a JSON object"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "missing task"),
    (json.dumps({"task": "t", "messages": []}).encode(), "missing messages"),
    (json.dumps({**_good("t"), "outcome": "great"}).encode(), "bad outcome"),
    (json.dumps({**_good("t"), "reward": "high"}).encode(), "reward must be a number"),
    (json.dumps({**_good("t"), "id": "not-a-uuid"}).encode(), "bad id"),
    (json.dumps({"task": "t", "messages": [{"role": "robot", "content": "x"}]}).encode(), "unknown chat message role"),
    (json.dumps({"task": "t", "messages": [{"role": "tool", "content": "x"}]}).encode(), "needs tool_call_id"),
    (
        json.dumps(
            {
                "task": "t",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    }
                ],
            }
        ).encode(),
        "arguments are not valid JSON",
    ),
    (json.dumps({**_good("t"), "environment": "moon"}).encode(), "bad environment"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
]


@pytest.mark.integration
def test_emit_reports_bad_lines_and_sends_the_good_ones(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    good = [_good(f"task {i}") for i in range(3)]
    lines: list[bytes] = []
    expected_bad: dict[int, str] = {}
    for i, (bad, reason) in enumerate(BAD_LINES):
        if i < len(good):
            lines.append(json.dumps(good[i]).encode())
        lines.append(bad)
        expected_bad[len(lines)] = reason
    lines.append(b"")  # a blank line is skipped, not rejected
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = subprocess.run([trajstream_bin(), "emit", str(path)], env=env_for(topics), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    for number, reason in expected_bad.items():
        assert f"{path}:{number}: rejected: " in result.stderr, result.stderr
        line = next(x for x in result.stderr.splitlines() if f":{number}: rejected" in x)
        assert reason in line, (reason, line)
    assert f"3 trajectories sent (12 events), {len(BAD_LINES)} rejected" in result.stdout, result.stdout

    events = asyncio.run(_read(topics, codec, "events"))
    sent_ids = {r.key.decode() for r in events}
    assert sent_ids == {g["id"] for g in good}
    assert all(r.error is None for r in events) and len(events) == 12
    turns = [r.event.record for r in events if r.event.name == "turn"]
    assert [len(t["messages"]) for t in turns] == [2, 2] * 3  # user+call, then tool result+answer
    start = next(r.event.record for r in events if r.event.name == "trajectory_start")
    assert start["system_message"] == "be brief"

    dead = asyncio.run(_read(topics, codec, "deadletter"))
    letters = {r.event.record["source_offset"]: r.event.record for r in dead}
    assert set(letters) == set(expected_bad)
    for number, letter in letters.items():
        assert expected_bad[number] in letter["reason"]
        assert letter["payload"] == lines[number - 1] + b"\n"
        assert letter["stage"] == "emit" and letter["source"] == f"file:{path}"
    # Counts reconcile: every line is sent, rejected or blank.
    assert 3 + len(BAD_LINES) + 1 == len(lines)


@pytest.mark.integration
def test_an_oversize_line_is_dead_lettered_by_its_first_bytes_size_and_hash_and_the_run_goes_on(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    limits = topics.limits
    huge = _good("huge")
    huge["messages"][-1]["content"] = "z" * (3 * 1024 * 1024)  # one turn three times the event limit
    good = [_good(f"task {i}") for i in range(3)]
    lines = [json.dumps(good[0]).encode(), json.dumps(huge).encode(), *(json.dumps(g).encode() for g in good[1:])]
    path = tmp_path / "oversize.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    raw = lines[1] + b"\n"
    assert len(raw) > limits.dead_letter_payload_bytes

    result = subprocess.run([trajstream_bin(), "emit", str(path)], env=env_for(topics), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert f"{path}:2: rejected: too large: turn event is" in result.stderr, result.stderr
    # Counts reconcile: 4 lines read = 3 published + 1 dead-lettered, and the lines after it went out too.
    assert "4 line(s): 3 trajectories sent (12 events), 1 rejected (1 to the dead-letter topic)" in result.stdout

    events = asyncio.run(_read(topics, codec, "events"))
    assert {r.key.decode() for r in events} == {g["id"] for g in good} and len(events) == 12
    (letter,) = [r.event.record for r in asyncio.run(_read(topics, codec, "deadletter"))]
    assert letter["source_offset"] == 2 and letter["trajectory_id"] == huge["id"]
    assert letter["payload_cut"] is True and letter["payload_size"] == len(raw)
    assert letter["payload"] == raw[: limits.dead_letter_payload_bytes]
    assert letter["payload_sha256"] == hashlib.sha256(raw).hexdigest()


def test_dry_run_validates_without_a_broker(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(_good("ok")) + "\n" + '{"task": 1}\n')
    env = {"TRAJSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([trajstream_bin(), "emit", "--dry-run", str(path)], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "1 trajectories validated (4 events), 1 rejected" in result.stdout
    assert ":2: rejected: missing task" in result.stderr


def test_the_bundled_examples_are_valid() -> None:
    lines = EXAMPLES.read_text().splitlines()
    assert len(lines) >= 10
    for text in lines:
        parse_line(text)


def test_turns_split_at_assistant_messages() -> None:
    _, events = parse_line(json.dumps(_good("split")))
    names = [n for n, _ in events]
    assert names == ["trajectory_start", "turn", "turn", "trajectory_end"]
    assert events[-1][1]["turn_count"] == 2
    tool = events[2][1]["messages"][0]["content"]
    assert tool[1]["status"] == "error" and tool[1]["name"] == "search"
    with pytest.raises(InputRecordError, match="tags"):
        parse_line(json.dumps({**_good("t"), "tags": "x"}))


async def _read(settings: Settings, codec: SingleObjectCodec, topic: str) -> list[Any]:
    return [r async for r in read_topic(settings, settings.topic(topic), codec)]
