//! Signing in to the dashboard: one-time sign-in links and the browser sessions they
//! open, in one table (`web_sessions`, `kind` `link` or `session`).
//!
//! A link is a random token (`ahl_…`) whose SHA-256 is stored; it expires after
//! [`LINK_TTL_MS`] and is used at most once (one conditional update). Using it opens a
//! session: another random token (`ahs_…`, the cookie; only its hash is stored) and a
//! CSRF token that every state-changing page request must carry. A session expires after
//! [`SESSION_IDLE_MS`] without use and at the latest [`SESSION_MAX_MS`] after sign-in;
//! signing out revokes it. The session acts as its member with every scope, with the
//! member's role read again on each request.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::accounts::authority::Scopes;
use crate::accounts::{Actor, MemberActor, model, token};
use crate::error::{Error, Result};
use crate::schema::{members, web_sessions};
use crate::store::{Db, Store, new_id, now_ms};

/// Prefix of one-time sign-in link tokens.
pub const LINK_PREFIX: &str = "ahl_";
/// Prefix of session cookies.
pub const SESSION_PREFIX: &str = "ahs_";
/// How long a sign-in link can be used.
pub const LINK_TTL_MS: i64 = 10 * 60 * 1000;
/// A session unused for this long ends.
pub const SESSION_IDLE_MS: i64 = 12 * 60 * 60 * 1000;
/// A session ends this long after sign-in, used or not.
pub const SESSION_MAX_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// How stale `last_seen_at` may get before a request writes it (and the expiry) again.
const TOUCH_GRANULARITY_MS: i64 = 60_000;

const KIND_LINK: &str = "link";
const KIND_SESSION: &str = "session";

/// A created sign-in link: its token (shown once) and when it stops working.
#[derive(Debug)]
pub struct SigninLink {
    pub token: String,
    pub member_email: String,
    pub expires_at: i64,
}

impl SigninLink {
    /// The path that signs the browser in (`/login/ahl_…`).
    pub fn path(&self) -> String {
        format!("/login/{}", self.token)
    }
}

/// A session opened by a link: the cookie's secret and the CSRF token.
pub struct OpenedSession {
    pub secret: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A signed-in browser: who it is and the CSRF token its forms must carry.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub id: String,
    pub actor: Actor,
    pub member_name: String,
    pub csrf_token: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = web_sessions, treat_none_as_default_value = false)]
struct WebSessionRow {
    id: String,
    kind: String,
    token_hash: String,
    workspace_id: String,
    member_id: String,
    csrf_token: Option<String>,
    created_at: i64,
    last_seen_at: Option<i64>,
    expires_at: i64,
    revoked_at: Option<i64>,
}

/// A sign-in link for a member of a workspace (the admin CLI).
pub async fn create_link(store: &Store, workspace_id: &str, member: &str) -> Result<SigninLink> {
    store
        .transaction(async |db| {
            let member = model::find_member(db, workspace_id, member)
                .await?
                .ok_or_else(|| Error::not_found(format!("member `{member}`")))?;
            insert_link(db, workspace_id, &member.id, &member.email).await
        })
        .await
}

/// A sign-in link for the caller's own member (an API key's, or an agent's bound member).
pub async fn create_own_link(store: &Store, actor: &Actor) -> Result<SigninLink> {
    let workspace_id = actor.workspace_id();
    let member_id = actor.member_id();
    store
        .transaction(async |db| {
            let member = model::get_member(db, member_id).await?;
            insert_link(db, workspace_id, &member.id, &member.email).await
        })
        .await
}

async fn insert_link(
    db: &mut Db<'_>,
    workspace_id: &str,
    member_id: &str,
    email: &str,
) -> Result<SigninLink> {
    let new_token = token::generate(LINK_PREFIX);
    let now = now_ms();
    let row = WebSessionRow {
        id: new_id(),
        kind: KIND_LINK.into(),
        token_hash: new_token.hash.clone(),
        workspace_id: workspace_id.to_string(),
        member_id: member_id.to_string(),
        csrf_token: None,
        created_at: now,
        last_seen_at: None,
        expires_at: now + LINK_TTL_MS,
        revoked_at: None,
    };
    crate::db!(db, |conn| diesel::insert_into(web_sessions::table)
        .values(&row)
        .execute(conn)
        .await)?;
    Ok(SigninLink {
        token: new_token.secret,
        member_email: email.to_string(),
        expires_at: row.expires_at,
    })
}

