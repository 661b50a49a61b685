//! The HTTP edge: one route table, thin handlers (parse, one domain call, render), the
//! operational endpoints, and serving on a listener.

pub mod a2a;
pub mod accounts;
pub mod agents;
pub mod checks;
pub mod edge;
pub mod events;
pub mod extract;
pub mod files;
pub mod meetings;
pub mod notifications;
pub mod plans;
pub mod serve;
pub mod streams;
pub mod tasks;
pub mod views;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::api::edge::{BodyDeadline, RateLimits};
use crate::api::serve::ConnectionLimits;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorEnvelope};
use crate::metrics::HttpLabels;

/// The state every handler gets.
pub type AppState = Ctx;

/// Largest JSON body accepted by the REST API.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// The OpenAPI document of every route but the agents' WebSocket (`/v1/agent/connect`,
/// see docs/protocol.md), served at `/v1/openapi.json` and rendered into docs/api.md.
/// An annotation lists what is its own; [`Conventions`] adds what every route shares.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AgentHub REST API",
        description = "Tasks, steps, approvals, agents, events and files. Authenticate with `Authorization: Bearer <ahk_… API key or aha_… agent token>`."
    ),
    paths(
        tasks::create_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::update_task,
        tasks::change_workflow,
        tasks::task_history,
        tasks::task_timeline,
        tasks::publish_task,
        plans::get_plan,
        plans::accept_plan,
        plans::revise_plan,
        checks::list_workflow_approvals,
        checks::approve_workflow,
        checks::reject_workflow,
        tasks::retry_step,
        tasks::get_step,
        tasks::step_logs,
        meetings::answer_availability,
        meetings::confirm_meeting,
        meetings::change_window,
        tasks::approve_step,
        tasks::reject_step,
        tasks::answer_input,
        tasks::inbox,
        notifications::list_notifications,
        notifications::read_all_notifications,
        notifications::read_notification,
        notifications::unread_notification,
        agents::list_agents,
        agents::register_agent,
        agents::get_agent,
        agents::revoke_agent,
        agents::rotate_token,
        a2a::set_skill,
        a2a::remove_skill,
        agents::ask_availability,
        accounts::invite_member,
        accounts::list_members,
        accounts::change_role,
        accounts::remove_member,
        accounts::create_api_key,
        accounts::list_api_keys,
        accounts::revoke_api_key,
        agents::me,
        agents::create_login_link,
        events::list_events,
        streams::stream_events,
        streams::stream_task,
        files::upload,
        files::download,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::get_webhook,
        webhooks::update_webhook,
        webhooks::delete_webhook,
        webhooks::ping_webhook,
        webhooks::list_deliveries,
        webhooks::redeliver,
        healthz,
        readyz,
        metrics,
        openapi,
    ),
    components(schemas(ErrorEnvelope)),
    security(("api_key" = []), ("agent_token" = [])),
    modifiers(&Conventions)
)]
pub struct ApiDoc;

/// The security scheme of a member's API key (named in `security` above too).
const API_KEY: &str = "api_key";
/// The security scheme of an agent token (named in `security` above too).
const AGENT_TOKEN: &str = "agent_token";

/// What every route shares, added to the document so that annotations cannot forget it:
/// the two bearer schemes; `401` and `503` on routes that authenticate (the token is
/// looked up in the database); `400` and `413` on JSON bodies; `400` on query strings;
/// and the error envelope as the body of every error answer. An annotation that lists
/// one of these statuses itself keeps its own description.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (API_KEY, "API key (`ahk_…`)"),
            (AGENT_TOKEN, "agent token (`aha_…`)"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http({
                    let mut http = Http::new(HttpAuthScheme::Bearer);
                    http.description = Some(description.to_string());
                    http
                }),
            );
        }
        let default_security = openapi.security.clone().unwrap_or_default();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let security = operation.security.as_ref().unwrap_or(&default_security);
                let anonymous =
                    security.is_empty() || security.contains(&SecurityRequirement::default());
                let json_body = operation.request_body.as_ref().is_some_and(|body| {
                    matches!(body, RefOr::T(body) if body.content.contains_key("application/json"))
                });
                let query = operation.parameters.iter().flatten().any(|parameter| {
                    matches!(parameter, RefOr::T(parameter) if parameter.parameter_in == ParameterIn::Query)
                });
                let mut common = Vec::new();
                if json_body {
                    common.push((
                        "400",
                        "`bad_request`: the body is not JSON of this shape (malformed, a \
                         wrong type, an unknown enum value, a missing or unknown field; \
                         `field` names it)",
                    ));
                    common.push(("413", "`too_large`: the body is over 1 MiB"));
                    common.push((
                        "422",
                        "`invalid`: a string of the body holds the NUL character (`field` \
                         names it; docs/api.md, Limits)",
                    ));
                }
                if query {
                    common.push(("400", "`bad_request`: a query parameter has the wrong type"));
                }
                if !anonymous {
                    common.push((
                        "401",
                        "`unauthorized`: no `Authorization: Bearer` header, or its token \
                         is unknown, revoked or expired",
                    ));
                    common.push((
                        "503",
                        "`unavailable`: the database cannot be reached; retry",
                    ));
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in common {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(utoipa::openapi::Response::new(description)));
                }
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && status.as_str() >= "400"
                        && response.content.is_empty()
                    {
                        response.content.insert(
                            "application/json".to_string(),
                            Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))).into(),
                        );
                    }
                }
            }
        }
    }
}

