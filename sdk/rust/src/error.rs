//! The crate's one error type: what went wrong, said plainly, like the Python SDK's `errors.py`.

use std::fmt;

/// Everything the SDK can fail with.
#[derive(Debug)]
pub enum Error {
    /// A `TRAJSTREAM_*` setting has a value the SDK cannot use.
    Configuration(String),
    /// A record does not fit its schema (or names a record the contract does not have).
    Encode(String),
    /// An encoded event is larger than `TRAJSTREAM_MAX_EVENT_BYTES` allows.
    EventTooLarge { record: String, bytes: usize, limit: usize },
    /// Bytes that are not a single-object encoded event of a known schema.
    Decode(String),
    /// The Kafka client refused a setting or an event.
    Kafka(rdkafka::error::KafkaError),
    /// Events that were accepted but not delivered (after the producer's own retries).
    Delivery { failed: usize, first: String },
    /// A trajectory used out of order (a turn before start, anything after end) or a closed emitter.
    State(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Configuration(msg) | Error::Encode(msg) | Error::Decode(msg) | Error::State(msg) => f.write_str(msg),
            Error::EventTooLarge { record, bytes, limit } => {
                write!(f, "{record} event is {bytes} bytes, over the limit of {limit} (TRAJSTREAM_MAX_EVENT_BYTES)")
            }
            Error::Kafka(err) => write!(f, "kafka: {err}"),
            Error::Delivery { failed, first } => {
                write!(f, "{failed} event(s) were not delivered; first error: {first}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Kafka(err) => Some(err),
            _ => None,
        }
    }
}

impl From<rdkafka::error::KafkaError> for Error {
    fn from(err: rdkafka::error::KafkaError) -> Self {
        Error::Kafka(err)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
