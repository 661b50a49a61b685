//! Signing in with a one-time link, the session cookie, the page extractors and the CSRF
//! check of every form.
//!
//! [`Page`] is the signed-in member of a `GET` (no session: a redirect to `/signin`).
//! [`PageForm`] is a form post: the session, and the form's fields once its CSRF token
//! (field `csrf`, or header `X-CSRF-Token`) matched the session's; otherwise `403`.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};

use crate::accounts::signin::{self, WebSession};
use crate::accounts::{Actor, authority};
use crate::api::AppState;
use crate::error::Error;
use crate::notifications::{self, Counts};
use crate::web::{PageError, PageResult, render, see_other};

/// The session cookie.
pub const COOKIE_NAME: &str = "agenthub_session";
/// The header an in-page request may carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form accepted by a page.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The signed-in member of a page request.
#[derive(Debug, Clone)]
pub struct Page {
    pub session: WebSession,
    /// The member's unread notifications, for the header of every page.
    pub unread: Counts,
}

impl Page {
    pub fn actor(&self) -> &Actor {
        &self.session.actor
    }

    pub fn email(&self) -> &str {
        match &self.session.actor {
            Actor::Member(member) => &member.email,
            Actor::Agent(agent) => &agent.agent_name,
        }
    }

    pub fn is_admin(&self) -> bool {
        authority::role_of(&self.session.actor).is_admin()
    }
}

/// Why a page request has no session: a `GET` goes to the sign-in page, anything else
/// is refused.
#[derive(Debug)]
pub enum NotSignedIn {
    Redirect,
    Refused(PageError),
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::Redirect => Redirect::to("/signin").into_response(),
            NotSignedIn::Refused(err) => err.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = NotSignedIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NotSignedIn> {
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(not_signed_in(&parts.method, None));
        };
        match signin::authenticate(&state.store, &secret).await {
            Ok(session) => {
                let unread = notifications::unread_counts(&state.store, session.actor.member_id())
                    .await
                    .map_err(|err| not_signed_in(&parts.method, Some(err)))?;
                Ok(Page { session, unread })
            }
            Err(Error::Unauthorized(_)) => Err(not_signed_in(&parts.method, None)),
            Err(other) => Err(not_signed_in(&parts.method, Some(other))),
        }
    }
}

fn not_signed_in(method: &Method, error: Option<Error>) -> NotSignedIn {
    match error {
        Some(error) => NotSignedIn::Refused(error.into()),
        None if method == Method::GET || method == Method::HEAD => NotSignedIn::Redirect,
        None => NotSignedIn::Refused(
            Error::Unauthorized(
                "not signed in, or the session ended; open a new sign-in link".into(),
            )
            .into(),
        ),
    }
}

/// A form post of a signed-in member whose CSRF token matched: the fields in order.
#[derive(Debug)]
pub struct PageForm {
    pub page: Page,
    pub fields: Vec<(String, String)>,
}

impl PageForm {
    /// The first non-empty value of a field, trimmed; empty when absent.
    pub fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .find(|value| !value.is_empty())
            .unwrap_or("")
    }

    /// Every value of a field (checkboxes, multi-selects).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(key, value)| key == name && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_string())
            .collect()
    }
}

impl FromRequest<AppState> for PageForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let page = Page::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            PageError::from(Error::TooLarge("the form is too large".into())).into_response()
        })?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(
                PageError::from(Error::TooLarge("the form is too large".into())).into_response(),
            );
        }
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).map_err(|err| {
                PageError::from(Error::bad_request(format!(
                    "the form is not readable: {err}"
                )))
                .into_response()
            })?;
        let token = header_token.or_else(|| {
            fields
                .iter()
                .find(|(key, _)| key == CSRF_FIELD)
                .map(|(_, value)| value.clone())
        });
        let valid = token.is_some_and(|token| signin::csrf_matches(&page.session, &token));
        if !valid {
            return Err(PageError::from(Error::forbidden(
                "this form has no valid CSRF token; reload the page and try again",
            ))
            .into_response());
        }
        Ok(PageForm { page, fields })
    }
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_string())
}

/// `Set-Cookie` for a session: `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` when
/// the hub's public URL is `https://`. `max_age_s` 0 deletes the cookie.
fn cookie(state: &AppState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `GET /login/{token}`: uses a one-time link, sets the session cookie and goes home.
pub async fn login(State(ctx): State<AppState>, Path(token): Path<String>) -> PageResult {
    let opened = signin::redeem_link(&ctx.store, &token).await?;
    let max_age_s = signin::SESSION_MAX_MS / 1000;
    let mut response = see_other("/");
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie(&ctx, &opened.secret, max_age_s));
    Ok(response)
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    css: &'static str,
}

/// `GET /signin`: how to get a sign-in link.
pub async fn signin_page() -> PageResult {
    render(&SigninPage {
        css: crate::web::assets::CSS_PATH.as_str(),
    })
}

/// `POST /logout`: ends the session and deletes the cookie.
pub async fn logout(State(ctx): State<AppState>, form: PageForm) -> PageResult {
    signin::sign_out(&ctx.store, &form.page.session.id).await?;
    let mut response = see_other("/signin");
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie(&ctx, "", 0));
    Ok(response)
}
