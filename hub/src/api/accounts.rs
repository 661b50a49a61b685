//! Self-service accounts: members and roles, API keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::authority::Scopes;
use crate::accounts::{self, ApiKey, Member, NewApiKey, Role};
use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth};
use crate::api::views::{ListMeta, timestamp};
use crate::error::{Error, Result};
use crate::store::now_ms;

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberResponse {
    pub id: String,
    pub email: String,
    pub name: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub created_at: String,
}

impl From<Member> for MemberResponse {
    fn from(row: Member) -> Self {
        MemberResponse {
            id: row.id,
            email: row.email,
            name: row.name,
            role: row.role,
            created_at: timestamp(row.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberResponse>,
    pub meta: ListMeta,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Owner,
    Admin,
    Member,
}

impl From<RoleName> for Role {
    fn from(name: RoleName) -> Self {
        match name {
            RoleName::Owner => Role::Owner,
            RoleName::Admin => Role::Admin,
            RoleName::Member => Role::Member,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteMemberRequest {
    pub email: String,
    /// Default: the part of the email before `@`.
    #[serde(default)]
    pub name: Option<String>,
    /// `owner`, `admin` or `member` (default).
    #[serde(default)]
    pub role: Option<RoleName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    pub role: RoleName,
}

/// Adds a member to the caller's workspace.
///
/// Owners and admins (with an API key that has the `admin` scope); only an owner adds an
/// owner. The member gets no API key: one is made for them by the admin CLI, or by
/// themselves once they have one.
#[utoipa::path(post, path = "/v1/members", tag = "members", request_body = InviteMemberRequest,
    responses(
        (status = 201, description = "the new member", body = MemberResponse),
        (status = 403, description = "`forbidden`: the caller is not an owner or admin, is an agent token, lacks the `admin` scope, or is an admin adding an owner"),
        (status = 409, description = "`conflict`: the email is already a member of the workspace"),
        (status = 422, description = "`invalid`: the email is not an email address"),
    ))]
pub async fn invite_member(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<InviteMemberRequest>,
) -> Result<(StatusCode, Json<MemberResponse>)> {
    let role = req.role.map_or(Role::Member, Role::from);
    let member =
        accounts::invite_member(&ctx.store, &actor, &req.email, req.name.as_deref(), role).await?;
    Ok((StatusCode::CREATED, Json(member.into())))
}

/// The members of the caller's workspace, oldest first.
#[utoipa::path(get, path = "/v1/members", tag = "members",
    responses((status = 200, description = "the members", body = MemberList)))]
pub async fn list_members(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
) -> Result<Json<MemberList>> {
    let members: Vec<MemberResponse> = accounts::list_members(&ctx.store, actor.workspace_id())
        .await?
        .into_iter()
        .map(MemberResponse::from)
        .collect();
    Ok(Json(MemberList {
        meta: ListMeta {
            count: members.len(),
        },
        members,
    }))
}

/// Changes a member's role.
///
/// Owners and admins (with the `admin` scope); only an owner makes or unmakes an owner;
/// the last owner stays an owner.
#[utoipa::path(patch, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "The member's id or email.")),
    request_body = ChangeRoleRequest,
    responses(
        (status = 200, description = "the member with the new role", body = MemberResponse),
        (status = 403, description = "`forbidden`: the caller is not an owner or admin, is an agent token, lacks the `admin` scope, or is an admin giving or taking the owner role"),
        (status = 404, description = "`not_found`: no member with this id or email in the caller's workspace"),
        (status = 409, description = "`conflict`: the member is the last owner"),
    ))]
pub async fn change_role(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(member): Path<String>,
    ApiJson(req): ApiJson<ChangeRoleRequest>,
) -> Result<Json<MemberResponse>> {
    let member = accounts::change_role(&ctx.store, &actor, &member, req.role.into()).await?;
    Ok(Json(member.into()))
}

/// Removes a member from the workspace.
///
/// Owners and admins (with the `admin` scope); only an owner removes an owner; the last
/// owner stays. The member's API keys and agents go; their agents' live sessions are
/// closed; approvals waiting for them go to the step's other approvers, or to the task's
/// creator when none remain; their open questions go to the task's creator. The task's
/// history records each re-routing.
#[utoipa::path(delete, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "The member's id or email.")),
    responses(
        (status = 204, description = "removed"),
        (status = 403, description = "`forbidden`: the caller is not an owner or admin, is an agent token, lacks the `admin` scope, or is an admin removing an owner"),
        (status = 404, description = "`not_found`: no member with this id or email in the caller's workspace"),
        (status = 409, description = "`conflict`: the member is the last owner"),
    ))]
