//! Unit tests of the content rules: excerpts, NUL handling, depth and size.

use serde_json::json;

use super::*;

#[test]
fn excerpts_cut_at_a_character_boundary() {
    assert_eq!(excerpt("abc", 3), ("abc", false));
    // "é" is two bytes: a cut inside it keeps the whole character out.
    assert_eq!(excerpt("aé", 2), ("a", true));
    assert_eq!(excerpt("aéb", 3), ("aé", true));
}

#[test]
fn agent_text_replaces_nul_and_cuts() {
    assert_eq!(agent_text("a\0b", 100), "a\u{FFFD}b");
    assert_eq!(agent_text("abcdef", 4), "abcd");
}

#[test]
fn person_text_refuses_nul_and_length() {
    let err = person_text("title", "a\0b", 100).unwrap_err();
    assert_eq!(err.code(), "invalid");
    assert!(err.to_string().contains("NUL"), "{err}");
    let err = person_text("title", "abcdef", 4).unwrap_err();
    assert!(err.to_string().contains("at most 4 bytes"), "{err}");
    person_text("title", "fine", 4).unwrap();
}

#[test]
fn depth_counts_levels_as_the_protocol_does() {
    assert_eq!(json_depth(&json!(1)), 0);
    assert_eq!(json_depth(&json!([])), 1);
    assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 4);
    let mut deep = json!(0);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    assert_eq!(json_depth(&deep), 100);
    let err = json_value("input", &deep, MAX_INPUT_BYTES).unwrap_err();
    assert!(err.to_string().contains("100 levels"), "{err}");
}

#[test]
fn size_is_the_larger_encoding() {
    // Floats take 9 bytes in MessagePack and 4 in JSON here.
    let floats = json!(vec![1.0; 1000]);
    let json_len = serde_json::to_vec(&floats).unwrap().len();
    assert!(encoded_size(&floats) > json_len);
    let err = json_value("result", &floats, json_len).unwrap_err();
    assert!(err.to_string().contains("PUT /v1/files"), "{err}");
}

#[test]
fn nul_is_found_with_its_path() {
    assert_eq!(find_nul(&json!({"title": "ok"})), None);
    assert_eq!(
        find_nul(&json!({"steps": [{"title": "ok"}, {"title": "a\u{0}"}]})).as_deref(),
        Some("steps[1].title")
    );
    assert_eq!(
        find_nul(&json!({"input": {"k\u{0}": 1}})).as_deref(),
        Some("input.k\u{0}")
    );
}
