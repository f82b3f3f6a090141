"""The one settings object: every knob comes from a TRAJSTREAM_* environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository checkout that holds schemas/ and kafka/: the package is installed editable.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration for every trajstream process.

    Each field reads the environment variable ``TRAJSTREAM_<FIELD>`` (case-insensitive).
    """

    model_config = SettingsConfigDict(env_prefix="TRAJSTREAM_", extra="ignore", frozen=True)

    # --- state ---------------------------------------------------------------------------
    home: Path = Field(default=Path(".trajstream"), description="State directory (broker data, logs).")
    schemas_dir: Path = Field(default=PROJECT_ROOT / "schemas", description="Directory of versioned .avsc files.")

    # --- Kafka connection ----------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Bootstrap servers of an external cluster. When set, no local broker is started.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    # --- the local broker --------------------------------------------------------------
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    broker_heap: str = "512m"
    broker_start_timeout_s: float = 90.0
    kafka_lib: Path = Field(default=PROJECT_ROOT / "kafka" / "lib", description="Broker jars (mvn-resolved).")
    kafka_pom: Path = Field(default=PROJECT_ROOT / "kafka" / "pom.xml")
    java: str = "java"

    # --- topics ------------------------------------------------------------------------
    topic_prefix: str = "trajstream."
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    topic_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, description="-1 keeps events forever.")
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000)
    topic_min_insync_replicas: int = Field(default=1, ge=1)

    # --- schema registry (optional) ------------------------------------------------------
    schema_registry_url: str | None = Field(
        default=None, description="Confluent-compatible registry; switches the codec to the Confluent wire format."
    )
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None

    # --- SDK producer --------------------------------------------------------------------
    producer_linger_ms: int = Field(default=5, ge=0)
    producer_max_batch_bytes: int = Field(default=512 * 1024, ge=1024)
    producer_compression: Literal["none", "gzip"] = "none"
    producer_request_timeout_ms: int = Field(default=30_000, ge=1000)
    sdk_max_buffered_events: int = Field(
        default=10_000, ge=1, description="Events accepted but not yet acknowledged before emit() waits."
    )
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024, description="Largest single encoded event.")

    @property
    def dead_letter_max_bytes(self) -> int:
        """A dead letter wraps a whole rejected input, so it may be twice the event limit (plus framing)."""
        return self.max_event_bytes * 2 + 64 * 1024

    @property
    def bootstrap(self) -> str:
        """Where clients connect: the external cluster, or the local broker."""
        return self.kafka_bootstrap or f"{self.broker_host}:{self.broker_port}"

    @property
    def uses_external_kafka(self) -> bool:
        return bool(self.kafka_bootstrap)

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection and security options shared by every aiokafka client."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        if self.security_protocol.startswith("SASL"):
            opts["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return opts

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
