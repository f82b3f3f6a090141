"""Read an `agent-lightning` export with agentlightning 0.3.0's own code; print what it read, as one JSON line.

    python load.py FILE.jsonl

The export is Agent Lightning v1's rollouts and events (model_request, reward), which 0.3.0 (the legacy line,
the newest on PyPI here) does not know: 0.3.0 reads traces as OpenTelemetry-shaped `Span`s. So each rollout
goes through 0.3.0's own pipeline the way an external trace reaches it:

- its rollout is started in 0.3.0's `InMemoryLightningStore` (`start_rollout`, which gives the rollout and
  attempt ids);
- each `model_request` event becomes the span 0.3.0's adapters look for (`openai.chat.completion`, with
  `gen_ai.response.id`, `gen_ai.prompt.*`/`gen_ai.completion.*`, `response_token_ids` and `logprobs.content`
  as `TraceTree.span_to_triplet` reads them), each `reward` event an `agentlightning.annotation` span with
  `agentlightning.reward.0.{name,value}` (`emit_reward`'s attributes), each validated by `Span.model_validate`
  and added with the store's `add_span`;
- the store's spans (`query_spans`) go through `TracerTraceToTriplet().adapt`, which matches each reward to
  the model call before it in time (FIRST_OCCURRENCE).

Spans are timed by the events' order, a millisecond apart from the first event's time, as v1's store times
events when they are posted (`record_event` stamps each at write time): a trajectory's recorded times can
tie at a millisecond, and 0.3.0 would then match rewards to calls arbitrarily.

What is printed: per rollout, the spans the store kept and the triplets (response token ids, logprobs,
reward) 0.3.0 made of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch a price list at import

from agentlightning.adapter import TracerTraceToTriplet
from agentlightning.store.memory import InMemoryLightningStore
from agentlightning.types import Span


def span(rollout_id: str, attempt_id: str, seq: int, name: str, start: float, end: float,
         attributes: dict[str, Any]) -> Span:  # fmt: skip
    return Span.model_validate({
        "rollout_id": rollout_id, "attempt_id": attempt_id, "sequence_id": seq, "trace_id": f"{rollout_id}-trace",
        "span_id": f"{rollout_id}-{seq}", "parent_id": None, "name": name, "status": {"status_code": "OK"},
        "attributes": attributes, "events": [], "links": [], "start_time": start, "end_time": end,
        "context": None, "parent": None,
        "resource": {"attributes": {"agentlightning.rollout_id": rollout_id, "agentlightning.attempt_id": attempt_id,
                                    "agentlightning.span_sequence_id": seq}, "schema_url": ""},
    })  # fmt: skip


def model_request_attributes(data: dict[str, Any]) -> dict[str, Any]:
    response = data["response"]
    choice = response["choices"][0]
    attributes: dict[str, Any] = {"gen_ai.response.id": response["id"], "gen_ai.request.model": data["model"],
                                  "gen_ai.response.model": response["model"]}  # fmt: skip
    for i, message in enumerate(data["request"]["messages"]):
        attributes[f"gen_ai.prompt.{i}.role"] = message["role"]
        attributes[f"gen_ai.prompt.{i}.content"] = message.get("content") or ""
    attributes["gen_ai.completion.0.role"] = choice["message"]["role"]
    attributes["gen_ai.completion.0.content"] = choice["message"].get("content") or ""
    if "prompt_token_ids" in response:
        attributes["prompt_token_ids"] = response["prompt_token_ids"]
    if "token_ids" in choice:
        attributes["response_token_ids"] = choice["token_ids"]
    if choice.get("logprobs"):
        attributes["logprobs.content"] = json.dumps(choice["logprobs"]["content"])
    return attributes


async def load(row: dict[str, Any]) -> dict[str, Any]:
    store = InMemoryLightningStore()
    rollout = row["rollout"]
    attempted = await store.start_rollout(input=rollout["input"], mode="train", metadata=rollout["metadata"])
    rid, aid = attempted.rollout_id, attempted.attempt.attempt_id
    first = row["events"][0]["timestamp"] if row["events"] else 0.0
    for seq, event in enumerate(row["events"], start=1):
        data, end = event["data"], first + seq / 1000
        if event["event_type"] == "model_request":
            made = span(rid, aid, seq, "openai.chat.completion", end - 0.0005, end, model_request_attributes(data))
        elif event["event_type"] == "reward":
            made = span(rid, aid, seq, "agentlightning.annotation", end, end,
                        {"agentlightning.reward.0.name": data.get("source") or "reward",
                         "agentlightning.reward.0.value": float(data["value"])})  # fmt: skip
        else:
            continue
        await store.add_span(made)
    spans = await store.query_spans(rid, "latest")
    triplets = TracerTraceToTriplet().adapt(list(spans))
    return {
        "rollout_id": rollout["rollout_id"], "spans": len(spans),
        "triplets": [{"response_token_ids": t.response.get("token_ids"), "logprobs": t.response.get("logprobs"),
                      "prompt_token_ids": t.prompt.get("token_ids"), "reward": t.reward,
                      "response_id": t.metadata.get("response_id"),
                      "completion": t.response.get("raw_content")} for t in triplets],
    }  # fmt: skip


async def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(json.dumps({"rollouts": [await load(row) for row in rows]}, ensure_ascii=False, default=str))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
