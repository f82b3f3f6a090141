"""The platform's errors, on the SDK's hierarchy: everything derives from ``TrajstreamError``.

The SDK's errors are re-exported so that platform code imports every error from this one module.
"""

from __future__ import annotations

from trajstream_sdk.errors import (
    CodecError,
    ConfigurationError,
    DeliveryError,
    EncodeError,
    EventTooLargeError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaCertificateError,
    KafkaSecurityError,
    MalformedEventError,
    SchemaError,
    TrajstreamError,
    UnexpectedEventTypeError,
    UnknownSchemaError,
)

__all__ = [
    "BrokerError",
    "CodecError",
    "ConfigurationError",
    "DeliveryError",
    "EncodeError",
    "EventTooLargeError",
    "InputRecordError",
    "KafkaAuthenticationError",
    "KafkaAuthorizationError",
    "KafkaCertificateError",
    "KafkaSecurityError",
    "MalformedEventError",
    "PortInUseError",
    "SchemaError",
    "SpanContentError",
    "SpanError",
    "TrajstreamError",
    "UnexpectedEventTypeError",
    "UnknownSchemaError",
]


class BrokerError(TrajstreamError):
    """The local broker could not be started, reached or stopped."""


class PortInUseError(BrokerError):
    """A port the local broker needs is taken by another process."""


class InputRecordError(TrajstreamError):
    """A line of an input file is not a valid trajectory."""


class SpanError(TrajstreamError):
    """An OTLP span is not one trajstream can read (no valid trace or span id)."""


class SpanContentError(SpanError):
    """A span's GenAI content (its messages) cannot be read: not JSON, an unknown role, a malformed part."""
