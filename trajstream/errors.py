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
    "MalformedEventError",
    "PortInUseError",
    "SchemaError",
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