/// The route table, grouped by caller.
pub fn app(ctx: AppState) -> Router {
    let body_timeout = (ctx.settings.body_timeout_ms > 0)
        .then(|| Duration::from_millis(ctx.settings.body_timeout_ms));
    let rate_limits = Arc::new(RateLimits::new(&ctx.settings));
    let json_routes = Router::new()
        // People and their tools (API keys), and agents acting for their member.
        .route("/v1/tasks", post(tasks::create_task).get(tasks::list_tasks))
        .route(
            "/v1/tasks/{id}",
            get(tasks::get_task).patch(tasks::update_task),
        )
        .route("/v1/tasks/{id}/workflow", patch(tasks::change_workflow))
        .route("/v1/tasks/{id}/history", get(tasks::task_history))
        .route("/v1/tasks/{id}/timeline", get(tasks::task_timeline))
        .route("/v1/tasks/{id}/publish", post(tasks::publish_task))
        .route("/v1/tasks/{id}/plan", get(plans::get_plan))
        .route("/v1/tasks/{id}/plan/accept", post(plans::accept_plan))
        .route("/v1/tasks/{id}/plan/revise", post(plans::revise_plan))
        .route(
            "/v1/tasks/{id}/workflow-approvals",
            get(checks::list_workflow_approvals),
        )
        .route(
            "/v1/workflow-approvals/{id}/approve",
            post(checks::approve_workflow),
        )
        .route(
            "/v1/workflow-approvals/{id}/reject",
            post(checks::reject_workflow),
        )
        .route("/v1/steps/{id}", get(tasks::get_step))
        .route("/v1/steps/{id}/logs", get(tasks::step_logs))
        .route("/v1/steps/{id}/approve", post(tasks::approve_step))
        .route("/v1/steps/{id}/reject", post(tasks::reject_step))
        .route("/v1/steps/{id}/retry", post(tasks::retry_step))
        .route(
            "/v1/steps/{id}/meeting/availability",
            post(meetings::answer_availability),
        )
        .route(
            "/v1/steps/{id}/meeting/confirm",
            post(meetings::confirm_meeting),
        )
        .route(
            "/v1/steps/{id}/meeting/window",
            put(meetings::change_window),
        )
        .route("/v1/input-requests/{id}/answer", post(tasks::answer_input))
        .route("/v1/me", get(agents::me))
        .route("/v1/me/inbox", get(tasks::inbox))
        .route("/v1/me/login-link", post(agents::create_login_link))
        .route(
            "/v1/me/notifications",
            get(notifications::list_notifications),
        )
        .route(
            "/v1/me/notifications/read",
            post(notifications::read_all_notifications),
        )
        .route(
            "/v1/me/notifications/{id}/read",
            post(notifications::read_notification),
        )
        .route(
            "/v1/me/notifications/{id}/unread",
            post(notifications::unread_notification),
        )
        .route(
            "/v1/agents",
            get(agents::list_agents).post(agents::register_agent),
        )
        .route(
            "/v1/agents/{id}",
            get(agents::get_agent).delete(agents::revoke_agent),
        )
        .route("/v1/agents/{id}/token", post(agents::rotate_token))
        .route(
            "/v1/agents/{id}/a2a",
            put(a2a::set_skill).delete(a2a::remove_skill),
        )
        // A2A clients: a workspace's Agent Card and JSON-RPC endpoint (docs/a2a.md).
        .route("/a2a/{workspace}", post(a2a::rpc))
        .route(
            "/a2a/{workspace}/.well-known/agent-card.json",
            get(a2a::agent_card),
        )
        // Self-service accounts.
        .route(
            "/v1/members",
            post(accounts::invite_member).get(accounts::list_members),
        )
        .route(
            "/v1/members/{id}",
            patch(accounts::change_role).delete(accounts::remove_member),
        )
        .route(
            "/v1/api-keys",
            post(accounts::create_api_key).get(accounts::list_api_keys),
        )
        .route("/v1/api-keys/{id}", delete(accounts::revoke_api_key))
        .route(
            "/v1/agents/{id}/availability",
            post(agents::ask_availability),
        )
        .route("/v1/events", get(events::list_events))
        .route("/v1/events/stream", get(streams::stream_events))
        .route("/v1/tasks/{id}/stream", get(streams::stream_task))
        .route("/v1/files/{id}", get(files::download))
        // Owners and admins: webhooks.
        .route(
            "/v1/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get_webhook)
                .patch(webhooks::update_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route("/v1/webhooks/{id}/ping", post(webhooks::ping_webhook))
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route("/v1/deliveries/{id}/redeliver", post(webhooks::redeliver))
        .layer(RequestBodyLimitLayer::new(MAX_JSON_BODY))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(middleware::from_fn_with_state(
            body_timeout.map(BodyDeadline::Whole),
            edge::body_deadline,
        ));
    // Uploads stream to disk and enforce their own limit.
    let upload_routes = Router::new()
        .route("/v1/files", put(files::upload))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            body_timeout.map(BodyDeadline::Idle),
            edge::body_deadline,
        ));
    Router::new()
        .merge(json_routes)
        .merge(upload_routes)
        // Agents: the long-lived WebSocket.
        .route("/v1/agent/connect", get(crate::gateway::connect))
        // Operators.
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        // People in a browser: the dashboard's pages (not in the OpenAPI document).
        .merge(crate::web::routes(body_timeout))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(refuse_nul_in_url))
        .layer(middleware::from_fn_with_state(
            rate_limits,
            edge::rate_limit,
        ))
        .layer(middleware::from_fn(edge::envelope_errors))
        .layer(middleware::from_fn_with_state(ctx.clone(), count_requests))
        .layer(TraceLayer::new_for_http().make_span_with(edge::request_span))
        .with_state(ctx)
}

