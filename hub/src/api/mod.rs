//! The HTTP edge: one route table, thin handlers (parse, one domain call, render), the
//! operational endpoints, and serving on a listener.

pub mod agents;
pub mod events;
pub mod extract;
pub mod files;
pub mod tasks;
pub mod views;

use std::future::Future;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::ctx::Ctx;
use crate::error::Error;
use crate::metrics::HttpLabels;

/// The state every handler gets.
pub type AppState = Ctx;

/// Largest JSON body accepted by the REST API.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

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
        tasks::retry_step,
        tasks::get_step,
        tasks::step_logs,
        tasks::approve_step,
        tasks::reject_step,
        tasks::answer_input,
        tasks::inbox,
        agents::list_agents,
        agents::get_agent,
        agents::ask_availability,
        agents::me,
        events::list_events,
        files::upload,
        files::download,
        healthz,
        readyz,
    )
)]
pub struct ApiDoc;

/// The route table, grouped by caller.
pub fn app(ctx: AppState) -> Router {
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
        .route("/v1/steps/{id}", get(tasks::get_step))
        .route("/v1/steps/{id}/logs", get(tasks::step_logs))
        .route("/v1/steps/{id}/approve", post(tasks::approve_step))
        .route("/v1/steps/{id}/reject", post(tasks::reject_step))
        .route("/v1/steps/{id}/retry", post(tasks::retry_step))
        .route("/v1/input-requests/{id}/answer", post(tasks::answer_input))
        .route("/v1/me", get(agents::me))
        .route("/v1/me/inbox", get(tasks::inbox))
        .route("/v1/agents", get(agents::list_agents))
        .route("/v1/agents/{id}", get(agents::get_agent))
        .route(
            "/v1/agents/{id}/availability",
            post(agents::ask_availability),
        )
        .route("/v1/events", get(events::list_events))
        .route("/v1/files/{id}", get(files::download))
        .layer(RequestBodyLimitLayer::new(MAX_JSON_BODY))
        .layer(middleware::from_fn(refuse_oversized));
    // Uploads stream to disk and enforce their own limit.
    let upload_routes = Router::new()
        .route("/v1/files", put(files::upload))
        .layer(DefaultBodyLimit::disable());
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), count_requests))
        .layer(TraceLayer::new_for_http())
        .with_state(ctx)
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

/// Every accepted connection runs with `TCP_NODELAY`: a pushed frame or a response is
/// sent at once instead of waiting (Nagle) for the ACK of the previous one, which the
/// peer may delay by up to 40 ms: that was the whole p99 of dispatch latency.
///
/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, tells
/// connected agents to reconnect elsewhere (`1001`), finishes in-flight requests and
/// returns once the sessions have closed (or [`SESSION_GRACE`] passed).
pub async fn serve_with_listener(
    listener: TcpListener,
    ctx: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(crate::gateway::watch_sessions(
        ctx.clone(),
        REVOCATION_CHECK,
    ));
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let sessions = ctx.clone();
    // Runs once the listener stopped accepting, so agents reconnect to another hub.
    let closer = tokio::spawn(async move {
        if stopped.await.is_ok() {
            crate::gateway::close_all(&sessions, SESSION_GRACE).await;
        }
    });
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let res = axum::serve(listener, app(ctx))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(());
        })
        .await;
    let _closed_or_aborted = closer.await;
    watcher.abort();
    res
}

/// Serves `app` over TLS (rustls) on `listener` until `shutdown` resolves, then gives
/// in-flight requests `grace` to finish.
pub async fn serve_tls_with_listener(
    listener: std::net::TcpListener,
    ctx: AppState,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let watcher = tokio::spawn(crate::gateway::watch_sessions(
        ctx.clone(),
        REVOCATION_CHECK,
    ));
    let sessions = ctx.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Stop accepting first, so agents reconnect to another hub.
        stopper.graceful_shutdown(Some(grace));
        crate::gateway::close_all(&sessions, SESSION_GRACE).await;
    });
    let res = axum_server::from_tcp_rustls(listener, tls)?
        .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
        .handle(handle)
        .serve(app(ctx).into_make_service())
        .await;
    watcher.abort();
    res
}

/// Loads a PEM certificate chain and private key for [`serve_tls_with_listener`].
pub async fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await
}

/// Returns leases that expired to `ready`, every `interval`, until the process ends.
pub async fn run_sweeper(ctx: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match crate::tasks::sweep_expired_leases(&ctx).await {
            Ok(n_requeued) => {
                ctx.metrics.leases_expired.inc_by(n_requeued as u64);
            }
            Err(err) => tracing::warn!(error = %err, "lease sweep failed; retrying"),
        }
    }
}

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

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "the database answers"), (status = 503)))]
pub async fn readyz(State(ctx): State<AppState>) -> Result<&'static str, Error> {
    ctx.store.ping().await?;
    Ok("ready")
}

async fn metrics(State(ctx): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
}

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
