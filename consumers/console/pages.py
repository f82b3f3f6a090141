"""What each console page shows, as JSON (docs/console-api.md): the queries' rows shaped for the charts.

Pure functions of a ClickHouse client, the settings and the request's parameters; the routes run them in
a thread. Rates are null where nothing was counted (a chart draws a gap, not a zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajstream.consumers.clickhouse_store import ClickHouseError
from trajstream.consumers.console import queries as q
from trajstream.consumers.console.timerange import TimeRange
from trajstream.dlq import why_not_replayable
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings

_HOUR_MS = 3_600_000


class NotFoundError(TrajstreamError):
    """What a page asked for is not there."""


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _point(t: int, n: float, ok: float, reward_sum: float) -> dict[str, Any]:
    return {"t": int(t), "trajectories": int(n), "success_rate": _rate(ok, n), "mean_reward": _rate(reward_sum, n)}


def _quantiles(values: Any) -> dict[str, float | None]:
    """quantilesMerge's [p50, p95, p99] (NaN where no latency was recorded) as milliseconds or None."""
    out: dict[str, float | None] = {}
    for name, v in zip(("p50_ms", "p95_ms", "p99_ms"), list(values or [None] * 3), strict=False):
        out[name] = None if v is None or v != v else round(float(v), 1)
    return out


