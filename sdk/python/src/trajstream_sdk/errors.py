"""The error hierarchy every trajstream component shares: the SDK's errors, and the root of the platform's.

Each names the problem, so that a consumer can dead-letter the input and go on.
"""

from __future__ import annotations


class TrajstreamError(Exception):
    """Base class of every error trajstream raises on purpose (the SDK's and the platform's)."""


class ConfigurationError(TrajstreamError):
    """The settings or the environment do not allow the operation."""


class SchemaError(TrajstreamError):
    """A schema file is missing, unreadable or invalid."""


class CodecError(TrajstreamError):
    """Bytes could not be turned into an event, or an event into bytes."""


class MalformedEventError(CodecError):
    """The bytes are not a valid encoded event (wrong marker, truncated, corrupt body)."""


class UnknownSchemaError(CodecError):
    """The event names a writer schema (fingerprint or registry id) that this reader does not know."""


class UnexpectedEventTypeError(CodecError):
    """The event decoded fine but is not of the record type the caller asked for."""


class EncodeError(CodecError):
    """A record does not fit its schema."""


class EventTooLargeError(EncodeError):
    """An encoded event exceeds the configured maximum size."""


class DeliveryError(TrajstreamError):
    """Events could not be delivered to Kafka after the producer's retries."""


class KafkaSecurityError(ConfigurationError):
    """A Kafka client could not connect or act with the configured security settings; the message names the
    TRAJSTREAM_* setting to fix and never a secret."""


class KafkaAuthenticationError(KafkaSecurityError):
    """The broker refused the SASL credentials (TRAJSTREAM_SASL_USERNAME, TRAJSTREAM_SASL_PASSWORD)."""


class KafkaCertificateError(KafkaSecurityError):
    """The broker's TLS certificate is not trusted by TRAJSTREAM_SSL_CAFILE (or the system's CAs)."""


class KafkaAuthorizationError(KafkaSecurityError):
    """The cluster's ACLs do not allow this user a topic or consumer group."""
