//! The A2A edge: each workspace's Agent Card and its JSON-RPC 2.0 endpoint (A2A 1.0),
//! and the routes with which a member publishes an agent as a skill. JSON-RPC errors
//! are answered with HTTP 200 as the binding asks; a missing or unknown token is a
//! `401` and an unknown workspace a `404`, both with a JSON-RPC error body.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::a2a::{self, State as A2aState, wire};
use crate::accounts::authority::{self, Scope};
use crate::accounts::{self, Actor, token};
use crate::agents;
use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth};
use crate::error::{Error, Result};

/// The header naming the A2A protocol version of a request.
pub const VERSION_HEADER: &str = "a2a-version";

/// JSON-RPC and A2A error codes.
mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const TASK_NOT_FOUND: i64 = -32001;
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
    pub const VERSION_NOT_SUPPORTED: i64 = -32009;
}

/// The methods served; the streaming ones answer with server-sent events.
const METHODS: &[&str] = &[
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

/// The public Agent Card of a workspace (`/a2a/{workspace}/.well-known/agent-card.json`).
pub async fn agent_card(
    State(ctx): State<AppState>,
    Path(workspace): Path<String>,
) -> Result<Json<Value>> {
    let workspace = a2a::workspace(&ctx, &workspace).await?;
    let skills = a2a::skills(&ctx, &workspace.id).await?;
    Ok(Json(wire::card(
        &workspace.name,
        &endpoint(&ctx, &workspace.id),
        &skills,
        |_| false,
        false,
    )))
}

fn endpoint(ctx: &AppState, workspace_id: &str) -> String {
    format!(
        "{}/a2a/{workspace_id}",
        ctx.settings.public_url.trim_end_matches('/')
    )
}

/// A JSON-RPC error answer.
struct RpcError {
    http: StatusCode,
    id: Value,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(id: &Value, code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            http: StatusCode::OK,
            id: id.clone(),
            code,
            message: message.into(),
            data: None,
        }
    }

    /// A hub error as a JSON-RPC error; `not_found` of a task is A2A's `TaskNotFound`.
    fn of(id: &Value, err: Error) -> RpcError {
        let (http, code, hub_code) = match &err {
            Error::BadRequest { .. } | Error::Invalid { .. } | Error::TooLarge(_) => {
                (StatusCode::OK, code::INVALID_PARAMS, err.code())
            }
            Error::NotFound(what) if what.starts_with("task") => {
                (StatusCode::OK, code::TASK_NOT_FOUND, err.code())
            }
            Error::NotFound(_) | Error::Conflict(_) | Error::Forbidden(_) => {
                (StatusCode::OK, code::INVALID_PARAMS, err.code())
            }
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, code::INVALID_REQUEST, err.code()),
            Error::RateLimited | Error::TooManyStreams(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                code::INTERNAL_ERROR,
                err.code(),
            ),
            _ => (StatusCode::OK, code::INTERNAL_ERROR, err.code()),
        };
        let field = match &err {
            Error::BadRequest { field, .. } | Error::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        let message = match &err {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "A2A request failed");
                "internal error".to_string()
            }
            Error::Unavailable(source) => {
                tracing::warn!(error = %source, "A2A request failed: the database is unavailable");
                err.to_string()
            }
            _ => err.to_string(),
        };
        RpcError {
            http,
            id: id.clone(),
            code,
            message: format!("{hub_code}: {message}"),
            data: Some(json!({"code": hub_code, "field": field})),
        }
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = self.data {
            error["data"] = data;
        }
        (
            self.http,
            Json(json!({"jsonrpc": "2.0", "id": self.id, "error": error})),
        )
            .into_response()
    }
}

