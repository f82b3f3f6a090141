//! The shared vectors (schemas/vectors/<record>/v<N>/<case>.json, written by the Python codec): for
//! every record and version, the bytes decode to the value and the value encodes to the same bytes.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use trajstream_sdk::codec::hex;
use trajstream_sdk::contract::Contract;
use trajstream_sdk::{Codec, Limits};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/vectors")
}

struct Vector {
    path: PathBuf,
    record: String,
    version: u32,
    fingerprint_hex: String,
    bytes: Vec<u8>,
    value: Json,
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    for record in std::fs::read_dir(vectors_dir()).expect("schemas/vectors") {
        for version in std::fs::read_dir(record.unwrap().path()).unwrap() {
            for case in std::fs::read_dir(version.unwrap().path()).unwrap() {
                let path = case.unwrap().path();
                let doc: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                out.push(Vector {
                    record: doc["record"].as_str().unwrap().into(),
                    version: doc["version"].as_u64().unwrap() as u32,
                    fingerprint_hex: doc["fingerprint_hex"].as_str().unwrap().into(),
                    bytes: unhex(doc["single_object_hex"].as_str().unwrap()),
                    value: doc["value"].clone(),
                    path,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn codec() -> Codec {
    // The largest vector must not be refused by a size limit: these tests are about bytes.
    Codec::new(Limits::default()).unwrap()
}

#[test]
fn every_shipped_version_has_a_full_and_a_minimal_vector() {
    let found: Vec<(String, u32, String)> = vectors()
        .iter()
        .map(|v| (v.record.clone(), v.version, v.path.file_stem().unwrap().to_string_lossy().into_owned()))
        .collect();
    for v in Contract::shipped().versions() {
        for case in ["full", "minimal"] {
            assert!(
                found.contains(&(v.record.to_string(), v.version, case.to_string())),
                "no {case} vector for {} v{}",
                v.record,
                v.version
            );
        }
    }
    assert_eq!(found.len(), 2 * Contract::shipped().versions().len());
}

#[test]
fn the_bytes_decode_to_the_value() {
    let codec = codec();
    for v in vectors() {
        let decoded = codec.decode(&v.bytes).unwrap_or_else(|e| panic!("{}: {e}", v.path.display()));
        assert_eq!((decoded.record, decoded.version), (v.record.as_str(), v.version), "{}", v.path.display());
        assert_eq!(decoded.value, v.value, "{}", v.path.display());
    }
}

#[test]
fn the_value_encodes_to_the_same_bytes() {
    let codec = codec();
    let contract = Contract::shipped();
    for v in vectors() {
        let version = contract.version(&v.record, v.version).expect("shipped");
        let data = codec.encode_with(version, &v.value).unwrap_or_else(|e| panic!("{}: {e}", v.path.display()));
        assert_eq!(hex(&data), hex(&v.bytes), "{}", v.path.display());
    }
}

#[test]
fn the_shipped_fingerprints_are_the_ones_in_the_vectors() {
    let contract = Contract::shipped();
    for v in vectors() {
        let version = contract.version(&v.record, v.version).expect("shipped");
        assert_eq!(hex(&version.fingerprint), v.fingerprint_hex, "{}", v.path.display());
        assert_eq!(hex(&v.bytes[2..10]), v.fingerprint_hex, "{}", v.path.display());
    }
}

#[test]
fn a_full_turn_vector_carries_every_content_kind() {
    let turn = vectors().into_iter().find(|v| v.record == "turn" && v.path.ends_with("full.json")).unwrap();
    let mut kinds: Vec<String> = turn.value["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_object().unwrap().keys().next().unwrap().rsplit('.').next().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["RedactedContent", "StructuredContent", "TextContent", "ToolCall", "ToolResponse", "Widget"]);
}
