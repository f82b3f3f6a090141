"""Milvus through pymilvus' MilvusClient: a Milvus server (the local one `trajstream up` starts, or any URI)
or milvus-lite (a local .db path).

Two collections: ``trajectories`` (one vector per trajectory: its task, as recall asks; its steps are
read from ClickHouse) and ``decision_points`` (one per LLM step: the state before it and the action taken). Both
are upserted by id, so a re-delivered record or a new version replaces what was there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from trajstream.consumers.embedding import DIM
from trajstream.errors import TrajstreamError
from trajstream.milvus_server import LocalMilvus, server_uri
from trajstream.settings import Settings

T = TypeVar("T")

TRAJECTORIES = "trajectories"
IVF_NLIST = 1024
DECISIONS = "decision_points"
_SERVER_SCHEMES = ("http://", "https://", "tcp://")


class MilvusError(TrajstreamError):
    """Milvus could not be reached, or refused a call."""


def uri(settings: Settings) -> str:
    """TRAJSTREAM_MILVUS_URI, else the local choice: the server `trajstream up` starts, or milvus-lite's file."""
    if settings.milvus_uri:
        return settings.milvus_uri
    if settings.milvus_local == "server":
        return server_uri(settings)
    return str((settings.home / "milvus.db").resolve())


def is_lite(settings: Settings) -> bool:
    """milvus-lite (a local file) rather than a Milvus server: what index it gets, what a search asks."""
    return not uri(settings).startswith(_SERVER_SCHEMES)


def token(settings: Settings) -> str:
    """TRAJSTREAM_MILVUS_TOKEN, else the local server's generated root credentials, else none (milvus-lite)."""
    if settings.milvus_token is not None:
        return settings.milvus_token.get_secret_value()
    if settings.runs_milvus_server:
        return LocalMilvus(settings).token()
    return ""


def connect(settings: Settings) -> Any:
    from pymilvus import MilvusClient

    target = uri(settings)
    if is_lite(settings):
        # milvus-lite lacks AllocTimestamp, which pymilvus asks for after writes and then does without;
        # its in-process gRPC server would log a traceback each time.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        client = MilvusClient(target, token=token(settings))
        if not is_lite(settings):
            # A server may take the connection and refuse the first call: refused credentials show here.
            client.list_collections()
        return client
    except Exception as exc:
        hint = ""
        if is_lite(settings):
            hint = (" (milvus-lite allows one process per data directory: is `trajstream up` running? "
                    "query its HTTP API, or run `milvus-lite server` and set TRAJSTREAM_MILVUS_URI)")  # fmt: skip
        elif settings.runs_milvus_server:
            hint = (" (the local Milvus server: `trajstream up` or `trajstream milvus start` starts it; it takes "
                    "the root password in TRAJSTREAM_HOME/milvus-server/root-password)")  # fmt: skip
        else:
            # pymilvus reports refused credentials as "illegal connection params or server unavailable".
            hint = " (is it running, and does TRAJSTREAM_MILVUS_TOKEN hold its user:password or API key?)"
        raise MilvusError(f"cannot open Milvus at {target}: {exc}{hint}") from exc


def _schema(client: Any, extra: list[tuple[str, Any, dict[str, Any]]]) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    for name, kind, opts in extra:
        schema.add_field(name, kind, **opts)
    return schema


def vector_index(settings: Settings) -> tuple[str, dict[str, int]]:
    """The vector index a new collection gets: IVF_FLAT on milvus-lite, HNSW on a server.

    milvus-lite 3.2 at 100k vectors: a search took 55 ms with IVF_FLAT, 216 ms with HNSW and 160-240 ms with
    FLAT (see the README). The Milvus 2.3.5 server's HNSW answers a filtered search at 100k in a few
    milliseconds (docs/milvus.md)."""
    if is_lite(settings):
        return "IVF_FLAT", {"nlist": IVF_NLIST}
    return "HNSW", {"M": settings.milvus_hnsw_m, "efConstruction": settings.milvus_hnsw_ef_construction}


def search_params(settings: Settings, index_type: str, k: int) -> dict[str, Any]:
    """A search's parameters for the index the collection has (an older server collection may be IVF_FLAT)."""
    if index_type == "HNSW":
        # Below k, HNSW cannot find k neighbours: 2.3.5 raises ef itself, which no other server need do.
        return {"params": {"ef": max(settings.milvus_hnsw_ef, k)}}
    return {"params": {"nprobe": settings.recall_nprobe}}


def index_type(client: Any, collection: str) -> str:
    """The vector index ``collection`` has, as Milvus names it (IVF_FLAT, HNSW, ...)."""
    # By the field: collections made before the index was named have a name Milvus chose.
    names = client.list_indexes(collection, field_name="vector")
    if not names:
        return ""
    return str(client.describe_index(collection, index_name=names[0]).get("index_type", ""))


def ensure_collections(client: Any, settings: Settings) -> None:
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
        kind, params = vector_index(settings)
        index.add_index(field_name="vector", index_name="vector", index_type=kind, metric_type="COSINE",
                        params=params)  # fmt: skip
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
