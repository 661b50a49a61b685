//! Rows and queries of workspaces, members and API keys.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::{api_keys, members, workspaces};
use crate::store::{Ahead, Db};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workspaces, treat_none_as_default_value = false)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = members, treat_none_as_default_value = false)]
pub struct Member {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, treat_none_as_default_value = false)]
pub struct ApiKey {
    pub id: String,
    pub workspace_id: String,
    pub member_id: String,
    pub name: String,
    pub token_hash: String,
    pub token_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// JSON array of `read`, `write`, `admin` (see `authority::Scopes`).
    pub scopes: String,
}

pub async fn insert_workspace(db: &mut Db<'_>, row: &Workspace) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(workspaces::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn list_workspaces(db: &mut Db<'_>) -> QueryResult<Vec<Workspace>> {
    crate::db!(db, |conn| {
        workspaces::table
            .order(workspaces::created_at.asc())
            .select(Workspace::as_select())
            .load(conn)
            .await
    })
}

/// A workspace by id or by name.
pub async fn find_workspace(db: &mut Db<'_>, id_or_name: &str) -> QueryResult<Option<Workspace>> {
    crate::db!(db, |conn| {
        workspaces::table
            .filter(
                workspaces::id
                    .eq(id_or_name)
                    .or(workspaces::name.eq(id_or_name)),
            )
            .select(Workspace::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// The workspace's default deadline of approvals and questions (`None`: no deadline; the
/// outer `None`: no such workspace), started ahead ([`ahead!`](crate::ahead)).
pub async fn decision_timeout_of(
    db: &mut Db<'_>,
    workspace_id: &str,
) -> Ahead<Option<Option<i64>>> {
    let workspace_id = workspace_id.to_string();
    crate::ahead!(db, |conn| async move {
        workspaces::table
            .filter(workspaces::id.eq(workspace_id))
            .select(workspaces::decision_timeout_ms)
            .first(conn)
            .await
            .optional()
    })
}

pub async fn set_decision_timeout(
    db: &mut Db<'_>,
    workspace_id: &str,
    timeout_ms: Option<i64>,
) -> QueryResult<()> {
    crate::db!(db, |conn| {
        diesel::update(workspaces::table)
            .filter(workspaces::id.eq(workspace_id))
            .set(workspaces::decision_timeout_ms.eq(timeout_ms))
            .execute(conn)
            .await
    })?;
    Ok(())
}

pub async fn insert_member(db: &mut Db<'_>, row: &Member) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(members::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn list_members(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<Vec<Member>> {
    crate::db!(db, |conn| {
        members::table
            .filter(members::workspace_id.eq(workspace_id))
            // Ids are UUIDv7: they break ties of one millisecond in creation order.
            .order((members::created_at.asc(), members::id.asc()))
            .select(Member::as_select())
            .load(conn)
            .await
    })
}

/// A member of the workspace by id or by email (case-insensitive).
pub async fn find_member(
    db: &mut Db<'_>,
    workspace_id: &str,
    id_or_email: &str,
) -> QueryResult<Option<Member>> {
    let email = id_or_email.to_lowercase();
    crate::db!(db, |conn| {
        members::table
            .filter(members::workspace_id.eq(workspace_id))
            .filter(members::id.eq(id_or_email).or(members::email.eq(&email)))
            .select(Member::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn get_member(db: &mut Db<'_>, member_id: &str) -> QueryResult<Member> {
    crate::db!(db, |conn| members::table
        .find(member_id)
        .select(Member::as_select())
        .first(conn)
        .await)
}

/// Locks the workspace row until the transaction ends (a no-op update), so that
/// concurrent changes of its members run one after the other on PostgreSQL too.
pub async fn lock_workspace(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(workspaces::table.find(workspace_id))
            .set(workspaces::name.eq(workspaces::name))
            .execute(conn)
            .await
    })
}

pub async fn set_role(db: &mut Db<'_>, member_id: &str, role: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(members::table.find(member_id))
            .set(members::role.eq(role))
            .execute(conn)
            .await
    })
}

pub async fn delete_member(db: &mut Db<'_>, member_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::delete(members::table.find(member_id))
        .execute(conn)
        .await)
}

pub async fn insert_api_key(db: &mut Db<'_>, row: &ApiKey) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(api_keys::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn list_api_keys(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<Vec<ApiKey>> {
    crate::db!(db, |conn| {
        api_keys::table
            .filter(api_keys::workspace_id.eq(workspace_id))
            .order(api_keys::created_at.asc())
            .select(ApiKey::as_select())
            .load(conn)
            .await
    })
}

/// An API key of the workspace by id.
pub async fn find_api_key(
    db: &mut Db<'_>,
    workspace_id: &str,
    key_id: &str,
) -> QueryResult<Option<ApiKey>> {
    crate::db!(db, |conn| {
        api_keys::table
            .find(key_id)
            .filter(api_keys::workspace_id.eq(workspace_id))
            .select(ApiKey::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn find_api_key_by_hash(
    db: &mut Db<'_>,
    token_hash: &str,
) -> QueryResult<Option<(ApiKey, Member)>> {
    crate::db!(db, |conn| {
        api_keys::table
            .inner_join(members::table)
            .filter(api_keys::token_hash.eq(token_hash))
            .select((ApiKey::as_select(), Member::as_select()))
            .first(conn)
            .await
            .optional()
    })
}

pub async fn revoke_api_key(
    db: &mut Db<'_>,
    workspace_id: &str,
    key_id: &str,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(api_keys::table)
            .filter(
                api_keys::id
                    .eq(key_id)
                    .and(api_keys::workspace_id.eq(workspace_id)),
            )
            .filter(api_keys::revoked_at.is_null())
            .set(api_keys::revoked_at.eq(now))
            .execute(conn)
            .await
    })
}

pub async fn touch_api_key(db: &mut Db<'_>, key_id: &str, now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(api_keys::table.find(key_id))
            .set(api_keys::last_used_at.eq(now))
            .execute(conn)
            .await
    })
}