/// Refuses a URL whose path or query holds an encoded NUL character (`%00`) with `400`:
/// no id, name or filter holds one, and PostgreSQL could not even look it up.
async fn refuse_nul_in_url(req: Request, next: Next) -> Response {
    let has_nul = req
        .uri()
        .path_and_query()
        .is_some_and(|url| url.as_str().contains("%00"));
    if has_nul {
        return Error::bad_request("the URL must not contain the NUL character (%00)")
            .into_response();
    }
    next.run(req).await
}

/// How long, and how much, of a refused body is still read after its `413`.
const LINGER: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Answers a JSON request whose `Content-Length` is over [`MAX_JSON_BODY`] with `413` at
/// once, and keeps reading its body (thrown away, for up to [`LINGER`] and
/// [`LINGER_BYTES`]) so that the client, which is still sending it, gets to read the
/// answer: closing the connection with the body unread makes the client's write fail
/// (broken pipe) before it sees the `413`. Chunked bodies are cut at the limit by
/// `RequestBodyLimitLayer`.
async fn refuse_oversized(req: Request, next: Next) -> Response {
    let too_large = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|len| len > MAX_JSON_BODY as u64);
    if !too_large {
        return next.run(req).await;
    }
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut n_read = 0;
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
            n_read += chunk.len();
            if n_read > LINGER_BYTES {
                break;
            }
        }
    });
    Error::TooLarge(format!(
        "a request body is at most {MAX_JSON_BODY} bytes; upload large content with \
         PUT /v1/files and reference the file id"
    ))
    .into_response()
}

/// How often a hub looks for revoked agent tokens of live sessions.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);
/// Time agents get to leave on shutdown after being told to reconnect elsewhere.
const SESSION_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, tells
/// connected agents to reconnect elsewhere (`1001`), finishes in-flight requests and
/// returns once the sessions have closed (or [`SESSION_GRACE`] passed). Connections get
/// the limits of [`serve::serve`] from the hub's settings; every accepted connection
/// runs with `TCP_NODELAY`, so that a pushed frame or a response is sent at once instead
/// of waiting (Nagle) for the ACK of the previous one.
pub async fn serve_with_listener(
    listener: TcpListener,
    ctx: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_ctx(listener, ctx, None, shutdown, None).await;
    Ok(())
}

