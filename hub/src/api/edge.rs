//! What every request passes through around its handler: a request span without the
//! query string (it may carry a token), the REST rate limit, the deadline of a request
//! body, and the error envelope for answers that were not built from our [`Error`].

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::time::{Instant, Sleep};

use crate::ctx::Settings;
use crate::error::{Error, ErrorBody, ErrorEnvelope};

/// The span of one request: method and path, never the query string.
pub fn request_span(req: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
    )
}

// ---------------------------------------------------------------- rate limit

/// Seconds of the sustained rate a bucket holds: the burst a client may send at once.
const BURST_SECONDS: u32 = 5;
/// Forgotten buckets are dropped every this many requests.
const PRUNE_EVERY: u64 = 4096;

/// Token buckets per token (API key or agent token, by hash) and per client address.
pub struct RateLimits {
    per_key: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    n_checked: AtomicU64,
}

impl RateLimits {
    pub fn new(settings: &Settings) -> Self {
        RateLimits {
            per_key: quota(settings.rate_limit_per_key).map(RateLimiter::keyed),
            per_address: quota(settings.rate_limit_per_address).map(RateLimiter::keyed),
            n_checked: AtomicU64::new(0),
        }
    }

    /// `Err(wait)` when the request must be refused.
    fn check(&self, req: &Request) -> Result<(), Duration> {
        if self.n_checked.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        // The limiter's own clock, read only when a request is refused (building a clock
        // per request costs a CPUID, a VM exit under virtualisation).
        if let Some(limiter) = &self.per_address
            && let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
        {
            limiter
                .check_key(&address_key(peer.ip()))
                .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))?;
        }
        if let Some(limiter) = &self.per_key
            && let Some(token) = bearer(req)
        {
            let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            limiter
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))?;
        }
        Ok(())
    }

    fn prune(&self) {
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
        }
    }
}

fn quota(per_second: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(BURST_SECONDS))?;
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// An IPv4 address, or the /64 network of an IPv6 one (what one client usually holds).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The bearer token of a request, if it has one.
fn bearer(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// Refuses a request over its token's or its address's rate with `429 rate_limited` and
/// `Retry-After`. The operators' endpoints are not limited.
pub async fn rate_limit(
    State(limits): State<Arc<RateLimits>>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    match limits.check(&req) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = Error::RateLimited.into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            response
        }
    }
}

// ---------------------------------------------------------------- body deadline

/// How long a request body may take.
#[derive(Debug, Clone, Copy)]
pub enum BodyDeadline {
    /// The whole body must have arrived within this (JSON bodies, at most 1 MiB).
    Whole(Duration),
    /// No pause between two chunks may last longer than this (uploads).
    Idle(Duration),
}

/// Cuts a request body that is sent too slowly, and answers `408 timeout` (closing the
/// connection) whatever the handler made of the cut body.
pub async fn body_deadline(
    State(deadline): State<Option<BodyDeadline>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(deadline) = deadline else {
        return next.run(req).await;
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| Body::new(DeadlineBody::new(body, deadline, Arc::clone(&timed_out))));
    let response = next.run(req).await;
    if !timed_out.load(Ordering::Acquire) {
        return response;
    }
    let message = match deadline {
        BodyDeadline::Whole(limit) => format!(
            "the request body did not arrive within {} ms",
            limit.as_millis()
        ),
        BodyDeadline::Idle(limit) => format!(
            "the request body paused for more than {} ms",
            limit.as_millis()
        ),
    };
    let mut response = Error::Timeout(message).into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body was sent too slowly")]
struct BodyTooSlow;

/// A request body that fails with [`BodyTooSlow`] once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: BodyDeadline,
    sleep: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn new(inner: Body, deadline: BodyDeadline, timed_out: Arc<AtomicBool>) -> Self {
        let limit = match deadline {
            BodyDeadline::Whole(limit) | BodyDeadline::Idle(limit) => limit,
        };
        DeadlineBody {
            inner,
            deadline,
            sleep: Box::pin(tokio::time::sleep(limit)),
            timed_out,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let (BodyDeadline::Idle(limit), Some(_)) = (this.deadline, &frame) {
                this.sleep.as_mut().reset(Instant::now() + limit);
            }
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------- error envelope

/// Longest error text of another layer that is carried into the envelope's message.
const MAX_FOREIGN_MESSAGE: usize = 512;

/// Rewrites an error answer that is not JSON (a rejection of axum's own extractors, such
/// as an undecodable path segment, or any other layer's) into the error envelope, with
/// the code that belongs to its status.
pub async fn envelope_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    // The dashboard's pages answer their errors as pages.
    let is_page = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || is_page {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4 * MAX_FOREIGN_MESSAGE).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = code_of(status);
    let message = if status.is_server_error() || text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text.chars().take(MAX_FOREIGN_MESSAGE).collect()
    };
    if status.is_server_error() && !text.is_empty() {
        tracing::error!(status = status.as_u16(), error = %text, "request failed");
    }
    let body = serde_json::to_vec(&ErrorEnvelope {
        error: ErrorBody {
            code,
            message,
            field: None,
        },
    })
    .unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

/// The envelope code of an HTTP error status, as docs/api.md's table pairs them.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}
