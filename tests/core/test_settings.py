"""Settings: environment variables, and security options passed through to every Kafka client."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from trajstream.settings import Settings


def test_environment_variables_configure_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJSTREAM_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("TRAJSTREAM_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("TRAJSTREAM_TOPIC_PREFIX", "prod.")
    settings = Settings()
    assert settings.uses_external_kafka and settings.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.topic_partitions == 12 and settings.topic("events") == "prod.events"


def test_sasl_options_reach_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJSTREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TRAJSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TRAJSTREAM_SASL_USERNAME", "agent")
    monkeypatch.setenv("TRAJSTREAM_SASL_PASSWORD", "s3cret")
    opts = Settings().kafka_client_options()
    assert opts["security_protocol"] == "SASL_PLAINTEXT"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("agent", "s3cret")
    assert "s3cret" not in repr(Settings())  # secrets stay out of logs and tracebacks


def test_ssl_builds_a_context(tmp_path: Path) -> None:
    import ssl

    opts = Settings(security_protocol="SSL").kafka_client_options()
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    with pytest.raises(FileNotFoundError):
        Settings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem").kafka_client_options()


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJSTREAM_BROKER_PORT", "99999")
    with pytest.raises(ValidationError, match="broker_port"):
        Settings()
