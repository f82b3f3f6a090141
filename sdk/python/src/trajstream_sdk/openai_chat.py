"""Turns ``openai`` chat-completion requests and responses into turn messages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from trajstream_sdk.events import (
    TOOL_STATUSES,
    Content,
    Message,
    ModelInfo,
    Role,
    Structured,
    Text,
    TokenLogprob,
    ToolCall,
    ToolResponse,
    ToolStatus,
)


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        result: dict[str, Any] = dump(exclude_none=False)
        return result
    raise TypeError(f"expected a mapping or an openai model, got {type(obj).__name__}")


def _text_of(content: Any) -> str | None:
    """Chat content is a string or a list of parts; text parts are joined, others are kept as JSON."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text", "") for p in map(_as_dict, content) if p.get("type") == "text"]
        if len(texts) == len(content):
            return "".join(texts)
    return None


class ChatRecorder:
    """Remembers how much of a conversation is already recorded and which tool each call id named."""

    def __init__(self) -> None:
        self.recorded = 0
        self.tool_names: dict[str, str] = {}

    def convert(
        self,
        request_messages: Sequence[Any],
        completion: Any,
        *,
        request_model: str | None,
        provider: str | None,
        model_version: str | None,
        tool_statuses: Mapping[str, str],
        available_tools: Sequence[str],
        active_entities: Sequence[str],
        persist: bool,
    ) -> tuple[list[Message], ModelInfo]:
        ctx = {"available_tools": tuple(available_tools), "active_entities": tuple(active_entities), "persist": persist}
        messages: list[Message] = []
        new = (
            list(request_messages)[self.recorded :]
            if self.recorded <= len(request_messages)
            else list(request_messages)
        )
        for raw in new:
            messages.extend(self.message(_as_dict(raw), tool_statuses, ctx))
        self.recorded = len(request_messages)

        data = _as_dict(completion)
        choices = data.get("choices") or []
        if not choices:
            raise ValueError("the chat completion has no choices")
        choice = _as_dict(choices[0])
        response = _as_dict(choice.get("message"))
        messages.extend(self.message({**response, "role": "assistant"}, tool_statuses, ctx))
        # The response becomes part of the next request; don't record it twice.
        self.recorded += 1

        usage = _as_dict(data.get("usage"))
        logprobs = None
        lp = _as_dict(choice.get("logprobs"))
        if lp.get("content"):
            logprobs = [
                TokenLogprob(token=t["token"], logprob=float(t["logprob"]), token_id=t.get("token_id"))
                for t in map(_as_dict, lp["content"])
            ]
        model = ModelInfo(
            request_model=request_model,
            response_model=data.get("model"),
            provider=provider,
            model_version=model_version or data.get("model_version"),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            response_id=data.get("id"),
            finish_reason=choice.get("finish_reason"),
            logprobs=logprobs,
        )
        return messages, model

    def message(self, msg: Mapping[str, Any], tool_statuses: Mapping[str, str], ctx: dict[str, Any]) -> list[Message]:
        role = msg.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"unknown chat message role {role!r}")
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        out: list[Message] = []
        if role == "tool":
            call_id = str(msg.get("tool_call_id") or "")
            if not call_id:
                raise ValueError("a tool message needs tool_call_id")
            name = msg.get("name") or self.tool_names.get(call_id, "unknown")
            status = tool_statuses.get(call_id, "success")
            if status not in TOOL_STATUSES:
                raise ValueError(f"tool status for {call_id} must be success, error or timeout, not {status!r}")
            result = msg.get("content")
            text = _text_of(result)
            response = ToolResponse(name, call_id, text if text is not None else result, cast(ToolStatus, status))
            out.append(Message("tool", response, **ctx))
            return out
        content = msg.get("content")
        if content not in (None, "", []):
            text = _text_of(content)
            body: Content = Text(text) if text is not None else Structured(content)
            out.append(Message(role, body, reasoning=reasoning, **ctx))
            reasoning = None
        for call in msg.get("tool_calls") or []:
            call = _as_dict(call)
            fn = _as_dict(call.get("function"))
            name = str(fn.get("name") or "")
            call_id = str(call.get("id") or "")
            if not name or not call_id:
                raise ValueError("a tool call needs an id and a function name")
            arguments = fn.get("arguments") or "{}"
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    raise ValueError(f"tool call {call_id}: arguments are not valid JSON: {arguments[:80]!r}") from None
            self.tool_names[call_id] = name
            out.append(Message(role, ToolCall(name, call_id, arguments), reasoning=reasoning, **ctx))
            reasoning = None
        if not out:
            out.append(Message(_role(role), Text(""), reasoning=reasoning, **ctx))
        return out


def _role(role: str) -> Role:
    return role  # type: ignore[return-value]
