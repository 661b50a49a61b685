//! Frames docs/protocol.md calls malformed are refused in both codecs, and the refusal
//! can still name the request: positional arrays, a non-string `type`, non-string map
//! keys, UUIDs not in canonical form, `percent` out of range, nesting too deep.

use agenthub_protocol::*;
use serde_json::{Value, json};

const STEP: &str = "01935a7e-0000-7000-8000-000000000051";

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];

fn limits() -> Limits {
    Limits::default()
}

/// Decodes `frame` (encoded with `codec`) expecting `bad_frame` whose message contains
/// `needle`; returns the id the hub can still read.
#[track_caller]
fn refused(codec: Codec, frame: &Value, needle: &str) -> Option<u64> {
    let bytes = codec.encode(frame).unwrap();
    refused_bytes(codec, &bytes, needle)
}

#[track_caller]
fn refused_bytes(codec: Codec, bytes: &[u8], needle: &str) -> Option<u64> {
    let err = codec.decode_client(bytes, &limits()).unwrap_err();
    assert_eq!(err.code(), error_code::BAD_FRAME, "{codec:?}: {err}");
    assert!(
        err.to_string().contains(needle),
        "{codec:?}: `{err}` does not mention `{needle}`"
    );
    codec.peek_id(bytes, &limits())
}

#[test]
fn a_positional_array_is_not_a_frame() {
    for codec in CODECS {
        for frame in [
            json!(["step.claim", 9010, STEP]),
            json!(["step.claim", {"id": 9010, "step_id": STEP}]),
            json!([]),
        ] {
            let id = refused(codec, &frame, "not an array");
            assert_eq!(id, None, "{codec:?}: an array has no named `id`");
        }
        refused(codec, &json!("step.claim"), "not a string");
        refused(codec, &json!(42), "not a scalar");
        // The same frame as a map is a claim.
        let frame = json!({"type": "step.claim", "id": 9010, "step_id": STEP});
        let bytes = codec.encode(&frame).unwrap();
        assert!(matches!(
            codec.decode_client(&bytes, &limits()),
            Ok(ClientFrame::StepClaim(StepClaim { id: 9010, .. }))
        ));
    }
}

#[test]
fn an_integer_type_is_not_the_frame_of_that_index() {
    for codec in CODECS {
        for index in 0..=12u64 {
            // A claim's fields, so that index 1 (`step.claim`) would decode if the index
            // were taken as the variant.
            let frame = json!({"type": index, "id": 5, "step_id": STEP, "agent_version": "x",
                               "seq": 1, "nonce": 1});
            let id = refused(codec, &frame, "the `type` field must be a string");
            assert_eq!(
                id,
                Some(5),
                "{codec:?}, type {index}: the answer names the request"
            );
        }
        for type_value in [
            json!(null),
            json!(true),
            json!(["step.claim"]),
            json!({"a": 1}),
        ] {
            let frame = json!({"type": type_value, "id": 6});
            let id = refused(codec, &frame, "the `type` field must be a string");
            assert_eq!(id, Some(6));
        }
    }
}

