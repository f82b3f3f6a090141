"""The one settings object: every knob comes from a TRAJSTREAM_* environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trajstream_sdk.config import PACKAGED_SCHEMAS, EmitterConfig, kafka_client_options
from trajstream_sdk.limits import Limits

# The repository checkout that holds kafka/ (the local broker's pom) and examples/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The emitter's fields (connection, producer, schemas) take their defaults from the SDK: one set of defaults.
_SDK = EmitterConfig()


class Settings(BaseSettings):
    """Configuration for every trajstream process.

    Each field reads the environment variable ``TRAJSTREAM_<FIELD>`` (case-insensitive).
    """

    model_config = SettingsConfigDict(env_prefix="TRAJSTREAM_", extra="ignore", frozen=True)

    # --- state ---------------------------------------------------------------------------
    home: Path = Field(default=Path(".trajstream"), description="State directory (broker data, logs).")
    schemas_dir: Path = Field(
        default=PACKAGED_SCHEMAS,
        description="Directory of versioned .avsc files (default: the SDK's copy of schemas/).",
    )

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
    topic_prefix: str = _SDK.topic_prefix
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
    producer_linger_ms: int = Field(default=_SDK.producer_linger_ms, ge=0)
    producer_max_batch_bytes: int = Field(default=_SDK.producer_max_batch_bytes, ge=1024)
    producer_compression: Literal["none", "gzip"] = "none"
    producer_request_timeout_ms: int = Field(default=_SDK.producer_request_timeout_ms, ge=1000)
    sdk_max_buffered_events: int = Field(
        default=_SDK.sdk_max_buffered_events,
        ge=1,
        description="Events accepted but not yet acknowledged before emit() waits.",
    )
    max_event_bytes: int = Field(default=_SDK.max_event_bytes, ge=1024, description="Largest single encoded event.")

    # --- assembly (streams) ----------------------------------------------------------------
    assembly_app_id: str = Field(default="trajstream-assembly", description="Faust app id (consumer group).")
    assembly_inactivity_timeout_s: float = Field(
        default=300.0, gt=0, description="A trajectory with no event for this long is closed as abandoned (timed out)."
    )
    assembly_sweep_interval_s: float = Field(
        default=5.0, gt=0, description="How often open trajectories are checked, and closed ones for retention."
    )
    # An hour: late turns and feedback mostly come within minutes, and every closed trajectory's events
    # stay in the worker's memory (and its changelog) until then.
    assembly_retention_s: float = Field(
        default=3600.0,
        gt=0,
        description="How long a closed trajectory's state stays in the assembly table after its last event; "
        "later events start a new version without the earlier events.",
    )
    streams_session_timeout_s: float = Field(
        default=10.0, gt=1, description="A worker that stops heartbeating loses its partitions after this long."
    )
    assembly_max_turns: int = Field(default=1000, ge=1, description="More turns than this dead-letters a trajectory.")
    assembly_max_bytes: int = Field(
        default=_SDK.assembly_max_bytes,
        ge=1024,
        description="A trajectory whose events exceed this is dead-lettered; the record limit follows (Limits).",
    )

    # --- AIR intermediate rewards ------------------------------------------------------------
    air_tool_success: float = 0.1
    air_tool_error: float = -0.1
    air_tool_timeout: float = -0.1
    air_repeated_call: float = Field(default=-0.05, description="Per tool call identical to an earlier one.")
    air_turn_error: float = Field(default=-0.1, description="For a turn with its error flag set.")

    # --- credit assignment -------------------------------------------------------------------
    credit_method: Literal["uniform", "discounted", "air_shaped"] = "uniform"
    credit_discount: float = Field(default=0.9, gt=0, le=1, description="gamma for the discounted method.")

    # --- LLM (enrichment, judge) -----------------------------------------------------------
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible base URL; unset: heuristics.")
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0)
    llm_concurrency: int = Field(default=4, ge=1)
    enrichment_prompt_version: str = "v1"
    judge_model: str | None = Field(default=None, description="Model for the RULER-style judge; default llm_model.")

    # --- rewards -------------------------------------------------------------------------------
    reward_function: str = Field(default="entity_aware", description="Named reward function for scored trajectories.")
    reward_outcome_weight: float = 0.6
    reward_entity_weight: float = 0.4
    reward_judge_weight: float = Field(default=0.5, ge=0, le=1, description="Share of the judge when one runs.")

    # --- ClickHouse and its sink ------------------------------------------------------------------
    clickhouse_dsn: str | None = Field(
        default=None,
        description="chdb:///abs/path (embedded; default: TRAJSTREAM_HOME/clickhouse) or http://user:pw@host:8123.",
    )
    clickhouse_database: str = Field(default="trajstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    clickhouse_ttl_days: int = Field(default=90, ge=1, description="Rows older than this are dropped.")
    sink_batch_rows: int = Field(default=2000, ge=1, description="Records per ClickHouse insert, at most.")
    sink_batch_seconds: float = Field(default=0.2, gt=0, description="Longest wait to fill a batch.")
    embed_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Nice value of the Milvus trajectory sink's embedding thread: it yields the CPU to the "
        "ClickHouse path.",
    )
    embed_backlog_nice: int = Field(
        default=19, ge=0, le=19, description="Nice value of the decision-point sink's embedding thread: its "
        "backlog yields the CPU to the trajectory vectors recall needs first.",
    )  # fmt: skip
    embed_cache_entries: int = Field(
        default=10_000, ge=0, description="Vectors kept by text hash (about 1.5 KiB each): a repeated text is "
        "embedded once.",
    )  # fmt: skip
    embed_runtime: Literal["torch", "onnx"] = Field(
        default="onnx", description="onnx: the packaged weights exported to ONNX Runtime at first use (a query "
        "embeds in a third of torch's time; top-5 agreement 1.000 with it, docs/milvus.md); torch: the packaged "
        "fp32 PyTorch model.",
    )  # fmt: skip
    embed_export_dir: Path | None = Field(
        default=None, description="Where the onnx runtime's model, exported from the packaged weights at first "
        "use, is kept (default: ~/.cache/trajstream/embedding).",
    )  # fmt: skip
    milvus_batch_seconds: float = Field(default=0.2, gt=0, description="Longest wait to fill a Milvus sink batch.")
    milvus_trajectory_batch_rows: int = Field(
        default=64, ge=1, description="Records per Milvus trajectory batch: small, so a batch is searchable soon."
    )
    milvus_decision_batch_rows: int = Field(
        default=256, ge=1, description="Records per Milvus decision-point batch (each brings 4-5 texts)."
    )
    sink_retry_attempts: int = Field(default=5, ge=1, description="Tries of a failed insert before giving up.")
    sink_retry_backoff_s: float = Field(default=0.5, gt=0, description="First back-off; doubles per try.")
    sink_retry_max_backoff_s: float = Field(default=10.0, gt=0, description="Longest back-off between tries.")

    # --- Milvus, recall and the API ---------------------------------------------------------------
    milvus_uri: str | None = Field(
        default=None, description="A Milvus server (http://host:19530) or a milvus-lite path; unset: milvus_local."
    )
    milvus_local: Literal["lite", "server"] = Field(
        default="server",
        description="The Milvus used when milvus_uri is unset: a Milvus server from the `milvus` package that "
        "`trajstream up` starts (TRAJSTREAM_HOME/milvus-server), or milvus-lite in-process (HOME/milvus.db). "
        "docs/milvus.md has the measurements behind the default.",
    )
    milvus_token: SecretStr | None = Field(
        default=None,
        description="Credentials for the Milvus server at milvus_uri (user:password, or an API key). "
        "The local server's root password is generated at its first start (TRAJSTREAM_HOME/milvus-server).",
    )
    milvus_server_port: int = Field(default=19530, ge=1, le=65535, description="The local Milvus server's port.")
    milvus_server_start_timeout_s: float = Field(default=120.0, gt=0, description="How long `up` waits for it.")
    milvus_hnsw_m: int = Field(default=16, ge=2, le=2048, description="HNSW graph degree (Milvus servers).")
    milvus_hnsw_ef_construction: int = Field(default=200, ge=1, description="HNSW build breadth (Milvus servers).")
    milvus_hnsw_ef: int = Field(default=64, ge=1, description="HNSW search breadth; at least k is searched.")
    api_host: str = Field(default="127.0.0.1", description="Where the data API and the web console listen. "
                          "Anything but loopback needs TRAJSTREAM_API_READ_TOKEN or _OPERATOR_TOKEN.")  # fmt: skip
    api_port: int = Field(default=8765, ge=1, le=65535, description="The data API of `trajstream up` (sinks).")
    api_read_token: SecretStr | None = Field(
        default=None, description="Token of the read-only role: the console's pages, recall, /sql."
    )
    api_operator_token: SecretStr | None = Field(
        default=None, description="Token of the operator role: everything read-only may, and dead-letter replay."
    )
    sql_max_seconds: float = Field(default=30.0, gt=0, description="`/sql` and `trajstream sql`: a query's time limit.")
    sql_max_memory_bytes: int = Field(default=2 * 1024**3, ge=1 << 20, description="`/sql`: a query's memory limit.")
    sql_max_rows_to_read: int = Field(default=1_000_000_000, ge=1, description="`/sql`: a query's limit on rows read.")
    console_query_timeout_s: float = Field(
        default=5.0, gt=0, description="Each console query's time limit (ClickHouse max_execution_time)."
    )
    console_max_memory_bytes: int = Field(
        default=1024**3, ge=1 << 20, description="Each console query's memory limit (ClickHouse max_memory_usage)."
    )
    console_max_rows_to_read: int = Field(
        default=200_000_000, ge=1000, description="Each console query's limit on rows read (max_rows_to_read)."
    )
    model_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='USD per million tokens by model, for the console\'s cost: {"gpt-4o": {"input": 2.5, '
        '"output": 10}}. Empty: no cost shown.',
    )
    store_open_grace_s: float = Field(
        default=30.0, gt=0, description="How long the data worker waits for its stores before its API starts anyway."
    )
    api_wait_s: float = Field(
        default=180.0, gt=0, description="How long a CLI data command waits for a starting data worker's API."
    )
    restart_backoff_s: float = Field(default=1.0, gt=0, description="`up`: first wait before a dead part restarts.")
    restart_max_backoff_s: float = Field(default=60.0, gt=0, description="`up`: longest wait before a restart.")
    recall_nprobe: int = Field(default=32, ge=1, description="IVF lists searched per query: recall against speed.")

    # --- the ingestion gateway ----------------------------------------------------------------
    gateway_host: str = Field(default="127.0.0.1", description="Where `trajstream gateway` listens. Anything but "
                              "loopback needs at least one API key (`trajstream gateway keys add`).")  # fmt: skip
    gateway_port: int = Field(
        default=4318, ge=1, le=65535, description="OTLP/HTTP's port; the JSON APIs and proxy too."
    )
    gateway_keys_file: Path | None = Field(default=None, description="API keys, salted hashes only "
                                           "(default: TRAJSTREAM_HOME/gateway/keys.json).")  # fmt: skip
    gateway_tls_cert: Path | None = Field(default=None, description="PEM certificate: the gateway serves HTTPS.")
    gateway_tls_key: Path | None = Field(default=None, description="PEM private key of gateway_tls_cert.")
    gateway_max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024,
                                           description="Largest request body after decompression (413).")  # fmt: skip
    gateway_max_inflight_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Bytes accepted and not "
                                            "yet acknowledged by the broker; past it requests get 503.")  # fmt: skip
    gateway_retry_after_s: int = Field(default=1, ge=1, description="Retry-After on a 503.")
    gateway_upstream_url: str | None = Field(default=None, description="The recording proxy's OpenAI-compatible "
                                             "upstream, e.g. https://api.openai.com/v1.")  # fmt: skip
    gateway_upstream_api_key: SecretStr | None = Field(default=None, description="Bearer key for the upstream.")
    otlp_grace_s: float = Field(default=2.0, ge=0, description="How long the trace stage waits after a trajectory's "
                                "boundary span for late child spans before it publishes the trajectory.")  # fmt: skip

    @property
    def runs_milvus_server(self) -> bool:
        """`up` starts a local Milvus server: no other Milvus is named and the server is the local choice."""
        return self.milvus_uri is None and self.milvus_local == "server"

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url)

    @field_validator("api_read_token", "api_operator_token", mode="before")
    @classmethod
    def _no_empty_token(cls, value: Any) -> Any:
        # docker-compose passes an unset ${TOKEN:-} as "": that is no token, not a token nobody can present.
        return None if value == "" else value

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        Limits(self.max_event_bytes, self.assembly_max_bytes)  # knobs that do not fit together are refused here
        return self

    @property
    def limits(self) -> Limits:
        """Every record size, from TRAJSTREAM_MAX_EVENT_BYTES and TRAJSTREAM_ASSEMBLY_MAX_BYTES."""
        return Limits(self.max_event_bytes, self.assembly_max_bytes)

    @property
    def gateway_keys_path(self) -> Path:
        return self.gateway_keys_file or self.home / "gateway" / "keys.json"

    def schema_registry_secret(self) -> str | None:
        return self.schema_registry_password.get_secret_value() if self.schema_registry_password else None

    @property
    def bootstrap(self) -> str:
        """Where clients connect: the external cluster, or the local broker."""
        return self.kafka_bootstrap or f"{self.broker_host}:{self.broker_port}"

    @property
    def uses_external_kafka(self) -> bool:
        return bool(self.kafka_bootstrap)

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection and security options shared by every aiokafka client."""
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kafka_client_options(
            self.bootstrap, self.security_protocol, self.sasl_mechanism, self.sasl_username, password,
            self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile,
        )  # fmt: skip

    def durable_producer_options(self) -> dict[str, Any]:
        """A producer that loses and duplicates nothing, and sends the largest record a topic takes."""
        return {**self.kafka_client_options(), "enable_idempotence": True, "acks": "all",
                "max_request_size": self.limits.message_bytes}  # fmt: skip

    def consumer_options(self) -> dict[str, Any]:
        """A consumer whose fetches take the largest record whole. aiokafka asks for 1 MiB a partition, and
        brokers since Kafka 0.10.1 (KIP-74) still hand out a larger first batch, one a request; a fetch of the
        largest record depends on neither."""
        message = self.limits.message_bytes
        return {**self.kafka_client_options(), "max_partition_fetch_bytes": message,
                "fetch_max_bytes": max(message, 50 * 1024 * 1024)}  # fmt: skip

    def topic(self, name: str) -> str:
        """A topic's full name: the deployment's prefix, then the name."""
        return f"{self.topic_prefix}{name}"

    def consumer_group(self, name: str) -> str:
        """A consumer group's full name: prefixed like the topics, so two deployments never share a group."""
        return f"{self.topic_prefix}{name}"
