"""`trajstream worker data` with the corpus's routes (exports, reports): the consumers build the data worker's
command, and the corpus, a later stage they may not import, hands it its routes."""

from __future__ import annotations

from collections.abc import Sequence

import click

from trajstream.consumers.api import RouteAdder
from trajstream.consumers.commands import data_worker_command


def _routes() -> Sequence[RouteAdder]:
    from trajstream.corpus.console.routes import add_corpus_routes  # when the worker starts, not on every command

    return (add_corpus_routes,)


COMMANDS: tuple[click.Command, ...] = ()
WORKERS = (data_worker_command(_routes),)
