"""Where the tests find things: the contract, free ports, the CLI, and the environment of a subprocess."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from trajstream.settings import PROJECT_ROOT, Settings

SCHEMAS = PROJECT_ROOT / "schemas"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a `trajstream` subprocess that talks to the same broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJSTREAM_")}
    env.update(
        {
            "TRAJSTREAM_HOME": str(settings.home),
            "TRAJSTREAM_BROKER_PORT": str(settings.broker_port),
            "TRAJSTREAM_CONTROLLER_PORT": str(settings.controller_port),
            "TRAJSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "TRAJSTREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "TRAJSTREAM_API_PORT": str(settings.api_port),
            "TRAJSTREAM_GATEWAY_PORT": str(settings.gateway_port),
            "TRAJSTREAM_MILVUS_LOCAL": settings.milvus_local,
            "TRAJSTREAM_MILVUS_SERVER_PORT": str(settings.milvus_server_port),
        }
    )
    if settings.kafka_bootstrap:
        env["TRAJSTREAM_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    if settings.security_protocol != "PLAINTEXT":  # a secured cluster (tests/security/): the same credentials
        env["TRAJSTREAM_SECURITY_PROTOCOL"] = settings.security_protocol
        for name, value in (("SASL_MECHANISM", settings.sasl_mechanism), ("SASL_USERNAME", settings.sasl_username),
                            ("SSL_CAFILE", settings.ssl_cafile)):  # fmt: skip
            if value is not None:
                env[f"TRAJSTREAM_{name}"] = str(value)
        if settings.sasl_password is not None:
            env["TRAJSTREAM_SASL_PASSWORD"] = settings.sasl_password.get_secret_value()
    if settings.milvus_uri:
        env["TRAJSTREAM_MILVUS_URI"] = settings.milvus_uri
    return env


def trajstream_bin() -> Path:
    """The console script installed beside the interpreter running the tests."""
    return Path(sys.executable).parent / "trajstream"
