"""A minimal client for a Confluent-compatible schema registry (register, fetch by id), on the standard library."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from trajstream_sdk.errors import SchemaError, UnknownSchemaError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    """Registers our schemas under record-name subjects and resolves writer schemas by id, with caches.

    It runs once per record type and writer schema (then the caches answer), so the standard library's
    blocking HTTP is enough and the SDK needs no HTTP client package.
    """

    def __init__(self, url: str, username: str | None = None, password: str | None = None, timeout_s: float = 10.0):
        self.base_url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._headers = {"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            raise SchemaError(f"schema registry unreachable at {self.base_url}: {exc}") from exc

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        text = json.dumps(schema, sort_keys=True)
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        status, body = self._call("POST", f"/subjects/{subject}/versions", {"schema": text, "schemaType": "AVRO"})
        if status == 409:
            raise SchemaError(f"schema registry refused {subject}: incompatible with its registered versions")
        if status >= 400:
            raise SchemaError(f"schema registry refused {subject}: HTTP {status} {body[:200]}")
        schema_id = int(json.loads(body)["id"])
        self._ids[(subject, text)] = schema_id
        self._schemas[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        status, body = self._call("GET", f"/schemas/ids/{schema_id}")
        if status == 404:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry at {self.base_url}")
        if status >= 400:
            raise SchemaError(f"schema registry error for id {schema_id}: HTTP {status}")
        schema: dict[str, Any] = json.loads(json.loads(body)["schema"])
        self._schemas[schema_id] = schema
        return schema

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own connection."""
