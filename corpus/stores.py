"""ClickHouse for a command that reads the corpus directly (``trajstream export``, ``trajstream optimise``).

chDB (the embedded ClickHouse) takes one process per data directory, and while a data worker runs it owns the
directory. A corpus command is an offline, heavy read, so the rule is: with a ClickHouse server
(TRAJSTREAM_CLICKHOUSE_DSN=http://...) it reads the server directly, pipeline or not; with embedded chDB it
opens the directory itself, holding the stores lock as every direct reader does, and refuses with what to do
when a data worker owns it: the worker runs the same export or report itself, for the console and its API
(``corpus/console``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trajstream.data_api import answering_api, stores_lock_file, try_lock_stores
from trajstream.errors import TrajstreamError
from trajstream.parts import data_worker_expected
from trajstream.settings import Settings


@contextmanager
def open_corpus(settings: Settings) -> Iterator[Any]:
    """A ClickHouse client to read the corpus with, or a clear refusal when a data worker owns chDB."""
    from trajstream.consumers.clickhouse_store import connect, dsn, migrate

    lock = None
    if dsn(settings).startswith("chdb://"):
        if answering_api(settings) or data_worker_expected(settings):
            raise TrajstreamError(
                "the pipeline's data worker owns the embedded ClickHouse (chDB allows one process per data "
                "directory): run it in the worker from the console's Exports & reports page (`trajstream console "
                "--open`; or POST /api/console/exports, /api/console/reports/KIND), stop the pipeline "
                "(`trajstream down`), or point TRAJSTREAM_CLICKHOUSE_DSN at a ClickHouse server"
            )
        lock = try_lock_stores(settings)
        if lock is None:
            raise TrajstreamError(f"another process holds the stores lock {stores_lock_file(settings)}: wait for it "
                                  "to finish, or point TRAJSTREAM_CLICKHOUSE_DSN at a ClickHouse server")  # fmt: skip
    try:
        client = connect(settings)
        migrate(client, settings)
        yield client
    finally:
        if lock is not None:
            lock.close()
