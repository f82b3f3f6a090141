"""The optimisation reports find the defects planted in a corpus landed through the real scoring and sink,
at the top, with real trajectory ids as evidence; on the control corpus (the defect left out) they do not."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.openai_server import HttpError, OpenAIServer, Reply
from tests.support.openai_server import openai_server_fixture as openai_server  # noqa: F401
from tests.support.optimise_corpus import land_planted
from trajstream.consumers.embedding import Embedder
from trajstream.corpus.optimise.digest import Digest, read_digests
from trajstream.corpus.optimise.instructions import instructions_report
from trajstream.corpus.optimise.planted import DEFECTS, REFUND, REGISTERED_SKILLS, TRACK, PlantedCorpus
from trajstream.corpus.optimise.skills import folded, skills_report
from trajstream.corpus.optimise.tools import tools_report
from trajstream.corpus.read import CorpusFilter, CorpusReader
from trajstream.settings import Settings

pytestmark = pytest.mark.integration

Landed = tuple[Settings, list[Digest], PlantedCorpus]


def _land(factory: pytest.TempPathFactory, chdb_dir: Path, defects: tuple[str, ...]) -> Landed:
    settings = Settings(home=factory.mktemp("opt"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"o{uuid.uuid4().hex[:10]}")  # fmt: skip
    client, corpus = land_planted(settings, defects)
    reader = CorpusReader(client, settings, batch=50)  # several pages
    digests = read_digests(reader, CorpusFilter())
    assert reader.skipped == [] and {d.trajectory_id for d in digests} == set(corpus.plans)
    return settings, digests, corpus


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Landed:
    return _land(tmp_path_factory, chdb_dir, DEFECTS)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Landed:
    return _land(tmp_path_factory, chdb_dir, ())


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()  # loaded once for the module (about 15 s on two idle cores)


# --- tools -------------------------------------------------------------------------------------------


def test_tools_report_puts_the_international_lookup_failure_first(planted: Landed) -> None:
    _, digests, corpus = planted
    report = tools_report(digests)
    top = report["findings"][0]
    assert (top["kind"], top["tool"], top["feature"]) == ("failure_correlation", "lookup_order", "order_id~INT-#")
    international = corpus.ids(lambda p: p.task == TRACK and "INT-" in p.request)
    assert top["evidence"]["count"] == len(international)
    assert set(top["evidence"]["trajectory_ids"]) <= international
    assert top["failure_with"]["rate"] == 1.0 and top["failure_without"]["ci95"][1] < top["failure_with"]["ci95"][0]
    assert any(f["tool"] == "lookup_order" for f in report["loops"])  # the planted retries


def test_tools_report_on_the_control_corpus_finds_no_international_failure(control: Landed) -> None:
    _, digests, _ = control
    report = tools_report(digests)
    assert not [f for f in report["failure_correlations"] if f["tool"] == "lookup_order"]
    assert not report["loops"]


# --- skills ------------------------------------------------------------------------------------------


def test_skills_report_puts_the_improvised_sequence_first(planted: Landed) -> None:
    _, digests, corpus = planted
    report = skills_report(digests, REGISTERED_SKILLS)
    top = report["findings"][0]
    assert top["kind"] == "skill_candidate" and top["sequence"] == ["search_kb", "summarise", "reply"]
    assert len(top["task_groups"]) == 3 and {g["agent"] for g in top["task_groups"]} == {"kb-bot", "support-bot"}
    improvised = corpus.ids(lambda p: p.outcome == "success"
                            and "search_kb,summarise,reply" in ",".join(folded([s.tool for s in p.steps])))  # fmt: skip
    assert top["evidence"]["count"] == top["support_in_successes"] == len(improvised)
    assert set(top["evidence"]["trajectory_ids"]) <= improvised


def test_skills_report_on_the_control_corpus_has_no_such_candidate(control: Landed) -> None:
    _, digests, _ = control
    report = skills_report(digests, REGISTERED_SKILLS)
    assert not [c for c in report["candidates"] if "summarise" in c["sequence"]]


# --- instructions --------------------------------------------------------------------------------------


def _refund_failures_without_verification(corpus: PlantedCorpus) -> set[str]:
    return corpus.ids(lambda p: p.task == REFUND and p.outcome == "failure"
                      and "verify_identity" not in [s.tool for s in p.steps])  # fmt: skip


def test_instructions_report_finds_the_missing_verification_first(planted: Landed, embedder: Embedder) -> None:
    settings, digests, corpus = planted
    report, rows = instructions_report(digests, embedder, settings)  # no LLM configured: the heuristic
    assert report["patches_proposed_by"] == "heuristic" and "no LLM" in report["why"]
    top = report["findings"][0]
    assert top["task_key"] == "refund a damaged order"
    first = top["distinguishing"][0]
    assert (first["feature"], first["side"]) == ("calls:verify_identity", "missing")
    assert first["in_successes"]["rate"] == 1.0 and "issue_refund" in first["before"]
    skipped = _refund_failures_without_verification(corpus)
    assert set(first["evidence_failures_without"]["trajectory_ids"]) <= skipped
    assert first["evidence_failures_without"]["count"] == len(skipped)
    patch = top["patch"]
    added = [line for line in patch["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert any("verify_identity" in line and "issue_refund" in line for line in added)
    assert patch["diff"].startswith("--- a/support-bot/system_message")
    assert rows and all({"Inputs", "Generated Outputs", "Feedback", "score"} <= set(r) for r in rows)
    failed = [r for r in rows if r["trajectory_id"] in skipped]
    assert failed and all("verify_identity" in r["Feedback"] and r["score"] < 1 for r in failed)


def test_instructions_report_on_the_control_corpus_proposes_no_verification(control: Landed,
                                                                            embedder: Embedder) -> None:  # fmt: skip
    settings, digests, _ = control
    report, _ = instructions_report(digests, embedder, settings)
    assert not [c for c in report["findings"] if c["task_key"] == "refund a damaged order" and c["distinguishing"]]
    claims = [(c["summary"], c["distinguishing"], c.get("patch")) for c in report["findings"]]
    assert "verify_identity" not in json.dumps(claims)  # the failures call it too: nothing to add


def test_an_llm_proposes_the_patch_when_configured(planted: Landed, embedder: Embedder,
                                                   openai_server: OpenAIServer) -> None:  # noqa: F811  # fmt: skip
    settings, digests, _ = planted
    line = "Verify the customer's identity with verify_identity before any refund."
    openai_server.script([HttpError(503)], default=Reply({"instructions": [line], "rationale": "the evidence"}))
    llm = settings.model_copy(update={"llm_base_url": openai_server.base_url, "llm_model": "patcher"})
    report, _ = instructions_report(digests, embedder, llm)
    assert report["patches_proposed_by"] == "llm:patcher"
    top = report["findings"][0]
    assert top["patch"]["lines"] == [f"- {line}"] and f"+- {line}" in top["patch"]["diff"]
    asked = openai_server.requests[1].messages[1]["content"]  # after the retried 503
    assert "verify_identity" in asked and "Refund a damaged order" in asked and "You are the support agent" in asked


def test_a_failing_llm_falls_back_to_the_heuristic_and_says_so(planted: Landed, embedder: Embedder,
                                                               openai_server: OpenAIServer) -> None:  # noqa: F811  # fmt: skip
    settings, digests, _ = planted
    openai_server.script([], default=HttpError(400, "bad model"))
    llm = settings.model_copy(update={"llm_base_url": openai_server.base_url})
    report, _ = instructions_report(digests, embedder, llm)
    assert report["patches_proposed_by"] == "heuristic" and "LLM" in report["why"] and "bad model" in report["why"]
    assert "verify_identity" in report["findings"][0]["patch"]["diff"]


# --- the command -----------------------------------------------------------------------------------------


def test_the_commands_write_markdown_and_json(planted: Landed, tmp_path: Path) -> None:
    from trajstream.cli import main

    settings, _, _ = planted
    env = {"TRAJSTREAM_CLICKHOUSE_DSN": settings.clickhouse_dsn or "", "TRAJSTREAM_HOME": str(tmp_path),
           "TRAJSTREAM_CLICKHOUSE_DATABASE": settings.clickhouse_database}  # fmt: skip
    runner = CliRunner()
    for args in (["tools"], ["skills", "--skill", "escalate_ticket"], ["instructions", "--no-embedding"]):
        result = runner.invoke(main, ["optimise", *args, "--out", str(tmp_path / "r"), "--agent", "support-bot",
                                      "--agent", "kb-bot"], env=env, catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 0, result.output
    tools: dict[str, Any] = json.loads((tmp_path / "r/tools.json").read_text())
    assert tools["findings"][0]["tool"] == "lookup_order" and tools["filter"]["agents"] == ["support-bot", "kb-bot"]
    assert "`lookup_order` fails when `order_id~INT-#`" in (tmp_path / "r/tools.md").read_text()
    assert "`search_kb` → `summarise` → `reply`" in (tmp_path / "r/skills.md").read_text()
    assert "verify_identity" in (tmp_path / "r/instructions.md").read_text()
    rows = [json.loads(x) for x in (tmp_path / "r/reflective_dataset.jsonl").read_text().splitlines()]
    assert rows and "Feedback" in rows[0]
    only = runner.invoke(main, ["optimise", "tools", "--out", str(tmp_path / "k"), "--agent", "kb-bot"], env=env)
    assert only.exit_code == 0 and "lookup_order" not in (tmp_path / "k/tools.md").read_text().split("## Effect")[0]
