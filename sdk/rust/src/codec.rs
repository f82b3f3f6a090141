//! Avro single-object encoding: `C3 01`, the writer schema's CRC-64-AVRO fingerprint (fastavro's, from
//! the shipped table), the body written by apache-avro on the `Value` path, which is byte-identical
//! with fastavro (the serde path writes negative-count blocks, valid Avro but not the same bytes).

use std::collections::HashMap;
use std::sync::Mutex;

use apache_avro::headers::HeaderBuilder;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::GenericSingleObjectWriter;
use serde_json::Value as Json;

use crate::avro_json;
use crate::contract::{Contract, SchemaVersion};
use crate::error::{Error, Result};
use crate::limits::Limits;

pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// A decoded event: which record it is, which version wrote it, and its value in Avro JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub record: &'static str,
    pub version: u32,
    pub value: Json,
}

/// The single-object header with the shipped (fastavro) fingerprint, for apache-avro's writer.
struct ShippedFingerprint([u8; 8]);

impl HeaderBuilder for ShippedFingerprint {
    fn build_header(&self) -> Vec<u8> {
        let mut header = SINGLE_OBJECT_MARKER.to_vec();
        header.extend_from_slice(&self.0);
        header
    }
}

/// Encodes records with the newest version of their schema and decodes any shipped version.
pub struct Codec {
    contract: &'static Contract,
    limits: Limits,
    // apache-avro's writer keeps a buffer and so needs `&mut`: one per schema version, locked.
    writers: HashMap<(&'static str, u32), Mutex<GenericSingleObjectWriter>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Codec {
    pub fn new(limits: Limits) -> Result<Codec> {
        let contract = Contract::shipped();
        let mut writers = HashMap::new();
        for v in contract.versions() {
            let writer = GenericSingleObjectWriter::new_with_capacity_and_header_builder(
                &v.schema,
                1024,
                &ShippedFingerprint(v.fingerprint),
            )
            .map_err(|e| Error::Encode(format!("{} v{}: {e}", v.record, v.version)))?;
            writers.insert((v.record, v.version), Mutex::new(writer));
        }
        Ok(Codec { contract, limits, writers })
    }

    pub fn contract(&self) -> &'static Contract {
        self.contract
    }

    /// `value` (Avro JSON) written with the newest version of `record`'s schema.
    pub fn encode(&self, record: &str, value: &Json) -> Result<Vec<u8>> {
        let version = self.contract.latest(record).ok_or_else(|| {
            Error::Encode(format!("unknown record schema {record:?}; known: {}", self.contract.records().join(", ")))
        })?;
        let data = self.encode_with(version, value)?;
        let limit = self.limits.encoded_bytes(record);
        if data.len() > limit {
            return Err(Error::EventTooLarge { record: record.into(), bytes: data.len(), limit });
        }
        Ok(data)
    }

    /// `value` written with one given version (the vectors check every version).
    pub fn encode_with(&self, version: &SchemaVersion, value: &Json) -> Result<Vec<u8>> {
        let unfit = |why: String| {
            Error::Encode(format!("{} record does not fit schema v{}: {why}", version.record, version.version))
        };
        let avro = avro_json::to_value(value, version).map_err(unfit)?;
        let writer = &self.writers[&(version.record, version.version)];
        let mut data = Vec::with_capacity(256);
        let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.write_value_ref(&avro, &mut data).map_err(|e| unfit(e.to_string()))?;
        Ok(data)
    }

    /// The writer's record and version, and the value as that version wrote it (no schema resolution).
    pub fn decode(&self, data: &[u8]) -> Result<Decoded> {
        if data.len() < HEADER_LEN {
            return Err(Error::Decode(format!(
                "event is {} bytes; a single-object encoded event has a 10-byte header",
                data.len()
            )));
        }
        if data[..2] != SINGLE_OBJECT_MARKER {
            return Err(Error::Decode(format!(
                "bad marker {:02x}{:02x}: not Avro single-object encoding (expected c301)",
                data[0], data[1]
            )));
        }
        let fingerprint = &data[2..HEADER_LEN];
        let version = self.contract.by_fingerprint(fingerprint).ok_or_else(|| {
            Error::Decode(format!(
                "unknown writer schema fingerprint {}: not in the shipped contract",
                hex(fingerprint)
            ))
        })?;
        let corrupt = |why: String| {
            Error::Decode(format!("corrupt {} v{} body ({} bytes): {why}", version.record, version.version, data.len()))
        };
        let mut body = &data[HEADER_LEN..];
        let reader = GenericDatumReader::builder(&version.schema).build().map_err(|e| corrupt(e.to_string()))?;
        let value = reader.read_value(&mut body).map_err(|e| corrupt(e.to_string()))?;
        if !body.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", body.len())));
        }
        let value = avro_json::from_value(&value, version).map_err(corrupt)?;
        Ok(Decoded { record: version.record, version: version.version, value })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
