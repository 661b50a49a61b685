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

#[utoipa::path(get, path = "/v1/agents", responses((status = 200, body = AgentList)))]
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

#[utoipa::path(get, path = "/v1/agents/{id}", responses((status = 200, body = AgentResponse), (status = 404)))]
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
    pub question: String,
    #[serde(default)]
    pub task_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityResponse {
    pub id: String,
    pub agent_id: String,
    pub question: String,
}

#[utoipa::path(post, path = "/v1/agents/{id}/availability", request_body = AvailabilityRequestBody, responses((status = 201, body = AvailabilityResponse)))]
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
    pub member_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub email: Option<String>,
}

#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = MeResponse), (status = 401)))]
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
