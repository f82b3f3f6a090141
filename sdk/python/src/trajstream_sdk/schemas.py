"""The versioned Avro contract: loads ``schemas/<record>/v<N>.avsc`` (every version) and finds them by fingerprint.

The platform checks the contract's evolution (``trajstream.contract``); an emitter only reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from trajstream_sdk.errors import SchemaError

_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")

# Record names of the events agents publish; the directory names under schemas/.
TRAJECTORY_START = "trajectory_start"
TURN = "turn"
TRAJECTORY_END = "trajectory_end"
FEEDBACK = "feedback"
DEAD_LETTER = "dead_letter"
ASSEMBLED_TRAJECTORY = "assembled_trajectory"
ENRICHMENT_REQUEST = "enrichment_request"
ENRICHMENT_RESULT = "enrichment_result"
CREDIT_ASSIGNMENT = "credit_assignment"
SCORED_TRAJECTORY = "scored_trajectory"
ASSEMBLY_STATE = "assembly_state"
ASSEMBLY_CONTROL = "assembly_control"
SCORING_STATE = "scoring_state"
MODEL_VERSION = "model_version"
OTLP_SPANS = "otlp_spans"
OTLP_TRACE_STATE = "otlp_trace_state"


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema."""

    name: str
    version: int
    path: Path
    source: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)  # fastavro's parsed form, used on the hot path
    fingerprint: bytes  # CRC-64-AVRO, 8 bytes little-endian as single-object encoding writes it

    @property
    def full_name(self) -> str:
        ns = self.source.get("namespace")
        return f"{ns}.{self.source['name']}" if ns else str(self.source["name"])


def _fingerprint(parsed: Any) -> bytes:
    # fastavro is the only library that computes fingerprints here; its hex is already little-endian.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def load_version(name: str, path: Path) -> SchemaVersion:
    match = _VERSION_FILE.match(path.name)
    if not match:
        raise SchemaError(f"{path}: schema files must be named v<N>.avsc")
    try:
        source = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read schema: {exc}") from exc
    try:
        parsed = fastavro.parse_schema(source)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaError(f"{path}: invalid Avro schema: {exc}") from exc
    declared = source.get("trajstream.version") if isinstance(source, dict) else None
    if declared is not None and declared != int(match.group(1)):
        raise SchemaError(f"{path}: declares trajstream.version {declared} but is named {path.name}")
    return SchemaVersion(name, int(match.group(1)), path, source, parsed, _fingerprint(parsed))


class SchemaCatalog:
    """Every version of every record schema in a directory, by name and by fingerprint."""

    def __init__(self, versions: Iterable[SchemaVersion]):
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: (v.name, v.version)):
            self._by_name.setdefault(v.name, []).append(v)
            # Two versions may share a canonical form (a doc-only change); the newest wins.
            self._by_fingerprint[v.fingerprint] = v
        if not self._by_name:
            raise SchemaError("no schemas found")

    @classmethod
    def from_directory(cls, directory: Path) -> SchemaCatalog:
        directory = Path(directory)
        if not directory.is_dir():
            raise SchemaError(f"schema directory {directory} does not exist (set TRAJSTREAM_SCHEMAS_DIR)")
        versions = [
            load_version(sub.name, path)
            for sub in sorted(directory.iterdir())
            if sub.is_dir()
            for path in sorted(sub.glob("v*.avsc"))
        ]
        if not versions:
            raise SchemaError(f"no v<N>.avsc files under {directory}")
        return cls(versions)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        try:
            return list(self._by_name[name])
        except KeyError:
            raise SchemaError(f"unknown record schema {name!r}; known: {', '.join(self.names)}") from None

    def latest(self, name: str) -> SchemaVersion:
        return self.versions(name)[-1]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def by_full_name(self, full_name: str) -> SchemaVersion | None:
        for versions in self._by_name.values():
            if versions[-1].full_name == full_name:
                return versions[-1]
        return None
