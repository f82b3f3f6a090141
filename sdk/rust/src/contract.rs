//! The Avro contract, every version of every record in `schemas/`, compiled into the crate.
//!
//! The table (`contract_generated.rs`) is written by `gen_contract.py` with fastavro's fingerprints:
//! those are what the Python codec writes and reads, and canonical forms differ between Avro
//! libraries, so this crate never computes its own.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::Schema;

use crate::contract_generated::CONTRACT;

/// One row of the generated table.
#[derive(Debug)]
pub struct ContractSchema {
    /// The record's directory name under `schemas/` (`turn`, `feedback`, ...).
    pub record: &'static str,
    pub version: u32,
    pub full_name: &'static str,
    /// fastavro's CRC-64-AVRO fingerprint, little-endian as single-object encoding writes it.
    pub fingerprint: [u8; 8],
    /// The `.avsc` file's text.
    pub source: &'static str,
}

/// One version of one record schema, parsed.
#[derive(Debug)]
pub struct SchemaVersion {
    pub record: &'static str,
    pub version: u32,
    pub full_name: &'static str,
    pub fingerprint: [u8; 8],
    pub source: &'static str,
    pub schema: Schema,
    /// Every named type inside the schema by full name, to follow `Schema::Ref`.
    pub names: HashMap<String, Schema>,
}

/// Every schema version of the contract, by record name and by fingerprint.
#[derive(Debug)]
pub struct Contract {
    versions: Vec<SchemaVersion>,
}

impl Contract {
    /// The contract shipped with the crate, parsed once.
    pub fn shipped() -> &'static Contract {
        static SHIPPED: OnceLock<Contract> = OnceLock::new();
        SHIPPED.get_or_init(|| {
            let versions = CONTRACT
                .iter()
                .map(|row| {
                    // The generator read these files with fastavro: a failure here is a bug in this crate.
                    let schema = Schema::parse_str(row.source).unwrap_or_else(|e| {
                        panic!("shipped schema {} v{} does not parse: {e}", row.record, row.version)
                    });
                    let mut names = HashMap::new();
                    collect_names(&schema, &mut names);
                    SchemaVersion {
                        record: row.record,
                        version: row.version,
                        full_name: row.full_name,
                        fingerprint: row.fingerprint,
                        source: row.source,
                        schema,
                        names,
                    }
                })
                .collect();
            Contract { versions }
        })
    }

    /// Every version, ordered by record name then version.
    pub fn versions(&self) -> &[SchemaVersion] {
        &self.versions
    }

    /// The newest version of `record`, the one an emitter writes with.
    pub fn latest(&self, record: &str) -> Option<&SchemaVersion> {
        self.versions.iter().filter(|v| v.record == record).max_by_key(|v| v.version)
    }

    pub fn version(&self, record: &str, version: u32) -> Option<&SchemaVersion> {
        self.versions.iter().find(|v| v.record == record && v.version == version)
    }

    /// The writer schema of an event. Two versions may share a fingerprint (a doc-only change): the
    /// newest wins, as in the Python catalog.
    pub fn by_fingerprint(&self, fingerprint: &[u8]) -> Option<&SchemaVersion> {
        self.versions.iter().filter(|v| v.fingerprint == fingerprint).max_by_key(|v| v.version)
    }

    /// The record names, sorted.
    pub fn records(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.versions.iter().map(|v| v.record).collect();
        names.dedup();
        names
    }
}

fn collect_names(schema: &Schema, names: &mut HashMap<String, Schema>) {
    match schema {
        Schema::Record(record) => {
            names.insert(record.name.fullname(None), schema.clone());
            for field in &record.fields {
                collect_names(&field.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Fixed(f) | Schema::Duration(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Array(array) => collect_names(&array.items, names),
        Schema::Map(map) => collect_names(&map.types, names),
        Schema::Union(union) => {
            for variant in union.variants() {
                collect_names(variant, names);
            }
        }
        _ => {}
    }
}
