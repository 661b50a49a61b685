//! Extractors that turn bad input into our error envelope: JSON bodies with the failing
//! field named, query strings, and bearer-token authentication.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::accounts::authority::{self, Scope};
use crate::accounts::{self, Actor};
use crate::agents;
use crate::api::AppState;
use crate::content;
use crate::error::Error;

/// A JSON body. Malformed JSON, a wrong type, an unknown enum value or a missing field
/// is a 400 naming the field (`steps[1].approval_level`), never a 500.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Err(Error::bad_request("the request needs a JSON body"));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out: an empty body is `None`; any other is read as
/// [`ApiJson`] reads it, with the same errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalApiJson(None));
        }
        parse_json(&bytes).map(|value| OptionalApiJson(Some(value)))
    }
}

/// The whole body; over the route's limit it is `413 too_large`.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge("the request body is too large".into())
        } else {
            Error::bad_request(rejection.body_text())
        }
    })
}

/// A query string. A value of the wrong type (`?limit=many`) is a 400 in our envelope,
/// not axum's plain-text rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let Query(query) = Query::try_from_uri(&parts.uri).map_err(|rejection| {
            let text = rejection.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize query string: ")
                .unwrap_or(&text);
            Error::bad_request(format!("invalid query string: {detail}"))
        })?;
        Ok(ApiQuery(query))
    }
}

/// Parses a JSON body, naming the failing field in the error.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let field = (path != ".").then_some(path);
            let message = match &field {
                Some(field) => format!("invalid request body at `{field}`: {inner}"),
                None => format!("invalid request body: {inner}"),
            };
            Error::BadRequest { message, field }
        })?;
        deserializer
            .end()
            .map_err(|err| Error::bad_request(format!("invalid request body: {err}")))?;
        refuse_nul(bytes)?;
        Ok(value)
    }
}

/// PostgreSQL stores no NUL character in text, so no string of a body may hold one
/// (`\u0000`; a raw NUL byte is already malformed JSON): a 422 naming the field, the same
/// on both backends.
fn refuse_nul(bytes: &[u8]) -> Result<(), Error> {
    if !bytes.windows(6).any(|window| window == b"\\u0000") {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| Error::bad_request(format!("invalid request body: {err}")))?;
    match content::find_nul(&value) {
        Some(path) => {
            let field = if path.is_empty() {
                ".".to_string()
            } else {
                path.replace('\0', "\u{FFFD}")
            };
            Err(Error::invalid_field(
                field.clone(),
                format!("`{field}` must not contain the NUL character (U+0000)"),
            ))
        }
        None => Ok(()),
    }
}

/// The authenticated caller: a member's API key (`ahk_…`) or an agent token (`aha_…`)
/// in `Authorization: Bearer`, whose scopes allow the method (`read` for `GET`, `write`
/// for the others; `403 forbidden` otherwise).
#[derive(Debug, Clone)]
pub struct Auth(pub Actor);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer_token(parts)?;
        let actor = if token.starts_with(accounts::token::AGENT_TOKEN_PREFIX) {
            Actor::Agent(agents::authenticate_token(&state.store, token).await?)
        } else {
            Actor::Member(accounts::authenticate_api_key(&state.store, token).await?)
        };
        // Reads need `read`, everything else `write`; managing others also needs `admin`,
        // checked by the domain.
        let scope = if parts.method == Method::GET || parts.method == Method::HEAD {
            Scope::Read
        } else {
            Scope::Write
        };
        authority::require_scope(&actor, scope)?;
        Ok(Auth(actor))
    }
}

/// The bearer token of a request, or `unauthorized` saying what is missing.
pub fn bearer_token(parts: &Parts) -> Result<&str, Error> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        Error::Unauthorized("missing `Authorization: Bearer <token>` header".into())
    })?;
    let value = header
        .to_str()
        .map_err(|_| Error::Unauthorized("the Authorization header is not valid text".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    Ok(token.trim())
}
