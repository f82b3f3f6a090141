"""`trajstream gateway` as a real subprocess on a free port, for the tests that talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.env import env_for, free_port, trajstream_bin
from trajstream.settings import Settings


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def running_gateway(settings: Settings, log: Path, **env: str) -> Iterator[RunningGateway]:
    """The gateway for ``settings``' broker and topics; extra TRAJSTREAM_* variables in ``env``."""
    port = free_port()
    settings = settings.model_copy(update={"gateway_port": port})
    full_env = {**env_for(settings), "TRAJSTREAM_GATEWAY_PORT": str(port), **env}
    with open(log, "ab") as handle:
        proc = subprocess.Popen([str(trajstream_bin()), "gateway"], env=full_env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    scheme = "https" if "TRAJSTREAM_GATEWAY_TLS_CERT" in env else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1, verify=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not answering in 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield RunningGateway(url, settings, proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