/// Serves `app` over TLS (rustls) on `listener` until `shutdown` resolves, then gives
/// in-flight requests `grace` to finish. The TLS handshake counts towards the deadline
/// for a request's headers.
pub async fn serve_tls_with_listener(
    listener: std::net::TcpListener,
    ctx: AppState,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    serve_ctx(listener, ctx, Some(acceptor), shutdown, Some(grace)).await;
    Ok(())
}

/// The common part of [`serve_with_listener`] and [`serve_tls_with_listener`]: the
/// revocation watcher while serving, and agents told to leave once accepting stopped.
async fn serve_ctx(
    listener: TcpListener,
    ctx: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Option<Duration>,
) {
    let watcher = tokio::spawn(crate::gateway::watch_sessions(
        ctx.clone(),
        REVOCATION_CHECK,
    ));
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let sessions = ctx.clone();
    // Runs once the listener stopped accepting, so agents reconnect to another hub.
    let closer = tokio::spawn(async move {
        if stopped.await.is_ok() {
            // Event streams never end by themselves: end them so clients resume elsewhere.
            sessions.streams.close_all();
            crate::gateway::close_all(&sessions, SESSION_GRACE).await;
        }
    });
    let limits = ConnectionLimits::from(ctx.settings.as_ref());
    serve::serve(
        listener,
        app(ctx),
        tls,
        limits,
        async move {
            shutdown.await;
            let _ = stopping.send(());
        },
        grace,
    )
    .await;
    let _closed_or_aborted = closer.await;
    watcher.abort();
}

/// Loads a PEM certificate chain and private key for [`serve_tls_with_listener`].
pub async fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await
}

/// Returns leases that expired to `ready`, applies the deadlines of approvals and
/// questions and numbers events left staged (`events::staged`), every `interval`, until
/// the process ends; once an hour it also deletes
/// notifications read longer ago than the retention.
pub async fn run_sweeper(ctx: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick deletes too, so a hub that restarts often still sweeps.
    let mut last_retention: Option<tokio::time::Instant> = None;
    loop {
        ticker.tick().await;
        match crate::tasks::sweep_expired_leases(&ctx).await {
            Ok(n_requeued) => {
                ctx.metrics.leases_expired.inc_by(n_requeued as u64);
            }
            Err(err) => tracing::warn!(error = %err, "lease sweep failed; retrying"),
        }
        if let Err(err) = crate::approvals::sweep_overdue(&ctx).await {
            tracing::warn!(error = %err, "deadline sweep failed; retrying");
        }
        if let Err(err) = crate::events::staged::number_all(&ctx).await {
            tracing::warn!(error = %err, "numbering staged events failed; retrying");
        }
        let retention_days = ctx.settings.notification_retention_days;
        if retention_days > 0 && last_retention.is_none_or(|at| at.elapsed() >= RETENTION_SWEEP) {
            last_retention = Some(tokio::time::Instant::now());
            let cutoff =
                crate::store::now_ms().saturating_sub(i64::from(retention_days) * 86_400_000);
            match crate::notifications::delete_read_before(&ctx.store, cutoff).await {
                Ok(n_deleted) if n_deleted > 0 => {
                    tracing::info!(n_deleted, "old read notifications deleted");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "notification retention sweep failed"),
            }
        }
    }
}

/// How often the sweeper deletes read notifications past their retention.
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

async fn count_requests(State(ctx): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let response = next.run(req).await;
    ctx.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", security(()), tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", security(()), tag = "operations",
    responses(
        (status = 200, description = "`ready`", content_type = "text/plain", body = String),
        (status = 503, description = "`unavailable`: the database cannot be reached"),
    ))]
pub async fn readyz(State(ctx): State<AppState>) -> Result<&'static str, Error> {
    ctx.store.ping().await?;
    Ok("ready")
}

/// Prometheus metrics of this hub process.
#[utoipa::path(get, path = "/metrics", security(()), tag = "operations",
    responses((status = 200, description = "the metrics in the Prometheus text format",
        content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(ctx): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/v1/openapi.json", security(()), tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> Error {
    Error::not_found("route")
}

async fn method_not_allowed() -> Response {
    let mut response = Error::bad_request("method not allowed on this route").into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
