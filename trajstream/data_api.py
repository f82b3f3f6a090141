"""Where the data worker's API listens: the file it writes at start, read by the CLI and `trajstream status`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from trajstream.settings import Settings


def api_file(settings: Settings) -> Path:
    """Where the running data worker says how to reach it."""
    return settings.home / "api.json"


def api_url(settings: Settings) -> str | None:
    """The data API of a running `trajstream up`, or None."""
    path = api_file(settings)
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])
