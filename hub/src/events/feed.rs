//! Task feeds: one outbox audience per task (`task:<task id>`) that holds every event of
//! the task once — each frame its agents and members receive, the steps' progress and
//! their log lines — numbered by its own gap-free `seq`. `GET /v1/tasks/{id}/stream`
//! reads it; nobody acks it and no session subscribes to it.

use agenthub_protocol::ServerFrame;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The type of a feed entry holding one stored step log line.
pub const STEP_LOG: &str = "step.log";
/// The type of a feed entry holding a step's reported progress.
pub const STEP_PROGRESS: &str = "step.progress";

/// The audience id of a workspace's feed: every distinct frame of the workspace's
/// transactions once (what its agents and members receive; not the task feeds'
/// `step.progress` and `step.log` entries), numbered by its own gap-free `seq`. The
/// webhooks read it; nobody acks it and no session subscribes to it.
pub fn workspace_audience_id(workspace_id: &str) -> String {
    format!("workspace:{workspace_id}")
}

/// The prefix of every workspace feed's audience id.
pub const WORKSPACE_PREFIX: &str = "workspace:";

/// The audience id of a task's feed.
pub fn audience_id(task_id: &str) -> String {
    format!("task:{task_id}")
}

/// The task a frame names, or the step it names when it names only a step
/// (`approval.resolved`, `input.answered`). Frames of no task (presence, availability,
/// replies) are in no feed, nor is `plan.requested`, which carries the team for its one
/// planner (the plan itself is `GET /v1/tasks/{id}/plan`), nor `meeting.scheduled`, one
/// participant's invitation (the feed has the step's `step.completed`).
pub(crate) fn subject_of(frame: &ServerFrame) -> Option<Subject> {
    if is_own_view(frame) {
        return None;
    }
    let subject = match frame {
        ServerFrame::TaskCreated(event) => Subject::Task(event.task.task_id),
        ServerFrame::TaskUpdated(event) => Subject::Task(event.task.task_id),
        ServerFrame::StepReady(event) => Subject::Task(event.step.task_id),
        ServerFrame::StepRevoked(event) => Subject::Task(event.task_id),
        ServerFrame::StepCompleted(event) => Subject::Task(event.task_id),
        ServerFrame::WorkflowChanged(event) => Subject::Task(event.task_id),
        ServerFrame::ApprovalRequested(event) => Subject::Task(event.task_id),
        ServerFrame::InputRequested(event) => Subject::Task(event.task_id),
        ServerFrame::ApprovalTimedOut(event) => Subject::Task(event.task_id),
        ServerFrame::InputTimedOut(event) => Subject::Task(event.task_id),
        ServerFrame::ApprovalResolved(event) => Subject::Step(event.step_id),
        ServerFrame::InputAnswered(event) => Subject::Step(event.step_id),
        ServerFrame::AvailabilityRequested(_)
        | ServerFrame::PlanRequested(_)
        | ServerFrame::MeetingScheduled(_)
        | ServerFrame::AgentOnline(_)
        | ServerFrame::AgentOffline(_)
        | ServerFrame::Welcome(_)
        | ServerFrame::Ok(_)
        | ServerFrame::Error(_)
        | ServerFrame::Ping(_)
        | ServerFrame::Unknown => return None,
    };
    Some(subject)
}

/// Whether a frame is one agent's own view of an event (`task.created` with its
/// `your_steps`): the task's and the workspace's feeds hold the frame without, which the
/// members receive, once.
pub(crate) fn is_own_view(frame: &ServerFrame) -> bool {
    matches!(frame, ServerFrame::TaskCreated(event) if !event.your_steps.is_empty())
}

/// What a frame is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Task(Uuid),
    Step(Uuid),
}

/// One stored log line of a step, as the body of a `step.log` entry.
pub struct LogLine<'a> {
    pub task_id: &'a str,
    pub step_id: &'a str,
    pub log_id: &'a str,
    pub attempt: i32,
    pub stream: &'a str,
    pub text: &'a str,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The body of a `step.log` entry: the step and the stored log row.
pub fn step_log(line: &LogLine<'_>) -> Map<String, Value> {
    let body = json!({
        "task_id": line.task_id,
        "step_id": line.step_id,
        "log": {
            "id": line.log_id,
            "attempt": line.attempt,
            "stream": line.stream,
            "text": line.text,
            "created_at": rfc3339(line.created_at),
        },
    });
    into_map(body)
}

/// The body of a `step.progress` entry: the step's attempt, status and last report.
pub fn step_progress(
    task_id: &str,
    step_id: &str,
    attempt: i32,
    percent: Option<i32>,
    message: Option<&str>,
) -> Map<String, Value> {
    into_map(json!({
        "task_id": task_id,
        "step_id": step_id,
        "attempt": attempt,
        "status": "running",
        "percent": percent,
        "message": message,
    }))
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Unix milliseconds as RFC 3339 in UTC (`2026-12-03T07:30:00.123Z`), as every event
/// list shows `created_at`.
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
