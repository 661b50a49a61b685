//! Agent registry routes, the caller's identity, and availability requests.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::Actor;
use crate::agents;
use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth};
use crate::api::views::{AgentList, AgentResponse, ListMeta};
use crate::approvals;
use crate::error::Result;

/// The workspace's agents by name, with whether each is connected now.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    responses((status = 200, description = "the agents", body = AgentList)))]
pub async fn list_agents(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
) -> Result<Json<AgentList>> {
    let agents: Vec<AgentResponse> =
        agents::list_agents(&ctx.store, &ctx.presence, actor.workspace_id())
            .await?
            .into_iter()
            .map(AgentResponse::from)
            .collect();
    Ok(Json(AgentList {
        meta: ListMeta {
            count: agents.len(),
        },
        agents,
    }))
}

/// An agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id or name.")),
    responses(
        (status = 200, description = "the agent", body = AgentResponse),
        (status = 404, description = "`not_found`: no agent with this id or name in the caller's workspace"),
    ))]
pub async fn get_agent(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(agent): Path<String>,
) -> Result<Json<AgentResponse>> {
    Ok(Json(
        agents::get_agent(&ctx.store, &ctx.presence, actor.workspace_id(), &agent)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityRequestBody {
    /// What the agent is asked (`Can you review the release notes today?`).
    pub question: String,
    /// The task the question is about, if any.
    #[serde(default)]
    pub task_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityResponse {
    /// The request's id; the agent's answer refers to it.
    pub id: String,
    pub agent_id: String,
    pub question: String,
}

/// Asks an agent whether it can take on work; the agent answers over its connection.
#[utoipa::path(post, path = "/v1/agents/{id}/availability", tag = "agents",
    params(("id" = String, Path, description = "The agent's id or name.")),
    request_body = AvailabilityRequestBody,
    responses(
        (status = 201, description = "the question was sent to the agent", body = AvailabilityResponse),
        (status = 404, description = "`not_found`: no such agent, or no such `task_id`, in the caller's workspace"),
        (status = 422, description = "`invalid`: an empty question, or one over 16 KiB or holding NUL"),
    ))]
pub async fn ask_availability(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(agent): Path<String>,
    ApiJson(req): ApiJson<AvailabilityRequestBody>,
) -> Result<(StatusCode, Json<AvailabilityResponse>)> {
    let request = approvals::request_availability(
        &ctx,
        &actor,
        &agent,
        &req.question,
        req.task_id.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AvailabilityResponse {
            id: request.id,
            agent_id: request.agent_id,
            question: request.question,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// `member` (API key) or `agent` (agent token).
    pub kind: String,
    pub workspace_id: String,
    /// The member, or the member the agent acts for.
    pub member_id: String,
    /// Set for an agent token.
    pub agent_id: Option<String>,
    /// Set for an agent token.
    pub agent_name: Option<String>,
    /// Set for an API key.
    pub email: Option<String>,
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/v1/me", tag = "me",
    responses((status = 200, description = "the caller", body = MeResponse)))]
pub async fn me(Auth(actor): Auth) -> Json<MeResponse> {
    Json(match actor {
        Actor::Member(member) => MeResponse {
            kind: "member".into(),
            workspace_id: member.workspace_id,
            member_id: member.member_id,
            agent_id: None,
            agent_name: None,
            email: Some(member.email),
        },
        Actor::Agent(agent) => MeResponse {
            kind: "agent".into(),
            workspace_id: agent.workspace_id,
            member_id: agent.member_id,
            agent_id: Some(agent.agent_id),
            agent_name: Some(agent.agent_name),
            email: None,
        },
    })
}
