//! Unit tests of `loose`.

use super::*;

const STEP_ID: &str = "0190d0f0-0000-7000-8000-000000000001";

/// A `step.ready` whose input is nested `depth` deep, written by hand in MessagePack
/// (no encoder writes it).
fn msgpack_ready(depth: usize) -> Vec<u8> {
    let mut bytes = vec![0x83];
    bytes.extend([0xa4, b't', b'y', b'p', b'e', 0xaa]);
    bytes.extend(b"step.ready");
    bytes.extend([0xa3, b's', b'e', b'q', 42]);
    bytes.extend([0xa4, b's', b't', b'e', b'p', 0x83]);
    bytes.extend([0xa5, b'i', b'n', b'p', b'u', b't']);
    for _ in 0..depth {
        bytes.extend([0x81, 0xa1, b'a', 0x91]);
    }
    bytes.push(0x01);
    bytes.extend([0xa7, b's', b't', b'e', b'p', b'_', b'i', b'd']);
    bytes.extend([0xd9, STEP_ID.len() as u8]);
    bytes.extend(STEP_ID.as_bytes());
    bytes.extend([0xa7, b'a', b't', b't', b'e', b'm', b'p', b't', 3]);
    bytes
}

#[test]
fn a_step_ready_nested_far_too_deep_still_yields_its_seq_and_step() {
    let expected = Loose {
        type_name: Some("step.ready".into()),
        seq: Some(42),
        step_id: Some(STEP_ID.parse().unwrap()),
        attempt: Some(3),
    };
    let json = format!(
        "{{\"type\":\"step.ready\",\"seq\":42,\"step\":{{\"input\":{}1{},\"step_id\":\"{STEP_ID}\",\"attempt\":3}}}}",
        "{\"a\":[".repeat(5000),
        "]}".repeat(5000)
    );
    assert_eq!(Loose::read(Codec::Json, json.as_bytes()), expected);
    let msgpack = msgpack_ready(5000);
    assert!(
        agenthub_protocol::Codec::MsgPack
            .decode_server(&msgpack, &crate::connection::decode_limits())
            .is_err(),
        "too deep for the decoder"
    );
    assert_eq!(Loose::read(Codec::MsgPack, &msgpack), expected);
}

#[test]
fn strings_holding_brackets_and_quotes_are_skipped_whole() {
    let json = br#"{"note": "a } ] \" { [", "seq": 7, "type": "step.revoked", "step_id": "0190d0f0-0000-7000-8000-000000000002", "attempt": 1}"#;
    let loose = Loose::read(Codec::Json, json);
    assert_eq!(loose.seq, Some(7));
    assert_eq!(loose.type_name.as_deref(), Some("step.revoked"));
    assert_eq!(loose.attempt, Some(1));
    assert!(loose.step_id.is_some());
}

#[test]
fn what_is_not_a_map_yields_nothing() {
    assert_eq!(Loose::read(Codec::Json, b"[1, 2]"), Loose::default());
    assert_eq!(Loose::read(Codec::Json, b"{\"seq\": "), Loose::default());
    assert_eq!(Loose::read(Codec::MsgPack, &[0xc1]), Loose::default());
    // A truncated map: what came before the cut is still read.
    let bytes = msgpack_ready(10);
    let cut = Loose::read(Codec::MsgPack, &bytes[..bytes.len() - 20]);
    assert_eq!(cut.seq, Some(42));
    assert_eq!(cut.type_name.as_deref(), Some("step.ready"));
    assert_eq!(cut.step_id, None);
}
