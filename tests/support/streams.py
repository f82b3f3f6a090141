"""Helpers for stream tests: the Faust worker as a real subprocess, raw event publishing, topic reads."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.support.env import env_for, trajstream_bin
from trajstream.reader import ReadRecord, read_topic
from trajstream.settings import Settings
from trajstream_sdk.codec import EventCodec


class Worker:
    """`trajstream worker streams` in a subprocess, its output in a log file."""

    def __init__(self, settings: Settings, log: Path, **env: str):
        self.settings = settings
        self.log = log
        self.env = {**env_for(settings), **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(
                [str(trajstream_bin()), "worker", "streams", "--loglevel", "info"],
                env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if "[^Worker]: Ready" in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{text[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def running_worker(settings: Settings, log: Path, **env: str) -> Iterator[Worker]:
    worker = Worker(settings, log, **env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@contextmanager
def running_enricher(settings: Settings, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`trajstream worker enrich` in a subprocess for the duration, its output in ``log``."""
    with open(log, "wb") as handle:
        enricher = subprocess.Popen([str(trajstream_bin()), "worker", "enrich"], env={**env_for(settings), **env},
                                    stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            yield enricher
        finally:
            enricher.terminate()
            enricher.wait(timeout=20)


async def publish(settings: Settings, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send (topic suffix, key, value) as they are, in order."""
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send(settings.topic(topic), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def read(settings: Settings, codec: EventCodec, topic: str) -> list[ReadRecord]:
    return [r async for r in read_topic(settings, settings.topic(topic), codec)]


def latest_by_trajectory(records: list[ReadRecord], version_field: str = "version") -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        assert r.event is not None, r.error
        body = r.event.record
        tid = body["trajectory_id"]
        if tid not in latest or body[version_field] > latest[tid][version_field]:
            latest[tid] = body
    return latest


def wait_for(predicate: Any, timeout_s: float = 60.0, interval_s: float = 0.5) -> Any:
    """Poll ``predicate`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = asyncio.run(predicate())
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s}s; last value: {last!r}")


def copies_by_key(records: list[ReadRecord], version_field: str) -> dict[tuple[str, int], list[bytes]]:
    copies: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for r in records:
        assert r.event is not None
        copies[(r.event.record["trajectory_id"], r.event.record[version_field])].append(r.value)
    return copies