/// Uses a sign-in link (once) and opens a session for its member; `unauthorized` when
/// the link is unknown, already used or expired.
pub async fn redeem_link(store: &Store, link_token: &str) -> Result<OpenedSession> {
    let refused =
        || Error::Unauthorized("this sign-in link is unknown, already used or expired".into());
    if !token::has_shape(link_token, LINK_PREFIX) {
        return Err(refused());
    }
    let hash = token::hash(link_token);
    let now = now_ms();
    store
        .transaction(async |db| {
            let used = crate::db!(db, |conn| {
                diesel::update(web_sessions::table)
                    .filter(web_sessions::token_hash.eq(&hash))
                    .filter(web_sessions::kind.eq(KIND_LINK))
                    .filter(web_sessions::revoked_at.is_null())
                    .filter(web_sessions::expires_at.gt(now))
                    .set(web_sessions::revoked_at.eq(Some(now)))
                    .returning(WebSessionRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()
            })?;
            let link = used.ok_or_else(refused)?;
            let secret = token::generate(SESSION_PREFIX);
            let csrf = token::generate("");
            let row = WebSessionRow {
                id: new_id(),
                kind: KIND_SESSION.into(),
                token_hash: secret.hash.clone(),
                workspace_id: link.workspace_id,
                member_id: link.member_id,
                csrf_token: Some(csrf.secret.clone()),
                created_at: now,
                last_seen_at: Some(now),
                expires_at: now + SESSION_IDLE_MS,
                revoked_at: None,
            };
            crate::db!(db, |conn| diesel::insert_into(web_sessions::table)
                .values(&row)
                .execute(conn)
                .await)?;
            Ok(OpenedSession {
                secret: secret.secret.clone(),
                csrf_token: csrf.secret.clone(),
                expires_at: row.expires_at,
            })
        })
        .await
}

/// The signed-in member behind a session cookie; `unauthorized` when the session is
/// unknown, signed out or expired. Moves the expiry on (at most once a minute).
pub async fn authenticate(store: &Store, secret: &str) -> Result<WebSession> {
    let refused = || Error::Unauthorized("not signed in, or the session ended".into());
    if !token::has_shape(secret, SESSION_PREFIX) {
        return Err(refused());
    }
    let hash = token::hash(secret);
    let found = store
        .read(async |db| {
            Ok::<_, Error>(crate::db!(db, |conn| {
                web_sessions::table
                    .inner_join(members::table.on(members::id.eq(web_sessions::member_id)))
                    .filter(web_sessions::token_hash.eq(&hash))
                    .filter(web_sessions::kind.eq(KIND_SESSION))
                    .select((WebSessionRow::as_select(), model::Member::as_select()))
                    .first(conn)
                    .await
                    .optional()
            })?)
        })
        .await?;
    let (session, member) = found.ok_or_else(refused)?;
    let now = now_ms();
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Err(refused());
    }
    if session
        .last_seen_at
        .is_none_or(|seen| now - seen > TOUCH_GRANULARITY_MS)
    {
        let expires_at = (now + SESSION_IDLE_MS).min(session.created_at + SESSION_MAX_MS);
        store
            .transaction(async |db| {
                Ok::<_, Error>(crate::db!(db, |conn| {
                    diesel::update(web_sessions::table.find(&session.id))
                        .set((
                            web_sessions::last_seen_at.eq(Some(now)),
                            web_sessions::expires_at.eq(expires_at),
                        ))
                        .execute(conn)
                        .await
                })?)
            })
            .await?;
    }
    Ok(WebSession {
        id: session.id,
        actor: Actor::Member(MemberActor {
            workspace_id: member.workspace_id,
            member_id: member.id,
            email: member.email,
            role: member.role.parse()?,
            scopes: Scopes::ALL,
        }),
        member_name: member.name,
        csrf_token: session.csrf_token.unwrap_or_default(),
    })
}

/// Ends a session (sign out); later requests with its cookie are refused.
pub async fn sign_out(store: &Store, session_id: &str) -> Result<()> {
    let now = now_ms();
    store
        .transaction(async |db| {
            Ok::<_, Error>(crate::db!(db, |conn| {
                diesel::update(web_sessions::table.find(session_id))
                    .filter(web_sessions::revoked_at.is_null())
                    .set(web_sessions::revoked_at.eq(Some(now)))
                    .execute(conn)
                    .await
            })?)
        })
        .await?;
    Ok(())
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_matches(session: &WebSession, given: &str) -> bool {
    let expected = session.csrf_token.as_bytes();
    let given = given.as_bytes();
    if expected.is_empty() || expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (left, right)| acc | (left ^ right))
        == 0
}
