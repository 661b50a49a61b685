//! Task and step routes: create, read, change, approve, answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::Actor;
use crate::api::AppState;
use crate::api::extract::{ApiJson, ApiQuery, Auth, OptionalApiJson};
use crate::api::views::{
    History, HistoryEntry, ListMeta, StepResponse, TaskList, TaskResponse, TaskSummary, Timeline,
    TimelineEntryResponse, timestamp,
};
use crate::approvals::{self, ApprovalRef, Verdict};
use crate::error::{Error, Result};
use crate::tasks::{
    self, NewStep, NewTask, TaskAction, TaskFilter, TaskStatus, WorkflowChange, WorkflowOp,
};
use agenthub_protocol::Decision;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStepRequest {
    /// Names the step within the task, for `depends_on`: 1-64 letters, digits, `-`, `_`
    /// or `.`, unique in the task.
    pub key: String,
    pub title: String,
    /// What the assignee should do (default empty).
    #[serde(default)]
    pub description: String,
    /// Agent names or ids, or `member:<email or id>`: any agent of that member may take
    /// the step (one of a person's machines; a lease lost on one is offered to the others).
    pub assignees: Vec<String>,
    /// Keys of steps that must finish first (default none).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// 0 none (default), 1 confirm, 2 review (approve or reject), 3 every approver.
    #[serde(default)]
    pub approval_level: u8,
    /// Member emails or ids; needed from level 1.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Capability labels every assignee must have.
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    /// `claude`, `claude-code`, `shell`, `manual`, `external` or `a2a`; when absent, the
    /// agent's default. An `a2a` step is done by an outside A2A agent: the hub sends it to
    /// the agent whose Agent Card is at `input.agent_card_url` (docs/a2a.md).
    #[serde(default)]
    pub executor: Option<String>,
    /// Free JSON forwarded to the agent unchanged (e.g. `{"command": "make test"}`); for
    /// an `a2a` step, `agent_card_url` (required, an absolute http(s) URL) and `text`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Value,
    /// What the step starts from, in words, for the assignee.
    #[serde(default)]
    pub expected_inputs: Option<String>,
    /// What the step must produce, in words, for the assignee.
    #[serde(default)]
    pub expected_outputs: Option<String>,
    /// Retryable failures and lease expiries allowed before the step fails for good
    /// (1-100, default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// When the step fails for good, its dependents go on as if it were done, and the
    /// task does not fail.
    #[serde(default)]
    pub continue_on_failure: bool,
    /// How long the step's approvals and questions wait: seconds, a duration like
    /// `"24h"` or `"1h30m"` (units `d`, `h`, `m`, `s`; 1 s to 365 days), or `"none"`;
    /// default: the workspace's default (24 h unless an admin changed it).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub decision_timeout: Option<TimeoutRequest>,
    /// When nobody decided in time: `reject` (back for rework; a question closes
    /// unanswered), `escalate` (owners and admins may decide; default) or `fail`.
    #[serde(default)]
    pub on_timeout: Option<String>,
    /// A rough estimate in minutes (1-527040), shown with the step.
    #[serde(default)]
    pub estimate_minutes: Option<u32>,
    /// `task` (default) or `meeting`: the hub finds a slot that suits every participant
    /// of `meeting`, and the step's assignee confirms it.
    #[serde(default)]
    pub kind: Option<String>,
    /// Who meets, how long, within which window; required with `"kind": "meeting"`,
    /// refused otherwise.
    #[serde(default)]
    pub meeting: Option<crate::api::meetings::MeetingRequest>,
}

/// A deadline as a number of seconds or as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TimeoutRequest {
    Seconds(u64),
    Text(String),
}

impl TryFrom<CreateStepRequest> for NewStep {
    type Error = Error;

