"""A scored trajectory as training tokens: the conversation, which tokens are the policy's, and how it sampled them.

Multi-turn trajectories train only on the assistant's tokens: system, user and tool messages are context
(mask 0). The prompt is everything before the first assistant message; the completion is the rest, with
``assistant_mask`` saying which of its tokens the policy produced.

Off-policy data: a turn records the behaviour model's version and, when the server returned them, the
sampled tokens' ids and log-probabilities. When a turn has one assistant message and its token ids are
known, those ids are the message's tokens (so the log-probabilities line up exactly) and their
log-probabilities are kept; otherwise the tokens are the tokenizer's and the behaviour log-probabilities
are unknown (NaN), which the trainer counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trajstream.assembled import TrajectoryView
from trajstream_sdk.events import content_kind


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    step: int | None = None  # the LLM step (index into view.llm_steps) of an assistant message
    token_ids: tuple[int, ...] | None = None  # the behaviour model's sampled tokens, when recorded
    logprobs: tuple[float, ...] | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class TokenizedSample:
    trajectory_id: str
    version: int
    prompt_ids: list[int]
    completion_ids: list[int]
    assistant_mask: list[int]  # per completion token: 1 when the policy produced it
    step_of_token: list[int]  # per completion token: its LLM step, -1 outside assistant messages
    behaviour_logprobs: list[float]  # per completion token: NaN where unknown or not the policy's
    model_versions: tuple[str, ...]  # the behaviour versions of its assistant messages

    @property
    def assistant_tokens(self) -> int:
        return sum(self.assistant_mask)


def render_content(content: Mapping[str, Any]) -> str:
    kind = content_kind(content)
    if kind == "text":
        return str(content["text"])
    if kind == "tool_call":
        return f"call {content['name']} {content['arguments']}"
    if kind == "tool_response":
        return f"result {content['name']} {content['status']} {content['result']}"
    if kind == "redacted":
        return f"[{content['reason']}]"
    return json.dumps({k: content[k] for k in sorted(content)})


def chat_messages(view: TrajectoryView) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    if view["system_message"]:
        messages.append(ChatMessage("system", str(view["system_message"])))
    step = -1
    for turn in view.steps:
        assistant = [m for m in turn.messages if m["role"] == "assistant"]
        if assistant:
            step += 1
        model = turn.record.get("model") or {}
        logprobs: list[Mapping[str, Any]] = model.get("logprobs") or []
        exact = len(assistant) == 1 and bool(logprobs) and all(t.get("token_id") is not None for t in logprobs)
        for m in turn.messages:
            if m["role"] != "assistant":
                messages.append(ChatMessage(m["role"], render_content(m["content"])))
                continue
            messages.append(
                ChatMessage(
                    "assistant", render_content(m["content"]), step,
                    tuple(int(t["token_id"]) for t in logprobs) if exact else None,
                    tuple(float(t["logprob"]) for t in logprobs) if exact else None,
                    model.get("model_version"),
                )
            )  # fmt: skip
    return messages


def _message_ids(tokenizer: Any, message: ChatMessage) -> tuple[list[int], range]:
    """The message's tokens, and where its content's tokens sit among them."""
    rendered: Any = tokenizer.apply_chat_template(
        [{"role": message.role, "content": message.content}], tokenize=True, add_generation_prompt=False
    )
    # transformers 5 returns a BatchEncoding, earlier versions a list
    ids: list[int] = list(rendered["input_ids"] if isinstance(rendered, Mapping) else rendered)
    if message.token_ids is None:
        return list(ids), range(0, len(ids))
    # Splice the sampled tokens in place of the re-tokenised content, inside the template's markers.
    content = tokenizer(message.content, add_special_tokens=False)["input_ids"]
    for start in range(len(ids) - len(content) + 1):
        if ids[start : start + len(content)] == content:
            spliced = ids[:start] + list(message.token_ids) + ids[start + len(content) :]
            return spliced, range(start, start + len(message.token_ids))
    raise ValueError("the chat template does not contain the message content verbatim")


def tokenize(view: TrajectoryView, tokenizer: Any) -> TokenizedSample | None:
    """The trajectory as prompt and completion tokens; None when it has no assistant message to learn from."""
    messages = chat_messages(view)
    first = next((i for i, m in enumerate(messages) if m.role == "assistant"), None)
    if first is None:
        return None
    prompt: list[int] = []
    for m in messages[:first]:
        prompt += _message_ids(tokenizer, m)[0]
    completion: list[int] = []
    mask: list[int] = []
    steps: list[int] = []
    behaviour: list[float] = []
    for m in messages[first:]:
        ids, sampled = _message_ids(tokenizer, m)
        policy = m.role == "assistant"
        for i, token in enumerate(ids):
            completion.append(token)
            # The role marker and end-of-message tokens come from the template: only the content is the policy's.
            own = policy and (i in sampled if m.token_ids is not None else True)
            mask.append(int(own))
            steps.append(m.step if own and m.step is not None else -1)
            if own and m.logprobs is not None:
                behaviour.append(m.logprobs[i - sampled.start])
            else:
                behaviour.append(math.nan)
    versions = tuple(sorted({m.model_version for m in messages if m.model_version}))
    return TokenizedSample(view.trajectory_id, view.version, prompt, completion, mask, steps, behaviour, versions)


def step_count(sample: TokenizedSample) -> int:
    return max(sample.step_of_token, default=-1) + 1


def per_token(values: Sequence[float], sample: TokenizedSample) -> list[float]:
    """A value per LLM step spread over the step's tokens (0 outside the policy's tokens)."""
    return [values[s] if s >= 0 else 0.0 for s in sample.step_of_token]
