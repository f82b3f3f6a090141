"""The trajstream agent SDK: publish trajectories (start, turns, end) and feedback to Kafka.

Async::

    async with AsyncEmitter(settings) as emitter:
        async with emitter.trajectory("Refund order 42", agent_id="support-bot") as t:
            await t.turn([Message.text("user", "refund 42"), Message.text("assistant", "done")])

Sync::

    with SyncEmitter(settings) as emitter:
        with emitter.trajectory("Refund order 42", agent_id="support-bot") as t:
            t.record_chat_completion(request_messages, completion)
"""

from trajstream.events import (
    Message,
    ModelInfo,
    Redacted,
    Structured,
    Text,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    Widget,
)
from trajstream.sdk.emitter import AsyncEmitter, EmitterStats
from trajstream.sdk.redaction import chain, pattern_redactor
from trajstream.sdk.sync import SyncEmitter, SyncTrajectory
from trajstream.sdk.trajectory import Trajectory

__all__ = [
    "AsyncEmitter",
    "EmitterStats",
    "Message",
    "ModelInfo",
    "Redacted",
    "Structured",
    "SyncEmitter",
    "SyncTrajectory",
    "Text",
    "TokenLogprob",
    "ToolCall",
    "ToolResponse",
    "Trajectory",
    "Widget",
    "chain",
    "pattern_redactor",
]
