//! Record sizes, derived from two knobs exactly as `trajstream_sdk/limits.py` derives them.

use crate::error::{Error, Result};

const MIB: usize = 1024 * 1024;
pub const DEFAULT_MAX_EVENT_BYTES: usize = MIB;
pub const DEFAULT_MAX_TRAJECTORY_BYTES: usize = 8 * MIB;
/// Room for a record's own fields around what it carries.
pub const FRAMING_BYTES: usize = 64 * 1024;
/// What Kafka adds around a record: the batch header, the record's own header, its key.
pub const KAFKA_FRAMING_BYTES: usize = 4 * 1024;

/// Records that carry a whole trajectory: they may be as large as a record can be.
const TRAJECTORY_RECORDS: [&str; 5] =
    ["assembled_trajectory", "enrichment_request", "scored_trajectory", "assembly_state", "scoring_state"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_trajectory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_event_bytes: DEFAULT_MAX_EVENT_BYTES, max_trajectory_bytes: DEFAULT_MAX_TRAJECTORY_BYTES }
    }
}

impl Limits {
    /// The two knobs, refused when they do not fit together.
    pub fn new(max_event_bytes: usize, max_trajectory_bytes: usize) -> Result<Limits> {
        if max_event_bytes < 1024 {
            return Err(Error::Configuration(format!("TRAJSTREAM_MAX_EVENT_BYTES={max_event_bytes}: at least 1024")));
        }
        if max_trajectory_bytes < max_event_bytes {
            return Err(Error::Configuration(format!(
                "TRAJSTREAM_ASSEMBLY_MAX_BYTES={max_trajectory_bytes} is below TRAJSTREAM_MAX_EVENT_BYTES={max_event_bytes}"
            )));
        }
        Ok(Limits { max_event_bytes, max_trajectory_bytes })
    }

    pub fn dead_letter_bytes(&self) -> usize {
        2 * self.max_event_bytes + FRAMING_BYTES
    }

    pub fn record_bytes(&self) -> usize {
        self.max_trajectory_bytes + 2 * self.max_event_bytes + FRAMING_BYTES
    }

    /// The largest Kafka message: the producer's `message.max.bytes`, as every other producer's.
    pub fn message_bytes(&self) -> usize {
        self.record_bytes() + KAFKA_FRAMING_BYTES
    }

    /// The largest encoding of `record` the codec writes.
    pub fn encoded_bytes(&self, record: &str) -> usize {
        if TRAJECTORY_RECORDS.contains(&record) {
            self.record_bytes()
        } else if record == "dead_letter" {
            self.dead_letter_bytes()
        } else {
            self.max_event_bytes
        }
    }
}
