"""The gateway's commands: `trajstream gateway` (run it) and `trajstream gateway keys ...`."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import click

from trajstream.console import err, out, settings_of


@click.group("gateway", invoke_without_command=True)
@click.pass_context
def gateway(ctx: click.Context) -> None:
    """Run the ingestion gateway in the foreground (`trajstream up` starts it too).

    \b
    POST /v1/traces             OTLP/HTTP traces (protobuf or JSON, gzip): GenAI spans become trajectories
    POST /v1/events             a JSON batch of trajstream records ({"events": [{"type", "record"}]})
    POST /v1/trajectories       trajectories in the `trajstream emit` line format
    POST /v1/chat/completions   the recording proxy (TRAJSTREAM_GATEWAY_UPSTREAM_URL)
    POST /v1/trajectories/ID/end  closes a proxied trajectory
    GET  /healthz

    A 2xx means the broker acknowledged every accepted record. Listens on TRAJSTREAM_GATEWAY_HOST:PORT
    (127.0.0.1:4318); anything but loopback needs an API key (`trajstream gateway keys add`).
    """
    if ctx.invoked_subcommand is not None:
        return
    from trajstream.foreground import run_until_signalled
    from trajstream.gateway.server import serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_of(ctx)
    run_until_signalled(lambda stop: serve(settings, stop))


@gateway.group("keys")
def keys() -> None:
    """API keys: each scoped to one agent or one environment, stored as salted hashes."""


@keys.command("add")
@click.option("--agent", default=None, help="The agent id the key may write for.")
@click.option("--environment", type=click.Choice(["prod", "staging", "dev"]), default=None,
              help="The environment the key may write for.")  # fmt: skip
@click.pass_context
def keys_add(ctx: click.Context, agent: str | None, environment: str | None) -> None:
    """Create a key and print it once: only its salted hash is kept."""
    from trajstream.gateway.keys import KeyStore

    if (agent is None) == (environment is None):
        err.print("[red]give exactly one of --agent or --environment[/]")
        sys.exit(2)
    store = KeyStore(settings_of(ctx).gateway_keys_path)
    key = store.add("agent", agent) if agent is not None else store.add("environment", environment or "")
    err.print(f"key for {'agent ' + agent if agent else 'environment ' + str(environment)} (shown once, keep it):")
    out.print(key, soft_wrap=True)


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """List the keys (ids and scopes; the secrets are not stored)."""
    from trajstream.gateway.keys import KeyStore

    store = KeyStore(settings_of(ctx).gateway_keys_path)
    if not store.keys:
        out.print("no keys: the gateway takes every request and listens on loopback only")
    for k in store.keys:
        created = datetime.fromtimestamp(k.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        out.print(f"{k.key_id}  {k.scope:12} {k.value:24} created {created} UTC")


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by its id; a running gateway stops taking it at once."""
    from trajstream.gateway.keys import KeyStore

    if not KeyStore(settings_of(ctx).gateway_keys_path).revoke(key_id):
        err.print(f"[red]no key {key_id}[/]")
        sys.exit(1)
    out.print(f"revoked {key_id}")


WORKERS: tuple[click.Command, ...] = ()
COMMANDS = (gateway,)
