"""Inference-time uses of past trajectories: recall as few-shot context, outcome prediction,
counterfactuals and tool recommendations. Vectors come from Milvus, details from ClickHouse."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from trajstream.consumers.embedding import Embedder
from trajstream.consumers.milvus_store import DECISIONS, TRAJECTORIES, index_type, loaded, quote, search_params
from trajstream.consumers.query_threads import single_thread
from trajstream.consumers.summaries import decision_text, state_text
from trajstream.content import clip, render_call
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings

_FILTERS = {"outcome": str, "domain": str, "agent_id": str, "model_version": str}
# A few-shot example shows more of each step than an embedding text can hold.
_MAX_CALL_CHARS = 240
_MAX_REPLY_CHARS = 300


class RecallError(TrajstreamError):
    """A bad recall request (unknown filter, empty query)."""


def filter_expression(filters: Mapping[str, Any] | None, default_outcome: str | None = "success") -> str:
    """A Milvus filter from {outcome, domain, agent_id, model_version, min_reward, since_ms}."""
    filters = dict(filters or {})
    if default_outcome and "outcome" not in filters:
        filters["outcome"] = default_outcome
    parts = []
    for key, value in filters.items():
        if value is None or value == "any":
            continue
        if key in _FILTERS:
            parts.append(f"{key} == {quote(str(value))}")
        elif key == "min_reward":
            parts.append(f"reward >= {float(value)}")
        elif key == "since_ms":
            parts.append(f"ended_ms >= {int(value)}")
        else:
            known = ", ".join([*_FILTERS, "min_reward", "since_ms"])
            raise RecallError(f"unknown filter {key!r}; known: {known}")
    return " and ".join(parts)


@dataclass
class Prediction:
    p_success: float | None  # similarity-weighted success rate; None when nothing similar is known
    confidence: float  # 0..1: how much similar evidence there is, and how much it agrees
    support: list[dict[str, Any]] = field(default_factory=list)


class Recall:
    def __init__(self, settings: Settings, milvus: Any, clickhouse: Any, embedder: Embedder):
        self.settings = settings
        self.milvus = milvus
        self.clickhouse = clickhouse
        self.embedder = embedder
        self.db = settings.clickhouse_database
        self._index_types: dict[str, str] = {}  # what each collection's search asks depends on its index

    def _embed(self, text: str) -> list[float]:
        """A query's vector, embedded in the calling thread on one core (``query_threads``)."""
        with single_thread():
            return self.embedder.encode_one(text)

    def _search(
        self, collection: str, vector: list[float], k: int, expr: str, fields: list[str]
    ) -> list[dict[str, Any]]:
        if collection not in self._index_types:
            self._index_types[collection] = loaded(self.milvus, collection, lambda: index_type(self.milvus, collection))
        params = search_params(self.settings, self._index_types[collection], k)
        hits = loaded(self.milvus, collection, lambda: self.milvus.search(
            collection, data=[vector], limit=k, filter=expr, output_fields=fields, search_params=params))  # fmt: skip
        return [{"id": h["id"], "similarity": float(h["distance"]), **h["entity"]} for h in hits[0]]

    # --- recall -----------------------------------------------------------------------------
    def similar(self, query: str, k: int, filters: Mapping[str, Any] | None = None,
                default_outcome: str | None = "success") -> list[dict[str, Any]]:  # fmt: skip
        """The trajectories whose task is nearest to ``query`` (the console's search: any outcome)."""
        if not query.strip():
            raise RecallError("the query is empty")
        fields = ["trajectory_id", "version", "task", "outcome", "reward", "domain", "agent_id"]
        expression = filter_expression(filters, default_outcome)
        return self._search(TRAJECTORIES, self._embed(f"task: {query}"), k, expression, fields)

    def recall(self, query: str, k: int = 3, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Similar past trajectories (successful ones unless filters say otherwise), as few-shot messages."""
        hits = self.similar(query, k, filters)
        steps = self._steps(hits)
        messages: list[dict[str, str]] = []
        for h in hits:
            lines = steps.get(h["trajectory_id"], [])
            messages.append({"role": "user", "content": f"Example task: {h['task']}"})
            body = "\n".join(f"{i + 1}. {line}" for i, line in enumerate(lines)) or "(no steps recorded)"
            messages.append({"role": "assistant", "content": f"Steps taken ({h['outcome']}, reward "
                                                             f"{h['reward']:.2f}):\n{body}"})  # fmt: skip
        return {"trajectories": hits, "messages": messages}

    def _steps(self, hits: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Per hit trajectory, what its assistant did, in order, from ClickHouse (tool calls and replies).

        One query, on ``messages`` alone: a call's status is its response's (the ``tool_calls`` row holds the
        same), read from the response's content; a call without one is unanswered. The hits' agents narrow
        the read by the table's sort key (agent_id first), the bloom filter on trajectory_id to the hits'
        granules (migration 0005). Which rows are steps, and their order, are decided here rather than in
        the query: each clause cost chDB 1-3 ms of a recall's 20 ms budget, sorting nine rows costs nothing.
        Rows hold a call as its name and arguments, not as a content record: ``render_call`` and ``clip``
        give them the notation of the rest of the project.
        """
        if not hits:
            return {}
        rows = self.clickhouse.query(
            "SELECT trajectory_id, turn_index, seq, role, kind, tool_name, text, call_id, "
            "if(kind = 'tool_response', JSONExtractString(content, 'status'), '') "
            f"FROM {self.db}.messages WHERE agent_id IN {{agents:Array(String)}} "
            "AND trajectory_id IN {ids:Array(String)}",
            parameters={"ids": [h["trajectory_id"] for h in hits], "agents": sorted({h["agent_id"] for h in hits})},
        ).result_rows
        rows.sort(key=lambda row: (row[0], row[1], row[2]))
        status = {(tid, call_id): state for tid, _, _, _, kind, _, _, call_id, state in rows if kind == "tool_response"}
        out: dict[str, list[str]] = defaultdict(list)
        for tid, _, _, role, kind, tool, text, call_id, _ in rows:
            if role != "assistant":
                continue
            if kind == "tool_call":
                call = render_call(tool, text, _MAX_CALL_CHARS)
                out[tid].append(f"{call} → {status.get((tid, call_id), 'unanswered')}")
            elif kind == "text":
                out[tid].append(f"reply: {clip(text, _MAX_REPLY_CHARS)}")
        return out

    # --- simulation ---------------------------------------------------------------------------
    def predict_outcome(self, state: str, action: str, k: int = 20,
                        filters: Mapping[str, Any] | None = None) -> Prediction:  # fmt: skip
        """Success estimated from the decision points most similar to (state, action)."""
        vector = self._embed(decision_text(state_text(state, []), action))
        fields = ["trajectory_id", "step_index", "tool", "action", "outcome", "reward"]
        hits = self._search(DECISIONS, vector, k, filter_expression(filters, default_outcome=None), fields)
        weighted = [(max(h["similarity"], 0.0) ** 4, h) for h in hits]  # sharpen: near cases decide
        total = sum(w for w, _ in weighted)
        if total <= 0:
            return Prediction(None, 0.0, hits)
        p = sum(w * (h["outcome"] == "success") for w, h in weighted) / total
        evidence = min(1.0, total / 4.0)  # about four near-identical cases make full evidence
        agreement = abs(2 * p - 1)
        return Prediction(p, round(evidence * (0.5 + 0.5 * agreement), 3), hits[:5])

    def counterfactual(self, trajectory_id: str, step: int, alternative_action: str) -> dict[str, Any]:
        """The predicted outcome of another action at a recorded step, next to what happened."""
        fields = ["state", "action", "outcome", "reward"]
        point_id = f"{trajectory_id}:{step}"
        found = loaded(
            self.milvus, DECISIONS, lambda: self.milvus.query(DECISIONS, ids=[point_id], output_fields=fields)
        )
        if not found:
            raise RecallError(f"no decision point {step} of trajectory {trajectory_id} in Milvus")
        point = found[0]
        actual = self.predict_outcome(point["state"], point["action"])
        alternative = self.predict_outcome(point["state"], alternative_action)
        delta = None
        if actual.p_success is not None and alternative.p_success is not None:
            delta = alternative.p_success - actual.p_success
        return {
            "trajectory_id": trajectory_id, "step": step, "actual_action": point["action"],
            "actual_outcome": point["outcome"], "actual_prediction": asdict(actual),
            "alternative_action": alternative_action, "alternative_prediction": asdict(alternative),
            "delta_p_success": delta,
        }  # fmt: skip

    def recommend_tools(
        self, context: str, k: int = 50, filters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Tools ranked by their similarity-weighted success in similar situations, with what usually follows."""
        vector = self._embed(state_text(context, []))
        fields = ["tool", "outcome", "next_tools", "trajectory_id"]
        hits = self._search(DECISIONS, vector, k, filter_expression(filters, default_outcome=None), fields)
        by_tool: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for h in hits:
            by_tool[h["tool"]].append(h)
        ranked = []
        for tool, group in by_tool.items():
            weight = sum(max(h["similarity"], 0.0) for h in group)
            wins = sum(max(h["similarity"], 0.0) * (h["outcome"] == "success") for h in group)
            follow = Counter(h["next_tools"] for h in group if h["outcome"] == "success" and h["next_tools"])
            relevance = weight / len(group)
            # A smoothed rate (one success and one failure assumed), so one lucky use does not top the list,
            # times how close the situations were.
            score = (wins + 1) / (weight + 2) * relevance
            ranked.append({
                "tool": tool, "score": round(score, 4), "success_rate": round(wins / weight, 4) if weight else 0.0,
                "uses": len(group), "relevance": round(relevance, 4),
                "typical_next": follow.most_common(1)[0][0] if follow else "",
            })  # fmt: skip
        ranked.sort(key=lambda r: r["score"], reverse=True)
        return ranked
