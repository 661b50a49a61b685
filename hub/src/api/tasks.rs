//! Task and step routes: create, read, change, approve, answer.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth, parse_json};
use crate::api::views::{
    History, HistoryEntry, ListMeta, StepResponse, TaskList, TaskResponse, TaskSummary, Timeline,
    TimelineEntryResponse, timestamp,
};
use crate::approvals::{self, ApprovalRef};
use crate::error::{Error, Result};
use crate::tasks::{self, NewStep, NewTask, TaskAction, TaskStatus, WorkflowChange, WorkflowOp};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStepRequest {
    /// Names the step within the task, for `depends_on`.
    pub key: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Agent names or ids.
    pub assignees: Vec<String>,
    /// Keys of steps that must finish first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// 0 none, 1 confirm, 2 review (approve or reject), 3 every approver.
    #[serde(default)]
    pub approval_level: u8,
    /// Member emails or ids.
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    /// `claude`, `shell`, `manual` or `external`.
    #[serde(default)]
    pub executor: Option<String>,
    /// Free JSON forwarded to the agent unchanged (e.g. `{"command": "make test"}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(default)]
    pub expected_inputs: Option<String>,
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
}

impl From<CreateStepRequest> for NewStep {
    fn from(req: CreateStepRequest) -> Self {
        NewStep {
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
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// RFC 3339 timestamp.
    #[serde(default)]
    pub due_at: Option<String>,
    pub steps: Vec<CreateStepRequest>,
    /// Create the task as a draft: nothing starts until `POST /v1/tasks/{id}/publish`.
    #[serde(default)]
    pub draft: bool,
}

fn parse_timestamp(field: &str, text: &str) -> Result<i64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| Error::BadRequest {
            message: format!("`{field}` is not an RFC 3339 timestamp: {err}"),
            field: Some(field.into()),
        })?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[utoipa::path(post, path = "/v1/tasks", request_body = CreateTaskRequest,
    responses((status = 201, body = TaskResponse), (status = 422, description = "a rule is broken, e.g. a dependency cycle")))]
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
        steps: req.steps.into_iter().map(NewStep::from).collect(),
        draft: req.draft,
    };
    let view = tasks::create_task(&ctx, &actor, new).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListTasksQuery {
    /// Only tasks in this status.
    pub status: Option<String>,
    /// At most this many (1-500, default 100), newest first.
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/tasks", params(ListTasksQuery), responses((status = 200, body = TaskList)))]
pub async fn list_tasks(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Query(query): Query<ListTasksQuery>,
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
    let tasks = tasks::list_tasks(&ctx, &actor, status, query.limit.unwrap_or(100)).await?;
    let tasks: Vec<TaskSummary> = tasks.into_iter().map(TaskSummary::from).collect();
    Ok(Json(TaskList {
        meta: ListMeta { count: tasks.len() },
        tasks,
    }))
}

#[utoipa::path(get, path = "/v1/tasks/{id}", responses((status = 200, body = TaskResponse), (status = 404)))]
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
    /// `pause`, `resume`, `cancel` or `archive`.
    #[serde(alias = "status")]
    pub action: TaskActionName,
}

#[utoipa::path(patch, path = "/v1/tasks/{id}", request_body = UpdateTaskRequest, responses((status = 200, body = TaskResponse), (status = 409)))]
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
        step: Box<CreateStepRequest>,
    },
    RemoveStep {
        step: String,
    },
    Reorder {
        order: Vec<String>,
    },
    SetAssignees {
        step: String,
        assignees: Vec<String>,
    },
    SetDependencies {
        step: String,
        depends_on: Vec<String>,
    },
    /// Skip a pending or ready step (the change's reason is kept); its dependents go on.
    SkipStep {
        step: String,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowChangeRequest {
    pub reason: String,
    pub operations: Vec<WorkflowOpRequest>,
}

#[utoipa::path(patch, path = "/v1/tasks/{id}/workflow", request_body = WorkflowChangeRequest,
    responses((status = 200, body = TaskResponse), (status = 409), (status = 422)))]
pub async fn change_workflow(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<WorkflowChangeRequest>,
) -> Result<Json<TaskResponse>> {
    let operations = req
        .operations
        .into_iter()
        .map(|op| match op {
            WorkflowOpRequest::AddStep { step } => WorkflowOp::AddStep(Box::new((*step).into())),
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
        .collect();
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

#[utoipa::path(get, path = "/v1/tasks/{id}/history", responses((status = 200, body = History)))]
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

#[utoipa::path(post, path = "/v1/tasks/{id}/publish",
    responses((status = 200, body = TaskResponse), (status = 403), (status = 404), (status = 409, description = "the task is not a draft")))]
pub async fn publish_task(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<TaskResponse>> {
    Ok(Json(
        tasks::publish_task(&ctx, &actor, &task_id).await?.into(),
    ))
}

#[utoipa::path(get, path = "/v1/tasks/{id}/timeline", responses((status = 200, body = Timeline), (status = 404)))]
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

#[utoipa::path(post, path = "/v1/steps/{id}/retry", request_body = Option<RetryRequest>,
    responses((status = 200, body = TaskResponse), (status = 403, description = "not the task's creator, an owner or an admin"),
        (status = 404), (status = 409, description = "the step is not failed or skipped, or was skipped because another step failed")))]
pub async fn retry_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TaskResponse>> {
    // The body is optional.
    let req: RetryRequest = if body.is_empty() {
        RetryRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(
        tasks::retry_step(&ctx, &actor, &step_id, req.reason.as_deref())
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/v1/steps/{id}", responses((status = 200, body = StepResponse), (status = 404)))]
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
    pub stream: String,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepLogs {
    pub logs: Vec<LogLine>,
    pub meta: ListMeta,
}

#[utoipa::path(get, path = "/v1/steps/{id}/logs", responses((status = 200, body = StepLogs)))]
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

#[utoipa::path(post, path = "/v1/steps/{id}/approve", request_body = DecisionRequest, responses((status = 200, body = DecisionResponse), (status = 403), (status = 409)))]
pub async fn approve_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DecisionResponse>> {
    // The body is optional when approving.
    let comment = if body.is_empty() {
        None
    } else {
        parse_json::<DecisionRequest>(&body)?.comment
    };
    let decided = approvals::decide(
        &ctx,
        &actor,
        ApprovalRef::Step(&step_id),
        agenthub_protocol::Decision::Approve,
        comment.as_deref(),
    )
    .await?;
    Ok(Json(DecisionResponse {
        approval_id: decided.approval_id,
        step_status: decided.step_status,
    }))
}

#[utoipa::path(post, path = "/v1/steps/{id}/reject", request_body = DecisionRequest, responses((status = 200, body = DecisionResponse), (status = 403), (status = 409), (status = 422)))]
pub async fn reject_step(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>> {
    let decided = approvals::decide(
        &ctx,
        &actor,
        ApprovalRef::Step(&step_id),
        agenthub_protocol::Decision::Reject,
        req.comment.as_deref(),
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
    pub answer: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InputRequestResponse {
    pub id: String,
    pub step_id: String,
    pub question: String,
    pub options: Vec<String>,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub created_at: String,
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
        }
    }
}

#[utoipa::path(post, path = "/v1/input-requests/{id}/answer", request_body = AnswerRequest, responses((status = 200, body = InputRequestResponse)))]
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
    pub approval_id: String,
    pub step_id: String,
    pub task_id: String,
    pub step_title: String,
    pub approval_level: i32,
    pub attempt: i32,
    pub summary: Option<String>,
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

#[utoipa::path(get, path = "/v1/me/inbox", responses((status = 200, body = InboxResponse)))]
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
