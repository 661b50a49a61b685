//! Frame types. Every frame is a map with a `type` field holding a dotted name.
//!
//! Optional fields may be absent on the wire; unknown fields are ignored, so a peer may
//! add optional fields without breaking older peers.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::strict;

/// A client-chosen request id, echoed in the `ok` or `error` answer.
pub type RequestId = u64;

// ---------------------------------------------------------------------------------------
// Agent → hub
// ---------------------------------------------------------------------------------------

/// A frame sent by an agent to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    #[serde(rename = "hello")]
    Hello(Hello),
    #[serde(rename = "step.claim")]
    StepClaim(StepClaim),
    #[serde(rename = "step.progress")]
    StepProgress(StepProgress),
    #[serde(rename = "step.log")]
    StepLog(StepLog),
    #[serde(rename = "step.submit")]
    StepSubmit(StepSubmit),
    #[serde(rename = "step.block")]
    StepBlock(StepBlock),
    #[serde(rename = "step.fail")]
    StepFail(StepFail),
    #[serde(rename = "approval.decide")]
    ApprovalDecide(ApprovalDecide),
    #[serde(rename = "input.answer")]
    InputAnswer(InputAnswer),
    #[serde(rename = "availability.respond")]
    AvailabilityRespond(AvailabilityRespond),
    #[serde(rename = "plan.submit")]
    PlanSubmit(PlanSubmit),
    #[serde(rename = "ack")]
    Ack(Ack),
    #[serde(rename = "pong")]
    Pong(Pong),
    /// A frame whose `type` this version does not know. Decoding turns it into
    /// [`crate::DecodeError::UnknownType`], which the hub answers with `unsupported`.
    #[serde(other)]
    Unknown,
}

impl ClientFrame {
    /// Every `type` an agent may send.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "step.claim",
        "step.progress",
        "step.log",
        "step.submit",
        "step.block",
        "step.fail",
        "approval.decide",
        "input.answer",
        "availability.respond",
        "plan.submit",
        "ack",
        "pong",
    ];

    /// The frame's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Hello(_) => "hello",
            ClientFrame::StepClaim(_) => "step.claim",
            ClientFrame::StepProgress(_) => "step.progress",
            ClientFrame::StepLog(_) => "step.log",
            ClientFrame::StepSubmit(_) => "step.submit",
            ClientFrame::StepBlock(_) => "step.block",
            ClientFrame::StepFail(_) => "step.fail",
            ClientFrame::ApprovalDecide(_) => "approval.decide",
            ClientFrame::InputAnswer(_) => "input.answer",
            ClientFrame::AvailabilityRespond(_) => "availability.respond",
            ClientFrame::PlanSubmit(_) => "plan.submit",
            ClientFrame::Ack(_) => "ack",
            ClientFrame::Pong(_) => "pong",
            ClientFrame::Unknown => "unknown",
        }
    }

    /// The request id, for frames that expect an `ok` or `error` answer.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            ClientFrame::StepClaim(frame) => Some(frame.id),
            ClientFrame::StepProgress(frame) => Some(frame.id),
            ClientFrame::StepLog(frame) => Some(frame.id),
            ClientFrame::StepSubmit(frame) => Some(frame.id),
            ClientFrame::StepBlock(frame) => Some(frame.id),
            ClientFrame::StepFail(frame) => Some(frame.id),
            ClientFrame::ApprovalDecide(frame) => Some(frame.id),
            ClientFrame::InputAnswer(frame) => Some(frame.id),
            ClientFrame::AvailabilityRespond(frame) => Some(frame.id),
            ClientFrame::PlanSubmit(frame) => Some(frame.id),
            ClientFrame::Hello(_) | ClientFrame::Ack(_) | ClientFrame::Pong(_) => None,
            ClientFrame::Unknown => None,
        }
    }
}

/// First frame of a session: who the agent is and where to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Free-form agent software version, e.g. `agentd/0.3.1`.
    pub agent_version: String,
    /// Capability labels this agent offers (informational; the hub's registry is authoritative).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How many steps this agent runs at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// The highest event `seq` the agent has processed; 0 on first connect.
    #[serde(default)]
    pub last_seq: u64,
}

fn default_concurrency() -> u32 {
    1
}

