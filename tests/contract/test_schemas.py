"""The Avro contract: every schema loads, and evolution is checked for backward compatibility."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.env import SCHEMAS, trajstream_bin
from trajstream.contract import check_compatibility
from trajstream.errors import SchemaError
from trajstream_sdk.schemas import SchemaCatalog

EXPECTED = {
    "trajectory_start", "turn", "trajectory_end", "feedback", "dead_letter",
    "assembled_trajectory", "enrichment_request", "enrichment_result", "credit_assignment", "scored_trajectory",
    "assembly_state", "assembly_control", "scoring_state", "model_version", "otlp_spans", "otlp_trace_state",
}  # fmt: skip


def test_every_record_has_a_documented_versioned_schema(catalog: SchemaCatalog) -> None:
    assert set(catalog.names) == EXPECTED
    for name in catalog.names:
        for version in catalog.versions(name):
            src = version.source
            assert src["namespace"] in ("dev.trajstream.events", "dev.trajstream.gateway", "dev.trajstream.streams",
                                        "dev.trajstream.training")  # fmt: skip
            assert src["trajstream.version"] == version.version
            assert src.get("doc"), f"{name} v{version.version} has no doc"
            undocumented = [f["name"] for f in src["fields"] if not f.get("doc")]
            assert not undocumented, f"{name}: fields without doc: {undocumented}"


def test_fingerprint_matches_the_avro_spec_test_vector(tmp_path: Path) -> None:
    # The Avro spec's CRC-64-AVRO of the schema "null" is 0x63dd24e7cc258f8a; single-object
    # encoding writes it little-endian.
    (tmp_path / "null").mkdir()
    (tmp_path / "null" / "v1.avsc").write_text('"null"')
    version = SchemaCatalog.from_directory(tmp_path).latest("null")
    assert version.fingerprint == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_current_schemas_are_backward_compatible(catalog: SchemaCatalog) -> None:
    assert check_compatibility(catalog) == []


def _copy_with_v2(tmp_path: Path, name: str, mutate: object) -> Path:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, root)
    v1 = json.loads((root / name / "v1.avsc").read_text())
    v2 = json.loads(json.dumps(v1))
    v2["trajstream.version"] = 2
    mutate(v2)  # type: ignore[operator]
    (root / name / "v2.avsc").write_text(json.dumps(v2, indent=2))
    return root


def _add_required_field(s: dict) -> None:
    s["fields"].append({"name": "priority", "type": "int", "doc": "new, no default"})


def _change_field_type(s: dict) -> None:
    for f in s["fields"]:
        if f["name"] == "turn_index":
            f["type"] = "string"


def _drop_enum_symbol(s: dict) -> None:
    for f in s["fields"]:
        if f["name"] == "outcome":
            f["type"]["symbols"] = ["success", "failure"]
            del f["type"]["default"]


@pytest.mark.parametrize(
    ("name", "mutate", "where"),
    [
        ("feedback", _add_required_field, "priority"),
        ("turn", _change_field_type, "turn_index"),
        ("trajectory_end", _drop_enum_symbol, "outcome"),
    ],
)
def test_a_breaking_change_is_caught(tmp_path: Path, name: str, mutate: object, where: str) -> None:
    root = _copy_with_v2(tmp_path, name, mutate)
    problems = check_compatibility(SchemaCatalog.from_directory(root))
    assert len(problems) == 1
    assert problems[0].name == name and problems[0].reader_version == 2 and problems[0].writer_version == 1
    assert where in str(problems[0])

    result = subprocess.run([trajstream_bin(), "schemas", "check", "--dir", root], capture_output=True, text=True)
    assert result.returncode == 1
    assert "incompatible" in result.stderr and name in result.stderr


def test_a_compatible_change_passes(tmp_path: Path) -> None:
    def add_optional(s: dict) -> None:
        s["fields"].append({"name": "channel", "type": ["null", "string"], "default": None, "doc": "new"})

    root = _copy_with_v2(tmp_path, "feedback", add_optional)
    assert check_compatibility(SchemaCatalog.from_directory(root)) == []
    result = subprocess.run([trajstream_bin(), "schemas", "check", "--dir", root], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_earlier_version_is_checked_not_only_the_previous(tmp_path: Path) -> None:
    # v2 adds a field with a default, v3 removes the default: v3 still reads v2 data but not v1.
    root = _copy_with_v2(
        tmp_path,
        "feedback",
        lambda s: s["fields"].append({"name": "channel", "type": "string", "default": "web", "doc": "new"}),
    )
    v3 = json.loads((root / "feedback" / "v2.avsc").read_text())
    v3["trajstream.version"] = 3
    del v3["fields"][-1]["default"]
    (root / "feedback" / "v3.avsc").write_text(json.dumps(v3))
    problems = check_compatibility(SchemaCatalog.from_directory(root))
    assert [(p.reader_version, p.writer_version) for p in problems] == [(3, 1)]


def test_bad_schema_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "v1.avsc").write_text('{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        SchemaCatalog.from_directory(tmp_path)
    (tmp_path / "broken" / "v1.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match="cannot read schema"):
        SchemaCatalog.from_directory(tmp_path)
