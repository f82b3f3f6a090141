"""What every command module shares: the two consoles, the settings a command runs with, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from trajstream.settings import Settings

err = Console(stderr=True, soft_wrap=True)
# Tables and summaries should not be cut to 80 columns when piped to a file or CI log.
out = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=True)


def settings_of(ctx: click.Context) -> Settings:
    """The settings the `trajstream` group read from the environment."""
    settings: Settings = ctx.find_root().obj
    return settings


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    sys.exit(1)
