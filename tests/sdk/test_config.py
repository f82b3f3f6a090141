"""The SDK's settings and the platform's read the same TRAJSTREAM_* variables the same way."""

from __future__ import annotations

import dataclasses

import pytest

from trajstream.errors import ConfigurationError, TrajstreamError
from trajstream.settings import Settings
from trajstream_sdk.config import PACKAGED_SCHEMAS, EmitterConfig

ENV = {
    "TRAJSTREAM_BROKER_PORT": "19092",
    "TRAJSTREAM_TOPIC_PREFIX": "acme.",
    "TRAJSTREAM_MAX_EVENT_BYTES": "2048",
    "TRAJSTREAM_PRODUCER_LINGER_MS": "20",
    "TRAJSTREAM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "TRAJSTREAM_SASL_MECHANISM": "SCRAM-SHA-512",
    "TRAJSTREAM_SASL_USERNAME": "agent",
    "TRAJSTREAM_SASL_PASSWORD": "s3cret",
}


def test_every_emitter_field_is_a_platform_setting_with_the_same_default() -> None:
    sdk, platform = EmitterConfig(), Settings()
    for field in dataclasses.fields(EmitterConfig):
        assert field.name in Settings.model_fields, f"{field.name} is not a platform setting"
        ours = getattr(platform, field.name)
        ours = ours.get_secret_value() if hasattr(ours, "get_secret_value") else ours
        assert ours == getattr(sdk, field.name), field.name
    assert sdk.schemas_dir == PACKAGED_SCHEMAS and (PACKAGED_SCHEMAS / "turn" / "v1.avsc").is_file()


def test_both_read_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    sdk, platform = EmitterConfig.from_env(), Settings()
    assert sdk.bootstrap == platform.bootstrap == "127.0.0.1:19092"
    assert sdk.topic("events") == platform.topic("events") == "acme.events"
    assert sdk.limits == platform.limits
    assert sdk.producer_linger_ms == platform.producer_linger_ms == 20
    assert sdk.kafka_client_options() == platform.kafka_client_options()
    assert "s3cret" not in repr(sdk)


def test_bad_values_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="TRAJSTREAM_BROKER_PORT='ninety' is not a whole number"):
        EmitterConfig.from_env({"TRAJSTREAM_BROKER_PORT": "ninety"})
    with pytest.raises(TrajstreamError, match="TRAJSTREAM_SECURITY_PROTOCOL='TLS'"):
        EmitterConfig.from_env({"TRAJSTREAM_SECURITY_PROTOCOL": "TLS"})
