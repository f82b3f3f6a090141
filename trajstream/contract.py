"""The contract's evolution check: every version of a record reads data written with every earlier one.

It uses the ``avro`` package's compatibility checker, which the SDK does not need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import avro.compatibility
import avro.errors
import avro.schema

from trajstream.errors import SchemaError
from trajstream_sdk.schemas import SchemaCatalog, SchemaVersion


@dataclass(frozen=True)
class CompatibilityProblem:
    name: str
    reader_version: int
    writer_version: int
    messages: list[str]
    locations: list[str]

    field_path: str = ""

    def __str__(self) -> str:
        where = self.field_path or ", ".join(sorted(self.locations)) or "/"
        why = "; ".join(sorted(self.messages)) or "incompatible"
        return (
            f"{self.name}: v{self.reader_version} cannot read data written with v{self.writer_version} "
            f"at {where}: {why}"
        )


def check_compatibility(catalog: SchemaCatalog) -> list[CompatibilityProblem]:
    """Backward compatibility: the newest version of each record must read every earlier version.

    Also checks every intermediate version against all of its predecessors, so that a consumer
    pinned to any released version can still read the history written before it.
    """
    checker = avro.compatibility.ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    problems: list[CompatibilityProblem] = []
    for name in catalog.names:
        versions = catalog.versions(name)
        parsed = {v.version: _avro_parse(v) for v in versions}
        for i, reader in enumerate(versions):
            for writer in versions[:i]:
                result = checker.get_compatibility(parsed[reader.version], parsed[writer.version])
                if result.compatibility is not avro.compatibility.SchemaCompatibilityType.compatible:
                    locations = sorted(result.locations)
                    problems.append(
                        CompatibilityProblem(
                            name,
                            reader.version,
                            writer.version,
                            list(result.messages),
                            locations,
                            ", ".join(_field_path(reader.source, loc) for loc in locations if loc != "/"),
                        )
                    )
    return problems


def _field_path(source: Any, pointer: str) -> str:
    """Turn the checker's JSON pointer (/fields/3/type/symbols) into field names (outcome.symbols)."""
    names: list[str] = []
    node = source
    parts = [p for p in pointer.split("/") if p]
    for i, part in enumerate(parts):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            if i > 0 and parts[i - 1] == "fields" and isinstance(node, dict):
                names.append(str(node.get("name")))
        elif isinstance(node, dict) and part in node:
            node = node[part]
            if part in ("symbols", "items", "values", "size"):
                names.append(part)
        else:
            names.append(part)
    return ".".join(names) or pointer


def _avro_parse(version: SchemaVersion) -> avro.schema.Schema:
    try:
        return avro.schema.parse(json.dumps(version.source))
    except avro.errors.AvroException as exc:
        raise SchemaError(f"{version.path}: the avro package rejects the schema: {exc}") from exc
