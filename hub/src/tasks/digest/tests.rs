//! The result digest: the documented example, and what changes it.

use serde_json::json;

use super::result_digest;

#[test]
fn the_documented_example_has_the_documented_digest() {
    // docs/protocol.md, "Result digest", and the `approval.requested` golden vector.
    let digest = result_digest(
        Some("Reviewed; two fixes"),
        &json!({"ok": true}),
        &["01935a7e-0000-7000-8000-0000000000f1".to_string()],
    );
    assert_eq!(
        digest,
        "sha256:f2bd137e23792605caf1efa20e28961330c677e5879e4e128d07a1e9c0cb0551"
    );
}

#[test]
fn key_order_does_not_matter_but_every_part_does() {
    let result: serde_json::Value =
        serde_json::from_str(r#"{"b": [1, {"z": 1, "a": "é"}], "a": null}"#).unwrap();
    let reordered: serde_json::Value =
        serde_json::from_str(r#"{"a": null, "b": [1, {"a": "é", "z": 1}]}"#).unwrap();
    let files = vec!["f1".to_string()];
    let digest = result_digest(Some("s"), &result, &files);
    assert_eq!(digest, result_digest(Some("s"), &reordered, &files));
    assert_ne!(digest, result_digest(None, &result, &files));
    assert_ne!(digest, result_digest(Some("s"), &result, &[]));
    assert_ne!(
        digest,
        result_digest(Some("s"), &json!({"a": null}), &files)
    );
    assert!(digest.starts_with("sha256:") && digest.len() == 7 + 64);
}
