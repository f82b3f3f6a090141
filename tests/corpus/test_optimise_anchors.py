"""The instructions report's outputs load in the platforms they are for: its reflective dataset goes through
gepa's own optimiser (anchors/gepa/load.py) and its patched system messages load and render as Agent
Lightning `PromptTemplate`s (anchors/agentlightning/load_prompt.py), on the planted corpus landed through the
real scoring and sink, as written by `trajstream optimise instructions`."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.anchors import run_anchor
from tests.support.optimise_corpus import land_planted
from trajstream.corpus.optimise.digest import read_digests
from trajstream.corpus.optimise.instructions import instructions_report
from trajstream.corpus.optimise.report import write_jsonl, write_report
from trajstream.corpus.read import CorpusFilter, CorpusReader
from trajstream.settings import Settings

pytestmark = pytest.mark.integration

# A line with literal braces, as a system message quoting JSON or a placeholder-like id would have: the
# template must render it back unchanged, never take `{order_id}` for a placeholder.
BRACES = 'Answer refunds as {"order_id": "...", "amount": 0}; write {order_id} and {{ }} as they stand.\n'


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> dict[str, Path]:
    """The command's report on the planted corpus, and the same report with braces in the system messages."""
    from trajstream.cli import main

    settings = Settings(home=tmp_path_factory.mktemp("anch"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"g{uuid.uuid4().hex[:10]}")  # fmt: skip
    client, _ = land_planted(settings)
    command = tmp_path_factory.mktemp("command")
    env = {"TRAJSTREAM_CLICKHOUSE_DSN": settings.clickhouse_dsn or "", "TRAJSTREAM_HOME": str(settings.home),
           "TRAJSTREAM_CLICKHOUSE_DATABASE": settings.clickhouse_database}  # fmt: skip
    result = CliRunner().invoke(main, ["optimise", "instructions", "--no-embedding", "--out", str(command)], env=env,
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output

    digests = read_digests(CorpusReader(client, settings), CorpusFilter())
    braced = [dataclasses.replace(d, system_message=d.system_message + BRACES) for d in digests]
    report, rows = instructions_report(braced, None, settings)
    braces = tmp_path_factory.mktemp("braces")
    write_report(braces, "instructions", report, "")
    write_jsonl(braces / "reflective_dataset.jsonl", rows)
    return {"command": command, "braces": braces}


def _read(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = json.loads((folder / "instructions.json").read_text())
    rows = [json.loads(x) for x in (folder / "reflective_dataset.jsonl").read_text().splitlines()]
    return report, rows


def _gepa(folder: Path) -> Any:
    return run_anchor("gepa", "load.py", folder / "reflective_dataset.jsonl", folder / "instructions.json")


@pytest.mark.parametrize("which", ["command", "braces"])
def test_gepa_reflects_on_the_reflective_dataset(reports: dict[str, Path], which: str) -> None:
    report, rows = _read(reports[which])
    texts = [c["patch"]["text"] for c in report["findings"] if "patch" in c]
    assert rows and texts
    out = _gepa(reports[which])
    assert out["schema_problems"] == [] and out["records"] == len(rows)
    assert sum(r["records"] for r in out["runs"]) == len(rows)
    for run in out["runs"]:
        # gepa asked for the component, got every record back from the adapter and put each in its prompt.
        assert run["component"] == "system_message" and run["reflection_prompts"] == 1 and run["prompt_is_lm_prompt"]
        assert run["handed_to_gepa"] == run["examples_in_prompt"] == run["records"]
        assert run["seed_in_prompt"]
        assert all(all(found.values()) for found in run["records_in_prompt"]), run["records_in_prompt"]
        assert run["total_metric_calls"] >= 2 * run["records"]  # the seed's evaluation, then the minibatch's
    # Its instruction proposal extracts the report's patched system message from the reflection's answer.
    proposed = [r["new_instruction"] for r in out["runs"] if r["answer_from_report"]]
    assert proposed and all(r["new_instruction_is_answer"] for r in out["runs"])
    assert any("verify_identity" in p and "issue_refund" in p for p in proposed)
    assert {p for p in proposed} <= {t.strip() for t in texts}


def test_gepa_reports_records_out_of_shape(reports: dict[str, Path], tmp_path: Path) -> None:
    report, rows = _read(reports["command"])
    broken = [{**rows[0], "Inputs": json.dumps(rows[0]["Inputs"])},
              {k: v for k, v in rows[1].items() if k != "Feedback"}, *rows[2:]]  # fmt: skip
    write_report(tmp_path, "instructions", report, "")
    write_jsonl(tmp_path / "reflective_dataset.jsonl", broken)
    out = _gepa(tmp_path)
    assert out["schema_problems"] == ["record 0: Inputs is not a dict of strings", "record 1 lacks 'Feedback'"]
    assert out["runs"] == []


@pytest.fixture(scope="module")
def agent_lightning(reports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Agent Lightning's loading of each report (one process for all: its import takes about 27 s here), and of
    the braces report with each patch's text itself as the template: `{order_id}` then is a placeholder."""
    report, _ = _read(reports["braces"])
    for c in report["findings"]:
        if "patch" in c:
            c["patch"]["prompt_template"]["template"] = c["patch"]["text"]
    stray = tmp_path_factory.mktemp("stray") / "instructions.json"
    stray.write_text(json.dumps(report))
    names = ["command", "braces", "stray"]
    paths = [reports["command"] / "instructions.json", reports["braces"] / "instructions.json", stray]
    out = run_anchor("agentlightning", "load_prompt.py", *paths, timeout_s=400)
    return dict(zip(names, out["reports"], strict=True))


@pytest.mark.timeout(500)
@pytest.mark.parametrize("which", ["command", "braces"])
def test_agent_lightning_renders_each_patched_system_message(
    reports: dict[str, Path], agent_lightning: dict[str, Any], which: str
) -> None:
    report, _ = _read(reports[which])
    patches = [c["patch"] for c in report["findings"] if "patch" in c]
    out = agent_lightning[which]
    assert len(out["patches"]) == len(patches)
    for loaded, patch in zip(out["patches"], patches, strict=True):
        assert loaded["error"] is None and loaded["engine"] == "f-string"
        assert loaded["rendered"] == patch["text"] and loaded["renders_text"]
    assert any("verify_identity" in p["rendered"] for p in out["patches"])  # the planted defect's patch
    if which == "braces":
        assert all(BRACES in p["rendered"] for p in out["patches"])


@pytest.mark.timeout(500)
def test_agent_lightning_refuses_a_template_with_stray_braces(agent_lightning: dict[str, Any]) -> None:
    out = agent_lightning["stray"]
    assert out["patches"] and all(p["rendered"] is None and "KeyError" in p["error"] for p in out["patches"])
