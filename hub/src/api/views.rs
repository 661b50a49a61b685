//! JSON shapes of the REST API (see docs/api.md): snake_case fields, RFC 3339 UTC
//! timestamps, ids as strings. Domain rows never derive `Serialize`; they are converted
//! here.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::agents::AgentView;
use crate::tasks::{InvolvedAgent, StepView, TaskView, WorkflowChangeRow};

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
    pub assignees: Vec<AgentRef>,
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
    /// Ids of attached files (`GET /v1/files/{id}`).
    pub files: Vec<String>,
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
            files: serde_json::from_str(&step.files).unwrap_or_default(),
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

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub id: String,
    pub title: String,
    pub description: String,
    /// `draft`, `active`, `paused`, `done`, `cancelled` or `archived`.
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
}

impl From<TaskView> for TaskResponse {
    fn from(view: TaskView) -> Self {
        let task = view.task;
        TaskResponse {
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
    pub created_at: String,
    pub updated_at: String,
}

impl From<crate::tasks::Task> for TaskSummary {
    fn from(task: crate::tasks::Task) -> Self {
        TaskSummary {
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
    /// `step_added`, `step_removed`, `steps_reordered`, `assignees_changed` or
    /// `dependencies_changed`.
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
    /// `online` or `offline`.
    pub status: String,
    pub online: bool,
    pub last_seen_at: Option<String>,
    pub created_at: String,
}

impl From<AgentView> for AgentResponse {
    fn from(view: AgentView) -> Self {
        AgentResponse {
            capabilities: view.agent.capability_list(),
            id: view.agent.id,
            name: view.agent.name,
            owner: view.owner_email,
            max_concurrency: view.agent.max_concurrency,
            status: if view.online { "online" } else { "offline" }.to_string(),
            online: view.online,
            last_seen_at: view.last_seen_at.map(timestamp),
            created_at: timestamp(view.agent.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentResponse>,
    pub meta: ListMeta,
}
