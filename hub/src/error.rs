//! The hub's one error type, its stable codes, and its HTTP rendering.
//!
//! Domain modules return [`Error`]; the REST layer renders it as
//! `{"error":{"code":"…","message":"…","field":"…"}}` and the gateway as an `error` frame
//! with the same code. The 4xx/5xx mapping lives in one `match` in [`Error::status`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad JSON, wrong type, missing field).
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    /// The request is well-formed but breaks a rule (unknown step, cycle, bad level).
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The object is not in a state that allows this; the message names the state.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("too many requests")]
    RateLimited,
    /// The client took too long to send its request (its body).
    #[error("{0}")]
    Timeout(String),
    /// A limit on open event streams; the message names it.
    #[error("{0}")]
    TooManyStreams(String),
    /// The request asks for something this hub does not speak (e.g. a sub-protocol).
    #[error("{0}")]
    Unsupported(String),
    /// The database cannot be reached.
    #[error("the database is unavailable, try again shortly")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// What the other operations of a batch are answered when `err` failed it: nothing
    /// of theirs was stored either. The database's own failure is said as such
    /// (`unavailable`, try again); anything else is an internal error.
    pub fn shared_failure(err: &Error) -> Self {
        let reason = format!("an operation run in the same transaction failed: {err}");
        match err {
            Error::Unavailable(source) => Error::Unavailable(StoreError::GroupCommit(
                std::sync::Arc::from(format!("{reason} ({source})")),
            )),
            _ => Error::Internal(reason),
        }
    }

    /// The stable code, shared with the agent protocol's `error` frames.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "bad_request",
            Error::Invalid { .. } => "invalid",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::TooLarge(_) => "too_large",
            Error::RateLimited | Error::TooManyStreams(_) => "rate_limited",
            Error::Timeout(_) => "timeout",
            Error::Unsupported(_) => "unsupported",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited | Error::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Unsupported(_) => StatusCode::BAD_REQUEST,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::BadRequest { field, .. } | Error::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        match err {
            Diesel::NotFound => Error::NotFound("record".into()),
            Diesel::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Error::Conflict(format!("already exists ({})", info.message()))
            }
            Diesel::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Error::Unavailable(StoreError::Query(Diesel::DatabaseError(
                    DatabaseErrorKind::ClosedConnection,
                    info,
                )))
            }
            // PostgreSQL ending the session (SQLSTATE class 57) or a lost connection
            // (class 08) arrives here as `Unknown` or `UnableToSendCommand`, without its
            // SQLSTATE (diesel-async drops it): the store recognises it by the connection
            // it broke and answers `StoreError::SessionEnded` instead (see
            // `store::session_ended`), which becomes `Unavailable` below.
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Error::Unavailable(err)
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Internal(format!("stored JSON is unreadable: {err}"))
    }
}

/// The body of every error answer: `{"error": {"code": "…", "message": "…", "field": "…"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    /// The stable code (`not_found`, `conflict`, `invalid`, …), shared with the agent
    /// protocol's `error` frames.
    pub code: &'static str,
    /// What went wrong, for people; it may change between versions.
    pub message: String,
    /// The field of the request that is wrong (`steps[1].approval_level`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            // 5xx detail is logged, never sent.
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                self.to_string()
            }
            Error::Unavailable(err) => {
                tracing::warn!(error = %err, "database unavailable");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code(),
                message,
                field: self.field(),
            },
        };
        (status, Json(body)).into_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
