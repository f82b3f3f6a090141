"""Who may use the data API and the console: two roles, each with its own token.

- ``read``: every page and query (the console, recall, /sql, which is read-only anyway);
- ``operator``: all of that, and the actions that change something (dead-letter replay).

With no token configured the API trusts its callers and so listens on loopback only, as the gateway does.
A token comes as ``Authorization: Bearer``, ``X-Trajstream-Token``, or the console's session cookie (set
by signing in, so that the browser's EventSource, which cannot send headers, is let in too). Every POST
must carry ``X-Trajstream-Console`` or a bearer token: a page on another origin cannot add a custom header
without a CORS preflight, which this API never grants, so it cannot replay dead letters through a
signed-in browser.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from trajstream.consumers.json_http import json_error
from trajstream.errors import ConfigurationError
from trajstream.listen import is_loopback
from trajstream.settings import Settings

Role = Literal["read", "operator"]
ROLE: web.RequestKey[Role] = web.RequestKey("role")
COOKIE = "trajstream_token"
# Paths anyone may fetch: liveness, and the console's own files and sign-in (they hold no data).
OPEN_PREFIXES = ("/health", "/console/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tokens_configured(settings: Settings) -> bool:
    return settings.api_read_token is not None or settings.api_operator_token is not None


def check_listen(settings: Settings) -> None:
    """Refuse to listen beyond loopback with no token: anyone who reaches the port could read everything."""
    if not tokens_configured(settings) and not is_loopback(settings.api_host):
        raise ConfigurationError(
            f"the data API would listen on {settings.api_host} with no token: set TRAJSTREAM_API_READ_TOKEN "
            "(and TRAJSTREAM_API_OPERATOR_TOKEN for replay), or listen on 127.0.0.1"
        )


def presented_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Trajstream-Token") or request.cookies.get(COOKIE) or None


def role_of(settings: Settings, token: str | None) -> Role | None:
    """The role a token gives (None: no role). Compared in constant time."""
    if not tokens_configured(settings):
        return "operator"  # loopback only (check_listen): whoever is on this machine runs it
    if token is None:
        return None
    for role, secret in (("operator", settings.api_operator_token), ("read", settings.api_read_token)):
        if secret is not None and hmac.compare_digest(token.encode(), secret.get_secret_value().encode()):
            return role  # type: ignore[return-value]
    return None


def guard(settings: Settings) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/" or request.path.startswith(OPEN_PREFIXES) or request.path == "/console":
            request[ROLE] = role_of(settings, presented_token(request)) or "read"
            return await handler(request)
        token = presented_token(request)
        role = role_of(settings, token)
        if role is None:
            what = "a wrong token" if token else "no token"
            return json_error(f"{what}: send Authorization: Bearer <TRAJSTREAM_API_READ_TOKEN or _OPERATOR_TOKEN>, "
                              "or sign in to the console with it", "unauthorized", 401)  # fmt: skip
        if (
            request.method == "POST"
            and "X-Trajstream-Console" not in request.headers
            and not (request.headers.get("Authorization", "").lower().startswith("bearer "))
        ):
            return json_error("a POST needs the X-Trajstream-Console header or a bearer token", "forbidden", 403)
        request[ROLE] = role
        return await handler(request)

    return middleware


def need_operator(request: web.Request) -> web.Response | None:
    """A 403 for a caller without the operator role, else None."""
    if request[ROLE] != "operator":
        return json_error("this needs the operator role (TRAJSTREAM_API_OPERATOR_TOKEN)", "forbidden", 403)
    return None