class Pages:
    def __init__(self, client: Any, settings: Settings):
        self.client = client
        self.settings = settings
        self.db = settings.clickhouse_database

    def _rows(self, query: q.Query | q.Cascade) -> list[tuple[Any, ...]]:
        return q.run(self.client, query, self.settings)

    # --- Overview ------------------------------------------------------------------------------
    def overview(self, r: TimeRange, by: str) -> dict[str, Any]:
        if by not in q.BY_COLUMN:
            raise ClickHouseError(f"by={by!r}: use one of {', '.join(q.BY_COLUMN)}")
        rows = self._rows(q.trajectory_timeline(self.db, r, by))
        totals: dict[int, list[float]] = {}
        series: dict[str, list[dict[str, Any]]] = {}
        for t, key, n, ok, rs in rows:
            acc = totals.setdefault(int(t), [0, 0, 0.0])
            acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + ok, acc[2] + rs
            series.setdefault(str(key), []).append(_point(t, n, ok, rs))
        n_all = sum(v[0] for v in totals.values())
        ok_all = sum(v[1] for v in totals.values())
        rs_all = sum(v[2] for v in totals.values())
        return {
            "range": r.as_json(), "by": by,
            "totals": {"trajectories": int(n_all), "success_rate": _rate(ok_all, n_all),
                       "mean_reward": _rate(rs_all, n_all), "per_minute": round(n_all / r.minutes, 3)},
            "timeline": [_point(t, *v) for t, v in sorted(totals.items())],
            "series": [{"key": k, "points": v} for k, v in sorted(series.items())],
            "breakdown": {name: self._breakdown(r, name) for name in q.BY_COLUMN},
        }  # fmt: skip

    def _breakdown(self, r: TimeRange, by: str) -> list[dict[str, Any]]:
        return [
            {"key": str(key), "trajectories": int(n), "success_rate": _rate(ok, n), "mean_reward": _rate(rs, n)}
            for key, n, ok, rs in self._rows(q.trajectory_breakdown(self.db, r, by))
        ]

    def learning(self, r: TimeRange) -> dict[str, Any]:
        versions: dict[str, list[dict[str, Any]]] = {}
        for t, key, n, ok, rs in self._rows(q.trajectory_timeline(self.db, r, "model_version")):
            versions.setdefault(str(key), []).append(_point(t, n, ok, rs))
        marks = [{"t": int(t), "model": model, "version": version, "event": event, "reason": reason}
                 for t, model, version, event, reason in self._rows(q.deployments(self.db, r))]  # fmt: skip
        return {"range": r.as_json(), "versions": [{"version": k, "points": v} for k, v in sorted(versions.items())],
                "deployments": marks}  # fmt: skip

    # --- Tools ---------------------------------------------------------------------------------
    def tools(self, r: TimeRange) -> dict[str, Any]:
        table = [
            {"tool": tool, "calls": int(calls), "error_rate": _rate(errors, calls),
             "timeout_rate": _rate(timeouts, calls), **_quantiles(latency)}
            for tool, calls, errors, timeouts, latency in self._rows(q.tool_table(self.db, r))
        ]  # fmt: skip
        timeline = [{"t": int(t), "tool": tool, "calls": int(c), "errors": int(e), "timeouts": int(o)}
                    for t, tool, c, e, o in self._rows(q.tool_timeline(self.db, r))]  # fmt: skip
        before = self._rows(q.tools_before_failure(self.db, r))
        failed = sum(int(f) for _, f, _ in before)
        return {
            "range": r.as_json(), "tools": table, "timeline": timeline,
            "before_failure": [{"tool": tool, "failures": int(f), "share": _rate(f, failed),
                                "failure_rate": _rate(f, n)} for tool, f, n in before],
            "loops": [{"tool": tool, "loops": int(n), "max_repeats": int(most), "example": example}
                      for tool, n, most, example in self._rows(q.tool_loops(self.db, r))],
        }  # fmt: skip

    # --- Models --------------------------------------------------------------------------------
    def models(self, r: TimeRange) -> dict[str, Any]:
        prices = self.settings.model_prices
        table = []
        for model, version, turns, errors, tokens_in, tokens_out, latency in self._rows(q.model_table(self.db, r)):
            price = prices.get(model)
            cost = None
            if price is not None:  # USD per million tokens
                cost = round((tokens_in * price.get("input", 0.0) + tokens_out * price.get("output", 0.0)) / 1e6, 6)
            table.append({"model": model, "model_version": version, "turns": int(turns), "errors": int(errors),
                          "tokens_in": int(tokens_in), "tokens_out": int(tokens_out), **_quantiles(latency),
                          "cost": cost})  # fmt: skip
        timeline = [{"t": int(t), "model": m, "tokens_in": int(i), "tokens_out": int(o), "turns": int(n)}
                    for t, m, i, o, n in self._rows(q.model_timeline(self.db, r))]  # fmt: skip
        return {"range": r.as_json(), "priced": bool(prices), "models": table, "timeline": timeline}

    # --- Trajectories --------------------------------------------------------------------------
    def trajectories(self, r: TimeRange, filters: Mapping[str, str], page: int, page_size: int) -> dict[str, Any]:
        try:
            rows = self._rows(q.trajectory_page(self.db, r, filters, page, page_size))
        except ValueError as exc:  # a reward bound that is not a number
            raise ClickHouseError(f"min_reward and max_reward are numbers: {exc}") from exc
        agents, domains, versions, outcomes = self._rows(q.facets(self.db, r))[0]
        (tags,) = self._rows(q.tag_facet(self.db, r))[0]
        return {
            "range": r.as_json(), "page": page, "page_size": page_size, "has_more": len(rows) > page_size,
            "rows": [dict(zip(q.LIST_COLUMNS, row, strict=True)) for row in rows[:page_size]],
            "facets": {"agent": sorted(agents), "domain": sorted(domains), "model_version": sorted(versions),
                       "outcome": sorted(outcomes), "tag": sorted(tags)},
        }  # fmt: skip

    def trajectory(self, trajectory_id: str) -> dict[str, Any]:
        found = self._rows(q.trajectory_versions(self.db, trajectory_id, self.settings.clickhouse_ttl_days))
        versions = [dict(zip(q.DETAIL_COLUMNS, row, strict=True)) for row in found]
        if not versions:
            raise NotFoundError(f"no trajectory {trajectory_id} in ClickHouse (not landed yet, or past the "
                                f"{self.settings.clickhouse_ttl_days}-day retention)")  # fmt: skip
        latest = versions[-1]
        window = q.Window(trajectory_id, latest["agent_id"], min(v["started_at"] for v in versions) - _HOUR_MS,
                          max(v["scored_at"] for v in versions) + _HOUR_MS)  # fmt: skip
        rows = {name: self._rows(query) for name, query in q.detail_queries(self.db, window).items()}
        credit_of = {int(turn): float(c) for v, _, _, turn, c, _ in rows["credits"] if v == latest["version"]}
        messages: dict[int, list[dict[str, Any]]] = {}
        for turn, seq, role, kind, text, tool, call in rows["messages"]:
            messages.setdefault(int(turn), []).append({"seq": int(seq), "role": role, "kind": kind, "text": text,
                                                       "tool_name": tool, "call_id": call})  # fmt: skip
        calls: dict[int, list[dict[str, Any]]] = {}
        for turn, call, tool, arguments, status, latency in rows["tool_calls"]:
            calls.setdefault(int(turn), []).append({"call_id": call, "tool": tool, "arguments": arguments,
                                                    "status": status, "latency_ms": latency})  # fmt: skip
        turns = [
            {"turn_index": int(i), "timestamp": int(ts), "duration_ms": int(d), "error": bool(err), "error_type": et,
             "model": model, "model_version": mv, "tokens_in": tin, "tokens_out": tout, "air": float(air),
             "credit": credit_of.get(int(i)), "messages": messages.get(int(i), []), "tool_calls": calls.get(int(i), [])}
            for i, ts, d, err, et, model, mv, tin, tout, air in rows["turns"]
        ]  # fmt: skip
        latest_only = [row for row in rows["rewards"] if row[0] == latest["version"]]
        return {
            "trajectory": latest,
            "versions": [{"version": v["version"], "scored_at": v["scored_at"], "outcome": v["outcome"],
                          "reward": v["reward"], "reason": v["reason"]} for v in versions],
            "turns": turns,
            "rewards": [{"component": c, "value": val, "weight": w, "detail": d} for _, c, val, w, d in latest_only],
            "credits": [{"method": m, "step_index": s, "turn_index": t, "credit": c, "air": a}
                        for v, m, s, t, c, a in rows["credits"] if v == latest["version"]],
            "decisions": [{"step_index": s, "decision_type": dt, "chosen_action": ca, "reasoning": rs,
                           "alternatives": list(alt), "confidence": conf, "implicit": bool(imp)}
                          for _, s, dt, ca, rs, alt, conf, imp in rows["decisions"]],
            "entities": [{"name": n, "entity_type": et, "discovered_at_step": st, "importance": im,
                          "relationships": list(rel)} for _, n, et, st, im, rel in rows["entities"]],
            "children": [{"trajectory_id": c, "agent_id": a, "outcome": o, "reward": rw, "task": t}
                         for c, a, o, rw, t in rows["children"]],
            "parent": latest["parent_trajectory_id"] or None,
        }  # fmt: skip

    # --- Dead letters --------------------------------------------------------------------------
    def dead_letters(self, r: TimeRange, stage: str | None, page: int, page_size: int) -> dict[str, Any]:
        rows = self._rows(q.dead_letter_list(self.db, r, stage, page, page_size))
        out = []
        for partition, offset, at, st, error_type, reason, source, tid, size, cut in rows[:page_size]:
            why = why_not_replayable(source, bool(cut))
            out.append({"ref": f"{partition}:{offset}", "failed_at": int(at), "stage": st, "error_type": error_type,
                        "reason": reason, "source": source, "trajectory_id": tid, "payload_bytes": int(size),
                        "replayable": not why, "why_not": why})  # fmt: skip
        return {
            "range": r.as_json(), "page": page, "has_more": len(rows) > page_size, "rows": out,
            "timeline": [{"t": int(t), "stage": s, "count": int(n)}
                         for t, s, n in self._rows(q.dead_letter_timeline(self.db, r))],
            "by_reason": [{"stage": s, "error_type": e, "reason": rs, "count": int(n)}
                          for s, e, rs, n in self._rows(q.dead_letter_reasons(self.db, r))],
        }  # fmt: skip

    # --- Trainer -------------------------------------------------------------------------------
    def trainer(self, r: TimeRange) -> dict[str, Any]:
        """Versions from the trainer's model.versions events. A rolled_back event names the version deployed
        again (`trajstream model rollback`) when that version was deployed before, else the canary that lost."""
        lines: dict[str, dict[str, Any]] = {}
        for at, model, version, number, parent, event, metrics, reason in self._rows(
            q.model_version_events(self.db, r)
        ):
            line = lines.setdefault(model, {"model": model, "deployed": None, "versions": {}, "rollbacks": []})
            v = line["versions"].setdefault(version, {
                "version": version, "number": int(number), "parent": parent or None, "status": "candidate",
                "created_at": int(at), "metrics": {}, "gate": "pending", "reason": "", "events": [],
                "ever_deployed": False,
            })  # fmt: skip
            v["metrics"].update({k: float(x) for k, x in dict(metrics).items()})
            v["events"].append({"t": int(at), "event": event, "reason": reason})
            if event == "created":
                v["created_at"] = int(at)
            elif event == "deployed":
                v.update(status="deployed", gate="deployed", reason=reason, ever_deployed=True)
                line["deployed"] = version
            elif event == "rejected":
                v.update(status="rejected", gate="rejected", reason=reason)
            elif event == "canary":
                v.update(status="canary", reason=reason)
            elif event == "rolled_back":
                line["rollbacks"].append({"t": int(at), "version": version, "reason": reason})
                if v["ever_deployed"] and line["deployed"] != version:
                    previous = line["versions"].get(line["deployed"] or "")
                    if previous is not None:
                        previous["status"] = "rolled_back"
                    v["status"], line["deployed"] = "deployed", version
                else:
                    v["status"] = "rolled_back"
        models = []
        for line in lines.values():
            versions = []
            for v in sorted(line["versions"].values(), key=lambda x: x["number"]):
                m = v.pop("metrics")
                v.pop("ever_deployed")
                versions.append({**v, "heldout_reward": m.get("heldout_reward"),
                                 "heldout_reward_deployed": m.get("heldout_reward_deployed"),
                                 "kl": m.get("kl_from_deployed"), "size_bytes": m.get("size_bytes"),
                                 "train_loss": m.get("train_loss")})  # fmt: skip
            models.append({"model": line["model"], "deployed": line["deployed"], "versions": versions,
                           "rollbacks": line["rollbacks"]})  # fmt: skip
        first = models[0] if models else {"model": None, "deployed": None, "versions": [], "rollbacks": []}
        return {"range": r.as_json(), **first, "models": models}
