//! Hostile and broken input: every case returns a typed error naming the problem, never
//! panics and never allocates from an untrusted length.

use agenthub_protocol::*;
use proptest::prelude::*;
use serde_json::json;

use crate::examples;

fn limits() -> Limits {
    Limits::default()
}

fn decode_both(bytes: &[u8]) -> [Result<ClientFrame, DecodeError>; 2] {
    [
        Codec::MsgPack.decode_client(bytes, &limits()),
        Codec::Json.decode_client(bytes, &limits()),
    ]
}

#[test]
fn truncated_frames_are_bad_frames() {
    for example in examples::all() {
        for codec in [Codec::MsgPack, Codec::Json] {
            let bytes = example.encode(codec);
            for cut in 0..bytes.len() {
                let Err(err) = example.decode_like(codec, &bytes[..cut]) else {
                    panic!(
                        "{} cut at {cut} of {} decoded via {codec:?}",
                        example.type_name(),
                        bytes.len()
                    );
                };
                assert_eq!(err.code(), error_code::BAD_FRAME, "{err}");
            }
        }
    }
}

#[test]
fn missing_required_field_is_named() {
    let frame = json!({"type": "step.claim", "id": 1});
    for codec in [Codec::MsgPack, Codec::Json] {
        let err = codec
            .decode_client(&codec.encode(&frame).unwrap(), &limits())
            .unwrap_err();
        assert_eq!(err.code(), error_code::BAD_FRAME);
        assert!(
            err.to_string().contains("missing field `step_id`"),
            "{codec:?}: {err}"
        );
        // The answer can still name the request.
        assert_eq!(
            codec.peek_id(&codec.encode(&frame).unwrap(), &limits()),
            Some(1)
        );
    }
}

#[test]
fn wrong_field_type_is_explained() {
    let frame = json!({"type": "step.claim", "id": "one", "step_id": "01935a7e-0000-7000-8000-000000000051"});
    for codec in [Codec::MsgPack, Codec::Json] {
        let err = codec
            .decode_client(&codec.encode(&frame).unwrap(), &limits())
            .unwrap_err();
        assert_eq!(err.code(), error_code::BAD_FRAME);
        assert!(err.to_string().contains("invalid type"), "{codec:?}: {err}");
    }
    let bad_uuid = json!({"type": "step.claim", "id": 1, "step_id": "not-a-uuid"});
    let err = Codec::Json
        .decode_client(bad_uuid.to_string().as_bytes(), &limits())
        .unwrap_err();
    assert_eq!(err.code(), error_code::BAD_FRAME);
}

#[test]
fn missing_or_non_string_type_is_a_bad_frame() {
    for frame in [
        json!({"id": 1}),
        json!({"type": 5, "id": 1}),
        json!([1, 2]),
        json!("hello"),
    ] {
        for codec in [Codec::MsgPack, Codec::Json] {
            let err = codec
                .decode_client(&codec.encode(&frame).unwrap(), &limits())
                .unwrap_err();
            assert_eq!(
                err.code(),
                error_code::BAD_FRAME,
                "{frame} via {codec:?}: {err}"
            );
        }
    }
}

#[test]
fn oversized_frames_are_refused_before_decoding() {
    let small = Limits {
        max_frame_bytes: 64,
        ..Limits::default()
    };
    let frame = json!({"type": "step.log", "id": 1, "step_id": "01935a7e-0000-7000-8000-000000000051",
                       "attempt": 1, "stream": "stdout", "text": "x".repeat(100)});
    for codec in [Codec::MsgPack, Codec::Json] {
        let bytes = codec.encode(&frame).unwrap();
        let err = codec.decode_client(&bytes, &small).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                size: bytes.len(),
                max: 64
            }
        );
        assert_eq!(err.code(), error_code::TOO_LARGE);
    }
}

#[test]
fn huge_length_prefixes_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "map32 of 4 billion entries",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa4, b't', b'y', b'p', b'e'],
        ),
        (
            "array32 of 4 billion items",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        (
            "str32 of 4 GiB",
            vec![
                0x81, 0xa4, b't', b'y', b'p', b'e', 0xdb, 0xff, 0xff, 0xff, 0xff, b'a',
            ],
        ),
        ("bin32 of 4 GiB", vec![0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00]),
        (
            "ext32 of 4 GiB",
            vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00],
        ),
    ];
    for (what, bytes) in cases {
        let err = Codec::MsgPack.decode_client(&bytes, &limits()).unwrap_err();
        assert_eq!(err.code(), error_code::BAD_FRAME, "{what}");
        assert!(err.to_string().contains("remain"), "{what}: {err}");
    }
}

#[test]
fn deep_nesting_is_refused_in_both_codecs() {
    let depth = 100_000;
    let mut msgpack = vec![0x91; depth]; // fixarray of one item, nested
    msgpack.push(0xc0);
    let err = Codec::MsgPack
        .decode_client(&msgpack, &limits())
        .unwrap_err();
    assert!(err.to_string().contains("nesting deeper than 64"), "{err}");

    let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let err = Codec::Json
        .decode_client(json.as_bytes(), &limits())
        .unwrap_err();
    assert!(err.to_string().contains("nesting deeper than 64"), "{err}");

    // Brackets inside strings are not nesting.
    let frame = json!({"type": "pong", "nonce": 1, "note": "[".repeat(500)});
    assert!(
        Codec::Json
            .decode_client(frame.to_string().as_bytes(), &limits())
            .is_ok()
    );
}

#[test]
fn trailing_bytes_and_reserved_markers_are_refused() {
    let mut bytes = Codec::MsgPack
        .encode(&json!({"type": "ack", "seq": 1}))
        .unwrap();
    bytes.push(0x00);
    let err = Codec::MsgPack.decode_client(&bytes, &limits()).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
    let err = Codec::MsgPack
        .decode_client(&[0xc1], &limits())
        .unwrap_err();
    assert!(err.to_string().contains("0xc1"), "{err}");
    assert!(
        Codec::Json
            .decode_client(b"{\"type\":\"ack\",\"seq\":1} x", &limits())
            .is_err()
    );
}

#[test]
fn empty_and_non_utf8_input_is_refused() {
    for result in decode_both(b"") {
        assert_eq!(result.unwrap_err().code(), error_code::BAD_FRAME);
    }
    let err = Codec::Json
        .decode_client(&[0x7b, 0xff, 0xfe, 0x7d], &limits())
        .unwrap_err();
    assert_eq!(err.code(), error_code::BAD_FRAME);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for result in decode_both(&bytes) {
            if let Err(err) = result {
                prop_assert!(!err.to_string().is_empty());
            }
        }
        let _ = Codec::MsgPack.decode_server(&bytes, &limits());
        let _ = Codec::Json.decode_server(&bytes, &limits());
    }

    #[test]
    fn mutated_frames_never_panic(
        example_idx in 0usize..29,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        json in any::<bool>(),
    ) {
        let examples = examples::all();
        let example = &examples[example_idx % examples.len()];
        let codec = if json { Codec::Json } else { Codec::MsgPack };
        let mut bytes = example.encode(codec);
        for (pos, value) in flips {
            let len = bytes.len();
            bytes[pos % len] = value;
        }
        // Decoding may succeed (a flip inside a string) or fail; it must not panic.
        if let Err(err) = example.decode_like(codec, &bytes) {
            prop_assert!(matches!(err.code(), "bad_frame" | "unsupported"), "{}", err);
        }
    }
}
