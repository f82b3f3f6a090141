"""Who may call the gateway: the key a request carries, and what it may write.

A key comes as ``Authorization: Bearer <key>`` (what OTEL_EXPORTER_OTLP_HEADERS and the openai clients
send), as the password of ``Authorization: Basic`` (Langfuse's style), or as ``X-Trajstream-Key``.
With no key configured the gateway takes every request, and listens on loopback only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from aiohttp import web

from trajstream.errors import ConfigurationError
from trajstream.gateway.keys import ApiKey, KeyStore
from trajstream.listen import is_loopback
from trajstream.settings import Settings

# The key a request was authenticated with (None when the gateway has no keys).
API_KEY: web.RequestKey[ApiKey | None] = web.RequestKey("api_key")


class Denied(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_listen(settings: Settings, keys: KeyStore) -> None:
    """Refuse to listen beyond loopback with nobody to check: an open gateway writes anyone's events."""
    if not keys.configured and not is_loopback(settings.gateway_host):
        raise ConfigurationError(
            f"the gateway would listen on {settings.gateway_host} with no API key: add one with "
            "`trajstream gateway keys add --agent NAME` (or --environment prod), or listen on 127.0.0.1"
        )
    if bool(settings.gateway_tls_cert) != bool(settings.gateway_tls_key):
        raise ConfigurationError("TRAJSTREAM_GATEWAY_TLS_CERT and TRAJSTREAM_GATEWAY_TLS_KEY go together")


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user
    return request.headers.get("X-Trajstream-Key") or None


def authenticate(request: web.Request, keys: KeyStore) -> ApiKey | None:
    """The caller's key (None when the gateway has none configured); raises Denied(401) otherwise."""
    if not keys.configured:
        return None
    presented = presented_key(request)
    if presented is None:
        raise Denied(401, "an API key is required: send Authorization: Bearer <key>")
    key = keys.verify(presented)
    if key is None:
        raise Denied(401, "the API key is not valid")
    return key


def authorize(key: ApiKey | None, scopes: Iterable[tuple[str | None, str | None]]) -> None:
    """Raise Denied(403) if any (agent id, environment) the request writes for is outside the key's scope."""
    if key is None:
        return
    for agent, environment in scopes:
        if not key.allows(agent_id=agent, environment=environment):
            what = f"agent {agent!r}" if key.scope == "agent" else f"environment {environment!r}"
            raise Denied(403, f"key {key.key_id} may write for {key.scope} {key.value!r} only, not {what}")
