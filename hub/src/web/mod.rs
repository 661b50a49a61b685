//! The dashboard: server-rendered pages for people, beside the REST API, with their own
//! sign-in (a session cookie opened by a one-time link), CSRF tokens on every form, and
//! live updates over server-sent events. Page handlers are as thin as API handlers:
//! extract, one domain call, render a template of `hub/templates/`.
//!
//! Pages are not part of the OpenAPI document (they answer HTML, not the JSON API); the
//! API's `Auth` never accepts the session cookie, so `/v1` stays on bearer tokens.

mod agents;
mod assets;
pub mod dag_svg;
mod files;
mod home;
mod live;
mod proposals;
mod session;
mod settings;
mod tasks;
mod webhooks;

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};

use crate::api::AppState;
use crate::api::edge::{self, BodyDeadline};
use crate::error::Error;

pub use session::{Page, PageForm};

/// The Content-Security-Policy of every page: only this hub's own scripts, styles,
/// images and connections; no inline script, no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page routes, merged into the API's router (`api::app`). Form bodies must arrive
/// within `body_timeout` and uploads may not pause for longer, as on the API.
pub fn routes(body_timeout: Option<Duration>) -> Router<AppState> {
    // Uploads stream to disk and enforce their own limit.
    let uploads = Router::new()
        .route("/files", put(files::upload))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            body_timeout.map(BodyDeadline::Idle),
            edge::body_deadline,
        ));
    Router::new()
        // Signing in and out.
        .route("/login/{token}", get(session::login))
        .route("/signin", get(session::signin_page))
        .route("/logout", post(session::logout))
        // Home: what waits for me.
        .route("/", get(home::inbox))
        .route("/steps/{id}/approve", post(home::approve))
        .route("/steps/{id}/reject", post(home::reject))
        .route("/questions/{id}/answer", post(home::answer))
        .route("/availability/{id}/answer", post(home::answer_availability))
        .route(
            "/meetings/{id}/availability",
            post(proposals::answer_meeting),
        )
        .route(
            "/workflow-approvals/{id}/approve",
            post(proposals::approve_suggestion),
        )
        .route(
            "/workflow-approvals/{id}/reject",
            post(proposals::reject_suggestion),
        )
        .route("/notifications/{id}/read", post(home::mark_read))
        .route("/notifications/read", post(home::mark_all_read))
        // Tasks.
        .route("/tasks", get(tasks::list))
        .route("/tasks/new", get(tasks::new_form).post(tasks::create))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/status", post(tasks::set_status))
        .route("/tasks/{id}/workflow", post(tasks::change_workflow))
        .route("/tasks/{id}/plan/accept", post(proposals::accept_plan))
        .route("/tasks/{id}/plan/revise", post(proposals::revise_plan))
        .route("/steps/{id}/retry", post(tasks::retry))
        .route(
            "/steps/{id}/meeting/confirm",
            post(proposals::confirm_meeting),
        )
        // Agents and settings.
        .route("/agents", get(agents::list))
        .route("/settings", get(settings::show))
        .route("/settings/api-keys", post(settings::create_key))
        .route("/settings/api-keys/{id}/revoke", post(settings::revoke_key))
        .route("/settings/members/{id}/role", post(settings::change_role))
        .route("/settings/webhooks", post(webhooks::create))
        .route("/settings/webhooks/{id}", get(webhooks::show))
        .route(
            "/settings/webhooks/{id}/enabled",
            post(webhooks::set_enabled),
        )
        .route("/settings/webhooks/{id}/delete", post(webhooks::delete))
        .route("/settings/webhooks/{id}/ping", post(webhooks::ping))
        .route(
            "/settings/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        // Live updates.
        .route("/live/me", get(live::mine))
        .route("/live/tasks/{id}", get(live::task))
        .route("/files/{id}", get(files::download))
        .route("/assets/{name}", get(assets::serve))
        .layer(middleware::from_fn_with_state(
            body_timeout.map(BodyDeadline::Whole),
            edge::body_deadline,
        ))
        .merge(uploads)
        .layer(middleware::from_fn(page_headers))
}

/// Adds the security headers to every page answer, and keeps pages out of shared
/// caches.
async fn page_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/assets/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A sign-in link never leaks through the Referer header.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !is_asset && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What every page's frame shows: who is signed in, the CSRF token of its forms, the
/// section, and the event stream that keeps it live.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub section: &'static str,
    pub email: String,
    pub csrf: String,
    /// `/live/me` or `/live/tasks/{id}`; empty: no live updates.
    pub live: String,
    pub is_admin: bool,
    /// Unread notifications that wait on the member (`action`) and the others (`info`).
    pub unread_action: u64,
    pub unread_info: u64,
    pub css: &'static str,
    pub htmx: &'static str,
    pub script: &'static str,
}

impl Layout {
    pub fn new(page: &Page, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            section,
            email: page.email().to_string(),
            csrf: page.session.csrf_token.clone(),
            live: "/live/me".into(),
            is_admin: crate::accounts::authority::role_of(&page.session.actor).is_admin(),
            unread_action: page.unread.action,
            unread_info: page.unread.info,
            css: assets::CSS_PATH.as_str(),
            htmx: assets::HTMX_PATH,
            script: assets::SCRIPT_PATH.as_str(),
        }
    }

    /// The page follows this stream instead of the member's own.
    pub fn live(mut self, stream: String) -> Layout {
        self.live = stream;
        self
    }
}

/// An error shown as a page with the status of the error (a `403` for a missing CSRF
/// token, `404` for what is not in the member's workspace, `409` for a stale decision).
#[derive(Debug)]
pub struct PageError {
    pub error: Error,
    /// The frame, when the member is signed in (boxed: errors travel in `Result`s).
    pub layout: Option<Box<Layout>>,
}

impl From<Error> for PageError {
    fn from(error: Error) -> Self {
        PageError {
            error,
            layout: None,
        }
    }
}

impl PageError {
    pub fn in_layout(error: Error, layout: Layout) -> PageError {
        PageError {
            error,
            layout: Some(Box::new(layout)),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Option<&'a Layout>,
    status: u16,
    reason: &'a str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if status.is_server_error() {
            // The API's rendering logs the detail and sends the generic message.
            tracing::error!(error = %self.error, "page failed");
        }
        let message = match &self.error {
            Error::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        let page = ErrorPage {
            layout: self.layout.as_deref(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message_only(status)).into_response(),
        }
    }
}

fn message_only(status: StatusCode) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        status.canonical_reason().unwrap_or("error").to_string(),
    )
}

pub type PageResult<T = Response> = std::result::Result<T, PageError>;

/// Renders a template into an HTML answer.
pub fn render(template: &impl Template) -> PageResult {
    let html = template
        .render()
        .map_err(|err| Error::internal(format!("template: {err}")))?;
    Ok(Html(html).into_response())
}

/// After a form: back to `to` (`303`, so the browser follows with a `GET`).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Unix milliseconds as `2026-12-04 09:30 UTC`.
pub fn when(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}
