"""The gateway's HTTP service (aiohttp): routes, limits, keys, and the answer after the broker's ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from trajstream.errors import DeliveryError
from trajstream.gateway import otlp, proxy
from trajstream.gateway.access import API_KEY, Denied, authenticate, authorize, check_listen
from trajstream.gateway.context import GATEWAY, Gateway
from trajstream.gateway.keys import KeyStore
from trajstream.gateway.publisher import Overloaded, Publisher, Record
from trajstream.gateway.records import Batch, events_batch, trajectories_batch
from trajstream.parts import mark_ready
from trajstream.settings import Settings
from trajstream.topics import OTLP_SPANS_TOPIC
from trajstream_sdk.codec import codec_for
from trajstream_sdk.schemas import OTLP_SPANS

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(doc, status=status, headers=headers)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keys first, then the body limit (counted after decompression) and its decoding, then the handler;
    overload is a 503."""
    gw = request.app[GATEWAY]
    otlp_route = request.path == "/v1/traces"
    encoding = otlp.JSON
    if otlp_route:
        with contextlib.suppress(otlp.RequestError):
            encoding = otlp.encoding_of(request.content_type)

    def fail(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        if otlp_route:  # OTLP answers errors as google.rpc.Status in the request's encoding
            return web.Response(status=status, body=otlp.status(encoding, status, message), content_type=encoding,
                                headers=headers)  # fmt: skip
        return _json({"error": message}, status, headers)

    if request.path == "/healthz":
        return await handler(request)
    try:
        request[API_KEY] = authenticate(request, gw.keys)
        return await handler(request)
    except Denied as exc:
        return fail(exc.status, exc.message)
    except web.RequestPayloadError as exc:  # a Content-Encoding the body does not follow (aiohttp's 500 else)
        # Connection: close, or aiohttp reads the rest of the body after the answer, meets the error again and
        # drops the connection before the answer reaches the client.
        reason = " ".join(str(exc).split())
        return fail(400, f"the request body cannot be read: {reason}", {"Connection": "close"})
    except web.HTTPRequestEntityTooLarge:
        limit = gw.settings.gateway_max_request_bytes
        return fail(
            413, f"the request body is over {limit} bytes after decompression (TRAJSTREAM_GATEWAY_MAX_REQUEST_BYTES)"
        )
    except Overloaded as exc:
        return fail(503, f"overloaded, retry later: {exc}", gw.retry_after())
    except DeliveryError as exc:
        log.error("%s: %s", request.path, exc)
        return fail(503, f"the broker did not acknowledge the records, retry later: {exc}", gw.retry_after())


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    stats = gw.publisher.stats
    return _json({"status": "ok", "in_flight_bytes": gw.publisher.in_flight, "records": stats.records,
                  "refused_overload": stats.refused_overload, "auth": gw.keys.configured})  # fmt: skip


async def traces(request: web.Request) -> web.Response:
    """OTLP/HTTP: decode, check each span, put each trace's spans on the otlp.spans topic keyed by trace id."""
    gw = request.app[GATEWAY]
    try:
        encoding = otlp.encoding_of(request.content_type)
    except otlp.RequestError as exc:
        return _json({"code": exc.status, "message": exc.message}, exc.status)
    body = await request.read()
    try:
        export = otlp.decode(body, encoding)
    except otlp.RequestError as exc:
        return web.Response(status=exc.status, body=otlp.status(encoding, exc.status, exc.message),
                            content_type=encoding)  # fmt: skip
    key = request[API_KEY]
    authorize(key, otlp.scopes(export))
    split = otlp.split(export, gw.settings.limits.max_event_bytes)
    if split.rejected and not split.accepted:
        # Nothing in it is a span (an OTLP logs payload decodes as spans without ids): the request is wrong.
        reasons = sorted({r.reason for r in split.rejected})
        message = f"no span in the request can be taken ({len(split.rejected)} refused: {'; '.join(reasons)})"
        return web.Response(status=400, body=otlp.status(encoding, 400, message), content_type=encoding)
    now_ms = int(time.time() * 1000)
    records = [
        Record(gw.settings.topic(OTLP_SPANS_TOPIC), trace_id.encode(), gw.codec.encode(OTLP_SPANS, {
            "kind": "spans", "trace_id": trace_id, "received_at": now_ms, "key_id": key.key_id if key else None,
            "traces_data": data.SerializeToString(), "idle": False}))
        for trace_id, data in split.traces.items()
    ]  # fmt: skip
    records += [gw.letter("/v1/traces", r.reason, r.data, r.trace_id or None, "SpanRejected") for r in split.rejected]
    await gw.publisher.publish(records)
    return web.Response(body=otlp.response(encoding, split.rejected), content_type=encoding)


async def _answer(request: web.Request, batch: Batch, source: str) -> web.Response:
    gw = request.app[GATEWAY]
    authorize(request[API_KEY], batch.scope)
    letters = [gw.letter(source, r.error or "refused", raw, key, "InputRecordError") for r, raw, key in batch.refused]
    await gw.publisher.publish([*batch.records, *letters])
    accepted = sum(r.status == 200 for r in batch.results)
    if not batch.refused:
        return _json({"accepted": accepted, "results": [r.document() for r in batch.results]})
    results = sorted(batch.results, key=lambda r: r.index)
    return _json({"accepted": accepted, "refused": len(batch.refused), "results": [r.document() for r in results]},
                 207)  # fmt: skip


async def _body_items(request: web.Request, parse: Callable[[bytes], Batch]) -> Batch | web.Response:
    body = await request.read()
    try:
        return parse(body)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        return _json({"error": f"not a JSON batch: {exc}"}, 400)


async def events(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    batch = await _body_items(request, lambda body: events_batch(body, gw.settings, gw.codec))
    return batch if isinstance(batch, web.Response) else await _answer(request, batch, "/v1/events")


async def trajectories(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    batch = await _body_items(request, lambda body: trajectories_batch(body, gw.settings, gw.codec, str))
    return batch if isinstance(batch, web.Response) else await _answer(request, batch, "/v1/trajectories")


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=gateway.settings.gateway_max_request_bytes)
    app[GATEWAY] = gateway
    app.router.add_get("/healthz", health)
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/events", events)
    app.router.add_post("/v1/trajectories", trajectories)
    proxy.add_routes(app)
    return app


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.gateway_tls_cert is None or settings.gateway_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.gateway_tls_cert, settings.gateway_tls_key)
    return context


async def serve(settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    keys = KeyStore(settings.gateway_keys_path)
    check_listen(settings, keys)
    publisher = Publisher(settings)
    await publisher.start()
    runner = web.AppRunner(build_app(Gateway(settings, codec_for(settings), publisher, keys)), access_log=None)
    try:
        await runner.setup()
        context = tls_context(settings)
        await web.TCPSite(runner, settings.gateway_host, settings.gateway_port, ssl_context=context).start()
        scheme = "https" if context else "http"
        auth = f"{len(keys.keys)} API key(s)" if keys.configured else "no API key (loopback only)"
        log.warning("gateway ready on %s://%s:%d, %s", scheme, settings.gateway_host, settings.gateway_port, auth)
        mark_ready(settings, "gateway")
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()  # stops taking requests and lets the ones in progress finish
        await publisher.stop()
