//! JSON shapes of the REST API (see docs/api.md): snake_case fields, RFC 3339 UTC
//! timestamps, ids as strings. Domain rows never derive `Serialize`; they are converted
//! here.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::agents::AgentView;
use crate::tasks::{
    By, InvolvedAgent, Outcome, Progress, StepView, TaskView, TimelineEntry, WorkflowChangeRow,
};

/// Unix milliseconds as an RFC 3339 UTC timestamp.
pub fn timestamp(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn json_text(text: Option<&str>) -> Value {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberRef {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepResponse {
    pub id: String,
    pub task_id: String,
    pub key: String,
    pub title: String,
    pub description: String,
    /// `pending`, `ready`, `claimed`, `running`, `submitted`, `awaiting_approval`,
    /// `done`, `blocked`, `rejected`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// The step's place in the task, from 0.
    pub position: i32,
    /// 0 none, 1 confirm, 2 review (approve or reject), 3 every approver.
    pub approval_level: i32,
    /// Every agent that may take the step: those named, and every agent of an assigned
    /// member.
    pub assignees: Vec<AgentRef>,
    /// The members the step is assigned to (`member:<email>`): any of their agents may
    /// take it, including ones they add later.
    pub assigned_members: Vec<MemberRef>,
    pub approvers: Vec<MemberRef>,
    pub depends_on: Vec<String>,
    pub executor: Option<String>,
    #[schema(value_type = Object)]
    pub input: Value,
    pub required_capabilities: Vec<String>,
    pub expected_inputs: Option<String>,
    pub expected_outputs: Option<String>,
    /// The submitted result (JSON, null until submitted).
    #[schema(value_type = Object)]
    pub result: Value,
    pub summary: Option<String>,
    pub self_check: Option<String>,
    /// The agent's latest check of its result (`GET /v1/steps/{id}` only; null elsewhere
    /// and when none was sent): its suggestions are `GET /v1/tasks/{id}/workflow-approvals`.
    pub check: Option<CheckResponse>,
    /// A meeting step's participants, their answers and the proposed slot
    /// (`GET /v1/steps/{id}` only; null elsewhere and for other steps).
    pub meeting: Option<crate::api::meetings::MeetingResponse>,
    /// Ids of attached files (`GET /v1/files/{id}`).
    pub files: Vec<String>,
    /// `sha256:` + hex of the canonical JSON of the result, summary and files
    /// (docs/protocol.md, "Result digest"); null until submitted. Name it when deciding.
    pub digest: Option<String>,
    /// The agent that holds the step.
    pub claimed_by: Option<String>,
    /// When the holder's lease ends unless renewed.
    pub lease_until: Option<String>,
    /// Starts at 1; a rejection or an expired lease starts the next.
    pub attempt: i32,
    /// The comment of the last rejection.
    pub rework_comment: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub usage: TokenUsage,
    pub created_at: String,
    pub updated_at: String,
    /// Retryable failures and lease expiries allowed before the step fails for good.
    pub max_attempts: i32,
    /// Retryable failures and lease expiries so far (since the last retry).
    pub failures: i32,
    pub continue_on_failure: bool,
    /// Why the step failed or was skipped.
    pub status_reason: Option<String>,
    /// The last `step.progress` of the current attempt.
    pub progress: Option<StepProgressResponse>,
    /// How long its approvals and questions wait (`24h`, `1h30m`, `45s`); null: no
    /// deadline.
    pub decision_timeout: Option<String>,
    /// What happens when nobody decides in time: `reject`, `escalate` or `fail`.
    pub on_timeout: String,
    /// `task` (an agent claims and runs it) or `meeting` (see `meeting`).
    pub kind: String,
    /// A rough estimate in minutes (from the plan, or given at create).
    pub estimate_minutes: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepProgressResponse {
    pub percent: Option<u8>,
    pub message: Option<String>,
}

impl From<StepView> for StepResponse {
    fn from(view: StepView) -> Self {
        let step = view.step;
        StepResponse {
            id: step.id,
            task_id: step.task_id,
            key: step.key,
            title: step.title,
            description: step.description,
            status: step.status,
            position: step.position,
            approval_level: step.approval_level,
            assignees: view
                .assignees
                .into_iter()
                .map(|(id, name)| AgentRef { id, name })
                .collect(),
            assigned_members: view
                .assigned_members
                .into_iter()
                .map(|(id, email)| MemberRef { id, email })
                .collect(),
            approvers: view
                .approvers
                .into_iter()
                .map(|(id, email)| MemberRef { id, email })
                .collect(),
            depends_on: view.depends_on,
            executor: step.executor,
            input: json_text(Some(&step.input)),
            required_capabilities: serde_json::from_str(&step.required_capabilities)
                .unwrap_or_default(),
            expected_inputs: step.expected_inputs,
            expected_outputs: step.expected_outputs,
            result: json_text(step.result.as_deref()),
            summary: step.summary,
            self_check: step.self_check,
            check: view.check.map(|check| CheckResponse {
                attempt: check.attempt,
                fits: check.fits,
                reasons: check.reasons,
            }),
            meeting: view.meeting.map(Into::into),
            files: serde_json::from_str(&step.files).unwrap_or_default(),
            digest: step.result_digest,
            decision_timeout: step
                .decision_timeout_ms
                .map(crate::approvals::format_timeout),
            on_timeout: step.on_timeout,
            kind: step.kind,
            estimate_minutes: step.estimate_minutes,
            claimed_by: step.claimed_by,
            lease_until: step.lease_until.map(timestamp),
            attempt: step.attempt,
            rework_comment: step.rework_comment,
            started_at: step.started_at.map(timestamp),
            completed_at: step.completed_at.map(timestamp),
            usage: TokenUsage {
                input_tokens: step.input_tokens,
                output_tokens: step.output_tokens,
            },
            created_at: timestamp(step.created_at),
            updated_at: timestamp(step.updated_at),
            max_attempts: step.max_attempts,
            failures: step.failures,
            continue_on_failure: step.continue_on_failure,
            status_reason: step.status_reason,
            progress: (step.progress_percent.is_some() || step.progress_message.is_some()).then(
                || StepProgressResponse {
                    percent: step
                        .progress_percent
                        .map(|percent| percent.clamp(0, 100) as u8),
                    message: step.progress_message,
                },
            ),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvolvedAgentResponse {
    pub id: String,
    pub name: String,
    pub online: bool,
}

impl From<InvolvedAgent> for InvolvedAgentResponse {
    fn from(agent: InvolvedAgent) -> Self {
        InvolvedAgentResponse {
            id: agent.id,
            name: agent.name,
            online: agent.online,
        }
    }
}

/// Whether a result fits its step and task, in its agent's judgment.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    /// The attempt checked.
    pub attempt: i32,
    /// `false` flags a result that does not fit the task.
    pub fits: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub id: String,
    pub title: String,
    pub description: String,
    /// `draft`, `active`, `paused`, `done`, `failed`, `cancelled` or `archived`.
    pub status: String,
    pub creator_member_id: Option<String>,
    /// Set when an agent token created the task.
    pub creator_agent_id: Option<String>,
    pub due_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub steps: Vec<StepResponse>,
    /// Every agent assigned to a step, and whether it is connected now.
    pub involved_agents: Vec<InvolvedAgentResponse>,
    pub progress: ProgressResponse,
    /// How the task ended; `null` while it is open.
    pub outcome: Option<OutcomeResponse>,
}

/// Finished steps (done, failed, skipped, cancelled) of all, and the running ones.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressResponse {
    pub done: u32,
    pub total: u32,
    /// Steps held by an agent or waiting for a person, with their last progress.
    pub running: Vec<RunningStepResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunningStepResponse {
    pub step_id: String,
    pub key: String,
    pub title: String,
    pub status: String,
    pub percent: Option<u8>,
    pub message: Option<String>,
}

impl From<Progress> for ProgressResponse {
    fn from(progress: Progress) -> Self {
        ProgressResponse {
            done: progress.done,
            total: progress.total,
            running: progress
                .running
                .into_iter()
                .map(|step| RunningStepResponse {
                    step_id: step.step_id,
                    key: step.key,
                    title: step.title,
                    status: step.status,
                    percent: step.percent,
                    message: step.message,
                })
                .collect(),
        }
    }
}

/// A member, an agent, or the hub itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorResponse {
    /// `member`, `agent` or `hub`.
    pub kind: String,
    pub id: Option<String>,
    /// The member's email or the agent's name.
    pub name: Option<String>,
}

impl From<By> for ActorResponse {
    fn from(by: By) -> Self {
        ActorResponse {
            kind: by.kind,
            id: by.id,
            name: by.name,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeResponse {
    /// `done`, `failed` or `cancelled`.
    pub status: String,
    /// For `failed`: the step that failed for good.
    pub step_id: Option<String>,
    pub step_key: Option<String>,
    pub reason: Option<String>,
    /// Who ended it: the agent that failed the step, the member who cancelled.
    pub by: Option<ActorResponse>,
    pub at: String,
}

impl From<Outcome> for OutcomeResponse {
    fn from(outcome: Outcome) -> Self {
        let (step_id, step_key) = outcome.step.unzip();
        OutcomeResponse {
            status: outcome.status.as_str().to_string(),
            step_id,
            step_key,
            reason: outcome.reason,
            by: outcome.by.map(ActorResponse::from),
            at: timestamp(outcome.at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntryResponse {
    pub at: String,
    /// `null` for a change of the task itself.
    pub step_id: Option<String>,
    pub step_key: Option<String>,
    /// `null` when the task or step was created.
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
    pub attempt: Option<i32>,
    pub actor: ActorResponse,
}

impl From<TimelineEntry> for TimelineEntryResponse {
    fn from(entry: TimelineEntry) -> Self {
        TimelineEntryResponse {
            at: timestamp(entry.at),
            step_id: entry.step_id,
            step_key: entry.step_key,
            from: entry.from,
            to: entry.to,
            reason: entry.reason,
            attempt: entry.attempt,
            actor: entry.actor.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    pub timeline: Vec<TimelineEntryResponse>,
    pub meta: ListMeta,
}

impl From<TaskView> for TaskResponse {
    fn from(view: TaskView) -> Self {
        let task = view.task;
        TaskResponse {
            outcome: Outcome::of(&task).map(OutcomeResponse::from),
            progress: view.progress.into(),
            id: task.id,
            title: task.title,
            description: task.description,
            status: task.status,
            creator_member_id: task.creator_member_id,
            creator_agent_id: task.creator_agent_id,
            due_at: task.due_at.map(timestamp),
            created_at: timestamp(task.created_at),
            updated_at: timestamp(task.updated_at),
            steps: view.steps.into_iter().map(StepResponse::from).collect(),
            involved_agents: view
                .involved_agents
                .into_iter()
                .map(InvolvedAgentResponse::from)
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskSummary {
    pub id: String,
    pub title: String,
    pub status: String,
    pub progress: ProgressResponse,
    pub outcome: Option<OutcomeResponse>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<(crate::tasks::Task, Progress)> for TaskSummary {
    fn from((task, progress): (crate::tasks::Task, Progress)) -> Self {
        TaskSummary {
            outcome: Outcome::of(&task).map(OutcomeResponse::from),
            progress: progress.into(),
            id: task.id,
            title: task.title,
            status: task.status,
            created_at: timestamp(task.created_at),
            updated_at: timestamp(task.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListMeta {
    pub count: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
    pub meta: ListMeta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub id: String,
    /// `step_added`, `step_removed`, `step_skipped`, `step_retried`, `steps_reordered`,
    /// `assignees_changed` or `dependencies_changed`.
    pub kind: String,
    pub step_id: Option<String>,
    /// The changed part before (JSON, null for an added step).
    #[schema(value_type = Object)]
    pub before: Value,
    /// The changed part after (JSON, null for a removed step).
    #[schema(value_type = Object)]
    pub after: Value,
    pub reason: String,
    /// Who changed it (`member:aurora@example.com`, `agent:…`).
    pub triggered_by: String,
    pub created_at: String,
}

impl From<WorkflowChangeRow> for HistoryEntry {
    fn from(row: WorkflowChangeRow) -> Self {
        HistoryEntry {
            id: row.id,
            kind: row.kind,
            step_id: row.step_id,
            before: json_text(row.before_json.as_deref()),
            after: json_text(row.after_json.as_deref()),
            reason: row.reason,
            triggered_by: row.triggered_by,
            created_at: timestamp(row.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub history: Vec<HistoryEntry>,
    pub meta: ListMeta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentResponse {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: i32,
    /// `offline`, or while online: `idle`, `working` (holds a step), `blocked` (waits
    /// for its person's answer) or `waiting` (a result awaits approval).
    pub status: String,
    pub online: bool,
    pub last_seen_at: Option<String>,
    pub created_at: String,
    /// The steps it holds (`claimed`, `running`, `blocked`) or whose result awaits
    /// approval, oldest first: with steps assigned to a member, which of the member's
    /// machines has which.
    pub holds: Vec<HeldStepRef>,
}

/// A step an agent holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldStepRef {
    pub step_id: String,
    pub task_id: String,
    pub title: String,
    pub status: String,
}

impl From<AgentView> for AgentResponse {
    fn from(view: AgentView) -> Self {
        AgentResponse {
            capabilities: view.agent.capability_list(),
            id: view.agent.id,
            name: view.agent.name,
            owner: view.owner_email,
            max_concurrency: view.agent.max_concurrency,
            status: view.state.as_str().to_string(),
            online: view.online,
            last_seen_at: view.last_seen_at.map(timestamp),
            created_at: timestamp(view.agent.created_at),
            holds: view
                .holds
                .into_iter()
                .map(|step| HeldStepRef {
                    step_id: step.step_id,
                    task_id: step.task_id,
                    title: step.title,
                    status: step.status,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentResponse>,
    pub meta: ListMeta,
}