/// Take a `ready` step. Exactly one of several racing claims wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepClaim {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    /// The attempt of the `step.ready` being answered. When given, a claim of a step that
    /// has moved on to another attempt gets `conflict` instead of the newer attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// Report progress on a claimed step; renews its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepProgress {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// 0 to 100.
    #[serde(
        default,
        deserialize_with = "strict::percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub percent: Option<u8>,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    Info,
}

/// Log output of a running step; stored by the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub attempt: u32,
    pub stream: LogStream,
    pub text: String,
}

/// Tokens used by a model while executing a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The result of a step. Idempotent per (step, attempt): a retry returns the first answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSubmit {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub attempt: u32,
    /// Free JSON result.
    #[serde(deserialize_with = "strict::result")]
    pub result: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The agent's own check of its result against the step's expected outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check: Option<String>,
    /// The agent's check of its result against the step and the task, with what it
    /// suggests changing in the later steps; each suggestion waits for the task's creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Box<SelfCheck>>,
    /// Ids of files uploaded with `PUT /v1/files`, or external links.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(
        default,
        deserialize_with = "strict::usage",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage: Option<Usage>,
}

/// Whether a result fits its step and task, why, and what should change in the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    pub fits: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub suggestions: Vec<Suggestion>,
}

/// What a suggestion changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionOp {
    /// Add `new_step`.
    Insert,
    /// Skip the pending or ready step `step`.
    Skip,
    /// Give the pending or ready step `step` to `assignees`.
    Reassign,
}

/// One change of the workflow a self-check suggests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub op: SuggestionOp,
    /// The key of the step to skip or reassign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The step to insert; its `depends_on` may name existing steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_step: Option<PlanStep>,
    /// The new assignees of a reassigned step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignees: Vec<String>,
    pub reason: String,
}

/// The step needs its human: ask a question and wait for `input.answered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepBlock {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub attempt: u32,
    pub question: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// The step could not be done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFail {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub attempt: u32,
    pub reason: String,
    /// When true the step returns to `ready` for another attempt instead of `failed`.
    #[serde(default)]
    pub retryable: bool,
}

/// An approval decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// The agent's human decides an approval (counts only if that human is a listed approver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecide {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::approval_id")]
    pub approval_id: Uuid,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The `digest` of the `approval.requested` the human saw; when given and the result
    /// differs, the decision is refused with `conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The agent's human answers a question from a blocked step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputAnswer {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::input_request_id")]
    pub input_request_id: Uuid,
    pub answer: String,
}

/// Answer to `availability.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityRespond {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::request_id")]
    pub request_id: Uuid,
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a meeting's request (one with a `window`): when the person is free, each
    /// interval inside the window; required there, and may be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<Interval>>,
}

/// A span of time between two RFC 3339 timestamps that carry their offset
/// (`2026-12-07T09:00:00+09:00`); `from` before `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub from: String,
    pub to: String,
}

/// One step of a proposed plan, in the shape of a step of `POST /v1/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Names the step within the plan, for `depends_on`: 1-64 letters, digits, `-`, `_`
    /// or `.`.
    pub key: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Agent names, or `member:<email>` for any agent of that member.
    #[serde(default)]
    pub assignees: Vec<String>,
    /// Keys of steps of the plan that must finish first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// 0 none, 1 confirm, 2 review, 3 every approver.
    #[serde(default)]
    pub approval_level: u8,
    /// Member emails; needed from level 1.
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_inputs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_outputs: Option<String>,
    /// A rough estimate of the work, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_minutes: Option<u32>,
}

/// A plan for a task in planning, answering `plan.requested`. The hub checks it like a
/// task's creation; an invalid plan is answered with `error` (`invalid`) whose message
/// lists every error, one per line, and the request stays open for another submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSubmit {
    pub id: RequestId,
    #[serde(deserialize_with = "strict::plan_id")]
    pub plan_id: Uuid,
    pub steps: Vec<PlanStep>,
    /// Why the plan is shaped this way, for the person who accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Every event up to and including `seq` has been processed. Not answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
}

/// Answer to `ping`, echoing its nonce. Not answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub nonce: u64,
}

// ---------------------------------------------------------------------------------------
// Hub → agent
// ---------------------------------------------------------------------------------------

