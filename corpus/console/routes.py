"""The corpus's routes on the data API, added by the data worker through consumers.api's RouteAdder."""

from __future__ import annotations

from aiohttp import web

from trajstream.consumers.api import RouteContext
from trajstream.corpus.console.exports import add_export_routes
from trajstream.corpus.console.reports import add_report_routes


def add_corpus_routes(app: web.Application, context: RouteContext) -> None:
    add_export_routes(app, context)
    add_report_routes(app, context)
