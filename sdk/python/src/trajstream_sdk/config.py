"""What an emitter needs to know: where Kafka is, how to produce, which schemas to write with.

``EmitterConfig.from_env()`` reads the same ``TRAJSTREAM_*`` variables as the platform, with the same
defaults: the platform's settings object takes its defaults for these fields from here, and satisfies
``EmitterSettings``, so an emitter accepts either.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trajstream_sdk.errors import ConfigurationError
from trajstream_sdk.limits import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_TRAJECTORY_BYTES, Limits

# The Avro contract, every version, shipped inside the package (the repository's schemas/).
PACKAGED_SCHEMAS = Path(__file__).resolve().parent / "contract"

# Topics the emitter writes to (after TRAJSTREAM_TOPIC_PREFIX); the platform's topic table names them too.
EVENTS_TOPIC = "events"
FEEDBACK_TOPIC = "feedback"

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class EmitterSettings(Protocol):
    """The settings an emitter and a codec read: ``EmitterConfig`` here, or the platform's ``Settings``."""

    @property
    def topic_prefix(self) -> str: ...
    @property
    def producer_linger_ms(self) -> int: ...
    @property
    def producer_max_batch_bytes(self) -> int: ...
    @property
    def producer_compression(self) -> str: ...
    @property
    def producer_request_timeout_ms(self) -> int: ...
    @property
    def sdk_max_buffered_events(self) -> int: ...
    @property
    def max_event_bytes(self) -> int: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def schemas_dir(self) -> Path: ...
    @property
    def schema_registry_url(self) -> str | None: ...
    @property
    def schema_registry_username(self) -> str | None: ...

    def schema_registry_secret(self) -> str | None: ...
    def kafka_client_options(self) -> dict[str, Any]: ...
    def topic(self, name: str) -> str: ...


@dataclass(frozen=True)
class EmitterConfig:
    """The emitter's settings; each field reads ``TRAJSTREAM_<FIELD>`` in ``from_env``."""

    kafka_bootstrap: str | None = None
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_prefix: str = "trajstream."
    producer_linger_ms: int = 5
    producer_max_batch_bytes: int = 512 * 1024
    producer_compression: str = "none"
    producer_request_timeout_ms: int = 30_000
    sdk_max_buffered_events: int = 10_000
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    # The largest trajectory the platform assembles: the record limit follows from it, and the emitter's
    # producer takes records up to that limit like every other producer (``Limits``).
    assembly_max_bytes: int = DEFAULT_MAX_TRAJECTORY_BYTES
    schemas_dir: Path = PACKAGED_SCHEMAS
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.security_protocol not in _SECURITY_PROTOCOLS:
            raise ConfigurationError(
                f"TRAJSTREAM_SECURITY_PROTOCOL={self.security_protocol!r}: use one of {', '.join(_SECURITY_PROTOCOLS)}"
            )
        if self.producer_compression not in ("none", "gzip"):
            raise ConfigurationError("TRAJSTREAM_PRODUCER_COMPRESSION must be none or gzip")
        Limits(self.max_event_bytes, self.assembly_max_bytes)  # knobs that do not fit together are refused here

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmitterConfig:
        """Read ``TRAJSTREAM_*`` variables (case-insensitive, as the platform does); unset ones keep their default."""
        env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"TRAJSTREAM_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.name, raw, hints[f.name])
        return cls(**values)

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"{self.broker_host}:{self.broker_port}"

    @property
    def limits(self) -> Limits:
        return Limits(self.max_event_bytes, self.assembly_max_bytes)

    def schema_registry_secret(self) -> str | None:
        return self.schema_registry_password

    def kafka_client_options(self) -> dict[str, Any]:
        return kafka_client_options(
            self.bootstrap, self.security_protocol, self.sasl_mechanism, self.sasl_username, self.sasl_password,
            self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile,
        )  # fmt: skip

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def _parse(name: str, raw: str, hint: Any) -> Any:
    """A variable's text as its field's type (``int``, ``str``, ``Path``, or one of them or ``None``)."""
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    kind = kinds[0]
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"TRAJSTREAM_{name.upper()}={raw!r} is not a whole number") from None
    return Path(raw) if kind is Path else raw


def kafka_client_options(
    bootstrap: str,
    security_protocol: str,
    sasl_mechanism: str | None,
    sasl_username: str | None,
    sasl_password: str | None,
    ssl_cafile: Path | None,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
) -> dict[str, Any]:
    """Connection and security options shared by every aiokafka client, the SDK's and the platform's."""
    opts: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": security_protocol}
    if security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(
            cafile=str(ssl_cafile) if ssl_cafile else None,
            certfile=str(ssl_certfile) if ssl_certfile else None,
            keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )
    if security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = sasl_mechanism or "PLAIN"
        opts["sasl_plain_username"] = sasl_username
        opts["sasl_plain_password"] = sasl_password
    return opts