/// A frame sent by the hub to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    #[serde(rename = "welcome")]
    Welcome(Welcome),
    #[serde(rename = "ok")]
    Ok(OkReply),
    #[serde(rename = "error")]
    Error(ErrorReply),
    #[serde(rename = "ping")]
    Ping(Ping),
    #[serde(rename = "task.created")]
    TaskCreated(TaskCreated),
    #[serde(rename = "task.updated")]
    TaskUpdated(TaskUpdated),
    #[serde(rename = "step.ready")]
    StepReady(StepReady),
    #[serde(rename = "step.revoked")]
    StepRevoked(StepRevoked),
    #[serde(rename = "step.completed")]
    StepCompleted(StepCompleted),
    #[serde(rename = "workflow.changed")]
    WorkflowChanged(WorkflowChanged),
    #[serde(rename = "approval.requested")]
    ApprovalRequested(ApprovalRequested),
    #[serde(rename = "approval.resolved")]
    ApprovalResolved(ApprovalResolved),
    #[serde(rename = "approval.timed_out")]
    ApprovalTimedOut(ApprovalTimedOut),
    #[serde(rename = "input.requested")]
    InputRequested(InputRequested),
    #[serde(rename = "input.answered")]
    InputAnswered(InputAnswered),
    #[serde(rename = "input.timed_out")]
    InputTimedOut(InputTimedOut),
    #[serde(rename = "availability.requested")]
    AvailabilityRequested(AvailabilityRequested),
    #[serde(rename = "plan.requested")]
    PlanRequested(Box<PlanRequested>),
    #[serde(rename = "meeting.scheduled")]
    MeetingScheduled(Box<MeetingScheduled>),
    #[serde(rename = "agent.online")]
    AgentOnline(AgentPresence),
    #[serde(rename = "agent.offline")]
    AgentOffline(AgentPresence),
    /// A frame whose `type` this version does not know; agents should ignore it
    /// (and still ack its seq, which [`crate::Codec::peek_seq`] reads).
    #[serde(other)]
    Unknown,
}

