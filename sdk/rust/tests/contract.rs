//! The generated contract table is what schemas/ holds now, and apache-avro's own fingerprints are
//! compared with the shipped (fastavro) ones.

use std::path::Path;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use trajstream_sdk::codec::hex;
use trajstream_sdk::contract::Contract;

#[test]
fn the_table_holds_every_schema_file_as_it_is_now() {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let mut on_disk = Vec::new();
    for record in std::fs::read_dir(&schemas).unwrap() {
        let record = record.unwrap().path();
        if record.file_name().unwrap() == "vectors" || !record.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&record).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix('v').and_then(|n| n.strip_suffix(".avsc")) {
                let record_name = record.file_name().unwrap().to_string_lossy().into_owned();
                on_disk.push((record_name, version.parse::<u32>().unwrap(), std::fs::read_to_string(&file).unwrap()));
            }
        }
    }
    on_disk.sort();
    let mut shipped: Vec<_> = Contract::shipped()
        .versions()
        .iter()
        .map(|v| (v.record.to_string(), v.version, v.source.to_string()))
        .collect();
    shipped.sort();
    let stale = "src/contract_generated.rs is stale: run `python sdk/rust/gen_contract.py`";
    let keys = |rows: &[(String, u32, String)]| rows.iter().map(|(r, v, _)| format!("{r} v{v}")).collect::<Vec<_>>();
    assert_eq!(keys(&shipped), keys(&on_disk), "{stale}");
    for (shipped, disk) in shipped.iter().zip(&on_disk) {
        assert!(shipped.2 == disk.2, "{} v{} differs from schemas/: {stale}", disk.0, disk.1);
    }
}

#[test]
fn apache_avro_differs_from_fastavro_only_by_writing_logical_types_as_objects() {
    // apache-avro 0.22's canonical form keeps a logical type's primitive as {"type":"long"}, where the
    // spec (and fastavro) write "long": every schema with a timestamp gets another fingerprint. Not relied
    // upon (the shipped fingerprints are fastavro's), but this says when that changes.
    let mut differ = Vec::new();
    for v in Contract::shipped().versions() {
        let canonical = v.schema.canonical_form();
        let own = v.schema.fingerprint::<Rabin>().bytes;
        let as_spec = canonical.replace(r#"{"type":"long"}"#, r#""long""#).replace(r#"{"type":"int"}"#, r#""int""#);
        let fixed = Schema::parse_str(&as_spec).unwrap().fingerprint::<Rabin>().bytes;
        assert_eq!(
            hex(&fixed),
            hex(&v.fingerprint),
            "{} v{}: another difference than logical types",
            v.record,
            v.version
        );
        if own != v.fingerprint {
            differ.push(v.record.to_string());
            assert!(v.source.contains("logicalType"), "{} v{} differs without a logical type", v.record, v.version);
        }
    }
    println!("apache-avro's own fingerprint differs for: {}", differ.join(", "));
    assert!(!differ.is_empty(), "apache-avro now agrees with fastavro: its fingerprints could be used");
}
