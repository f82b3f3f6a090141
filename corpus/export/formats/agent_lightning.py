"""``agent-lightning``: each trajectory as an Agent Lightning v1 rollout with its ``model_request`` and
``reward`` events, in the shape its gateway records them and serves them as triplets.

Agent Lightning v1 (``agentlightning/schemas.py``, ``server/routes/events.py`` at microsoft/agent-lightning
c632d8dd): ``Event{event_type, rollout_id, attempt_id, timestamp, data}``; ``data`` of a ``model_request``
is ``ModelRequestData{model, model_version: int|None, request, adjusted_params, response, latency_ms,
http_status, status, retry_count, usage, finish_reason}`` plus the gateway's ``server{model, version}``;
of a ``reward``, ``RewardData{value, message, source, reason}``. ``GET /api/rollouts/{id}/events?
format=triplet`` reads ``response.prompt_token_ids``, ``response.choices[0].token_ids`` and
``response.choices[0].logprobs.content[].logprob``.

One JSON line per trajectory: ``{"rollout": RolloutCreate, "state", "attempt_id", "events": [...]}`` - what
``POST /api/rollouts``, ``POST .../attempt/{aid}/events`` and ``PATCH /api/rollouts/{id}`` take.

- One ``model_request`` per turn (per model call): ``request.messages`` the conversation before the
  turn's reply (``trajstream.corpus.export.chat``), ``response`` a chat completion whose first choice is
  the reply, with ``logprobs.content`` where the turn recorded log-probabilities and ``token_ids`` where
  every token's id was recorded; nothing is invented where they were not. Prompt token ids are never
  recorded by trajstream, so ``prompt_token_ids`` is absent: the v1 gateway de-duplicates a rollout's
  model requests by prompt token ids, and would keep only the last of them; its trainer needs them anyway
  (it is on-policy and tokenizes with its own server). ``model_version`` is v1's integer training step:
  ours is a name, so it goes in ``server.version`` and ``model_version`` is null.
- AIR goes as one ``reward`` event per turn after its model request, ``source="air"``; the trajectory's
  reward is the last event (``source`` its reward function, ``reason`` the outcome): v1's trainer
  attaches a rollout's last reward to its last triplet.
- The rollout's ``state`` is ``succeeded`` when it ran to its end (success, failure, partial: the reward
  says how well) and ``failed`` when it was abandoned or errored.
- A trajectory whose conversation cannot be given whole (a redacted tool call) is skipped, as in every
  chat export; redacted text stays a placeholder.
"""

from __future__ import annotations

from typing import Any

from trajstream.corpus.export.chat import chat_messages
from trajstream.corpus.export.formats.base import PerTrajectory, Row, Skip
from trajstream.corpus.export.logprobs import logprob_content, token_ids
from trajstream.corpus.read import Trajectory, Turn

ATTEMPT_ID = "0"  # v1's DEFAULT_ATTEMPT_ID
NO_MODEL_REQUEST = "no assistant reply: no model request to give"
_RAN_TO_END = {"success", "failure", "partial"}


def _response(t: Trajectory, turn: Turn, reply: dict[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if reply is not None:
        message = {k: v for k, v in reply.items() if k in ("role", "content", "tool_calls")}
        message.setdefault("content", None)
    choice: dict[str, Any] = {"index": 0, "message": message,
                              "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}  # fmt: skip
    content = logprob_content(turn)
    choice["logprobs"] = {"content": content} if content is not None else None
    ids = token_ids(turn)
    if ids is not None:
        choice["token_ids"] = ids
    response: dict[str, Any] = {"id": f"{t.trajectory_id}.v{t.version}.turn-{turn.index}",
                                "object": "chat.completion", "created": turn.timestamp_ms // 1000,
                                "model": turn.model, "choices": [choice]}  # fmt: skip
    if turn.input_tokens is not None or turn.output_tokens is not None:
        response["usage"] = {"prompt_tokens": turn.input_tokens, "completion_tokens": turn.output_tokens}
    return response


class AgentLightning(PerTrajectory):
    name = "agent-lightning"
    summary = "Agent Lightning v1 rollouts: model_request events (token ids, logprobs where recorded), AIR rewards"
    kind = "jsonl"

    def row(self, t: Trajectory) -> Row | Skip:
        chat = chat_messages(t)
        if isinstance(chat, str):
            return Skip(t.trajectory_id, t.version, chat)
        rollout_id = f"{t.trajectory_id}.v{t.version}"
        events: list[dict[str, Any]] = []

        def event(event_type: str, timestamp_ms: int, data: dict[str, Any]) -> None:
            events.append({"event_type": event_type, "rollout_id": rollout_id, "attempt_id": ATTEMPT_ID,
                           "timestamp": timestamp_ms / 1000, "data": data})  # fmt: skip

        messages = [m.message for m in chat.messages]
        tools = chat.tool_params()
        replied = False
        for turn in t.turns:
            mine = [i for i, m in enumerate(chat.messages) if m.turn is turn]
            replies = [i for i in mine if chat.messages[i].message["role"] == "assistant"]
            # The request is the conversation before the turn's reply (through the turn, if it has none).
            upto = replies[-1] if replies else (mine[-1] + 1 if mine else len(messages))
            request: dict[str, Any] = {"model": turn.model, "messages": messages[:upto]}
            if tools:
                request["tools"] = tools
            response = _response(t, turn, messages[replies[0]] if len(replies) == 1 else None)
            done_ms = turn.timestamp_ms + turn.duration_ms
            event("model_request", done_ms, {
                "model": turn.model, "model_version": None, "request": request, "adjusted_params": None,
                "response": response, "latency_ms": float(turn.duration_ms), "http_status": 500 if turn.error else 200,
                "status": "error" if turn.error else "ok", "retry_count": 0, "usage": response.get("usage"),
                "finish_reason": response["choices"][0]["finish_reason"],
                "server": {"model": turn.model, "version": turn.model_version},
            })  # fmt: skip
            event("reward", done_ms, {"value": turn.air, "message": None, "source": "air",
                                      "reason": f"turn {turn.index}"})  # fmt: skip
            replied = replied or bool(replies)
        if not replied:
            return Skip(t.trajectory_id, t.version, NO_MODEL_REQUEST)
        last_ms = max(t.ended_ms, *(round(e["timestamp"] * 1000) for e in events))
        event("reward", last_ms, {"value": t.reward, "message": None, "source": t.reward_function or "trajectory",
                                  "reason": t.outcome})  # fmt: skip
        return {
            "rollout": {"rollout_id": rollout_id, "input": {"task": t.task, "task_key": t.task_key},
                        "is_train": True, "config": None,
                        "metadata": {"trajectory_id": t.trajectory_id, "version": t.version, "agent_id": t.agent_id,
                                     "domain": t.domain, "outcome": t.outcome, "model_version": t.model_version,
                                     "tags": t.tags, "reward_components": t.components}},
            "state": "succeeded" if t.outcome in _RAN_TO_END else "failed",
            "attempt_id": ATTEMPT_ID,
            "events": events,
        }  # fmt: skip


FORMATS = (AgentLightning,)
