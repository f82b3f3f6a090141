"""Milvus through pymilvus' MilvusClient: milvus-lite (a local .db path, the default) or a server URI.

Two collections: ``trajectories`` (one vector per trajectory: its task and a compact summary of its
steps) and ``decision_points`` (one per LLM step: the state before it and the action taken). Both
are upserted by id, so a re-delivered record or a new version replaces what was there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from trajstream.consumers.embedding import DIM
from trajstream.errors import TrajstreamError
from trajstream.settings import Settings

T = TypeVar("T")

TRAJECTORIES = "trajectories"
IVF_NLIST = 1024
DECISIONS = "decision_points"


class MilvusError(TrajstreamError):
    """Milvus could not be reached, or refused a call."""


def uri(settings: Settings) -> str:
    return settings.milvus_uri or str((settings.home / "milvus.db").resolve())


def connect(settings: Settings) -> Any:
    from pymilvus import MilvusClient

    target = uri(settings)
    if not target.startswith(("http://", "https://", "tcp://")):
        # milvus-lite lacks AllocTimestamp, which pymilvus asks for after writes and then does without;
        # its in-process gRPC server would log a traceback each time.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        return MilvusClient(target)
    except Exception as exc:
        hint = ""
        if not target.startswith(("http://", "https://", "tcp://")):
            hint = (" (milvus-lite allows one process per data directory: is `trajstream up` running? "
                    "query its HTTP API, or run `milvus-lite server` and set TRAJSTREAM_MILVUS_URI)")  # fmt: skip
        raise MilvusError(f"cannot open Milvus at {target}: {exc}{hint}") from exc


def _schema(client: Any, extra: list[tuple[str, Any, dict[str, Any]]]) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    for name, kind, opts in extra:
        schema.add_field(name, kind, **opts)
    return schema


def ensure_collections(client: Any) -> None:
    from pymilvus import DataType

    common = [
        ("trajectory_id", DataType.VARCHAR, {"max_length": 64}),
        ("version", DataType.INT64, {}),
        ("outcome", DataType.VARCHAR, {"max_length": 32}),
        ("reward", DataType.FLOAT, {}),
        ("domain", DataType.VARCHAR, {"max_length": 128}),
        ("agent_id", DataType.VARCHAR, {"max_length": 128}),
        ("model_version", DataType.VARCHAR, {"max_length": 128}),
        ("ended_ms", DataType.INT64, {}),
    ]
    specs = {
        TRAJECTORIES: [*common, ("task", DataType.VARCHAR, {"max_length": 2048})],
        DECISIONS: [
            *common,
            ("step_index", DataType.INT64, {}),
            ("tool", DataType.VARCHAR, {"max_length": 128}),
            ("action", DataType.VARCHAR, {"max_length": 1024}),
            ("next_tools", DataType.VARCHAR, {"max_length": 2048}),
            ("state", DataType.VARCHAR, {"max_length": 2048}),
        ],
    }
    existing = set(client.list_collections())
    for name, fields in specs.items():
        if name in existing:
            client.load_collection(name)  # a reopened milvus-lite collection comes back released
            continue
        index = client.prepare_index_params()
        # IVF_FLAT: measured on milvus-lite 3.2 at 100k vectors, a search took 55 ms with it, 216 ms with
        # HNSW and 160-240 ms with FLAT (see the README). A Milvus server may prefer HNSW.
        index.add_index(field_name="vector", index_type="IVF_FLAT", metric_type="COSINE",
                        params={"nlist": IVF_NLIST})  # fmt: skip
        client.create_collection(name, schema=_schema(client, fields), index_params=index)


def loaded(client: Any, collection: str, call: Callable[[], T]) -> T:
    """``call()``, after loading ``collection`` again if the server says it is released: a Milvus server
    that restarted (milvus-lite after a crash, for one) serves its collections released until asked."""
    try:
        return call()
    except Exception as exc:  # pymilvus' MilvusException; its code differs between servers
        if "released" not in str(exc) and "not loaded" not in str(exc):
            raise
    client.load_collection(collection)
    return call()


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression (its templating is not supported by milvus-lite)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