impl ServerFrame {
    /// Every `type` the hub may send.
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "ok",
        "error",
        "ping",
        "task.created",
        "task.updated",
        "step.ready",
        "step.revoked",
        "step.completed",
        "workflow.changed",
        "approval.requested",
        "approval.resolved",
        "approval.timed_out",
        "input.requested",
        "input.answered",
        "input.timed_out",
        "availability.requested",
        "plan.requested",
        "meeting.scheduled",
        "agent.online",
        "agent.offline",
    ];

    /// The frame's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome(_) => "welcome",
            ServerFrame::Ok(_) => "ok",
            ServerFrame::Error(_) => "error",
            ServerFrame::Ping(_) => "ping",
            ServerFrame::TaskCreated(_) => "task.created",
            ServerFrame::TaskUpdated(_) => "task.updated",
            ServerFrame::StepReady(_) => "step.ready",
            ServerFrame::StepRevoked(_) => "step.revoked",
            ServerFrame::StepCompleted(_) => "step.completed",
            ServerFrame::WorkflowChanged(_) => "workflow.changed",
            ServerFrame::ApprovalRequested(_) => "approval.requested",
            ServerFrame::ApprovalResolved(_) => "approval.resolved",
            ServerFrame::ApprovalTimedOut(_) => "approval.timed_out",
            ServerFrame::InputRequested(_) => "input.requested",
            ServerFrame::InputAnswered(_) => "input.answered",
            ServerFrame::InputTimedOut(_) => "input.timed_out",
            ServerFrame::AvailabilityRequested(_) => "availability.requested",
            ServerFrame::PlanRequested(_) => "plan.requested",
            ServerFrame::MeetingScheduled(_) => "meeting.scheduled",
            ServerFrame::AgentOnline(_) => "agent.online",
            ServerFrame::AgentOffline(_) => "agent.offline",
            ServerFrame::Unknown => "unknown",
        }
    }

    /// The event sequence number, for event frames.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ServerFrame::TaskCreated(event) => Some(event.seq),
            ServerFrame::TaskUpdated(event) => Some(event.seq),
            ServerFrame::StepReady(event) => Some(event.seq),
            ServerFrame::StepRevoked(event) => Some(event.seq),
            ServerFrame::StepCompleted(event) => Some(event.seq),
            ServerFrame::WorkflowChanged(event) => Some(event.seq),
            ServerFrame::ApprovalRequested(event) => Some(event.seq),
            ServerFrame::ApprovalResolved(event) => Some(event.seq),
            ServerFrame::ApprovalTimedOut(event) => Some(event.seq),
            ServerFrame::InputRequested(event) => Some(event.seq),
            ServerFrame::InputAnswered(event) => Some(event.seq),
            ServerFrame::InputTimedOut(event) => Some(event.seq),
            ServerFrame::AvailabilityRequested(event) => Some(event.seq),
            ServerFrame::PlanRequested(event) => Some(event.seq),
            ServerFrame::MeetingScheduled(event) => Some(event.seq),
            ServerFrame::AgentOnline(event) | ServerFrame::AgentOffline(event) => Some(event.seq),
            ServerFrame::Welcome(_)
            | ServerFrame::Ok(_)
            | ServerFrame::Error(_)
            | ServerFrame::Ping(_)
            | ServerFrame::Unknown => None,
        }
    }

    /// Sets the sequence number of an event frame; does nothing on other frames.
    pub fn set_seq(&mut self, seq: u64) {
        let slot = match self {
            ServerFrame::TaskCreated(event) => &mut event.seq,
            ServerFrame::TaskUpdated(event) => &mut event.seq,
            ServerFrame::StepReady(event) => &mut event.seq,
            ServerFrame::StepRevoked(event) => &mut event.seq,
            ServerFrame::StepCompleted(event) => &mut event.seq,
            ServerFrame::WorkflowChanged(event) => &mut event.seq,
            ServerFrame::ApprovalRequested(event) => &mut event.seq,
            ServerFrame::ApprovalResolved(event) => &mut event.seq,
            ServerFrame::ApprovalTimedOut(event) => &mut event.seq,
            ServerFrame::InputRequested(event) => &mut event.seq,
            ServerFrame::InputAnswered(event) => &mut event.seq,
            ServerFrame::InputTimedOut(event) => &mut event.seq,
            ServerFrame::AvailabilityRequested(event) => &mut event.seq,
            ServerFrame::PlanRequested(event) => &mut event.seq,
            ServerFrame::MeetingScheduled(event) => &mut event.seq,
            ServerFrame::AgentOnline(event) | ServerFrame::AgentOffline(event) => &mut event.seq,
            ServerFrame::Welcome(_)
            | ServerFrame::Ok(_)
            | ServerFrame::Error(_)
            | ServerFrame::Ping(_)
            | ServerFrame::Unknown => return,
        };
        *slot = seq;
    }
}

/// Answer to `hello`: the session is open. Replayed events follow, then live ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    #[serde(deserialize_with = "strict::agent_id")]
    pub agent_id: Uuid,
    pub agent_name: String,
    #[serde(deserialize_with = "strict::session_id")]
    pub session_id: Uuid,
    /// The hub sends `ping` this often.
    pub heartbeat_interval_ms: u64,
    /// A session from which no frame arrives for this long is closed.
    pub heartbeat_timeout_ms: u64,
    /// A claimed step's lease lasts this long after each claim or `step.progress`.
    pub lease_ms: u64,
    /// The largest frame the hub accepts, in bytes.
    pub max_frame_bytes: u64,
    /// Sustained frames per second the hub accepts from this session.
    pub max_frames_per_s: u32,
    /// The highest seq committed for this agent when the session opened. Replay
    /// covers `hello.last_seq + 1 ..= last_seq`; live events continue from there.
    pub last_seq: u64,
    /// The member the agent is bound to (compare `TaskInfo.creator_member_id`).
    #[serde(
        default,
        deserialize_with = "strict::optional_member_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub member_id: Option<Uuid>,
}

/// Success answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OkReply {
    pub id: RequestId,
    /// The step's status after the request, for step requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The attempt the agent holds, for `step.claim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Milliseconds until the lease expires, for `step.claim` and `step.progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// The id of the created object, for `step.block` (the input request).
    #[serde(
        default,
        deserialize_with = "strict::optional_created_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_id: Option<Uuid>,
}

impl OkReply {
    /// A bare `ok` for request `id`.
    pub fn new(id: RequestId) -> Self {
        OkReply {
            id,
            status: None,
            attempt: None,
            lease_ms: None,
            created_id: None,
        }
    }
}

/// Failure answer to a request, or a report about an undecodable frame (`id` absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// One of [`crate::error_code`].
    pub code: String,
    pub message: String,
}

