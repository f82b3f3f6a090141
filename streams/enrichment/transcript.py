"""A compact, numbered, deterministic transcript of a trajectory: what an LLM extractor reads.

Every line names its step (the turn index), so that the step indices a model answers with can be
checked against the trajectory. Each message is clipped, and the whole transcript is cut to a budget
(keeping its beginning and its end, where the task and the outcome are), so a huge trajectory cannot
blow the prompt.
"""

from __future__ import annotations

from trajstream.assembled import Step, TrajectoryView
from trajstream.content import clip, fit_lines, render_content

DEFAULT_MAX_MESSAGE_CHARS = 1500


def _header(view: TrajectoryView, limit: int) -> list[str]:
    lines = [f"task: {clip(view.task_description, limit) or '(none)'}"]
    reward = view.final_reward
    lines.append(f"outcome: {view.outcome}" + (f", final reward {reward:g}" if reward is not None else ""))
    system = view.record.get("system_message")
    if system:
        lines.append(f"system prompt: {clip(system, limit)}")
    entities = view.context_entities
    if entities:
        named = ", ".join(f"{e.name} ({e.entity_type})" if e.entity_type else e.name for e in entities)
        lines.append(f"context entities: {clip(named, limit)}")
    missing = view.record.get("missing_turns") or []
    if missing:
        lines.append(f"missing steps: {', '.join(str(i) for i in missing)}")
    return lines


def _step_lines(step: Step, limit: int, tools_shown: list[str]) -> list[str]:
    prefix = f"[step {step.turn_index}]"
    lines: list[str] = []
    for message in step.messages:
        role = message["role"]
        snapshot = message.get("context_snapshot") or {}
        tools = list(snapshot.get("available_tools") or [])
        # Alternatives need the tool list, but repeating it on every line would eat the budget.
        if tools and tools != tools_shown:
            tools_shown[:] = tools
            lines.append(f"{prefix} available tools: {clip(', '.join(tools), limit)}")
        if message.get("reasoning"):
            lines.append(f"{prefix} {role} (reasoning): {clip(message['reasoning'], limit)}")
        lines.append(f"{prefix} {role}: {render_content(message['content'], limit)}")
    if step.error:
        lines.append(f"{prefix} turn error: {step.record.get('error_type') or 'unspecified'}")
    return lines


def format_transcript(view: TrajectoryView, max_chars: int, max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS) -> str:
    """The trajectory as numbered lines, at most ``max_chars`` long. Same view, same text.

    Lines look like ``[step 0] user: ...``, ``[step 1] assistant: call lookup_order(order_id=1042)`` and
    ``[step 1] tool: lookup_order -> error: ...`` (``trajstream.content.render_content``); a redacted
    message reads ``[redacted: REASON]``, never its text.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    # No single message may take more than a quarter of the budget, so several always fit.
    limit = max(40, min(max_message_chars, max_chars // 4))
    lines = _header(view, limit)
    tools_shown: list[str] = []
    for step in view.steps:
        lines.extend(_step_lines(step, limit, tools_shown))
    return fit_lines(lines, max_chars)