pub async fn remove_member(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(member): Path<String>,
) -> Result<StatusCode> {
    accounts::remove_member(&ctx, Some(&actor), actor.workspace_id(), &member).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: String,
    pub name: String,
    /// The member the key belongs to.
    pub member_id: String,
    /// The first characters of the key (`ahk_3fa9c2d1`), to tell keys apart.
    pub prefix: String,
    /// Among `read`, `write`, `admin`.
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyResponse {
    fn from(row: ApiKey) -> Self {
        ApiKeyResponse {
            scopes: Scopes::from_stored(&row.scopes)
                .names()
                .into_iter()
                .map(str::to_string)
                .collect(),
            id: row.id,
            name: row.name,
            member_id: row.member_id,
            prefix: row.token_prefix,
            created_at: timestamp(row.created_at),
            last_used_at: row.last_used_at.map(timestamp),
            expires_at: row.expires_at.map(timestamp),
            revoked_at: row.revoked_at.map(timestamp),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    #[serde(flatten)]
    pub key: ApiKeyResponse,
    /// The secret (`ahk_…`), shown this once; only its hash is stored.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyResponse>,
    pub meta: ListMeta,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// Default `default`; 1-100 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// Among `read`, `write`, `admin`, at most the calling key's own (default: the
    /// calling key's scopes).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// RFC 3339 timestamp after which the key is refused (`401`), like a revoked one.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Seconds from now after which the key is refused; instead of `expires_at`.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Creates an API key for the caller; its secret is in `token`, shown once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "the key, with its secret in `token`", body = CreatedApiKeyResponse),
        (status = 400, description = "`bad_request`: the body is not JSON of this shape, or `expires_at` is not an RFC 3339 timestamp; `field` names it"),
        (status = 403, description = "`forbidden`: an agent token, or a scope the calling key lacks"),
        (status = 422, description = "`invalid`: an unknown or no scope, an empty name, an expiry in the past, or both `expires_at` and `expires_in`; `field` names it"),
    ))]
pub async fn create_api_key(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKeyResponse>)> {
    let scopes = match (&req.scopes, &actor) {
        (Some(names), _) => Scopes::parse(names)?,
        (None, accounts::Actor::Member(member)) => member.scopes,
        (None, accounts::Actor::Agent(_)) => Scopes::ALL,
    };
    let expires_at = match (req.expires_at.as_deref(), req.expires_in) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_field(
                "expires_in",
                "give `expires_at` or `expires_in`, not both",
            ));
        }
        (Some(text), None) => Some(crate::api::tasks::parse_timestamp("expires_at", text)?),
        (None, Some(seconds)) => Some(
            now_ms()
                .saturating_add(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)),
        ),
        (None, None) => None,
    };
    let new = NewApiKey {
        name: req.name.as_deref(),
        scopes,
        expires_at,
    };
    let created = accounts::create_own_api_key(&ctx.store, &actor, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKeyResponse {
            key: created.key.into(),
            token: created.secret,
        }),
    ))
}

/// The caller's API keys (owners and admins with the `admin` scope: every key of the
/// workspace), never their secrets.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    responses(
        (status = 200, description = "the keys, oldest first", body = ApiKeyList),
        (status = 403, description = "`forbidden`: an agent token"),
    ))]
pub async fn list_api_keys(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
) -> Result<Json<ApiKeyList>> {
    let api_keys: Vec<ApiKeyResponse> = accounts::list_api_keys_for(&ctx.store, &actor)
        .await?
        .into_iter()
        .map(ApiKeyResponse::from)
        .collect();
    Ok(Json(ApiKeyList {
        meta: ListMeta {
            count: api_keys.len(),
        },
        api_keys,
    }))
}

/// Revokes an API key: requests with it get `401` from now on.
///
/// The caller's own keys; owners and admins (with the `admin` scope) any key of the
/// workspace.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses(
        (status = 204, description = "revoked"),
        (status = 403, description = "`forbidden`: an agent token, or another member's key without the owner or admin role and the `admin` scope"),
        (status = 404, description = "`not_found`: no key with this id in the caller's workspace"),
        (status = 409, description = "`conflict`: the key is already revoked"),
    ))]
pub async fn revoke_api_key(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(key_id): Path<String>,
) -> Result<StatusCode> {
    accounts::revoke_api_key_as(&ctx.store, &actor, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