    fn try_from(req: CreateStepRequest) -> Result<Self> {
        let key = req.key.clone();
        let in_step = |err: Error| match err {
            Error::Invalid { message, field } => Error::invalid_field(
                format!("steps.{}", field.unwrap_or_default()),
                format!("step `{key}`: {message}"),
            ),
            other => other,
        };
        let decision_timeout = match &req.decision_timeout {
            None => approvals::DecisionTimeout::WorkspaceDefault,
            Some(TimeoutRequest::Seconds(seconds)) => {
                approvals::DecisionTimeout::from_seconds(*seconds).map_err(in_step)?
            }
            Some(TimeoutRequest::Text(text)) => {
                approvals::DecisionTimeout::parse(text).map_err(in_step)?
            }
        };
        let on_timeout = match &req.on_timeout {
            None => approvals::OnTimeout::default(),
            Some(text) => text.parse().map_err(in_step)?,
        };
        let meeting = match (req.kind.as_deref().unwrap_or("task"), req.meeting) {
            ("task", None) => None,
            ("meeting", Some(meeting)) => Some(meeting.try_into().map_err(|err| match err {
                Error::Invalid { message, field } => Error::invalid_field(
                    field.unwrap_or_default(),
                    format!("step `{key}`: {message}"),
                ),
                other => other,
            })?),
            ("meeting", None) => {
                return Err(Error::invalid_field(
                    "steps.meeting",
                    format!(
                        "step `{key}`: a meeting step needs `meeting` (participants, duration_minutes)"
                    ),
                ));
            }
            ("task", Some(_)) => {
                return Err(Error::invalid_field(
                    "steps.meeting",
                    format!("step `{key}`: `meeting` goes with `\"kind\": \"meeting\"`"),
                ));
            }
            (other, _) => {
                return Err(Error::invalid_field(
                    "steps.kind",
                    format!("step `{key}`: unknown kind `{other}`; use `task` or `meeting`"),
                ));
            }
        };
        Ok(NewStep {
            key: req.key,
            title: req.title,
            description: req.description,
            assignees: req.assignees,
            depends_on: req.depends_on,
            approval_level: req.approval_level,
            approvers: req.approvers,
            required_capabilities: req.required_capabilities,
            executor: req.executor,
            input: req.input,
            expected_inputs: req.expected_inputs,
            expected_outputs: req.expected_outputs,
            max_attempts: req.max_attempts,
            continue_on_failure: req.continue_on_failure,
            decision_timeout,
            on_timeout,
            meeting,
            estimate_minutes: req.estimate_minutes,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    pub title: String,
    /// Default empty.
    #[serde(default)]
    pub description: String,
    /// RFC 3339 timestamp.
    #[serde(default)]
    pub due_at: Option<String>,
    /// 1 to 500 steps, their dependencies a DAG; with `plan`, none or some, which the
    /// planner starts from.
    #[serde(default)]
    pub steps: Option<Vec<CreateStepRequest>>,
    /// Create the task as a draft: nothing starts until `POST /v1/tasks/{id}/publish`.
    #[serde(default)]
    pub draft: bool,
    /// Let an agent of the creator plan the steps: the task is created as a draft and the
    /// agent gets `plan.requested`; the plan is read at `GET /v1/tasks/{id}/plan` and
    /// accepted with `POST /v1/tasks/{id}/plan/accept`.
    #[serde(default)]
    pub plan: bool,
    /// With `plan`: the name of the creator's agent to ask (default: the calling agent,
    /// else the creator's agent online, most recently seen first).
    #[serde(default)]
    pub planner: Option<String>,
}

pub(crate) fn parse_timestamp(field: &str, text: &str) -> Result<i64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| Error::BadRequest {
            message: format!("`{field}` is not an RFC 3339 timestamp: {err}"),
            field: Some(field.into()),
        })?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Creates a task with its steps.
///
/// Steps without dependencies start `ready` and are pushed to their assignees. An agent
/// token creates the task for the agent's member and is recorded as `creator_agent_id`.
/// With `plan`, the task is a draft without steps until its plan is accepted.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = CreateTaskRequest,
    responses(
        (status = 201, description = "the task as created, with its steps", body = TaskResponse),
        (status = 400, description = "`bad_request`: the body is not JSON of this shape (malformed, a wrong type, an unknown field, a missing field), or `due_at` is not an RFC 3339 timestamp; `field` names it"),
        (status = 413, description = "`too_large`: the body is over 1 MiB, or the events the task would cause are too large (one over 1 MiB, or more than 32 MiB over all its steps' agents and followers); nothing is created"),
        (status = 422, description = "`invalid`: the task breaks a rule: an empty title, no steps or more than 500, a text over its limit or holding NUL (docs/api.md, Limits), a step `input` nested deeper than 32 levels or over 256 KiB, a step key that is not 1-64 letters, digits, `-`, `_` or `.` or is used twice, a step without a title or an assignee, an approval level over 3 or above 0 without approvers, a `max_attempts` outside 1-100, a `decision_timeout` that is not `none`, seconds or a duration of 1 s to 365 days, an unknown `on_timeout`, an unknown executor, an `a2a` step without an absolute http(s) `input.agent_card_url` or without an agent among its assignees, an assignee or approver that is not in the workspace, an assignee that lacks a required capability, a `member:` assignee without an agent that has the required capabilities, a dependency that is not a step of the task, a dependency cycle; with `plan`: a `planner` that is not an agent of the creator, or a creator without any agent; `field` names it"),
    ))]