/// Heartbeat; answer with `pong` carrying the same nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub nonce: u64,
}

/// A short description of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub title: String,
    /// The description, or its first 4 KiB when `description_truncated` is set (the whole
    /// text is `GET /v1/tasks/{id}`).
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub description_truncated: bool,
    pub status: String,
    /// The member who created the task (directly or through one of their agents).
    #[serde(
        default,
        deserialize_with = "strict::optional_creator_member_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub creator_member_id: Option<Uuid>,
    /// How the task ended: present once it is `done`, `failed` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TaskOutcome>,
}

/// How a task ended, and for a failed task which step failed, why, and who said so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOutcome {
    /// `done`, `failed` or `cancelled`.
    pub status: String,
    /// The step whose failure ended the task.
    #[serde(
        default,
        deserialize_with = "strict::optional_step_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub step_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who ended it (the agent that failed the step, the member who cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<ActorRef>,
}

/// A member, an agent, or the hub itself (a lease that expired too often).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorRef {
    /// `member`, `agent` or `hub`.
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "strict::optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A task this agent takes part in was created (or published, or its plan accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub seq: u64,
    pub task: TaskInfo,
    /// The receiving agent's own steps of the task (absent for a member, or an agent
    /// without steps), in the task's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub your_steps: Vec<YourStep>,
}

/// A step of the receiving agent, as its task starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YourStep {
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub key: String,
    pub title: String,
    /// `ready` (a `step.ready` follows) or `pending`.
    pub status: String,
    /// Titles of the unfinished steps it waits for.
    #[serde(default)]
    pub waiting_for: Vec<String>,
}

/// A task's status changed (published, paused, resumed, done, failed, cancelled, archived).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdated {
    pub seq: u64,
    pub task: TaskInfo,
}

/// Output of a finished step that the ready step depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutput {
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub files: Vec<String>,
    /// Set when the output was left out or cut to keep the event small: `result` is
    /// `null` and `summary` at most an excerpt; the whole output is `GET /v1/steps/{id}`.
    #[serde(default)]
    pub truncated: bool,
}

/// Everything an agent needs to execute a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub task_title: String,
    /// The task's description, or its first 4 KiB when `task_description_truncated` is set
    /// (the whole text is `GET /v1/tasks/{id}`).
    #[serde(default)]
    pub task_description: String,
    #[serde(default)]
    pub task_description_truncated: bool,
    pub key: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Starts at 1; grows with every lease expiry, retry or rework.
    pub attempt: u32,
    /// `claude`, `claude-code`, `shell`, `manual` or `external`; absent means the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Free JSON from the task's creator, forwarded unchanged (e.g. a shell command).
    #[serde(default)]
    pub input: Value,
    pub approval_level: u8,
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_outputs: Option<String>,
    /// Outputs of the steps this one depends on.
    #[serde(default)]
    pub inputs: Vec<StepOutput>,
    /// Set when a reviewer rejected the previous attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rework_comment: Option<String>,
}

/// A step assigned to this agent is ready to be claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReady {
    pub seq: u64,
    pub step: StepInfo,
}

/// Stop working on a step: its lease expired, it was claimed by another agent, or its
/// task was paused, cancelled or changed. A later submit for this attempt is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRevoked {
    pub seq: u64,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub attempt: u32,
    pub reason: String,
}

/// A reference to a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRef {
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub title: String,
    pub status: String,
}

/// A step this agent worked on, or depends on, is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCompleted {
    pub seq: u64,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Steps of this receiver that the completion made ready.
    #[serde(default)]
    pub next: Vec<StepRef>,
}

/// A task's steps were changed while it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowChanged {
    pub seq: u64,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    #[serde(deserialize_with = "strict::change_id")]
    pub change_id: Uuid,
    /// `step_added`, `step_removed`, `steps_reordered`, `assignees_changed`, `dependencies_changed`.
    pub kind: String,
    pub reason: String,
    #[serde(
        default,
        deserialize_with = "strict::optional_step_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub step_id: Option<Uuid>,
}

