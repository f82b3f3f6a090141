"""A minimal client for a Confluent-compatible schema registry (register, fetch by id)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from trajstream.errors import SchemaError, UnknownSchemaError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    """Registers our schemas under record-name subjects and resolves writer schemas by id, with caches."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, timeout_s: float = 10.0):
        auth = (username, password or "") if username else None
        self._http = httpx.Client(
            base_url=url.rstrip("/"), auth=auth, timeout=timeout_s, headers={"Content-Type": _CONTENT_TYPE}
        )
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        text = json.dumps(schema, sort_keys=True)
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        try:
            resp = self._http.post(f"/subjects/{subject}/versions", json={"schema": text, "schemaType": "AVRO"})
        except httpx.HTTPError as exc:
            raise SchemaError(f"schema registry unreachable at {self._http.base_url}: {exc}") from exc
        if resp.status_code == 409:
            raise SchemaError(f"schema registry refused {subject}: incompatible with its registered versions")
        if resp.status_code >= 400:
            raise SchemaError(f"schema registry refused {subject}: HTTP {resp.status_code} {resp.text[:200]}")
        schema_id = int(resp.json()["id"])
        self._ids[(subject, text)] = schema_id
        self._schemas[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            resp = self._http.get(f"/schemas/ids/{schema_id}")
        except httpx.HTTPError as exc:
            raise SchemaError(f"schema registry unreachable at {self._http.base_url}: {exc}") from exc
        if resp.status_code == 404:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry at {self._http.base_url}")
        if resp.status_code >= 400:
            raise SchemaError(f"schema registry error for id {schema_id}: HTTP {resp.status_code}")
        schema: dict[str, Any] = json.loads(resp.json()["schema"])
        self._schemas[schema_id] = schema
        return schema

    def close(self) -> None:
        self._http.close()