pub async fn create_task(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<CreateTaskRequest>,
) -> Result<(StatusCode, Json<TaskResponse>)> {
    let due_at = req
        .due_at
        .as_deref()
        .map(|text| parse_timestamp("due_at", text))
        .transpose()?;
    let new = NewTask {
        title: req.title,
        description: req.description,
        due_at,
        steps: match req.steps {
            Some(steps) => steps,
            None if req.plan || req.planner.is_some() => Vec::new(),
            None => {
                return Err(Error::BadRequest {
                    message: "missing field `steps`".into(),
                    field: Some("steps".into()),
                });
            }
        }
        .into_iter()
        .map(NewStep::try_from)
        .collect::<Result<_>>()?,
        draft: req.draft,
        plan: (req.plan || req.planner.is_some()).then_some(tasks::PlanRequest {
            planner: req.planner,
        }),
    };
    let view = tasks::create_task(&ctx, &actor, new).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTasksQuery {
    /// Only tasks in this status: `draft`, `active`, `paused`, `done`, `failed`,
    /// `cancelled` or `archived`.
    pub status: Option<String>,
    /// At most this many (1-500, default 100), newest first.
    pub limit: Option<u32>,
}

/// Lists the workspace's tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListTasksQuery),
    responses(
        (status = 200, description = "the tasks, without their steps", body = TaskList),
        (status = 400, description = "`bad_request`: an unknown `status`, or a `limit` that is not a number"),
    ))]
pub async fn list_tasks(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<ListTasksQuery>,
) -> Result<Json<TaskList>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            TaskStatus::ALL
                .into_iter()
                .find(|status| status.as_str() == text)
                .ok_or_else(|| Error::BadRequest {
                    message: format!("unknown task status `{text}`"),
                    field: Some("status".into()),
                })?,
        ),
    };
    let filter = TaskFilter {
        status,
        limit: query.limit.unwrap_or(100),
        ..TaskFilter::default()
    };
    let tasks = tasks::list_tasks(&ctx, &actor, &filter).await?;
    let tasks: Vec<TaskSummary> = tasks.into_iter().map(TaskSummary::from).collect();
    Ok(Json(TaskList {
        meta: ListMeta { count: tasks.len() },
        tasks,
    }))
}

/// A task with its steps and the agents involved.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "the task", body = TaskResponse),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
    ))]
