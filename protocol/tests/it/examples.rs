//! One example of every frame type. The golden vectors and docs/protocol.md are checked
//! against these.

use agenthub_protocol::*;
use serde_json::json;
use uuid::Uuid;

/// A frame of either direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Client(ClientFrame),
    Server(ServerFrame),
}

impl Frame {
    pub fn type_name(&self) -> &'static str {
        match self {
            Frame::Client(frame) => frame.type_name(),
            Frame::Server(frame) => frame.type_name(),
        }
    }

    pub fn encode(&self, codec: Codec) -> Vec<u8> {
        match self {
            Frame::Client(frame) => codec.encode(frame),
            Frame::Server(frame) => codec.encode(frame),
        }
        .expect("examples encode")
    }

    pub fn pretty_json(&self) -> String {
        match self {
            Frame::Client(frame) => serde_json::to_string_pretty(frame),
            Frame::Server(frame) => serde_json::to_string_pretty(frame),
        }
        .expect("examples encode")
    }

    pub fn decode_like(&self, codec: Codec, bytes: &[u8]) -> Result<Frame, DecodeError> {
        let limits = Limits::default();
        match self {
            Frame::Client(_) => codec.decode_client(bytes, &limits).map(Frame::Client),
            Frame::Server(_) => codec.decode_server(bytes, &limits).map(Frame::Server),
        }
    }
}

/// The digest of the result in the `approval.requested` example (summary "Reviewed; two
/// fixes", result `{"ok": true}`, the file `…f1`), as docs/protocol.md computes it.
pub const DIGEST: &str = "sha256:f2bd137e23792605caf1efa20e28961330c677e5879e4e128d07a1e9c0cb0551";

fn plan_steps() -> Vec<PlanStep> {
    vec![
        PlanStep {
            key: "outline".into(),
            title: "Break down the report".into(),
            description: "List the report's sections and their figures.".into(),
            assignees: vec!["min-laptop".into()],
            depends_on: Vec::new(),
            approval_level: 0,
            approvers: Vec::new(),
            required_capabilities: Vec::new(),
            executor: None,
            expected_inputs: Some("the director's report".into()),
            expected_outputs: Some("an outline".into()),
            estimate_minutes: Some(60),
        },
        PlanStep {
            key: "template".into(),
            title: "Design a template".into(),
            description: String::new(),
            assignees: vec!["min-laptop".into()],
            depends_on: vec!["outline".into()],
            approval_level: 1,
            approvers: vec!["duan@example.com".into()],
            required_capabilities: Vec::new(),
            executor: None,
            expected_inputs: None,
            expected_outputs: Some("a template".into()),
            estimate_minutes: Some(90),
        },
    ]
}

fn id(n: u128) -> Uuid {
    // Fixed UUIDv7-shaped ids keep the vectors stable.
    Uuid::from_u128(0x0193_5a7e_0000_7000_8000_0000_0000_0000 | n)
}

pub const STEP: u128 = 0x51;
pub const TASK: u128 = 0x71;

