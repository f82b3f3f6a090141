"""Each format reads only the parts of the corpus it declares (``Format.parts``): that is what makes an export
fast, and it must never change what is written. Every format, by reward and by credit, writes the same files
(same hashes) from its own parts as from all of them, on a corpus that has every part: token log-probabilities,
tool calls (two in one model call), AIR, credits of two methods, reward components, and task groups whose best
and worst members replied differently, so that every format writes rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.art_agl_corpus import emit
from tests.support.export_openai_corpus import emit_corpus
from tests.support.scored_landing import land_events
from trajstream.consumers.clickhouse_store import connect, migrate
from trajstream.corpus.export.config import ExportSettings
from trajstream.corpus.export.formats import known_formats
from trajstream.corpus.export.run import export
from trajstream.corpus.read import ALL_PARTS, CorpusFilter
from trajstream_sdk.codec import codec_for

pytestmark = pytest.mark.integration

TASKS = ["Refund a broken order", "Cancel my subscription"] * 3


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[tuple[ExportSettings, Any]]:
    settings = ExportSettings(home=tmp_path_factory.mktemp("parts"), clickhouse_dsn=f"chdb://{chdb_dir}",
                              clickhouse_database=f"pa{uuid.uuid4().hex[:10]}")  # fmt: skip
    client = connect(settings)
    migrate(client, settings)
    codec = codec_for(settings)
    events = emit_corpus(codec)[1]
    for i, task in enumerate(TASKS):
        events += emit(codec, task, "success" if i % 3 else "failure")[1]
    land_events(settings, client, codec, events)
    yield settings, client


def _hashes(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["path"], f["sha256"]) for f in manifest["files"]]


@pytest.mark.parametrize("weight_by", ["reward", "credit"])
@pytest.mark.parametrize("name", sorted(known_formats()))
def test_a_formats_own_parts_write_what_all_parts_write(
    store: tuple[ExportSettings, Any], tmp_path: Path, name: str, weight_by: str
) -> None:
    base, client = store
    settings = base.model_copy(update={"export_weight_by": weight_by})
    own = export(settings, name, tmp_path / "own", CorpusFilter(), batch=4, client=client)
    every = export(settings, name, tmp_path / "all", CorpusFilter(), batch=4, client=client, parts=ALL_PARTS)
    assert own["counts"] == every["counts"] and own["counts"]["exported"] > 0
    assert _hashes(own) == _hashes(every)


def test_credits_change_what_openai_sft_learns_here(store: tuple[ExportSettings, Any], tmp_path: Path) -> None:
    """The corpus tells credit from reward (the decision credits leave a good trajectory's last turn at 0), so
    a format that forgot to read the credits would fail the test above."""
    base, client = store
    by = {w: export(base.model_copy(update={"export_weight_by": w}), "openai-sft", tmp_path / w, CorpusFilter(),
                    client=client) for w in ("reward", "credit")}  # fmt: skip
    assert _hashes(by["reward"]) != _hashes(by["credit"])