pub async fn get_task(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<TaskResponse>> {
    Ok(Json(tasks::get_task(&ctx, &actor, &task_id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskActionName {
    Pause,
    Resume,
    Cancel,
    Archive,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskRequest {
    /// `pause`, `resume`, `cancel` or `archive` (also accepted as `status`).
    #[serde(alias = "status")]
    pub action: TaskActionName,
}

/// Pauses, resumes, cancels or archives a task.
///
/// Pausing revokes the steps agents hold (they return to `ready`, not counted as a
/// failure) until the task resumes; resuming pushes ready steps again; cancelling cancels
/// every unfinished step and revokes the held ones. Allowed moves: `active` → `paused` →
/// `active`; `draft`, `active` or `paused` → `cancelled`; `done`, `failed` or
/// `cancelled` → `archived`.
#[utoipa::path(patch, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "The task's id.")), request_body = UpdateTaskRequest,
    responses(
        (status = 200, description = "the task after the change", body = TaskResponse),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 409, description = "`conflict`: the task's status does not allow this action (`task is done; it cannot become paused`), or the task changed meanwhile; retry"),
    ))]
pub async fn update_task(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<UpdateTaskRequest>,
) -> Result<Json<TaskResponse>> {
    let action = match req.action {
        TaskActionName::Pause => TaskAction::Pause,
        TaskActionName::Resume => TaskAction::Resume,
        TaskActionName::Cancel => TaskAction::Cancel,
        TaskActionName::Archive => TaskAction::Archive,
    };
    Ok(Json(
        tasks::set_task_status(&ctx, &actor, &task_id, action)
            .await?
            .into(),
    ))
}

/// One workflow operation, tagged by `op`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkflowOpRequest {
    AddStep {
        /// The new step; its dependencies may name existing steps.
        step: Box<CreateStepRequest>,
    },
    RemoveStep {
        /// The key or id of a `pending` or `ready` step.
        step: String,
    },
    Reorder {
        /// Every step key of the task, once, in the new order.
        order: Vec<String>,
    },
    SetAssignees {
        /// The key or id of a `pending` or `ready` step.
        step: String,
        /// Agent names or ids, or `member:<email or id>` (any agent of the member);
        /// at least one.
        assignees: Vec<String>,
    },
    SetDependencies {
        /// The key or id of a `pending` or `ready` step.
        step: String,
        /// Keys or ids of steps of the task.
        depends_on: Vec<String>,
    },
    /// Skip a pending or ready step (the change's reason is kept); its dependents go on.
    SkipStep {
        /// The key or id of a `pending` or `ready` step.
        step: String,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowChangeRequest {
    /// Why, recorded in the task's history; not empty.
    pub reason: String,
    /// Applied in order, all or none; at least one.
    pub operations: Vec<WorkflowOpRequest>,
}

/// Changes a task's workflow: adds, removes, skips, reorders steps, changes assignees
/// or dependencies, all at once or none.
///
/// Only `pending` and `ready` steps can change; the change is recorded in the task's
/// history with its reason.
#[utoipa::path(patch, path = "/v1/tasks/{id}/workflow", tag = "tasks", params(("id" = String, Path, description = "The task's id.")), request_body = WorkflowChangeRequest,
    responses(
        (status = 200, description = "the task after the change", body = TaskResponse),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 409, description = "`conflict`: the task is not `active`, `paused` or `draft`, a named step is not `pending` or `ready`, or a step changed meanwhile; retry"),
        (status = 413, description = "`too_large`: the body is over 1 MiB, or the events the change would cause are more than 32 MiB; nothing changes"),
        (status = 422, description = "`invalid`: an empty reason or one over 4 KiB, no operations or more than 500, a change that would leave the task with more than 500 steps, a text or name holding NUL, a step the task does not have, an `order` that does not list every step once, a step without assignees, an assignee that is not in the workspace or lacks a required capability, a new step that breaks a rule of `POST /v1/tasks`, a dependency cycle; `field` names it"),
    ))]
pub async fn change_workflow(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<WorkflowChangeRequest>,
) -> Result<Json<TaskResponse>> {
    let operations = req
        .operations
        .into_iter()
        .map(|op| {
            Ok(match op {
                WorkflowOpRequest::AddStep { step } => {
                    WorkflowOp::AddStep(Box::new(NewStep::try_from(*step)?))
                }
                WorkflowOpRequest::RemoveStep { step } => WorkflowOp::RemoveStep { step },
                WorkflowOpRequest::Reorder { order } => WorkflowOp::Reorder { order },
                WorkflowOpRequest::SetAssignees { step, assignees } => {
                    WorkflowOp::SetAssignees { step, assignees }
                }
                WorkflowOpRequest::SetDependencies { step, depends_on } => {
                    WorkflowOp::SetDependencies { step, depends_on }
                }
                WorkflowOpRequest::SkipStep { step } => WorkflowOp::SkipStep { step },
            })
        })
        .collect::<Result<_>>()?;
    let change = WorkflowChange {
        reason: req.reason,
        operations,
    };
    Ok(Json(
        tasks::change_workflow(&ctx, &actor, &task_id, change)
            .await?
            .into(),
    ))
}

/// The task's workflow changes, oldest first.
#[utoipa::path(get, path = "/v1/tasks/{id}/history", tag = "tasks", params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "the changes", body = History),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
    ))]
