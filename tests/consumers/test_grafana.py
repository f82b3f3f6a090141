"""Grafana's provisioning and trajstream's dashboards: every query a panel, a variable or an annotation sends runs
against chDB holding trajectories landed by the real sink, expanded as Grafana and the ClickHouse plugin expand it
(tests/support/grafana_macros.py), and a few panels show exactly what was landed."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.grafana_macros import ALL, TimeRange, Variable, render
from tests.support.landing import landing_settings
from trajstream.consumers.clickhouse_sink import ClickHouseSink
from trajstream.consumers.clickhouse_store import ClickHouseError, connect, migrate, read_only_query
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.streams.in_process import Pipeline
from trajstream.synthetic import tool_trajectory
from trajstream.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, MODEL_VERSIONS, SCORED
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import (
    Message,
    ToolCall,
    ToolResponse,
    dead_letter_record,
    end_record,
    start_record,
    turn_record,
)

pytestmark = pytest.mark.integration

GRAFANA = PROJECT_ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "trajstream-clickhouse"
TIME_SERIES = 0  # the plugin's Format.TIMESERIES; 1 is a table


def _compose_grafana() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    return service


def _board(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def _targets(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, target) for every query of a dashboard: panel targets and annotation targets."""
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r}", target
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["target"]


def test_the_provisioning_files_name_the_datasource_every_panel_uses() -> None:
    (source,) = yaml.safe_load((GRAFANA / "provisioning/datasources/clickhouse.yaml").read_text())["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "grafana-clickhouse-datasource"
    assert {"host", "port", "protocol", "username", "defaultDatabase"} <= set(source["jsonData"])
    # Every ${VAR} the provisioning reads is set by the compose service; the password never sits in the file.
    assert source["secureJsonData"]["password"] == "${CLICKHOUSE_PASSWORD}"
    service = _compose_grafana()
    wanted = set(re.findall(r"\$\{(\w+)\}", (GRAFANA / "provisioning/datasources/clickhouse.yaml").read_text()))
    assert wanted and wanted <= set(service["environment"])
    assert source["jsonData"]["host"] in service["depends_on"]

    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/trajstream.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["folder"] == "trajstream"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"] if m.startswith("./")}
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert all(m.endswith(":ro") for m in service["volumes"] if m.startswith("./"))

    assert [p.stem for p in DASHBOARDS] == ["dead_letters", "models", "overview", "tools"]
    for path in DASHBOARDS:
        board = _board(path)
        assert board["uid"] and board["title"], path
        for what, target in _targets(board):
            assert target.get("datasource", {"uid": DATASOURCE_UID})["uid"] == DATASOURCE_UID, (path.name, what)
            assert "$__timeFilter(" in target["rawSql"], (path.name, what)
            assert "FINAL" not in target["rawSql"].upper().split(), (path.name, what)
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID and panel["targets"], (path.name, panel["title"])
        for annotation in board["annotations"]["list"]:
            if "target" in annotation:
                assert annotation["datasource"]["uid"] == DATASOURCE_UID
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == DATASOURCE_UID and variable["multi"] and variable["includeAll"]
    assert len({_board(p)["uid"] for p in DASHBOARDS}) == len(DASHBOARDS)


# --- what is landed ---------------------------------------------------------------------------------------------


@dataclass
class Landed:
    client: Any
    database: str
    time_range: TimeRange


LOOP_REPEATS = 4


def _loop_trajectory(codec: SingleObjectCodec) -> list[tuple[str, bytes]]:
    """A trajectory that calls search with the same arguments in each of its turns, then fails."""
    tid = str(uuid.uuid4())
    start = start_record(tid, "Find order 9", agent_id="agent-b", domain="support")
    events = [(EVENTS_TOPIC, codec.encode("trajectory_start", start))]
    for i in range(LOOP_REPEATS):
        call = Message("assistant", ToolCall("search", f"s{i}", {"q": 9}))
        messages = [Message.text("user", f"Find order 9 (step {i})"), call]
        if i:
            messages.insert(0, Message("tool", ToolResponse("search", f"s{i - 1}", {"hits": 0}, "success")))
        events.append((EVENTS_TOPIC, codec.encode("turn", turn_record(tid, i, messages, duration_ms=100))))
    events.append((EVENTS_TOPIC, codec.encode("trajectory_end", end_record(tid, "failure", turn_count=LOOP_REPEATS))))
    return events


def _version_event(version: str, event: str) -> dict[str, Any]:
    return {"model_name": "policy", "version": version, "number": int(version[1:]), "parent": None, "event": event,
            "at": datetime.now(UTC), "path": f"/models/policy/{version}", "windows": ["w1"],
            "metrics": {"heldout_reward": 0.5}, "reason": "gate: better", "base": None,
            "canary_share": 0.0}  # fmt: skip


def _record(topic: str, offset: int, value: bytes) -> Any:
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", value, None, 0, len(value), [])


@pytest.fixture(scope="module")
def landed(chdb_dir: Path, codec: SingleObjectCodec, tmp_path_factory: pytest.TempPathFactory) -> Landed:
    """Nine trajectories through the in-process streams and the real ClickHouse sink: agent-a's four lookups that
    succeed and two charges that fail (two of three calls answered with an error), agent-b's two lookups on model
    version v2 and one search loop that fails; two model version events, three dead letters."""
    settings = landing_settings(Settings(home=tmp_path_factory.mktemp("grafana-home")), chdb_dir)
    pipeline = Pipeline(settings, codec)
    scored: list[bytes] = []
    for n in range(4):
        scored += pipeline.run(tool_trajectory(codec, f"Look up {n}", "lookup", "success", "success", turns=3,
                                               model_version="v1", model="gpt-test", tokens=(100, 10))[1])  # fmt: skip
    for n in range(2):
        scored += pipeline.run(tool_trajectory(codec, f"Charge {n}", "charge", "error", "failure", turns=3,
                                               model_version="v1", model="gpt-test", tokens=(100, 10))[1])  # fmt: skip
    for n in range(2):
        scored += pipeline.run(tool_trajectory(codec, f"Look up b{n}", "lookup", "success", "success", agent="agent-b",
                                               model_version="v2", model="gpt-test", tokens=(200, 20))[1])  # fmt: skip
    scored += pipeline.run(_loop_trajectory(codec))
    assert len(scored) == 9

    def letter(stage: str) -> bytes:
        return codec.encode("dead_letter", dead_letter_record(
            stage=stage, reason=f"{stage} refused it", error_type="Test", source="x", source_partition=0,
            source_offset=1, trajectory_id=None, key=None, payload=b"bad",
            max_payload_bytes=codec.limits.dead_letter_payload_bytes))  # fmt: skip

    topic = settings.topic
    records = [_record(topic(SCORED), i, v) for i, v in enumerate(scored)]
    versions = [_version_event("v1", "created"), _version_event("v2", "deployed")]
    records += [_record(topic(MODEL_VERSIONS), i, codec.encode("model_version", v)) for i, v in enumerate(versions)]
    stages = ["assembly", "assembly", "enrich"]
    records += [_record(topic(DEAD_LETTER_TOPIC), i, letter(s)) for i, s in enumerate(stages)]
    client = connect(settings)
    migrate(client, settings)  # makes the test database the client's default, as defaultDatabase does in the plugin
    assert ClickHouseSink(settings, client, codec).land(records) == []
    now = datetime.now(UTC)
    return Landed(client, settings.clickhouse_database, TimeRange(now - timedelta(hours=1), now + timedelta(minutes=5)))


def _run(landed: Landed, raw_sql: str, variables: Mapping[str, Variable]) -> dict[str, Any]:
    sql = render(raw_sql, variables, landed.time_range)
    try:
        return read_only_query(landed.client, sql, landed.database)
    except ClickHouseError as exc:
        raise AssertionError(f"{exc}\n--- expanded SQL ---\n{sql}") from exc


def _variables(landed: Landed, board: dict[str, Any], selected: Mapping[str, list[str]]) -> dict[str, Variable]:
    """Each variable's options from its own query, in order (a later one may use an earlier one), as Grafana does."""
    variables: dict[str, Variable] = {}
    for spec in board["templating"]["list"]:
        rows = _run(landed, spec["query"]["rawSql"], variables)["rows"]
        options = [str(row[0]) for row in rows]
        variables[spec["name"]] = Variable(spec["name"], options, selected.get(spec["name"], [ALL]))
    return variables


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    found: dict[str, Any] = panel
    return found


def _board_named(stem: str) -> dict[str, Any]:
    return _board(GRAFANA / "dashboards" / f"{stem}.json")


SELECTIONS: dict[str, dict[str, list[str]]] = {
    "all": {},
    "one agent": {"agent": ["agent-b"], "domain": ["support"], "stage": ["assembly"]},
    "two agents": {"agent": ["agent-a", "agent-b"]},
}


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_query_of_a_dashboard_runs_on_landed_data(landed: Landed, path: Path, selection: str) -> None:
    board = _board(path)
    variables = _variables(landed, board, SELECTIONS[selection])
    for variable in variables.values():
        assert variable.options, f"{path.name}: variable {variable.name} found no values in the landed data"
    for what, target in _targets(board):
        result = _run(landed, target["rawSql"], variables)
        if target["format"] == TIME_SERIES:
            # The plugin turns a long frame into series: a time column, sorted ascending.
            assert result["columns"][0] == "time", (path.name, what, result["columns"])
            times = [row[0] for row in result["rows"]]
            assert times == sorted(times), (path.name, what)
        if selection == "all" and not what.startswith("panel 'Repeated") and "Timeout" not in what:
            assert result["rows"], f"{path.name}: {what} shows nothing for the landed data"


def _one(landed: Landed, board: dict[str, Any], title: str, selected: Mapping[str, list[str]]) -> dict[str, Any]:
    return _run(landed, _panel(board, title)["targets"][0]["rawSql"], _variables(landed, board, selected))


def test_overview_panels_count_what_was_landed(landed: Landed) -> None:
    board = _board_named("overview")
    assert _one(landed, board, "Trajectories", {})["rows"] == [[9]]
    assert _one(landed, board, "Trajectories", {"agent": ["agent-b"]})["rows"] == [[3]]
    (rate,) = _one(landed, board, "Success rate", {})["rows"][0]
    assert rate == pytest.approx(6 / 9)
    per_interval = _one(landed, board, "Trajectories per interval", {})["rows"]
    assert sum(n for _, n in per_interval) == 9
    curve = _one(landed, board, "Learning curve: success rate per model version", {})["rows"]
    assert {version for _, version, _ in curve} == {"v1", "v2", "(none)"}
    assert all(rate == 1.0 for _, version, rate in curve if version == "v2")
    (deployment,) = _run(landed, board["annotations"]["list"][1]["target"]["rawSql"], {})["rows"]
    assert deployment[1] == "policy v2 deployed"


def test_tool_panels_show_the_failing_tool_and_the_loop(landed: Landed) -> None:
    board = _board_named("tools")
    result = _one(landed, board, "Per tool", {})
    rows = {row[0]: dict(zip(result["columns"], row, strict=True)) for row in result["rows"]}
    # Two charge trajectories of three calls: two answered with an error, the last never answered.
    assert rows["charge"]["n_calls"] == 6 and rows["charge"]["error_rate"] == pytest.approx(4 / 6)
    assert rows["lookup"]["error_rate"] == 0 and rows["lookup"]["n_calls"] == 4 * 3 + 2 * 2
    assert rows["search"]["n_calls"] == LOOP_REPEATS
    preceding = _one(landed, board, "Tools preceding failure", {})["rows"]
    assert sorted(map(tuple, preceding)) == [("charge", 2, 1.0), ("search", 1, 1.0)]  # tool, failures, rate
    assert _one(landed, board, "Repeated-call loops", {})["rows"] == [["search", 1, LOOP_REPEATS]]
    assert _one(landed, board, "Repeated-call loops", {"agent": ["agent-a"]})["rows"] == []


def test_model_and_dead_letter_panels_count_what_was_landed(landed: Landed) -> None:
    result = _one(landed, _board_named("models"), "Per model and version", {})
    rows = {(r[0], r[1]): dict(zip(result["columns"], r, strict=True)) for r in result["rows"]}
    assert rows[("gpt-test", "v1")]["tokens_in"] == 6 * 3 * 100 and rows[("gpt-test", "v2")]["tokens_out"] == 2 * 2 * 20
    assert rows[("gpt-test", "v1")]["p50_ms"] == 100
    letters = _board_named("dead_letters")
    assert _one(landed, letters, "Dead letters", {})["rows"] == [[3]]
    assert _one(landed, letters, "Dead letters", {"stage": ["assembly"]})["rows"] == [[2]]


def test_a_panel_whose_sql_is_broken_fails(landed: Landed) -> None:
    broken = "SELECT $__timeInterval(minute) AS time, sum(trajectorie) FROM trajectory_metrics_minute " \
             "WHERE $__timeFilter(minute) GROUP BY time"  # fmt: skip
    with pytest.raises(AssertionError, match="trajectorie"):
        _run(landed, broken, {})


# The plugin's own expectations (pkg/macros/macros_test.go, src/data/CHDatasource.test.ts, the docs' macro table).
PLUGIN_RANGE = TimeRange(datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=UTC),
                         datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=UTC), timedelta(seconds=20))  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expanded"),
    [
        ("where $__timeFilter(cast(sth as timestamp) )",
         "where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= toDateTime(1447328726)"),
        ("where $__timeFilter_ms(t)",
         "where t >= fromUnixTimestamp64Milli(1415792726123) AND t <= fromUnixTimestamp64Milli(1447328726456)"),
        ("where ( date >= $__fromTime ) and ( date <= $__toTime )",
         "where ( date >= toDateTime(1415792726) ) and ( date <= toDateTime(1447328726) )"),
        ("$__timeInterval(column)", "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"),
        ("$__dateFilter(d)", "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"),
        ("x -- $__timeFilter(t)\n", "x " + " " * len("-- $__timeFilter(t)") + "\n"),  # comments: never expanded
    ],
)  # fmt: skip
def test_the_macros_expand_as_the_plugin_expands_them(raw: str, expanded: str) -> None:
    assert render(raw, {}, PLUGIN_RANGE) == expanded


def test_variables_expand_as_grafana_and_the_plugin_expand_them() -> None:
    raw = "where $__conditionalAll(a in ($a), $a) and $__conditionalAll(b in (${b:singlequote}), $b) and c in ($b)"
    chosen = {"a": Variable("a", ["x", "y"]), "b": Variable("b", ["x", "it's"], ["x", "it's"])}
    # "All" drops the condition; a selection keeps it; the plugin's format quotes a list without escaping.
    assert render(raw, chosen, PLUGIN_RANGE) == "where 1=1 and b in ('x','it\\'s') and c in ('x','it's')"
    assert render("in (${a:singlequote})", chosen, PLUGIN_RANGE) == "in ('x','y')"  # "All" outside: every option
    with pytest.raises(ValueError, match="format 'csv'"):
        render("${a:csv}", chosen, PLUGIN_RANGE)
