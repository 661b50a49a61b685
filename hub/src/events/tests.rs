//! Unit tests of the outbox's frame encoding (no database needed).

use agenthub_protocol::{AgentPresence, ServerFrame, StepCompleted, StepRevoked};
use uuid::Uuid;

use super::Queued;

fn queued(frame: &ServerFrame) -> Queued {
    Queued::new(frame.clone(), serde_json::to_string(frame).unwrap())
}

fn with_seq(frame: &ServerFrame, seq: u64) -> String {
    let mut frame = frame.clone();
    frame.set_seq(seq);
    serde_json::to_string(&frame).unwrap()
}

#[test]
fn each_copy_is_the_frame_encoded_with_its_own_seq() {
    let frames = [
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
    ];
    for frame in &frames {
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
