//! Unit tests of the outbox's frame encoding (no database needed).

use agenthub_protocol::{AgentPresence, Codec, Limits, ServerFrame, StepCompleted, StepRevoked};
use uuid::Uuid;

use super::{Queued, msgpack_of_json};

fn queued(frame: &ServerFrame) -> Queued {
    Queued::new(frame.clone(), serde_json::to_string(frame).unwrap())
}

fn with_seq(frame: &ServerFrame, seq: u64) -> String {
    let mut frame = frame.clone();
    frame.set_seq(seq);
    serde_json::to_string(&frame).unwrap()
}

fn frames() -> [ServerFrame; 3] {
    [
        ServerFrame::StepRevoked(StepRevoked {
            seq: 0,
            step_id: Uuid::now_v7(),
            task_id: Uuid::now_v7(),
            attempt: 2,
            // A text that looks like the field must stay as it is.
            reason: r#"claimed by "seq":0 ,"seq":0}"#.into(),
        }),
        ServerFrame::StepCompleted(StepCompleted {
            seq: 0,
            step_id: Uuid::now_v7(),
            task_id: Uuid::now_v7(),
            title: "Write the report".into(),
            summary: Some("{\"seq\":0}".into()),
            next: Vec::new(),
        }),
        ServerFrame::AgentOnline(AgentPresence {
            seq: 0,
            agent_id: Uuid::now_v7(),
            name: "builder".into(),
        }),
    ]
}

#[test]
fn each_copy_is_the_frame_encoded_with_its_own_seq() {
    for frame in &frames() {
        let queued = queued(frame);
        assert!(queued.seq_at.is_some(), "{}", queued.json);
        for seq in [1, 9, 10, 12_345, u64::MAX] {
            assert_eq!(queued.json_at(seq).unwrap(), with_seq(frame, seq));
        }
    }
}

#[test]
fn a_frame_queued_with_a_seq_is_encoded_again_for_each_copy() {
    let frame = ServerFrame::AgentOffline(AgentPresence {
        seq: 7,
        agent_id: Uuid::now_v7(),
        name: "builder".into(),
    });
    let queued = queued(&frame);
    assert_eq!(queued.seq_at, None);
    assert_eq!(queued.json_at(8).unwrap(), with_seq(&frame, 8));
}

#[test]
fn each_copy_for_an_agent_is_the_frame_in_msgpack_with_its_own_seq() {
    for frame in &frames() {
        let queued = queued(frame);
        // Every width of a MessagePack unsigned integer, and its bounds.
        for seq in [1, 127, 128, 255, 256, 65_535, 65_536, 1 << 32, u64::MAX] {
            let mut copy = frame.clone();
            copy.set_seq(seq);
            let expected = Codec::MsgPack.encode(&copy).unwrap();
            assert_eq!(
                queued.msgpack_at(seq).unwrap().as_ref(),
                expected.as_slice()
            );
            // A replay (from the stored JSON) sends the same bytes as the live copy.
            let stored = queued.json_at(seq).unwrap();
            assert_eq!(
                msgpack_of_json(&stored).unwrap().as_ref(),
                expected.as_slice()
            );
        }
    }
}

#[test]
fn a_stored_event_this_version_does_not_know_keeps_every_field_in_msgpack() {
    let frame = ServerFrame::AgentOnline(AgentPresence {
        seq: 3,
        agent_id: Uuid::now_v7(),
        name: "builder".into(),
    });
    let mut json: serde_json::Value = serde_json::to_value(&frame).unwrap();
    json["added_later"] = serde_json::json!({"a": [1, 2.5, "x"]});
    let unknown_type = serde_json::json!({"type": "step.teleported", "seq": 4, "to": "mars"});
    for stored in [json, unknown_type] {
        let bytes = msgpack_of_json(&stored.to_string()).unwrap();
        let decoded: serde_json::Value = Codec::MsgPack.decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(decoded, stored);
    }
}
