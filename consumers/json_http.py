"""JSON over HTTP for the data API and the console: one shape for answers and errors.

An error is ``{"error": <message for people>, "kind": <what the page or client acts on>}``; the kinds are
listed in docs/console-api.md (bad_request, not_found, timeout, too_much, unavailable, forbidden,
unauthorized).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from trajstream import json_input


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def json_error(message: str, kind: str, status: int) -> web.Response:
    return json_response({"error": message, "kind": kind}, status)


def bad_request(message: str, headers: dict[str, str] | None = None) -> web.HTTPBadRequest:
    """A 400 to raise from deep in a handler, in the error shape above."""
    return web.HTTPBadRequest(text=json.dumps({"error": message, "kind": "bad_request"}),
                              content_type="application/json", headers=headers)  # fmt: skip


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    try:
        body = json_input.loads(await request.read())
    except json_input.JSONInputError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from exc
    except web.RequestPayloadError as exc:  # a Content-Encoding the body does not follow (a 500 else)
        # Connection: close, or aiohttp reads the rest of the body after the answer, meets the error again and
        # drops the connection before the answer reaches the client.
        reason = " ".join(str(exc).split())
        raise bad_request(f"the body cannot be read: {reason}", {"Connection": "close"}) from exc
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body
