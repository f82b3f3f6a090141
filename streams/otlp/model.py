"""The model call of an inference span (``ModelInfo``) and how the span ended. Read from the inference span
alone: an agent span's usage is the sum of its calls and is never added to a turn (Langfuse #14808)."""

from __future__ import annotations

from typing import Any

from trajstream.streams.otlp.spans import STATUS_ERROR, Span
from trajstream.streams.otlp.values import as_int, as_str, first
from trajstream_sdk.events import ModelInfo

_REQUEST_MODEL = ("gen_ai.request.model", "llm.model_name", "ai.model.id")
_RESPONSE_MODEL = ("gen_ai.response.model", "ai.response.model")
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "ai.model.provider")
_INPUT_TOKENS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
)
_OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
)
_RESPONSE_ID = ("gen_ai.response.id", "ai.response.id")
_FINISH = ("llm.finish_reason", "ai.response.finishReason", "gen_ai.completion.0.finish_reason")


def _finish_reason(span: Span, output_reason: str | None) -> str | None:
    if output_reason:
        return output_reason
    reasons = span.attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons:
        return as_str(reasons[0])
    if isinstance(reasons, str) and reasons:
        return reasons
    return as_str(first(span.attributes, *_FINISH))


def model_info(span: Span, output_reason: str | None) -> ModelInfo:
    a = span.attributes
    return ModelInfo(
        request_model=as_str(first(a, *_REQUEST_MODEL)),
        response_model=as_str(first(a, *_RESPONSE_MODEL)),
        provider=as_str(first(a, *_PROVIDER)),
        model_version=as_str(first(a, "trajstream.model.version")),
        input_tokens=as_int(first(a, *_INPUT_TOKENS)),
        output_tokens=as_int(first(a, *_OUTPUT_TOKENS)),
        response_id=as_str(first(a, *_RESPONSE_ID)),
        finish_reason=_finish_reason(span, output_reason),
    )


def _exception(span: Span) -> dict[str, Any]:
    for event in span.events:
        if event.name == "exception":
            return event.attributes
    return {}


def error_of(span: Span) -> tuple[bool, str | None, str | None]:
    """(failed, error type, error message): ``error.type`` › the exception event's type; status message ›
    the exception's message."""
    failed = span.status_code == STATUS_ERROR
    exception = _exception(span)
    kind = as_str(first(span.attributes, "error.type")) or as_str(exception.get("exception.type"))
    message = span.status_message or as_str(exception.get("exception.message"))
    if not failed:
        return False, None, None
    return True, kind, message or None
