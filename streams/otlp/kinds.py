"""What a span is, by whichever convention it follows: an inference (a turn), an agent, a tool run."""

from __future__ import annotations

import re

from trajstream.streams.otlp.spans import Span
from trajstream.streams.otlp.values import as_str, first

TRAJECTORY_ID = "trajstream.trajectory.id"
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
AGENT_OPERATIONS = frozenset({"invoke_agent", "invoke_workflow"})
# The Vercel AI SDK names its spans (and ai.operationId) after the call: the top-level call is the agent,
# its provider calls (doGenerate, doStream) are the inferences, ai.toolCall a tool run.
_VERCEL_TOP = frozenset({"ai.generateText", "ai.streamText"})
_VERCEL_INFERENCE = re.compile(r"ai\.\w+\.(doGenerate|doStream)")


def _operation(span: Span) -> str:
    return as_str(span.attributes.get("gen_ai.operation.name")) or ""


def _openinference(span: Span) -> str:
    return (as_str(span.attributes.get("openinference.span.kind")) or "").upper()


def vercel_operation(span: Span) -> str:
    return as_str(first(span.attributes, "ai.operationId")) or span.name


def explicit_trajectory_id(span: Span) -> str | None:
    return as_str(first(span.attributes, TRAJECTORY_ID))


def is_inference(span: Span) -> bool:
    return (
        _operation(span) in INFERENCE_OPERATIONS
        or _openinference(span) == "LLM"
        or bool(_VERCEL_INFERENCE.fullmatch(vercel_operation(span)))
        or as_str(span.attributes.get("llm.request.type")) in ("chat", "completion")
    )


def is_agent(span: Span) -> bool:
    return (
        _operation(span) in AGENT_OPERATIONS or _openinference(span) == "AGENT" or vercel_operation(span) in _VERCEL_TOP
    )


def is_tool(span: Span) -> bool:
    return (
        _operation(span) == "execute_tool" or _openinference(span) == "TOOL" or vercel_operation(span) == "ai.toolCall"
    )


def tool_call_id(span: Span) -> str | None:
    return as_str(first(span.attributes, "gen_ai.tool.call.id", "ai.toolCall.id", "tool_call.id"))


def tool_name(span: Span) -> str | None:
    return as_str(first(span.attributes, "gen_ai.tool.name", "ai.toolCall.name", "tool.name"))