/// Every frame type once, client frames first.
pub fn all() -> Vec<Frame> {
    let client = vec![
        ClientFrame::Hello(Hello {
            agent_version: "agentd/0.1.0".into(),
            capabilities: vec!["rust".into(), "docs".into()],
            max_concurrency: 2,
            last_seq: 41,
        }),
        ClientFrame::StepClaim(StepClaim {
            id: 1,
            step_id: id(STEP),
            attempt: Some(1),
        }),
        ClientFrame::StepProgress(StepProgress {
            id: 2,
            step_id: id(STEP),
            attempt: 1,
            message: Some("outline half written".into()),
            percent: Some(50),
        }),
        ClientFrame::StepLog(StepLog {
            id: 3,
            step_id: id(STEP),
            attempt: 1,
            stream: LogStream::Stdout,
            text: "wrote outline.md\n".into(),
        }),
        ClientFrame::StepSubmit(StepSubmit {
            id: 4,
            step_id: id(STEP),
            attempt: 1,
            result: json!({"outline": ["Revenue", "Costs", "Outlook"]}),
            summary: Some("Three-part outline".into()),
            self_check: Some("covers every section of the report".into()),
            check: Some(Box::new(SelfCheck {
                fits: true,
                reasons: vec!["every section of the report has an item".into()],
                suggestions: vec![
                    Suggestion {
                        op: SuggestionOp::Insert,
                        step: None,
                        new_step: Some(PlanStep {
                            key: "figures".into(),
                            title: "Check the figures".into(),
                            description: String::new(),
                            assignees: vec!["duan-desktop".into()],
                            depends_on: vec!["draft".into()],
                            approval_level: 0,
                            approvers: Vec::new(),
                            required_capabilities: Vec::new(),
                            executor: None,
                            expected_inputs: None,
                            expected_outputs: None,
                            estimate_minutes: Some(20),
                        }),
                        assignees: Vec::new(),
                        reason: "the outline quotes figures nobody checked".into(),
                    },
                    Suggestion {
                        op: SuggestionOp::Skip,
                        step: Some("appendix".into()),
                        new_step: None,
                        assignees: Vec::new(),
                        reason: "the outline has no appendix".into(),
                    },
                ],
            })),
            files: vec![id(0xf1).to_string()],
            usage: Some(Usage {
                model: "claude-sonnet-4-5".into(),
                input_tokens: 1200,
                output_tokens: 340,
            }),
        }),
        ClientFrame::StepBlock(StepBlock {
            id: 5,
            step_id: id(STEP),
            attempt: 1,
            question: "Include the Q2 appendix?".into(),
            options: vec!["yes".into(), "no".into()],
        }),
        ClientFrame::StepFail(StepFail {
            id: 6,
            step_id: id(STEP),
            attempt: 1,
            reason: "the report file is missing".into(),
            retryable: false,
        }),
        ClientFrame::ApprovalDecide(ApprovalDecide {
            id: 7,
            approval_id: id(0xa1),
            decision: Decision::Reject,
            comment: Some("split Costs into fixed and variable".into()),
            digest: Some(DIGEST.into()),
        }),
        ClientFrame::InputAnswer(InputAnswer {
            id: 8,
            input_request_id: id(0x11),
            answer: "yes".into(),
        }),
        ClientFrame::AvailabilityRespond(AvailabilityRespond {
            id: 9,
            request_id: id(0xb1),
            available: true,
            note: Some("free after 3pm".into()),
            intervals: Some(vec![Interval {
                from: "2026-12-07T15:00:00+09:00".into(),
                to: "2026-12-07T17:00:00+09:00".into(),
            }]),
        }),
        ClientFrame::PlanSubmit(PlanSubmit {
            id: 10,
            plan_id: id(0xc1),
            steps: plan_steps(),
            note: Some("Min knows the report; Duan reviews".into()),
        }),
        ClientFrame::Ack(Ack { seq: 42 }),
        ClientFrame::Pong(Pong { nonce: 7 }),
    ];
    let step_info = StepInfo {
        step_id: id(STEP),
        task_id: id(TASK),
        task_title: "Quarterly report".into(),
        task_description: "Break down the director's report, then review it".into(),
        task_description_truncated: false,
        key: "review".into(),
        title: "Review the outline".into(),
        description: "Check the outline against the report".into(),
        attempt: 1,
        executor: Some("claude".into()),
        input: json!({"files": ["report.pdf"]}),
        approval_level: 2,
        required_capabilities: vec!["docs".into()],
        expected_outputs: Some("a reviewed outline".into()),
        inputs: vec![StepOutput {
            step_id: id(0x50),
            title: "Draft the outline".into(),
            summary: Some("Three-part outline".into()),
            result: json!({"outline": ["Revenue", "Costs", "Outlook"]}),
            files: vec![],
            truncated: false,
        }],
        rework_comment: None,
    };
    let task_info = TaskInfo {
        task_id: id(TASK),
        title: "Quarterly report".into(),
        description: "Break down the director's report, then review it".into(),
        description_truncated: false,
        status: "active".into(),
        creator_member_id: Some(id(0xb1)),
        outcome: None,
    };
    let draft_info = TaskInfo {
        status: "draft".into(),
        ..task_info.clone()
    };
    let server = vec![
        ServerFrame::Welcome(Welcome {
            agent_id: id(0xa9),
            agent_name: "min-laptop".into(),
            session_id: id(0x5e),
            heartbeat_interval_ms: 15_000,
            heartbeat_timeout_ms: 45_000,
            lease_ms: 60_000,
            max_frame_bytes: 1_048_576,
            max_frames_per_s: 200,
            last_seq: 44,
            member_id: Some(id(0xb1)),
        }),
        ServerFrame::Ok(OkReply {
            id: 1,
            status: Some("claimed".into()),
            attempt: Some(1),
            lease_ms: Some(60_000),
            created_id: None,
        }),
        ServerFrame::Error(ErrorReply {
            id: Some(1),
            code: error_code::CONFLICT.into(),
            message: "step is claimed, not ready".into(),
        }),
        ServerFrame::Ping(Ping { nonce: 7 }),
        ServerFrame::TaskCreated(TaskCreated {
            seq: 42,
            task: task_info.clone(),
            your_steps: vec![YourStep {
                step_id: id(STEP),
                key: "draft".into(),
                title: "Draft the outline".into(),
                status: "ready".into(),
                waiting_for: Vec::new(),
            }],
        }),
        ServerFrame::TaskUpdated(TaskUpdated {
            seq: 50,
            task: TaskInfo {
                status: "failed".into(),
                outcome: Some(TaskOutcome {
                    status: "failed".into(),
                    step_id: Some(id(STEP)),
                    step_key: Some("draft".into()),
                    reason: Some("a shell step needs `input.command`".into()),
                    by: Some(ActorRef {
                        kind: "agent".into(),
                        id: Some(id(0xa9)),
                        name: Some("min-laptop".into()),
                    }),
                }),
                ..task_info
            },
        }),
        ServerFrame::StepReady(StepReady {
            seq: 43,
            step: step_info,
        }),
        ServerFrame::StepRevoked(StepRevoked {
            seq: 44,
            step_id: id(STEP),
            task_id: id(TASK),
            attempt: 1,
            reason: "lease expired".into(),
        }),
        ServerFrame::StepCompleted(StepCompleted {
            seq: 45,
            step_id: id(0x50),
            task_id: id(TASK),
            title: "Draft the outline".into(),
            summary: Some("Three-part outline".into()),
            next: vec![StepRef {
                step_id: id(STEP),
                title: "Review the outline".into(),
                status: "ready".into(),
            }],
        }),
        ServerFrame::WorkflowChanged(WorkflowChanged {
            seq: 46,
            task_id: id(TASK),
            change_id: id(0xc1),
            kind: "assignees_changed".into(),
            reason: "Duan is out this week".into(),
            step_id: Some(id(STEP)),
        }),
        ServerFrame::ApprovalRequested(ApprovalRequested {
            seq: 47,
            approval_id: id(0xa1),
            step_id: id(STEP),
            task_id: id(TASK),
            task_title: "Quarterly report".into(),
            step_title: "Review the outline".into(),
            approval_level: 2,
            attempt: 1,
            digest: DIGEST.into(),
            summary: Some("Reviewed; two fixes".into()),
            result: json!({"ok": true}),
            files: vec![id(0xf1).to_string()],
            fits: Some(true),
        }),
        ServerFrame::ApprovalResolved(ApprovalResolved {
            seq: 48,
            approval_id: id(0xa1),
            step_id: id(STEP),
            decision: Decision::Approve,
            comment: None,
            decided_by: "aurora@example.com".into(),
        }),
        ServerFrame::ApprovalTimedOut(ApprovalTimedOut {
            seq: 55,
            step_id: id(STEP),
            task_id: id(TASK),
            attempt: 1,
            action: TimeoutAction::Escalate,
        }),
        ServerFrame::InputRequested(InputRequested {
            seq: 49,
            input_request_id: id(0x11),
            step_id: id(STEP),
            task_id: id(TASK),
            question: "Include the Q2 appendix?".into(),
            options: vec!["yes".into(), "no".into()],
        }),
        ServerFrame::InputAnswered(InputAnswered {
            seq: 51,
            input_request_id: id(0x11),
            step_id: id(STEP),
            answer: "yes".into(),
            answered_by: "min@example.com".into(),
        }),
        ServerFrame::InputTimedOut(InputTimedOut {
            seq: 56,
            input_request_id: id(0x11),
            step_id: id(STEP),
            task_id: id(TASK),
            action: TimeoutAction::Reject,
        }),
        ServerFrame::AvailabilityRequested(AvailabilityRequested {
            seq: 52,
            request_id: id(0xb1),
            task_id: Some(id(TASK)),
            question: "When are you free for \"Template review\" (60 minutes)?".into(),
            step_id: Some(id(STEP)),
            window: Some(Interval {
                from: "2026-12-07T00:00:00Z".into(),
                to: "2026-12-12T00:00:00Z".into(),
            }),
            duration_minutes: Some(60),
        }),
        ServerFrame::PlanRequested(Box::new(PlanRequested {
            seq: 57,
            plan_id: id(0xc1),
            task: draft_info,
            round: 1,
            comment: None,
            steps: Vec::new(),
            agents: vec![PlanAgent {
                name: "min-laptop".into(),
                member: "min@example.com".into(),
                capabilities: vec!["docs".into()],
                online: true,
                load: 1,
            }],
            members: vec![PlanMember {
                email: "min@example.com".into(),
                role: "member".into(),
            }],
        })),
        ServerFrame::MeetingScheduled(Box::new(MeetingScheduled {
            seq: 58,
            task_id: id(TASK),
            step_id: id(STEP),
            title: "Template review".into(),
            slot: Interval {
                from: "2026-12-07T06:00:00Z".into(),
                to: "2026-12-07T07:00:00Z".into(),
            },
            participants: vec!["min@example.com".into(), "duan@example.com".into()],
            ics: "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n".into(),
        })),
        ServerFrame::AgentOnline(AgentPresence {
            seq: 53,
            agent_id: id(0xa8),
            name: "duan-desktop".into(),
        }),
        ServerFrame::AgentOffline(AgentPresence {
            seq: 54,
            agent_id: id(0xa8),
            name: "duan-desktop".into(),
        }),
    ];
    client
        .into_iter()
        .map(Frame::Client)
        .chain(server.into_iter().map(Frame::Server))
        .collect()
}

#[test]
fn examples_cover_every_frame_type_once() {
    let mut seen: Vec<&str> = all().iter().map(Frame::type_name).collect();
    let mut expected: Vec<&str> = ClientFrame::TYPES
        .iter()
        .chain(ServerFrame::TYPES)
        .copied()
        .collect();
    seen.sort_unstable();
    expected.sort_unstable();
    assert_eq!(seen, expected);
}