pub async fn task_history(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<History>> {
    let history: Vec<HistoryEntry> = tasks::history(&ctx, &actor, &task_id)
        .await?
        .into_iter()
        .map(HistoryEntry::from)
        .collect();
    Ok(Json(History {
        meta: ListMeta {
            count: history.len(),
        },
        history,
    }))
}

/// Publishes a draft: it becomes `active`, its first steps become ready and are pushed,
/// and everyone involved hears of the task.
#[utoipa::path(post, path = "/v1/tasks/{id}/publish", tag = "tasks", params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "the task, now active", body = TaskResponse),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: the task is not a draft"),
    ))]
pub async fn publish_task(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<TaskResponse>> {
    Ok(Json(
        tasks::publish_task(&ctx, &actor, &task_id).await?.into(),
    ))
}

/// Every status change of the task and of its steps, oldest first, with who made it and
/// why.
#[utoipa::path(get, path = "/v1/tasks/{id}/timeline", tag = "tasks", params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "the timeline", body = Timeline),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
    ))]
pub async fn task_timeline(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<Timeline>> {
    let timeline: Vec<TimelineEntryResponse> = tasks::timeline(&ctx, &actor, &task_id)
        .await?
        .into_iter()
        .map(TimelineEntryResponse::from)
        .collect();
    Ok(Json(Timeline {
        meta: ListMeta {
            count: timeline.len(),
        },
        timeline,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Why the step is tried again (kept in the history and the timeline).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Retries a failed or skipped step; the body is optional.
///
/// The step gets a new attempt with its failure count reset, the steps its failure
/// skipped come back, and a failed task is active again. Answers the task.
#[utoipa::path(post, path = "/v1/steps/{id}/retry", tag = "steps", params(("id" = String, Path, description = "The step's id.")), request_body = Option<RetryRequest>,
    responses(
        (status = 200, description = "the task, with the step retried", body = TaskResponse),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 404, description = "`not_found`: no step with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: the step is not failed or skipped, it was skipped because another step failed (the message names it), or the task is done, cancelled or archived"),
    ))]
pub async fn retry_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    OptionalApiJson(req): OptionalApiJson<RetryRequest>,
) -> Result<Json<TaskResponse>> {
    let reason = req.and_then(|req| req.reason);
    Ok(Json(
        tasks::retry_step(&ctx, &actor, &step_id, reason.as_deref())
            .await?
            .into(),
    ))
}

/// A step.
#[utoipa::path(get, path = "/v1/steps/{id}", tag = "steps", params(("id" = String, Path, description = "The step's id.")),
    responses(
        (status = 200, description = "the step", body = StepResponse),
        (status = 404, description = "`not_found`: no step with this id in the caller's workspace"),
    ))]
