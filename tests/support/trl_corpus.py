"""A small corpus for the TRL exports' tests, landed through the real scoring and ClickHouse sink, with the
conversation each trajectory should come back as (built here from what was emitted, not by the export's code),
a tokenizer whose chat template renders tool calls, and a tiny writer of shards until the export's writer lands.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajstream.corpus.export.formats.base import Format, Row, Skip
from trajstream.corpus.read import Trajectory
from trajstream.trainer.tiny import build_tokenizer
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import (
    Message,
    ModelInfo,
    Outcome,
    Redacted,
    Structured,
    ToolCall,
    ToolResponse,
    end_record,
    start_record,
    turn_record,
)

SYSTEM = "You are a careful support agent."

# Renders tool specs, tool calls (arguments as JSON: they must be dicts) and tool results. It tests
# ``'tool_calls' in m`` as Llama 3.1's template does, so a message whose tool_calls came back as None breaks it.
CHAT_TEMPLATE = (
    "{% if tools %}<|tools|> {{ tools | tojson }} </s> {% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|> "
    "{% if 'reasoning_content' in m %}<think> {{ m['reasoning_content'] }} </think> {% endif %}"
    "{% if 'tool_calls' in m %}{% for c in m['tool_calls'] %}"
    "<call> {{ c['function']['name'] }} {{ c['function']['arguments'] | tojson }} </call> {% endfor %}"
    "{% else %}{% if m['role'] == 'tool' %}[{{ m['name'] }}] {% endif %}{{ m['content'] }} {% endif %}"
    "</s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tokenizer() -> Any:
    tok = build_tokenizer([])  # apply_chat_template(tokenize=False) renders text: no vocabulary needed
    tok.chat_template = CHAT_TEMPLATE
    return tok


@dataclass
class Emitted:
    trajectory_id: str
    task: str
    outcome: str
    messages: list[Message]  # as the agent sent them (after the SDK's own redaction)
    expected: list[dict[str, Any]] = field(default_factory=list)  # the TRL conversation, system first


def expected_message(m: Message) -> dict[str, Any]:
    """The TRL message for what the agent sent, from the SDK's objects and its record's JSON."""
    content: Any = m.content
    fields = m.to_record()["content"][1]  # (union branch, record) as encoded
    if isinstance(content, ToolCall):
        call = {"name": content.name, "arguments": json.loads(fields["arguments"])}
        out: dict[str, Any] = {"role": m.role, "tool_calls": [{"type": "function", "id": content.call_id,
                                                               "function": call}]}  # fmt: skip
    elif isinstance(content, ToolResponse):
        out = {"role": m.role, "name": content.name, "tool_call_id": content.call_id, "content": fields["result"]}
    elif isinstance(content, Redacted):
        out = {"role": m.role, "content": f"[redacted: {content.reason}]"}
    elif isinstance(content, Structured):
        out = {"role": m.role, "content": fields["data"]}
    else:
        out = {"role": m.role, "content": fields["text"]}
    if m.reasoning is not None:
        out["reasoning_content"] = m.reasoning
    return out


def _expected_turn(turn: list[Message]) -> list[dict[str, Any]]:
    """A turn's TRL messages: an assistant's text and the calls after it are one reply (one model call)."""
    out: list[dict[str, Any]] = []
    for m in turn:
        message = expected_message(m)
        if isinstance(m.content, ToolCall) and out and out[-1]["role"] == "assistant" and "content" in out[-1]:
            out[-1] = {**out[-1], **message}
        else:
            out.append(message)
    return out


def _refund(n: int, good: bool, ask: str = "Refund order {n}, it arrived broken") -> list[list[Message]]:
    if good:
        return [
            [Message.text("user", ask.format(n=n)),
             Message.text("assistant", "Let me look it up."),  # one reply with the call below
             Message("assistant", ToolCall("lookup_order", "c1", {"order_id": n, "note": "ünïcode"}),
                     reasoning="the order must be found first")],
            [Message("tool", ToolResponse("lookup_order", "c1", {"status": "damaged", "items": [1, 2]}, "success")),
             Message("user", Redacted("pii", "text")),
             Message.text("assistant", "Refunded.")],
        ]  # fmt: skip
    return [
        [Message.text("user", ask.format(n=n)),
         Message("assistant", ToolCall("cancel_order", "c9", {"order": {"id": n, "flags": [True, None]}}))],
        [Message("tool", ToolResponse("cancel_order", "c9", "not allowed", "error")),
         Message("assistant", Structured({"answer": "cannot", "code": 3}))],
    ]  # fmt: skip


def corpus() -> list[tuple[str, Outcome, list[list[Message]]]]:
    """(task, outcome, turns) of each trajectory: task groups with successes and failures (one whose members
    were asked differently), one partial, and one whose call arguments are not a JSON object (TRL cannot hold
    it)."""
    return [
        ("Refund order 7", "success", _refund(7, True)),
        ("Refund order 7", "failure", _refund(7, False)),
        ("Refund order 7", "success", _refund(7, True)),  # a third: no low-reward partner left for DPO
        ("Refund order 8", "success", _refund(8, True)),
        ("Refund order 8", "failure", _refund(8, False)),
        ("Refund order 9", "partial", _refund(9, True)),
        ("Refund order 10", "success", _refund(10, True)),
        ("refund order 10!", "failure", _refund(10, False, "Please refund order {n}")),  # same group, other prompt
        ("Sum two numbers", "success", [[Message.text("user", "Add 2 and 3"),
                                         Message("assistant", ToolCall("add", "a1", [2, 3]))],
                                        [Message("tool", ToolResponse("add", "a1", 5)),
                                         Message.text("assistant", "5")]]),
    ]  # fmt: skip


def emit(codec: EventCodec) -> tuple[list[Emitted], list[tuple[str, bytes]]]:
    emitted: list[Emitted] = []
    events: list[tuple[str, bytes]] = []
    for task, outcome, turns in corpus():
        tid = f"trl-{uuid.uuid4().hex[:8]}"
        messages = [m for turn in turns for m in turn]
        expected = [{"role": "system", "content": SYSTEM}] + [m for turn in turns for m in _expected_turn(turn)]
        emitted.append(Emitted(tid, task, outcome, messages, expected))
        events.append(("events", codec.encode("trajectory_start", start_record(
            tid, task, agent_id="agent-trl", domain="support", tags=("trl",), system_message=SYSTEM))))  # fmt: skip
        for i, turn in enumerate(turns):
            model = ModelInfo(response_model="m", model_version="v1", input_tokens=10, output_tokens=3)
            events.append(("events", codec.encode("turn", turn_record(tid, i, turn, duration_ms=40, model=model))))
        events.append(("events", codec.encode("trajectory_end", end_record(tid, outcome, turn_count=len(turns)))))
    return emitted, events


def write(fmt: Format, trajectories: Iterable[Trajectory], out: Path, shard_rows: int) -> tuple[list[Path], list[Skip]]:
    """The format's rows cut into shards of ``shard_rows``, one shard in memory at a time (the writer's job,
    in small, until it lands)."""
    paths: list[Path] = []
    skips: list[Skip] = []
    pending: list[Row] = []

    def flush() -> None:
        path = out / fmt.shard_name(len(paths))
        path.parent.mkdir(parents=True, exist_ok=True)
        assert fmt.write_shard(pending, path) == len(pending)
        paths.append(path)
        pending.clear()

    for item in fmt.rows(trajectories):
        if isinstance(item, Skip):
            skips.append(item)
            continue
        pending.append(item)
        if len(pending) >= shard_rows:
            flush()
    if pending:
        flush()
    return paths, skips
