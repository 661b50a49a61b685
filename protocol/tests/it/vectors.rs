//! Golden vectors: `protocol/tests/vectors/<type>.json` and `<type>.msgpack` hold the
//! example of every frame in both codecs. Run with `AGENTHUB_BLESS=1` to rewrite them
//! after an intended protocol change (and update docs/protocol.md in the same commit).

use std::path::PathBuf;

use agenthub_protocol::Codec;

use crate::examples;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn bless() -> bool {
    std::env::var_os("AGENTHUB_BLESS").is_some()
}

#[test]
fn golden_vectors_match_both_codecs_in_both_directions() {
    let mut failures = Vec::new();
    for example in examples::all() {
        let name = example.type_name();
        let json_path = dir().join(format!("{name}.json"));
        let msgpack_path = dir().join(format!("{name}.msgpack"));
        let msgpack = example.encode(Codec::MsgPack);
        let json_value: serde_json::Value =
            serde_json::from_slice(&example.encode(Codec::Json)).expect("json parses");
        if bless() {
            std::fs::write(&json_path, example.pretty_json() + "\n").unwrap();
            std::fs::write(&msgpack_path, &msgpack).unwrap();
            continue;
        }
        let Ok(json_file) = std::fs::read(&json_path) else {
            failures.push(format!(
                "{name}: {} is missing (run with AGENTHUB_BLESS=1)",
                json_path.display()
            ));
            continue;
        };
        let Ok(msgpack_file) = std::fs::read(&msgpack_path) else {
            failures.push(format!("{name}: {} is missing", msgpack_path.display()));
            continue;
        };
        // File → frame, both codecs.
        match example.decode_like(Codec::Json, &json_file) {
            Ok(decoded) if decoded == example => {}
            other => failures.push(format!("{name}.json decodes to {other:?}")),
        }
        match example.decode_like(Codec::MsgPack, &msgpack_file) {
            Ok(decoded) if decoded == example => {}
            other => failures.push(format!("{name}.msgpack decodes to {other:?}")),
        }
        // Frame → file, both codecs.
        if msgpack != msgpack_file {
            failures.push(format!("{name}: encoding differs from {name}.msgpack"));
        }
        let file_value: serde_json::Value =
            serde_json::from_slice(&json_file).expect("vector is JSON");
        if file_value != json_value {
            failures.push(format!("{name}: encoding differs from {name}.json"));
        }
    }
    assert!(
        failures.is_empty(),
        "golden vectors out of date:\n{}",
        failures.join("\n")
    );
}

#[test]
fn no_stray_vectors() {
    let known: Vec<String> = examples::all()
        .iter()
        .map(|frame| frame.type_name().to_string())
        .collect();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            known.contains(&stem),
            "{} names no frame type",
            path.display()
        );
    }
}

#[test]
fn msgpack_vectors_are_maps_with_named_fields() {
    for example in examples::all() {
        let bytes = example.encode(Codec::MsgPack);
        // fixmap (0x80-0x8f) or map16 (0xde): never a positional array.
        assert!(
            matches!(bytes[0], 0x80..=0x8f | 0xde),
            "{} is not a map",
            example.type_name()
        );
    }
}