pub async fn get_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
) -> Result<Json<StepResponse>> {
    Ok(Json(tasks::get_step(&ctx, &actor, &step_id).await?.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    pub attempt: i32,
    /// `stdout`, `stderr` or `info`.
    pub stream: String,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepLogs {
    pub logs: Vec<LogLine>,
    pub meta: ListMeta,
}

/// The log lines its agents sent for a step, oldest first.
#[utoipa::path(get, path = "/v1/steps/{id}/logs", tag = "steps", params(("id" = String, Path, description = "The step's id.")),
    responses(
        (status = 200, description = "the log lines of every attempt", body = StepLogs),
        (status = 404, description = "`not_found`: no step with this id in the caller's workspace"),
    ))]
pub async fn step_logs(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
) -> Result<Json<StepLogs>> {
    let logs: Vec<LogLine> = tasks::step_logs(&ctx, &actor, &step_id)
        .await?
        .into_iter()
        .map(|row| LogLine {
            attempt: row.attempt,
            stream: row.stream,
            text: row.text,
            created_at: timestamp(row.created_at),
        })
        .collect();
    Ok(Json(StepLogs {
        meta: ListMeta { count: logs.len() },
        logs,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The attempt decided on (`attempt` of the inbox entry, the step or
    /// `approval.requested`); a decision for an attempt that is no longer current is
    /// refused.
    pub attempt: u32,
    /// The result's `digest` as seen (inbox, step or `approval.requested`); when given and
    /// the result differs, the decision is refused.
    #[serde(default)]
    pub digest: Option<String>,
    /// Required to reject: what the assignee should change.
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionResponse {
    pub approval_id: String,
    /// The step's status after the decision.
    pub step_status: String,
}

/// Approves the result of the named attempt of a step that awaits the caller's approval.
///
/// At levels 1 and 2 one approval finishes the step; at level 3 the last approver's
/// does (or one by an owner or admin added when the deadline passed).
#[utoipa::path(post, path = "/v1/steps/{id}/approve", tag = "steps", params(("id" = String, Path, description = "The step's id.")), request_body = DecisionRequest,
    responses(
        (status = 200, description = "the decision was recorded", body = DecisionResponse),
        (status = 403, description = "`forbidden`: the caller (or the agent's member) is not a listed approver of the step"),
        (status = 404, description = "`not_found`: no step with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: the step does not await approval, `attempt` is not its current attempt, `digest` is not its current result's, or the caller's approval was already decided; nothing changed"),
    ))]
pub async fn approve_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>> {
    decide_step(&ctx, &actor, &step_id, req, Decision::Approve).await
}

/// Rejects the result of the named attempt of a step that awaits the caller's approval;
/// the assignee reworks it.
#[utoipa::path(post, path = "/v1/steps/{id}/reject", tag = "steps", params(("id" = String, Path, description = "The step's id.")), request_body = DecisionRequest,
    responses(
        (status = 200, description = "the decision was recorded; the step is back with its assignee", body = DecisionResponse),
        (status = 403, description = "`forbidden`: the caller (or the agent's member) is not a listed approver of the step"),
        (status = 404, description = "`not_found`: no step with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: the step does not await approval, `attempt` is not its current attempt, `digest` is not its current result's, the caller's approval was already decided, or the step has approval level 1 (a confirmation, which cannot reject); nothing changed"),
        (status = 422, description = "`invalid`: no `comment` (a rejection says what to change), or one over 16 KiB or holding NUL"),
    ))]
pub async fn reject_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>> {
    decide_step(&ctx, &actor, &step_id, req, Decision::Reject).await
}

/// Records the caller's decision on the step's approval of `req.attempt`.
async fn decide_step(
    ctx: &AppState,
    actor: &Actor,
    step_id: &str,
    req: DecisionRequest,
    decision: Decision,
) -> Result<Json<DecisionResponse>> {
    let decided = approvals::decide(
        ctx,
        actor,
        ApprovalRef::Step(step_id, req.attempt),
        Verdict {
            decision,
            comment: req.comment.as_deref(),
            digest: req.digest.as_deref(),
        },
    )
    .await?;
    Ok(Json(DecisionResponse {
        approval_id: decided.approval_id,
        step_status: decided.step_status,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The answer, sent to the agent; not empty.
    pub answer: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InputRequestResponse {
    pub id: String,
    pub step_id: String,
    pub question: String,
    /// Answers the agent suggests; any answer is accepted.
    pub options: Vec<String>,
    pub answer: Option<String>,
    /// The email of the member who answered.
    pub answered_by: Option<String>,
    pub created_at: String,
    /// When the question times out (null: no deadline, or it was escalated).
    pub due_at: Option<String>,
    /// Nobody answered in time and owners and admins may answer too.
    pub escalated: bool,
    /// Nobody answered in time and the question closed unanswered.
    pub expired: bool,
}

impl From<approvals::InputRequest> for InputRequestResponse {
    fn from(row: approvals::InputRequest) -> Self {
        InputRequestResponse {
            id: row.id,
            step_id: row.step_id,
            question: row.question,
            options: serde_json::from_str(&row.options).unwrap_or_default(),
            answer: row.answer,
            answered_by: row.answered_by,
            created_at: timestamp(row.created_at),
            due_at: row.due_at.map(timestamp),
            escalated: row.escalated_at.is_some(),
            expired: row.expired_at.is_some(),
        }
    }
}

/// Answers a question an agent asked; its blocked step runs again.
#[utoipa::path(post, path = "/v1/input-requests/{id}/answer", tag = "steps",
    params(("id" = String, Path, description = "The input request's id (from `GET /v1/me/inbox` or the `input.requested` event).")),
    request_body = AnswerRequest,
    responses(
        (status = 200, description = "the question with its answer", body = InputRequestResponse),
        (status = 403, description = "`forbidden`: the question was asked of another member (owners and admins included)"),
        (status = 404, description = "`not_found`: no input request with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: the question was already answered or closed unanswered when its deadline passed, or its step is no longer blocked on it"),
        (status = 422, description = "`invalid`: an empty answer, or one over 16 KiB or holding NUL"),
    ))]
pub async fn answer_input(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(request_id): Path<String>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> Result<Json<InputRequestResponse>> {
    Ok(Json(
        approvals::answer(&ctx, &actor, &request_id, &req.answer)
            .await?
            .into(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingApproval {
    /// Decide with `POST /v1/steps/{step_id}/approve` or `/reject`, naming `attempt` and
    /// `digest`.
    pub approval_id: String,
    pub step_id: String,
    pub task_id: String,
    pub step_title: String,
    pub approval_level: i32,
    /// The attempt whose result is shown here.
    pub attempt: i32,
    /// `sha256:` + hex of the result's canonical JSON (docs/protocol.md, "Result digest").
    pub digest: String,
    /// The result's file ids.
    pub files: Vec<String>,
    /// When the approval times out (null: no deadline).
    pub due_at: Option<String>,
    /// Added because the listed approvers did not decide in time.
    pub escalated: bool,
    /// The assignee's summary of the result.
    pub summary: Option<String>,
    /// The submitted result (JSON, null when none).
    #[schema(value_type = Object)]
    pub result: Value,
    pub requested_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingQuestion {
    #[serde(flatten)]
    pub request: InputRequestResponse,
    pub task_id: String,
    pub step_title: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxResponse {
    pub approvals: Vec<PendingApproval>,
    pub questions: Vec<PendingQuestion>,
}

/// What waits for the caller (an agent token: for the agent's member): approvals of
/// steps awaiting them and open questions of blocked steps. Kept for older clients: use
/// `GET /v1/me/notifications`.
#[utoipa::path(get, path = "/v1/me/inbox", tag = "me",
    responses((status = 200, description = "the pending approvals and questions", body = InboxResponse)))]
pub async fn inbox(State(ctx): State<AppState>, Auth(actor): Auth) -> Result<Json<InboxResponse>> {
    let inbox = approvals::inbox(&ctx, &actor).await?;
    Ok(Json(InboxResponse {
        approvals: inbox
            .approvals
            .into_iter()
            .map(|(approval, step)| PendingApproval {
                approval_id: approval.id,
                step_id: step.id,
                task_id: step.task_id,
                step_title: step.title,
                approval_level: step.approval_level,
                attempt: step.attempt,
                digest: step.result_digest.unwrap_or_default(),
                files: serde_json::from_str(&step.files).unwrap_or_default(),
                due_at: approval.due_at.map(timestamp),
                escalated: approval.escalated,
                summary: step.summary,
                result: step
                    .result
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok())
                    .unwrap_or_default(),
                requested_at: timestamp(approval.created_at),
            })
            .collect(),
        questions: inbox
            .questions
            .into_iter()
            .map(|(request, step)| PendingQuestion {
                request: request.into(),
                task_id: step.task_id,
                step_title: step.title,
            })
            .collect(),
    }))
}
