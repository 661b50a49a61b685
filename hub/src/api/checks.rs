//! Workflow approvals: the changes agents' self-checks suggest, decided by the task's
//! creator.

use agenthub_protocol::SuggestionOp;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::extract::{Auth, OptionalApiJson};
use crate::api::plans::PlanStepResponse;
use crate::api::views::{ListMeta, timestamp};
use crate::error::Result;
use crate::tasks::{self, WorkflowApprovalView};

#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionResponse {
    /// `insert`, `skip` or `reassign`.
    pub op: String,
    /// The key of the step to skip or reassign.
    pub step: Option<String>,
    /// The step to insert.
    pub new_step: Option<PlanStepResponse>,
    /// The new assignees of a reassigned step.
    pub assignees: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowApprovalBody {
    pub id: String,
    /// Always `workflow`.
    pub kind: String,
    pub task_id: String,
    /// The step whose check suggested it, and the checked attempt.
    pub step_id: String,
    pub attempt: i32,
    /// The agent that suggested it.
    pub agent_id: String,
    /// The member who decides (the task's creator; owners and admins may too).
    pub approver_member_id: String,
    pub suggestion: SuggestionResponse,
    /// `pending`, `approved` (applied as a workflow change) or `rejected`.
    pub status: String,
    pub comment: Option<String>,
    /// Who decided (`member:<email>` or `agent:<name>`).
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub created_at: String,
}

impl From<WorkflowApprovalView> for WorkflowApprovalBody {
    fn from(view: WorkflowApprovalView) -> Self {
        let row = view.row;
        let suggestion = view.suggestion;
        WorkflowApprovalBody {
            id: row.id,
            kind: "workflow".into(),
            task_id: row.task_id,
            step_id: row.step_id,
            attempt: row.attempt,
            agent_id: row.agent_id,
            approver_member_id: row.approver_member_id,
            suggestion: SuggestionResponse {
                op: match suggestion.op {
                    SuggestionOp::Insert => "insert",
                    SuggestionOp::Skip => "skip",
                    SuggestionOp::Reassign => "reassign",
                }
                .into(),
                step: suggestion.step,
                new_step: suggestion.new_step.map(Into::into),
                assignees: suggestion.assignees,
                reason: suggestion.reason,
            },
            status: row.status,
            comment: row.comment,
            decided_by: row.decided_by,
            decided_at: row.decided_at.map(timestamp),
            created_at: timestamp(row.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowApprovalList {
    pub workflow_approvals: Vec<WorkflowApprovalBody>,
    pub meta: ListMeta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowApprovalResponse {
    pub workflow_approval: WorkflowApprovalBody,
}

/// The workflow changes agents' self-checks suggested for a task, oldest first.
#[utoipa::path(get, path = "/v1/tasks/{id}/workflow-approvals", tag = "tasks", params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "the task's workflow approvals", body = WorkflowApprovalList),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
    ))]
pub async fn list_workflow_approvals(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<WorkflowApprovalList>> {
    let rows: Vec<WorkflowApprovalBody> = tasks::workflow_approvals(&ctx, &actor, &task_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(WorkflowApprovalList {
        meta: ListMeta { count: rows.len() },
        workflow_approvals: rows,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideWorkflowRequest {
    /// Why (optional).
    #[serde(default)]
    pub comment: Option<String>,
}

/// Approves a suggested workflow change: it is applied at once as a workflow change
/// recorded with `triggered_by` naming the agent and its step.
#[utoipa::path(post, path = "/v1/workflow-approvals/{id}/approve", tag = "tasks", params(("id" = String, Path, description = "The workflow approval's id.")), request_body(content = Option<DecideWorkflowRequest>, description = "optional: a comment"),
    responses(
        (status = 200, description = "the workflow approval, `approved`", body = WorkflowApprovalResponse),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 404, description = "`not_found`: no workflow approval with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: already decided, the task is not active, paused or a draft, or the step it names is no longer pending or ready; nothing changes"),
        (status = 422, description = "`invalid`: the change breaks a rule of `PATCH /v1/tasks/{id}/workflow` (an unknown step or assignee, a cycle); nothing changes"),
    ))]
pub async fn approve_workflow(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    OptionalApiJson(req): OptionalApiJson<DecideWorkflowRequest>,
) -> Result<Json<WorkflowApprovalResponse>> {
    let comment = req.unwrap_or_default().comment;
    let view = tasks::decide_workflow_approval(&ctx, &actor, &id, true, comment.as_deref()).await?;
    Ok(Json(WorkflowApprovalResponse {
        workflow_approval: view.into(),
    }))
}

/// Rejects a suggested workflow change: nothing changes.
#[utoipa::path(post, path = "/v1/workflow-approvals/{id}/reject", tag = "tasks", params(("id" = String, Path, description = "The workflow approval's id.")), request_body(content = Option<DecideWorkflowRequest>, description = "optional: a comment"),
    responses(
        (status = 200, description = "the workflow approval, `rejected`", body = WorkflowApprovalResponse),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 404, description = "`not_found`: no workflow approval with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: already decided"),
    ))]
pub async fn reject_workflow(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    OptionalApiJson(req): OptionalApiJson<DecideWorkflowRequest>,
) -> Result<Json<WorkflowApprovalResponse>> {
    let comment = req.unwrap_or_default().comment;
    let view =
        tasks::decide_workflow_approval(&ctx, &actor, &id, false, comment.as_deref()).await?;
    Ok(Json(WorkflowApprovalResponse {
        workflow_approval: view.into(),
    }))
}