/// This agent's human is asked to approve a step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub seq: u64,
    #[serde(deserialize_with = "strict::approval_id")]
    pub approval_id: Uuid,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub task_title: String,
    pub step_title: String,
    pub approval_level: u8,
    /// The attempt whose result is to be decided.
    pub attempt: u32,
    /// `sha256:` and the lowercase hex SHA-256 of the result's canonical JSON (see
    /// docs/protocol.md); echo it in `approval.decide` to decide on exactly this result.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default)]
    pub result: Value,
    /// The result's files, as submitted.
    #[serde(default)]
    pub files: Vec<String>,
    /// Whether the submitting agent judged its result to fit the step and the task (the
    /// `fits` of its `step.submit` `check`); absent when the submit carried no check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fits: Option<bool>,
}

/// An approval was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalResolved {
    pub seq: u64,
    #[serde(deserialize_with = "strict::approval_id")]
    pub approval_id: Uuid,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Email of the member who decided.
    pub decided_by: String,
}

/// This agent's human is asked a question by a blocked step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRequested {
    pub seq: u64,
    #[serde(deserialize_with = "strict::input_request_id")]
    pub input_request_id: Uuid,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub question: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// A question of a step this agent runs was answered; the step is `running` again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputAnswered {
    pub seq: u64,
    #[serde(deserialize_with = "strict::input_request_id")]
    pub input_request_id: Uuid,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub answer: String,
    pub answered_by: String,
}

/// What the hub does when an approval or a question gets no decision in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutAction {
    Reject,
    Escalate,
    Fail,
}

/// No approver decided a step's result before its deadline; `action` says what the hub
/// did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalTimedOut {
    pub seq: u64,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    /// The attempt that was waiting for a decision.
    pub attempt: u32,
    pub action: TimeoutAction,
}

/// A question got no answer before its deadline; `action` says what the hub did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTimedOut {
    pub seq: u64,
    #[serde(deserialize_with = "strict::input_request_id")]
    pub input_request_id: Uuid,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    pub action: TimeoutAction,
}

/// Someone asks whether this agent can take on work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityRequested {
    pub seq: u64,
    #[serde(deserialize_with = "strict::request_id")]
    pub request_id: Uuid,
    #[serde(
        default,
        deserialize_with = "strict::optional_task_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub task_id: Option<Uuid>,
    pub question: String,
    /// The meeting step asking (with `window` and `duration_minutes`).
    #[serde(
        default,
        deserialize_with = "strict::optional_step_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub step_id: Option<Uuid>,
    /// For a meeting: the span to answer for, with free `intervals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Interval>,
    /// For a meeting: how long it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u32>,
}

/// A meeting step's slot was confirmed: the invitation, to every participant's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingScheduled {
    pub seq: u64,
    #[serde(deserialize_with = "strict::task_id")]
    pub task_id: Uuid,
    #[serde(deserialize_with = "strict::step_id")]
    pub step_id: Uuid,
    pub title: String,
    /// The meeting's start and end, in UTC.
    pub slot: Interval,
    /// Every participant's email.
    pub participants: Vec<String>,
    /// The invitation, an iCalendar (RFC 5545) document with one `VEVENT`.
    pub ics: String,
}

/// An agent of the workspace, as a planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAgent {
    pub name: String,
    /// Email of the member the agent is bound to.
    pub member: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub online: bool,
    /// Unfinished steps assigned to it now.
    pub load: u32,
}

/// A member of the workspace, as a planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanMember {
    pub email: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
}

/// This agent is asked to plan a task: propose its steps with `plan.submit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequested {
    pub seq: u64,
    #[serde(deserialize_with = "strict::plan_id")]
    pub plan_id: Uuid,
    /// The task in planning (status `draft`); its whole description is
    /// `GET /v1/tasks/{id}`.
    pub task: TaskInfo,
    /// 1 for the first plan, one more each time the creator asks again.
    pub round: u32,
    /// What the creator said when asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Steps to start from: the creator's own, or the plan asked to be redone.
    #[serde(default)]
    pub steps: Vec<PlanStep>,
    /// The workspace's agents (at most 200), for assignees.
    #[serde(default)]
    pub agents: Vec<PlanAgent>,
    /// The workspace's members (at most 200), for approvers and `member:` assignees.
    #[serde(default)]
    pub members: Vec<PlanMember>,
}

/// An agent of the workspace came online or went offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPresence {
    pub seq: u64,
    #[serde(deserialize_with = "strict::agent_id")]
    pub agent_id: Uuid,
    pub name: String,
}