fn rpc_result(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// The JSON-RPC endpoint of a workspace (`POST /a2a/{workspace}`).
pub async fn rpc(
    State(ctx): State<AppState>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match rpc_inner(&ctx, &workspace, &headers, &body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn rpc_inner(
    ctx: &AppState,
    workspace: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<Response, RpcError> {
    let null = Value::Null;
    let request: Value = serde_json::from_slice(body).map_err(|err| {
        RpcError::new(
            &null,
            code::PARSE_ERROR,
            format!("the body is not JSON: {err}"),
        )
    })?;
    let Some(object) = request.as_object() else {
        return Err(RpcError::new(
            &null,
            code::INVALID_REQUEST,
            "a request is one JSON-RPC 2.0 object (batches are not served)",
        ));
    };
    let id = match object.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id.clone(),
        None => Value::Null,
        Some(_) => {
            return Err(RpcError::new(
                &null,
                code::INVALID_REQUEST,
                "`id` must be a string, a number or null",
            ));
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(
            &id,
            code::INVALID_REQUEST,
            "`jsonrpc` must be exactly \"2.0\"",
        ));
    }
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        return Err(RpcError::new(
            &id,
            code::INVALID_REQUEST,
            "`method` (a string) is required",
        ));
    };
    if !METHODS.contains(&method) {
        return Err(RpcError::new(
            &id,
            code::METHOD_NOT_FOUND,
            format!(
                "no method `{method}`; this server speaks A2A 1.0: {}",
                METHODS.join(", ")
            ),
        ));
    }
    check_version(&id, headers)?;
    let params = match object.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(params @ Value::Object(_)) => params.clone(),
        Some(_) => {
            return Err(RpcError::new(
                &id,
                code::INVALID_PARAMS,
                "`params` must be an object",
            ));
        }
    };
    let workspace = a2a::workspace(ctx, workspace).await.map_err(|err| {
        let mut rpc = RpcError::of(&id, err);
        rpc.http = StatusCode::NOT_FOUND;
        rpc
    })?;
    let scope = if matches!(
        method,
        "GetTask"
            | "ListTasks"
            | "SubscribeToTask"
            | "GetTaskPushNotificationConfig"
            | "ListTaskPushNotificationConfigs"
            | "GetExtendedAgentCard"
    ) {
        Scope::Read
    } else {
        Scope::Write
    };
    let actor = authenticate(ctx, headers, scope)
        .await
        .map_err(|err| RpcError::of(&id, err))?;
    a2a::require_workspace(&actor, &workspace).map_err(|err| {
        let mut rpc = RpcError::of(&id, err);
        rpc.http = StatusCode::FORBIDDEN;
        rpc
    })?;
    let stream_key = token::hash(bearer(headers).unwrap_or_default());
    call(ctx, &actor, &workspace, method, &params, &stream_key)
        .await
        .map(|answer| match answer {
            Answer::Result(result) => rpc_result(&id, result),
            Answer::Stream(events) => sse(ctx, &id, events),
        })
        .map_err(|err| {
            let mut rpc = RpcError::of(&id, err);
            if method == "CancelTask"
                && rpc.data.as_ref().and_then(|data| data["code"].as_str()) == Some("conflict")
            {
                rpc.code = code::TASK_NOT_CANCELABLE;
            }
            rpc
        })
}

/// The request must name A2A 1.x in `A2A-Version` (a missing header means 0.3).
fn check_version(id: &Value, headers: &HeaderMap) -> std::result::Result<(), RpcError> {
    let version = headers
        .get(VERSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    match version {
        Some(version) if version == "1" || version.starts_with("1.") => Ok(()),
        Some(other) => Err(RpcError::new(
            id,
            code::VERSION_NOT_SUPPORTED,
            format!("A2A version `{other}` is not supported; send `A2A-Version: 1.0`"),
        )),
        None => Err(RpcError::new(
            id,
            code::VERSION_NOT_SUPPORTED,
            "no `A2A-Version` header (that is A2A 0.3, not supported); send `A2A-Version: 1.0`",
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The caller of a JSON-RPC request, as the REST routes authenticate it.
async fn authenticate(ctx: &AppState, headers: &HeaderMap, scope: Scope) -> Result<Actor> {
    if headers.get(AUTHORIZATION).is_none() {
        return Err(Error::Unauthorized(
            "missing `Authorization: Bearer <token>` header (an API key or agent token of \
             this workspace)"
                .into(),
        ));
    }
    let secret = bearer(headers).ok_or_else(|| {
        Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
    })?;
    let actor = if secret.starts_with(token::AGENT_TOKEN_PREFIX) {
        Actor::Agent(agents::authenticate_token(&ctx.store, secret).await?)
    } else {
        Actor::Member(accounts::authenticate_api_key(&ctx.store, secret).await?)
    };
    authority::require_scope(&actor, scope)?;
    Ok(actor)
}

enum Answer {
    Result(Value),
    Stream(tokio::sync::mpsc::Receiver<Value>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendParams {
    message: Value,
    #[serde(default)]
    configuration: Option<SendConfiguration>,
    #[serde(default)]
    metadata: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendConfiguration {
    #[serde(default)]
    return_immediately: bool,
    #[serde(default)]
    history_length: Option<usize>,
    #[serde(default)]
    task_push_notification_config: Option<PushParams>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskParams {
    id: String,
    #[serde(default)]
    history_length: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(default)]
    page_size: Option<u32>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    history_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushParams {
    #[serde(default)]
    task_id: Option<String>,
    url: String,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushRefParams {
    task_id: String,
    #[serde(default)]
    id: Option<String>,
}

fn params<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T> {
    serde_json::from_value(params.clone()).map_err(|err| Error::BadRequest {
        message: format!("the params do not fit the method: {err}"),
        field: Some("params".into()),
    })
}

/// How long `SendMessage` waits for a task to end or need input before it answers with
/// the task as it is (the caller follows it with `GetTask` or `SubscribeToTask`).
const BLOCKING_WAIT: Duration = Duration::from_secs(30);

async fn call(
    ctx: &AppState,
    actor: &Actor,
    workspace: &accounts::Workspace,
    method: &str,
    raw: &Value,
    stream_key: &str,
) -> Result<Answer> {
    let public_url = &ctx.settings.public_url;
    match method {
        "SendMessage" | "SendStreamingMessage" => {
            let send: SendParams = params(raw)?;
            let incoming = wire::incoming(&send.message, &send.metadata)?;
            let configuration = send.configuration.unwrap_or_default();
            let snap = a2a::send_message(ctx, actor, incoming).await?;
            let task_id = snap.view.task.id.clone();
            if let Some(push) = configuration.task_push_notification_config {
                a2a::create_push_config(
                    ctx,
                    actor,
                    &task_id,
                    &push.url,
                    push.token.as_deref().unwrap_or_default(),
                )
                .await?;
            }
            if method == "SendStreamingMessage" {
                return Ok(Answer::Stream(
                    a2a::follow(ctx, actor, &task_id, stream_key).await?,
                ));
            }
            let snap = if configuration.return_immediately || snap.state().0.ends_stream() {
                snap
            } else {
                wait_for_pause(ctx, actor, &task_id, stream_key, snap).await?
            };
            Ok(Answer::Result(json!({
                "task": wire::task(&snap, public_url, configuration.history_length)
            })))
        }
        "GetTask" => {
            let get: TaskParams = params(raw)?;
            let snap = a2a::snapshot(ctx, actor, &get.id).await?;
            Ok(Answer::Result(wire::task(
                &snap,
                public_url,
                get.history_length,
            )))
        }
        "ListTasks" => {
            let list: ListParams = params(raw)?;
            let state = match list.status.as_deref() {
                None | Some("" | "TASK_STATE_UNSPECIFIED") => None,
                Some(text) => Some(A2aState::parse(text).ok_or_else(|| {
                    Error::invalid_field(
                        "status",
                        format!("`{text}` is not a task state this server uses"),
                    )
                })?),
            };
            let page_size = list.page_size.unwrap_or(50).clamp(1, 100);
            let from = match list.page_token.as_deref() {
                None | Some("") => None,
                Some(text) => Some(a2a::PageToken::parse(text)?),
            };
            let page = a2a::list_tasks(ctx, actor, page_size, state, from).await?;
            let tasks: Vec<Value> = page
                .tasks
                .iter()
                .map(|snap| wire::task(snap, public_url, list.history_length))
                .collect();
            Ok(Answer::Result(json!({
                "tasks": tasks,
                "nextPageToken": page.next.map(|next| next.encode()).unwrap_or_default(),
                "pageSize": page_size,
                "totalSize": page.total,
            })))
        }
        "CancelTask" => {
            let cancel: TaskParams = params(raw)?;
            let snap = a2a::cancel_task(ctx, actor, &cancel.id).await?;
            Ok(Answer::Result(wire::task(&snap, public_url, None)))
        }
        "SubscribeToTask" => {
            let subscribe: TaskParams = params(raw)?;
            let snap = a2a::snapshot(ctx, actor, &subscribe.id).await?;
            let state = snap.state().0;
            if matches!(
                state,
                A2aState::Completed | A2aState::Failed | A2aState::Canceled
            ) {
                return Err(Error::conflict(format!(
                    "the task is {}; there is nothing to subscribe to (read it with GetTask)",
                    state.as_str()
                )));
            }
            Ok(Answer::Stream(
                a2a::follow(ctx, actor, &subscribe.id, stream_key).await?,
            ))
        }
        "CreateTaskPushNotificationConfig" => {
            let push: PushParams = params(raw)?;
            let task_id = push.task_id.as_deref().unwrap_or_default();
            let config = a2a::create_push_config(
                ctx,
                actor,
                task_id,
                &push.url,
                push.token.as_deref().unwrap_or_default(),
            )
            .await?;
            Ok(Answer::Result(wire::push_config(&config)))
        }
        "GetTaskPushNotificationConfig" => {
            let get: PushRefParams = params(raw)?;
            let config = a2a::push_config(
                ctx,
                actor,
                &get.task_id,
                get.id.as_deref().unwrap_or_default(),
            )
            .await?;
            Ok(Answer::Result(wire::push_config(&config)))
        }
        "ListTaskPushNotificationConfigs" => {
            let list: PushRefParams = params(raw)?;
            let configs: Vec<Value> = a2a::push_configs(ctx, actor, &list.task_id)
                .await?
                .iter()
                .map(wire::push_config)
                .collect();
            Ok(Answer::Result(
                json!({"configs": configs, "nextPageToken": ""}),
            ))
        }
        "DeleteTaskPushNotificationConfig" => {
            let delete: PushRefParams = params(raw)?;
            a2a::delete_push_config(
                ctx,
                actor,
                &delete.task_id,
                delete.id.as_deref().unwrap_or_default(),
            )
            .await?;
            Ok(Answer::Result(json!({})))
        }
        "GetExtendedAgentCard" => {
            let skills = a2a::skills(ctx, &workspace.id).await?;
            Ok(Answer::Result(wire::card(
                &workspace.name,
                &endpoint(ctx, &workspace.id),
                &skills,
                |agent_id| ctx.presence.is_online(agent_id),
                true,
            )))
        }
        _ => Err(Error::internal(format!(
            "method `{method}` is listed but not routed"
        ))),
    }
}

/// A blocking `SendMessage` answers once the task ends or needs input, or after
/// [`BLOCKING_WAIT`] with the task as it is then.
async fn wait_for_pause(
    ctx: &AppState,
    actor: &Actor,
    task_id: &str,
    stream_key: &str,
    first: a2a::Snapshot,
) -> Result<a2a::Snapshot> {
    let mut events = a2a::follow(ctx, actor, task_id, stream_key).await?;
    let deadline = tokio::time::Instant::now() + BLOCKING_WAIT;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, events.recv()).await {}
    drop(events);
    match a2a::snapshot(ctx, actor, task_id).await {
        Ok(snap) => Ok(snap),
        Err(_) => Ok(first),
    }
}

/// The stream of a streaming method: each event a JSON-RPC response with the request's
/// id, as server-sent events; the body ends when the follower does.
fn sse(ctx: &AppState, id: &Value, events: tokio::sync::mpsc::Receiver<Value>) -> Response {
    let id = id.clone();
    let body = stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((event, events))
    })
    .map(move |result| {
        let data = json!({"jsonrpc": "2.0", "id": id, "result": result});
        Ok::<_, Infallible>(Event::default().data(data.to_string()))
    });
    Sse::new(body)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_millis(
                    ctx.settings.streams.keep_alive_ms.max(1),
                ))
                .text("keep-alive"),
        )
        .into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSkillRequest {
    /// What the agent does, for A2A clients (at most 16 KiB; default: a sentence naming it).
    #[serde(default)]
    pub description: String,
    /// Example requests (at most 20, each at most 500 bytes).
    #[serde(default)]
    pub examples: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkillResponse {
    /// The skill's id on the Agent Card: the agent's name.
    pub id: String,
    pub agent_id: String,
    pub description: String,
    /// The agent's capabilities, shown as the skill's tags.
    pub tags: Vec<String>,
    pub examples: Vec<String>,
    pub updated_at: String,
}

impl From<a2a::Skill> for SkillResponse {
    fn from(skill: a2a::Skill) -> Self {
        SkillResponse {
            id: skill.agent.name.clone(),
            agent_id: skill.agent.id.clone(),
            description: skill.row.description.clone(),
            tags: skill.agent.capability_list(),
            examples: skill.row.example_list(),
            updated_at: crate::api::views::timestamp(skill.row.updated_at),
        }
    }
}

/// Publishes an agent as a skill of the workspace's A2A Agent Card (or changes its
/// description and examples): A2A clients may then send it tasks (docs/a2a.md).
///
/// Its bound member, or an owner or admin (with the `admin` scope).
#[utoipa::path(put, path = "/v1/agents/{id}/a2a", tag = "agents",
    params(("id" = String, Path, description = "The agent's id or name.")),
    request_body = SetSkillRequest,
    responses(
        (status = 200, description = "the skill as published", body = SkillResponse),
        (status = 403, description = "`forbidden`: an agent token, or another member's agent without the owner or admin role and the `admin` scope"),
        (status = 404, description = "`not_found`: no agent with this id or name in the caller's workspace"),
        (status = 422, description = "`invalid`: a description over 16 KiB, more than 20 examples, an example over 500 bytes, or a text holding NUL"),
    ))]
pub async fn set_skill(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(agent): Path<String>,
    ApiJson(req): ApiJson<SetSkillRequest>,
) -> Result<Json<SkillResponse>> {
    let skill = a2a::set_skill(&ctx, &actor, &agent, &req.description, &req.examples).await?;
    Ok(Json(skill.into()))
}

/// Takes an agent off the workspace's A2A Agent Card; tasks it has keep going.
#[utoipa::path(delete, path = "/v1/agents/{id}/a2a", tag = "agents",
    params(("id" = String, Path, description = "The agent's id or name.")),
    responses(
        (status = 204, description = "the agent is no longer a skill"),
        (status = 403, description = "`forbidden`: an agent token, or another member's agent without the owner or admin role and the `admin` scope"),
        (status = 404, description = "`not_found`: no agent with this id or name in the caller's workspace, or it is not published"),
    ))]
pub async fn remove_skill(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(agent): Path<String>,
) -> Result<StatusCode> {
    a2a::remove_skill(&ctx, &actor, &agent).await?;
    Ok(StatusCode::NO_CONTENT)
}
