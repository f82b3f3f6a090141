"""The trajstream agent SDK: publish trajectories (start, turns, end) and feedback to Kafka.

It needs only aiokafka and fastavro, carries the Avro contract (every version of ``schemas/``) as
package data, and reads its settings from the same ``TRAJSTREAM_*`` variables as the platform
(``EmitterConfig.from_env``, the default).

Async::

    async with AsyncEmitter() as emitter:
        async with emitter.trajectory("Refund order 42", agent_id="support-bot") as t:
            await t.turn([Message.text("user", "refund 42"), Message.text("assistant", "done")])

Sync::

    with SyncEmitter() as emitter:
        with emitter.trajectory("Refund order 42", agent_id="support-bot") as t:
            t.record_chat_completion(request_messages, completion)
"""

from trajstream_sdk.config import EmitterConfig
from trajstream_sdk.emitter import AsyncEmitter, EmitterStats
from trajstream_sdk.events import (
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
from trajstream_sdk.redaction import chain, pattern_redactor
from trajstream_sdk.sync import SyncEmitter, SyncTrajectory
from trajstream_sdk.trajectory import Trajectory

__all__ = [
    "AsyncEmitter",
    "EmitterConfig",
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