#[test]
fn a_key_appears_at_most_once_in_a_map() {
    let step = format!("\"{STEP}\"");
    let cases = [
        (
            format!(r#"{{"type":"step.claim","id":1,"step_id":{step},"x":1,"x":2}}"#),
            "the key `x` appears twice",
        ),
        (
            format!(r#"{{"type":"step.claim","id":1,"id":2,"step_id":{step}}}"#),
            "the key `id` appears twice",
        ),
        (
            format!(r#"{{"type":"step.claim","type":"hello","id":1,"step_id":{step}}}"#),
            "the key `type` appears twice",
        ),
        (
            format!(
                r#"{{"type":"step.submit","id":1,"step_id":{step},"attempt":1,"result":{{"a":[{{"b":1,"b":2}}]}}}}"#
            ),
            "the key `b` appears twice in a map of `result`",
        ),
    ];
    for (json_text, needle) in &cases {
        let value_err = Codec::Json
            .decode_client(json_text.as_bytes(), &limits())
            .unwrap_err();
        assert_eq!(value_err.code(), error_code::BAD_FRAME);
        assert!(value_err.to_string().contains(needle), "{value_err}");
    }
    // The same in MessagePack, written by hand (a JSON value cannot hold the duplicate).
    let mut bytes = Vec::new();
    rmp::encode::write_map_len(&mut bytes, 4).unwrap();
    for (key, value) in [
        ("type", "step.claim"),
        ("step_id", STEP),
        ("x", "1"),
        ("x", "2"),
    ] {
        rmp::encode::write_str(&mut bytes, key).unwrap();
        rmp::encode::write_str(&mut bytes, value).unwrap();
    }
    refused_bytes(Codec::MsgPack, &bytes, "the key `x` appears twice");
    let mut bytes = Vec::new();
    rmp::encode::write_map_len(&mut bytes, 5).unwrap();
    for (key, value) in [("type", "step.submit"), ("step_id", STEP)] {
        rmp::encode::write_str(&mut bytes, key).unwrap();
        rmp::encode::write_str(&mut bytes, value).unwrap();
    }
    rmp::encode::write_str(&mut bytes, "id").unwrap();
    rmp::encode::write_uint(&mut bytes, 9).unwrap();
    rmp::encode::write_str(&mut bytes, "attempt").unwrap();
    rmp::encode::write_uint(&mut bytes, 1).unwrap();
    rmp::encode::write_str(&mut bytes, "result").unwrap();
    rmp::encode::write_map_len(&mut bytes, 2).unwrap();
    for _ in 0..2 {
        rmp::encode::write_str(&mut bytes, "k").unwrap();
        rmp::encode::write_nil(&mut bytes).unwrap();
    }
    let id = refused_bytes(
        Codec::MsgPack,
        &bytes,
        "the key `k` appears twice in a map of `result`",
    );
    assert_eq!(id, Some(9));
}

#[test]
fn an_integer_enum_value_is_not_the_variant_of_that_index() {
    for codec in CODECS {
        let log = json!({"type": "step.log", "id": 2, "step_id": STEP, "attempt": 1,
                         "stream": 0, "text": "x"});
        assert_eq!(refused(codec, &log, "invalid type"), Some(2));
        let decide = json!({"type": "approval.decide", "id": 3,
                            "approval_id": STEP, "decision": 1, "comment": "no"});
        assert_eq!(refused(codec, &decide, "invalid type"), Some(3));
    }
}

#[test]
fn msgpack_map_keys_must_be_strings_at_every_level() {
    // {"type": "step.claim", 0: 9010, 1: STEP}: integer keys would name fields by position.
    let mut bytes = Vec::new();
    rmp::encode::write_map_len(&mut bytes, 3).unwrap();
    rmp::encode::write_str(&mut bytes, "type").unwrap();
    rmp::encode::write_str(&mut bytes, "step.claim").unwrap();
    rmp::encode::write_uint(&mut bytes, 0).unwrap();
    rmp::encode::write_uint(&mut bytes, 9010).unwrap();
    rmp::encode::write_uint(&mut bytes, 1).unwrap();
    rmp::encode::write_str(&mut bytes, STEP).unwrap();
    refused_bytes(Codec::MsgPack, &bytes, "is not a string");

    // A nested map (the `result` of a submit) with an integer key.
    let mut bytes = Vec::new();
    rmp::encode::write_map_len(&mut bytes, 5).unwrap();
    for (key, value) in [("type", "step.submit"), ("step_id", STEP)] {
        rmp::encode::write_str(&mut bytes, key).unwrap();
        rmp::encode::write_str(&mut bytes, value).unwrap();
    }
    rmp::encode::write_str(&mut bytes, "id").unwrap();
    rmp::encode::write_uint(&mut bytes, 11).unwrap();
    rmp::encode::write_str(&mut bytes, "attempt").unwrap();
    rmp::encode::write_uint(&mut bytes, 1).unwrap();
    rmp::encode::write_str(&mut bytes, "result").unwrap();
    rmp::encode::write_map_len(&mut bytes, 1).unwrap();
    rmp::encode::write_uint(&mut bytes, 7).unwrap();
    rmp::encode::write_bool(&mut bytes, true).unwrap();
    let id = refused_bytes(Codec::MsgPack, &bytes, "is not a string");
    assert_eq!(id, Some(11));
}

#[test]
fn uuids_must_be_in_canonical_form_and_the_error_names_the_field() {
    let forms = [
        STEP.to_uppercase(),
        STEP.replace('-', ""),
        format!("{{{STEP}}}"),
        format!("urn:uuid:{STEP}"),
        format!(" {STEP}"),
        "not-a-uuid".to_string(),
    ];
    let frames = |uuid: &str| {
        [
            (
                "step_id",
                json!({"type": "step.claim", "id": 1, "step_id": uuid}),
            ),
            (
                "step_id",
                json!({"type": "step.submit", "id": 1, "step_id": uuid, "attempt": 1, "result": null}),
            ),
            (
                "approval_id",
                json!({"type": "approval.decide", "id": 1, "approval_id": uuid, "decision": "approve"}),
            ),
            (
                "input_request_id",
                json!({"type": "input.answer", "id": 1, "input_request_id": uuid, "answer": "yes"}),
            ),
            (
                "request_id",
                json!({"type": "availability.respond", "id": 1, "request_id": uuid, "available": true}),
            ),
        ]
    };
    for codec in CODECS {
        for form in &forms {
            for (field, frame) in frames(form) {
                let id = refused(
                    codec,
                    &frame,
                    &format!("`{field}` must be a UUID in canonical form"),
                );
                assert_eq!(id, Some(1), "{codec:?} {frame}");
            }
        }
        // The canonical form decodes.
        for (_, frame) in frames(STEP) {
            let bytes = codec.encode(&frame).unwrap();
            codec
                .decode_client(&bytes, &limits())
                .unwrap_or_else(|err| panic!("{codec:?} {frame}: {err}"));
        }
        // A UUID that is not a string names the field too.
        refused(
            codec,
            &json!({"type": "step.claim", "id": 1, "step_id": 51}),
            "`step_id` as a UUID string",
        );
    }
    // Hub frames are held to the same form.
    let revoked = json!({"type": "step.revoked", "seq": 3, "step_id": STEP.to_uppercase(),
                         "task_id": STEP, "attempt": 1, "reason": "lease expired"});
    for codec in CODECS {
        let err = codec
            .decode_server(&codec.encode(&revoked).unwrap(), &limits())
            .unwrap_err();
        assert!(
            err.to_string().contains("`step_id` must be a UUID"),
            "{err}"
        );
    }
}

#[test]
fn a_nested_object_is_a_map_with_named_fields_too() {
    let submit = |usage: Value| {
        json!({"type": "step.submit", "id": 8, "step_id": STEP, "attempt": 1, "result": null,
               "usage": usage})
    };
    for codec in CODECS {
        let id = refused(
            codec,
            &submit(json!(["claude-sonnet-4-5", 1200, 340])),
            "`usage` must be a map with named fields",
        );
        assert_eq!(id, Some(8));
        refused(
            codec,
            &submit(json!({"model": "m", "input_tokens": 1})),
            "`usage`: missing field `output_tokens`",
        );
        let bytes = codec
            .encode(&submit(
                json!({"model": "m", "input_tokens": 1, "output_tokens": 2}),
            ))
            .unwrap();
        let Ok(ClientFrame::StepSubmit(decoded)) = codec.decode_client(&bytes, &limits()) else {
            panic!("{codec:?}: a usage map decodes");
        };
        assert_eq!(
            decoded.usage,
            Some(Usage {
                model: "m".into(),
                input_tokens: 1,
                output_tokens: 2
            })
        );
        let bytes = codec.encode(&submit(Value::Null)).unwrap();
        let Ok(ClientFrame::StepSubmit(decoded)) = codec.decode_client(&bytes, &limits()) else {
            panic!("{codec:?}: a null usage is no value");
        };
        assert_eq!(decoded.usage, None);
    }
}

#[test]
fn percent_is_from_0_to_100() {
    let progress = |percent: Value| json!({"type": "step.progress", "id": 4, "step_id": STEP, "attempt": 1, "percent": percent});
    for codec in CODECS {
        for percent in [0, 100] {
            let bytes = codec.encode(&progress(json!(percent))).unwrap();
            let Ok(ClientFrame::StepProgress(decoded)) = codec.decode_client(&bytes, &limits())
            else {
                panic!("{codec:?}: percent {percent} is valid");
            };
            assert_eq!(decoded.percent, Some(percent));
        }
        let bytes = codec.encode(&progress(Value::Null)).unwrap();
        let Ok(ClientFrame::StepProgress(decoded)) = codec.decode_client(&bytes, &limits()) else {
            panic!("{codec:?}: a null percent is no value");
        };
        assert_eq!(decoded.percent, None);
        for (percent, needle) in [
            (json!(101), "`percent` must be from 0 to 100, not 101"),
            (json!(255), "`percent` must be from 0 to 100, not 255"),
            (json!(1000), "`percent` must be from 0 to 100, not 1000"),
            (json!(-1), "`percent` must be from 0 to 100, not -1"),
            (json!(50.5), "`percent` as an integer from 0 to 100"),
            (json!("50"), "`percent` as an integer from 0 to 100"),
        ] {
            let id = refused(codec, &progress(percent), needle);
            assert_eq!(id, Some(4));
        }
    }
}

/// `depth` nested arrays around `null`.
fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

#[test]
fn a_frame_nested_too_deep_is_refused_with_its_id() {
    for codec in CODECS {
        // `id` before and after the deep value: either way the answer names the request.
        let before = json!({"type": "step.submit", "id": 77, "step_id": STEP, "attempt": 1,
                            "result": nested(200)});
        let id = refused(codec, &before, "nesting deeper than 64 levels");
        assert_eq!(id, Some(77), "{codec:?}");
    }
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let after = format!(r#"{{"type":"step.submit","result":{deep},"step_id":"{STEP}","id":78}}"#);
    let id = refused_bytes(
        Codec::Json,
        after.as_bytes(),
        "nesting deeper than 64 levels",
    );
    assert_eq!(id, Some(78));
    let mut msgpack = Vec::new();
    rmp::encode::write_map_len(&mut msgpack, 3).unwrap();
    rmp::encode::write_str(&mut msgpack, "type").unwrap();
    rmp::encode::write_str(&mut msgpack, "step.submit").unwrap();
    rmp::encode::write_str(&mut msgpack, "result").unwrap();
    msgpack.extend(std::iter::repeat_n(0x91, 100_000)); // fixarray of one, nested
    msgpack.push(0xc0);
    rmp::encode::write_str(&mut msgpack, "id").unwrap();
    rmp::encode::write_uint(&mut msgpack, 79).unwrap();
    let id = refused_bytes(Codec::MsgPack, &msgpack, "nesting deeper than 64 levels");
    assert_eq!(id, Some(79));
    // Exactly at the limit (the frame's map is level 1) decodes.
    for codec in CODECS {
        let frame = json!({"type": "step.submit", "id": 1, "step_id": STEP, "attempt": 1,
                           "result": nested(63)});
        let bytes = codec.encode(&frame).unwrap();
        codec
            .decode_client(&bytes, &limits())
            .unwrap_or_else(|err| panic!("{codec:?}: {err}"));
    }
}

#[test]
fn the_id_is_read_only_when_it_is_an_unsigned_integer_at_the_top_level() {
    for codec in CODECS {
        for (frame, expected) in [
            (json!({"type": "step.claim", "id": 3}), Some(3)),
            (json!({"id": u64::MAX, "type": 5}), Some(u64::MAX)),
            (json!({"type": "step.claim", "id": -3}), None),
            (json!({"type": "step.claim", "id": "3"}), None),
            (json!({"type": "step.claim", "id": 3.5}), None),
            (json!({"type": "step.claim", "x": {"id": 3}}), None),
        ] {
            let bytes = codec.encode(&frame).unwrap();
            assert_eq!(
                codec.peek_id(&bytes, &limits()),
                expected,
                "{codec:?} {frame}"
            );
        }
    }
    // JSON keys may be written with escapes.
    assert_eq!(
        Codec::Json.peek_id(br#"{"type":"step.claim","\u0069d":12}"#, &limits()),
        Some(12)
    );
}
