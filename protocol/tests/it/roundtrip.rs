//! Every frame survives encode → decode in both codecs, and new optional fields from a
//! newer peer never break decoding.

use agenthub_protocol::*;
use serde_json::json;

use crate::examples;

#[test]
fn every_frame_round_trips_in_both_codecs() {
    for codec in [Codec::MsgPack, Codec::Json] {
        for example in examples::all() {
            let bytes = example.encode(codec);
            let decoded = example.decode_like(codec, &bytes).unwrap_or_else(|err| {
                panic!("{} via {codec:?}: {err}", example.type_name());
            });
            assert_eq!(decoded, example, "{} via {codec:?}", example.type_name());
        }
    }
}

#[test]
fn unknown_fields_are_ignored_in_both_codecs() {
    let frame = json!({
        "type": "step.claim", "id": 3, "step_id": "01935a7e-0000-7000-8000-000000000051",
        "priority": "high", "future": {"nested": [1, 2, 3]}
    });
    for codec in [Codec::MsgPack, Codec::Json] {
        let bytes = codec.encode(&frame).unwrap();
        let decoded = codec.decode_client(&bytes, &Limits::default()).unwrap();
        let ClientFrame::StepClaim(claim) = decoded else {
            panic!("decoded {decoded:?}")
        };
        assert_eq!(claim.id, 3);
    }
}

#[test]
fn optional_fields_may_be_absent() {
    let frame = json!({"type": "hello", "agent_version": "py/1"});
    let decoded = Codec::Json
        .decode_client(frame.to_string().as_bytes(), &Limits::default())
        .unwrap();
    assert_eq!(
        decoded,
        ClientFrame::Hello(Hello {
            agent_version: "py/1".into(),
            capabilities: vec![],
            max_concurrency: 1,
            last_seq: 0
        })
    );
}

#[test]
fn unknown_client_type_is_unsupported_with_its_id() {
    let frame = json!({"type": "step.teleport", "id": 77, "step_id": "x"});
    for codec in [Codec::MsgPack, Codec::Json] {
        let err = codec
            .decode_client(&codec.encode(&frame).unwrap(), &Limits::default())
            .unwrap_err();
        assert_eq!(err.code(), error_code::UNSUPPORTED);
        assert_eq!(err.request_id(), Some(77));
        assert!(err.to_string().contains("step.teleport"), "{err}");
    }
}

#[test]
fn unknown_server_type_decodes_and_its_seq_can_be_read() {
    let frame = json!({"type": "task.exploded", "seq": 99, "why": "future"});
    for codec in [Codec::MsgPack, Codec::Json] {
        let bytes = codec.encode(&frame).unwrap();
        assert_eq!(
            codec.decode_server(&bytes, &Limits::default()).unwrap(),
            ServerFrame::Unknown
        );
        assert_eq!(codec.peek_seq(&bytes, &Limits::default()), Some(99));
    }
}

#[test]
fn set_seq_changes_events_only() {
    let mut frames: Vec<ServerFrame> = examples::all()
        .into_iter()
        .filter_map(|frame| match frame {
            examples::Frame::Server(frame) => Some(frame),
            examples::Frame::Client(_) => None,
        })
        .collect();
    for frame in &mut frames {
        let had_seq = frame.seq().is_some();
        frame.set_seq(1234);
        assert_eq!(frame.seq().is_some(), had_seq);
        if had_seq {
            assert_eq!(frame.seq(), Some(1234), "{}", frame.type_name());
        }
    }
}

#[test]
fn negotiation_follows_the_client_preference_and_skips_unknown_names() {
    assert_eq!(
        negotiate(["agenthub.v1.json", "agenthub.v1.msgpack"]),
        Some(Codec::Json)
    );
    assert_eq!(
        negotiate(["agenthub.v9.cbor", "agenthub.v1.msgpack"]),
        Some(Codec::MsgPack)
    );
    // A single header value may list several names.
    assert_eq!(
        negotiate(["agenthub.v2.x, agenthub.v1.json"]),
        Some(Codec::Json)
    );
    assert_eq!(negotiate(["graphql-ws"]), None);
    assert_eq!(negotiate([]), None);
    for name in SUBPROTOCOLS {
        assert_eq!(Codec::from_subprotocol(name).unwrap().subprotocol(), *name);
    }
    assert!(Codec::MsgPack.is_binary());
    assert!(!Codec::Json.is_binary());
}
