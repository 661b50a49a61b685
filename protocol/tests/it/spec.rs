//! docs/protocol.md must document every frame type the crate defines, with a JSON
//! example equal to the golden vector, and every error and close code.

use std::path::PathBuf;

use agenthub_protocol::{close_code, error_code};

use crate::{examples, vectors};

fn spec() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The first ```json block after the heading "### `<type>`".
fn example_in_spec<'a>(spec: &'a str, type_name: &str) -> Option<&'a str> {
    let heading = format!("### `{type_name}`");
    let section = &spec[spec.find(&heading)? + heading.len()..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    let start = section.find("```json\n")? + "```json\n".len();
    let len = section[start..].find("```")?;
    Some(&section[start..start + len])
}

#[test]
fn every_frame_type_is_documented_with_its_golden_example() {
    let spec = spec();
    let mut failures = Vec::new();
    for example in examples::all() {
        let name = example.type_name();
        let Some(text) = example_in_spec(&spec, name) else {
            failures.push(format!(
                "docs/protocol.md has no \"### `{name}`\" section with a ```json example"
            ));
            continue;
        };
        let documented: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(err) => {
                failures.push(format!("`{name}` example is not JSON: {err}"));
                continue;
            }
        };
        let vector: serde_json::Value = serde_json::from_slice(
            &std::fs::read(vectors::dir().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        if documented != vector {
            failures.push(format!(
                "`{name}` example differs from protocol/tests/vectors/{name}.json"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_and_close_code_is_documented() {
    let spec = spec();
    for code in error_code::ALL {
        assert!(
            spec.contains(&format!("`{code}`")),
            "error code `{code}` is not in docs/protocol.md"
        );
    }
    for code in close_code::ALL {
        assert!(
            spec.contains(&format!("`{code}`")),
            "close code `{code}` is not in docs/protocol.md"
        );
    }
}
