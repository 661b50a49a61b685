//! Agent registry routes, the caller's identity, and availability requests.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{Actor, signin};
use crate::agents;
use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth};
use crate::api::views::{AgentList, AgentResponse, ListMeta, timestamp};
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentRequest {
    /// 1-64 letters, digits, `-`, `_` or `.`, unique in the workspace.
    pub name: String,
    /// Capability labels (default none).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Steps the agent holds at once (1-1024, default 1).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTokenResponse {
    pub agent_id: String,
    pub name: String,
    /// The agent token (`aha_…`), shown this once; only its hash is stored.
    pub token: String,
}

/// Registers an agent bound to the caller; its token is shown once.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = RegisterAgentRequest,
    responses(
        (status = 201, description = "the agent's id and name, with its token", body = AgentTokenResponse),
        (status = 403, description = "`forbidden`: an agent token (register agents with a member's API key)"),
        (status = 409, description = "`conflict`: an agent with this name exists"),
        (status = 422, description = "`invalid`: a name that is not 1-64 letters, digits, `-`, `_` or `.`, or a `max_concurrency` outside 1-1024; `field` names it"),
    ))]
pub async fn register_agent(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<RegisterAgentRequest>,
) -> Result<(StatusCode, Json<AgentTokenResponse>)> {
    let created = agents::register_agent(
        &ctx,
        &actor,
        &req.name,
        &req.capabilities,
        req.max_concurrency.unwrap_or(1),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentTokenResponse {
            agent_id: created.agent.id,
            name: created.agent.name,
            token: created.token,
        }),
    ))
}

/// Gives an agent a new token and revokes its others (live sessions on them close with
/// `4001`); the new token is shown once.
///
/// The agent's bound member, or an owner or admin (with the `admin` scope).
#[utoipa::path(post, path = "/v1/agents/{id}/token", tag = "agents",
    params(("id" = String, Path, description = "The agent's id or name.")),
    responses(
        (status = 201, description = "the new token", body = AgentTokenResponse),
        (status = 403, description = "`forbidden`: an agent token, or another member's agent without the owner or admin role and the `admin` scope"),
        (status = 404, description = "`not_found`: no agent with this id or name in the caller's workspace"),
    ))]
pub async fn rotate_token(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(agent): Path<String>,
) -> Result<(StatusCode, Json<AgentTokenResponse>)> {
    let (agent, token) = agents::revoke_tokens_as(&ctx, &actor, &agent, true).await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentTokenResponse {
            agent_id: agent.id,
            name: agent.name,
            token: token.unwrap_or_default(),
        }),
    ))
}

/// Revokes every token of an agent and closes its live sessions (`4001`).
///
/// The agent stays listed (tasks and history refer to it) and can be given a new token
/// with `POST /v1/agents/{id}/token`. Its bound member, or an owner or admin (with the
/// `admin` scope).
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id or name.")),
    responses(
        (status = 204, description = "its tokens are revoked"),
        (status = 403, description = "`forbidden`: an agent token, or another member's agent without the owner or admin role and the `admin` scope"),
        (status = 404, description = "`not_found`: no agent with this id or name in the caller's workspace"),
    ))]
pub async fn revoke_agent(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(agent): Path<String>,
) -> Result<StatusCode> {
    agents::revoke_tokens_as(&ctx, &actor, &agent, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginLinkResponse {
    /// The link at the hub's public URL (`--public-url`).
    pub url: String,
    /// The same link as a path (`/login/ahl_…`), for a client that reaches the hub at
    /// another address.
    pub path: String,
    /// The member the link signs in.
    pub email: String,
    /// RFC 3339; the link works once, until then.
    pub expires_at: String,
}

/// A one-time sign-in link to the dashboard for the caller's member.
///
/// An API key's member, or the member an agent token's agent is bound to (`agentd
/// dashboard`). The link works once, for 10 minutes; opening it signs the browser in.
#[utoipa::path(post, path = "/v1/me/login-link", tag = "me",
    responses((status = 201, description = "the link (its token is shown only here)", body = LoginLinkResponse)))]
pub async fn create_login_link(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
) -> Result<(StatusCode, Json<LoginLinkResponse>)> {
    let link = signin::create_own_link(&ctx.store, &actor).await?;
    Ok((
        StatusCode::CREATED,
        Json(LoginLinkResponse {
            url: format!("{}{}", ctx.settings.public_url, link.path()),
            path: link.path(),
            email: link.member_email.clone(),
            expires_at: timestamp(link.expires_at),
        }),
    ))
}
