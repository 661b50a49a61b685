//! Plan routes: read a task's plan, accept it (as proposed or edited), ask for another.

use agenthub_protocol::PlanStep;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth, OptionalApiJson};
use crate::api::tasks::CreateStepRequest;
use crate::api::views::{TaskResponse, timestamp};
use crate::error::Result;
use crate::tasks::{self, NewStep, PlanView};

/// A step of a plan, in the shape of a step of `POST /v1/tasks` (without `input` and the
/// deadline settings, which take their defaults).
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanStepResponse {
    pub key: String,
    pub title: String,
    pub description: String,
    pub assignees: Vec<String>,
    pub depends_on: Vec<String>,
    pub approval_level: u8,
    pub approvers: Vec<String>,
    pub required_capabilities: Vec<String>,
    pub executor: Option<String>,
    pub expected_inputs: Option<String>,
    pub expected_outputs: Option<String>,
    /// The planner's rough estimate, in minutes.
    pub estimate_minutes: Option<u32>,
}

impl From<PlanStep> for PlanStepResponse {
    fn from(step: PlanStep) -> Self {
        PlanStepResponse {
            key: step.key,
            title: step.title,
            description: step.description,
            assignees: step.assignees,
            depends_on: step.depends_on,
            approval_level: step.approval_level,
            approvers: step.approvers,
            required_capabilities: step.required_capabilities,
            executor: step.executor,
            expected_inputs: step.expected_inputs,
            expected_outputs: step.expected_outputs,
            estimate_minutes: step.estimate_minutes,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanBody {
    pub id: String,
    pub task_id: String,
    /// 1 for the first plan, one more each time the creator asked again.
    pub round: u32,
    /// `requested` (the planner has not answered yet), `proposed`, `accepted` or
    /// `replaced` (the creator asked again).
    pub status: String,
    /// The name of the agent asked to plan.
    pub planner: String,
    /// What the creator said when asking for this round.
    pub comment: Option<String>,
    /// The planner's note on its proposal.
    pub note: Option<String>,
    /// The proposal (empty while `requested`).
    pub steps: Vec<PlanStepResponse>,
    /// The steps the planner was given to start from.
    pub start_steps: Vec<PlanStepResponse>,
    pub created_at: String,
    pub proposed_at: Option<String>,
    pub decided_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanResponse {
    pub plan: PlanBody,
}

impl From<PlanView> for PlanResponse {
    fn from(view: PlanView) -> Self {
        let plan = view.plan;
        PlanResponse {
            plan: PlanBody {
                id: plan.id,
                task_id: plan.task_id,
                round: plan.round as u32,
                status: plan.status,
                planner: view.planner_name,
                comment: plan.comment,
                note: plan.note,
                steps: view.steps.into_iter().map(Into::into).collect(),
                start_steps: view.start_steps.into_iter().map(Into::into).collect(),
                created_at: timestamp(plan.created_at),
                proposed_at: plan.proposed_at.map(timestamp),
                decided_at: plan.decided_at.map(timestamp),
            },
        }
    }
}

/// The plan of a task in planning: its latest round.
#[utoipa::path(get, path = "/v1/tasks/{id}/plan", tag = "plans", params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "the latest planning round", body = PlanResponse),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace, or the task was not created with `plan`"),
    ))]
pub async fn get_plan(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<PlanResponse>> {
    Ok(Json(tasks::get_plan(&ctx, &actor, &task_id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptPlanRequest {
    /// The steps to create instead of the proposal (an edited plan), as in
    /// `POST /v1/tasks`; default: the proposal as it is.
    #[serde(default)]
    pub steps: Option<Vec<CreateStepRequest>>,
}

/// Accepts the proposed plan, as it is or edited: the steps are created, the task becomes
/// `active`, and each involved agent gets `task.created` with its own steps.
#[utoipa::path(post, path = "/v1/tasks/{id}/plan/accept", tag = "plans", params(("id" = String, Path, description = "The task's id.")), request_body(content = Option<AcceptPlanRequest>, description = "optional: edited steps"),
    responses(
        (status = 200, description = "the task, now active with the plan's steps", body = TaskResponse),
        (status = 400, description = "`bad_request`: the body is not JSON of this shape"),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace, or it has no plan"),
        (status = 409, description = "`conflict`: no proposal yet (the round is `requested`), or the task is no longer in planning"),
        (status = 422, description = "`invalid`: the (edited) steps break the rules of `POST /v1/tasks`; the message lists every error, one per line; nothing changes"),
    ))]
pub async fn accept_plan(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
    OptionalApiJson(req): OptionalApiJson<AcceptPlanRequest>,
) -> Result<Json<TaskResponse>> {
    let edited = req
        .and_then(|req| req.steps)
        .map(|steps| {
            steps
                .into_iter()
                .map(NewStep::try_from)
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(Json(
        tasks::accept_plan(&ctx, &actor, &task_id, edited)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisePlanRequest {
    /// What the next plan should change (required).
    pub comment: String,
    /// Another agent of the creator's to ask; default: the same planner.
    #[serde(default)]
    pub planner: Option<String>,
}

/// Asks for another plan: the round becomes `replaced`, and the planner gets
/// `plan.requested` again with the comment and the refused proposal to start from.
#[utoipa::path(post, path = "/v1/tasks/{id}/plan/revise", tag = "plans", params(("id" = String, Path, description = "The task's id.")), request_body = RevisePlanRequest,
    responses(
        (status = 200, description = "the new round, `requested`", body = PlanResponse),
        (status = 400, description = "`bad_request`: the body is not JSON of this shape"),
        (status = 403, description = "`forbidden`: the caller is not the task's creator (or their agent), an owner or an admin"),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace, or it has no plan"),
        (status = 409, description = "`conflict`: the task is no longer in planning"),
        (status = 422, description = "`invalid`: an empty comment, or a `planner` that is not an agent of the caller"),
    ))]
pub async fn revise_plan(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<RevisePlanRequest>,
) -> Result<Json<PlanResponse>> {
    Ok(Json(
        tasks::revise_plan(&ctx, &actor, &task_id, &req.comment, req.planner.as_deref())
            .await?
            .into(),
    ))
}
