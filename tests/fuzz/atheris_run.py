"""Coverage-guided fuzzing with atheris (libFuzzer), time-boxed, over the same doors as the hypothesis tests:

    python -m tests.fuzz.atheris_run --target {codec,emit,sql-guard,gateway-json,gateway-otlp,data-api} --seconds N

Each target's check is the hypothesis tests' own (test_codec, test_emit_lines, test_sql_guard, gateway_harness,
test_data_api): only the documented rejections (CodecError; InputRecordError; ClickHouseError; a 4xx with
its reason) are expected, and anything else, a failed check, or an input slower than ``--input-timeout``
seconds (a hang) is a crash, written under the crashes folder for a regression test.

The fuzzer runs in a child process that ends itself after ``--seconds`` of fuzzing (libFuzzer's
-max_total_time is only a backstop: its exit() can hang in chDB's and aiohttp's threads), with trajstream's
modules instrumented for coverage; the parent prints one ``RESULT atheris`` line with the executions count,
and exits 1 on a crash. The corpus grows across runs in ``--corpus`` (default: the temp folder's
trajstream-atheris/<target>), seeded with valid inputs so that mutations start from what is accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = ("codec", "emit", "sql-guard", "gateway-json", "gateway-otlp", "data-api")
OneInput = Callable[[bytes], None]
DONE = "atheris-run done:"


def _codec() -> tuple[OneInput, list[bytes]]:
    from tests.fuzz.test_codec import VALID, _decodes_or_refuses  # CodecError only

    return _decodes_or_refuses, VALID


def _emit() -> tuple[OneInput, list[bytes]]:
    from tests.fuzz.test_emit_lines import LINES, _emits_or_refuses  # InputRecordError, CodecError only

    def one(data: bytes) -> None:
        try:
            text = data.decode("utf-8")  # emit_file refuses a line that is not UTF-8 before parsing it
        except UnicodeDecodeError:
            return
        _emits_or_refuses(text)

    return one, [line.encode() for line in LINES]


def _sql_guard(work: Path) -> tuple[OneInput, list[bytes]]:
    from tests.consumers.test_sql_guard import sentinel_store
    from tests.fuzz.test_sql_guard import _STATEMENTS, reads_or_refuses  # ClickHouseError only

    store = sentinel_store(work / "chdb", work / "home")

    def one(data: bytes) -> None:
        reads_or_refuses(store, work, data.decode("utf-8", "replace"))

    return one, [s.encode() for s in _STATEMENTS]


def _gateway(work: Path, routes: list[tuple[str, str]], seeds: list[tuple[int, bytes]]) -> tuple[OneInput, list[bytes]]:
    """The first byte picks the route and content type, the rest is the body; gateway_harness.check judges."""
    from tests.fuzz.gateway_harness import in_process_gateway

    loop = asyncio.new_event_loop()
    context = in_process_gateway(work)  # entered for the process's life: held by one(), or collected and closed
    gw = loop.run_until_complete(context.__aenter__())

    def one(data: bytes) -> None:
        assert context is not None
        if data:
            route, content_type = routes[data[0] % len(routes)]
            loop.run_until_complete(gw.post(route, data[1:], content_type))

    return one, [bytes([i]) + body for i, body in seeds]


def _gateway_json(work: Path) -> tuple[OneInput, list[bytes]]:
    from tests.fuzz.gateway_harness import JSON_ROUTES
    from tests.fuzz.test_emit_lines import LINES
    from tests.fuzz.test_gateway_bodies import BATCHES

    routes = [(r, "application/json") for r in JSON_ROUTES]
    seeds = [(i, json.dumps(BATCHES[r]).encode()) for i, (r, _) in enumerate(routes)]
    seeds.append((1, "\n".join(LINES[:3]).encode()))  # trajectories as JSON lines
    return _gateway(work, routes, seeds)


def _gateway_otlp(work: Path) -> tuple[OneInput, list[bytes]]:
    from tests.fuzz.test_gateway_bodies import OTLP_DOC, OTLP_PROTO

    routes = [("/v1/traces", "application/x-protobuf"), ("/v1/traces", "application/json")]
    return _gateway(work, routes, [(0, OTLP_PROTO), (1, json.dumps(OTLP_DOC).encode())])


def _data_api(work: Path) -> tuple[OneInput, list[bytes]]:
    from aiohttp.test_utils import TestClient, TestServer

    from tests.consumers.test_sql_guard import sentinel_store
    from tests.fuzz.test_data_api import ROUTES, _answers  # a 200, 400 or 503 in the API's error shape
    from trajstream.consumers.api import build_app
    from trajstream.consumers.store_link import StoreUnavailableError
    from trajstream.settings import Settings

    client, db = sentinel_store(work / "chdb", work / "home")

    def no_recall() -> Any:
        raise StoreUnavailableError("no recall in this run")

    async def start() -> TestClient[Any, Any]:  # aiohttp's client wants its loop running
        app = build_app(Settings(clickhouse_database=db), no_recall, lambda: client, lambda: {})
        http = TestClient(TestServer(app), headers={"X-Trajstream-Console": "1"})
        await http.start_server()
        return http

    loop = asyncio.new_event_loop()
    http = loop.run_until_complete(start())
    routes = sorted(ROUTES)

    def one(data: bytes) -> None:
        if data:
            loop.run_until_complete(_answers(http, routes[data[0] % len(routes)], data[1:]))

    seeds = [b'\x00{"ids": ["a"]}', b'\x02{"query": "refund", "k": 3}', b'\x05{"query": "SELECT 1"}']
    return one, [bytes([routes.index(r)]) + s[1:] for r, s in zip(["/exists", "/recall", "/sql"], seeds, strict=True)]


def _child(target: str, seconds: int, corpus: Path, libfuzzer: list[str]) -> None:
    import atheris

    work = Path(tempfile.mkdtemp(prefix=f"trajstream-atheris-{target}-"))
    with atheris.instrument_imports(include=["trajstream", "trajstream_sdk"]):
        one, seeds = {  # type: ignore[no-untyped-call]
            "codec": _codec,
            "emit": _emit,
            "sql-guard": lambda: _sql_guard(work),
            "gateway-json": lambda: _gateway_json(work),
            "gateway-otlp": lambda: _gateway_otlp(work),
            "data-api": lambda: _data_api(work),
        }[target]()
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
    runs, deadline = 0, 0.0

    def counted(data: bytes) -> None:
        # The child ends itself on time: libFuzzer's own end (exit()) can hang in chDB's and aiohttp's threads.
        nonlocal runs, deadline
        deadline = deadline or time.monotonic() + seconds
        runs += 1
        one(data)
        if time.monotonic() > deadline:
            print(f"{DONE} {runs} runs", flush=True)
            os._exit(0)

    atheris.Setup([sys.argv[0], *libfuzzer, str(corpus)], counted)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.atheris_run", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz, from the first input")
    parser.add_argument("--corpus", type=Path, help="the corpus folder, kept across runs")
    parser.add_argument("--input-timeout", type=int, default=30, help="seconds one input may take before a hang")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, libfuzzer = parser.parse_known_args(argv)
    corpus: Path = args.corpus or Path(tempfile.gettempdir()) / "trajstream-atheris" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    if args.child:
        _child(args.target, args.seconds, corpus, libfuzzer)
        return 0
    crashes = corpus.parent / f"{corpus.name}-crashes"
    crashes.mkdir(exist_ok=True)
    log = corpus.parent / f"{corpus.name}.log"
    command = [sys.executable, "-m", "tests.fuzz.atheris_run", "--child", "--target", args.target, "--corpus",
               str(corpus), "--seconds", str(args.seconds), f"-max_total_time={args.seconds + 60}",
               f"-timeout={args.input_timeout}",
               "-rss_limit_mb=4096", "-print_final_stats=1", f"-artifact_prefix={crashes}/"]  # fmt: skip
    started = time.time()
    with log.open("w") as out:
        # Imports, seeds and chDB come before the clock starts: give them time on a loaded machine.
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=args.seconds + 300)
    text = log.read_text(errors="replace")
    runs = re.search(rf"{DONE} (\d+) runs", text)
    found = sorted(p.name for p in crashes.iterdir() if p.stat().st_mtime >= started)
    crashed = done.returncode != 0 or bool(found)
    print(f"RESULT atheris target={args.target} runs={runs.group(1) if runs else 'unknown'} seconds={args.seconds} "
          f"crashes={len(found) or int(crashed)} corpus={corpus} log={log}")  # fmt: skip
    if crashed:
        print("\n".join(text.splitlines()[-40:]), file=sys.stderr)
        print(f"crash inputs in {crashes}: {', '.join(found) or '(none written)'}", file=sys.stderr)
    return 1 if crashed or runs is None else 0


if __name__ == "__main__":
    sys.exit(main())
