// The SDK's errors, named like the Python SDK's (trajstream_sdk/errors.py) so that logs read the same.

/** Base class of every error the SDK raises on purpose. */
export class TrajstreamError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The settings or the environment do not allow the operation. */
export class ConfigurationError extends TrajstreamError {}

/** Bytes could not be turned into an event, or an event into bytes. */
export class CodecError extends TrajstreamError {}

/** The bytes are not a valid encoded event (wrong marker, truncated, corrupt body). */
export class MalformedEventError extends CodecError {}

/** The event names a writer schema (fingerprint) that this SDK does not know. */
export class UnknownSchemaError extends CodecError {}

/** The event decoded fine but is not of the record type the caller asked for. */
export class UnexpectedEventTypeError extends CodecError {}

/** A record does not fit its schema. */
export class EncodeError extends CodecError {}

/** An encoded event exceeds the configured maximum size. */
export class EventTooLargeError extends EncodeError {}

/** Events could not be delivered to Kafka after the producer's retries. */
export class DeliveryError extends TrajstreamError {}
