//! The digest of a submitted result: what an approver saw, so that a decision applies to
//! exactly that result (docs/protocol.md, "Result digest").
//!
//! `sha256:` and the lowercase hex SHA-256 of the canonical JSON of
//! `{"files": [...], "result": ..., "summary": ...}`: no whitespace, object keys sorted by
//! their UTF-8 bytes at every level, strings and numbers written as serde_json writes them.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The digest of a result as submitted: its summary (null when none), result and file ids.
pub fn result_digest(summary: Option<&str>, result: &Value, files: &[String]) -> String {
    let mut canonical = String::new();
    let document = serde_json::json!({
        "files": files,
        "result": result,
        "summary": summary,
    });
    write_canonical(&mut canonical, &document);
    let hash = Sha256::digest(canonical.as_bytes());
    let mut digest = String::with_capacity(7 + 64);
    digest.push_str("sha256:");
    for byte in hash {
        digest.push_str(&format!("{byte:02x}"));
    }
    digest
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));
            out.push('{');
            for (idx, (key, item)) in entries.into_iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(out, item);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests;
