//! Workspaces, their members with roles, and members' API keys.
//!
//! Every request is scoped to one workspace: the caller's identity ([`Actor`]) carries
//! its workspace id, and every query of every domain filters on it.

pub mod authority;
pub mod model;
pub mod signin;
pub mod token;

use std::fmt;
use std::str::FromStr;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::store::{Store, new_id, now_ms};
use authority::{Scope, Scopes};

pub use model::{ApiKey, Member, Workspace};

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(Error::invalid_field(
                "role",
                format!("unknown role `{other}`; use owner, admin or member"),
            )),
        }
    }
}

/// Who is calling: a member (API key) or an agent (agent token), always in one workspace.
#[derive(Debug, Clone)]
pub enum Actor {
    Member(MemberActor),
    Agent(AgentActor),
}

#[derive(Debug, Clone)]
pub struct MemberActor {
    pub workspace_id: String,
    pub member_id: String,
    pub email: String,
    pub role: Role,
    /// What the API key may be used for.
    pub scopes: Scopes,
}

#[derive(Debug, Clone)]
pub struct AgentActor {
    pub workspace_id: String,
    pub agent_id: String,
    pub agent_name: String,
    /// The member the agent is bound to: decisions made through the agent are theirs.
    pub member_id: String,
    /// The bound member's role when the token was checked.
    pub role: Role,
}

impl Actor {
    pub fn workspace_id(&self) -> &str {
        match self {
            Actor::Member(member) => &member.workspace_id,
            Actor::Agent(agent) => &agent.workspace_id,
        }
    }

    /// The member acting, directly or through their agent.
    pub fn member_id(&self) -> &str {
        match self {
            Actor::Member(member) => &member.member_id,
            Actor::Agent(agent) => &agent.member_id,
        }
    }

    /// The audience id whose events this caller reads.
    pub fn audience_id(&self) -> &str {
        match self {
            Actor::Member(member) => &member.member_id,
            Actor::Agent(agent) => &agent.agent_id,
        }
    }

    /// A short description for history rows (`member:aurora@example.com`).
    pub fn describe(&self) -> String {
        match self {
            Actor::Member(member) => format!("member:{}", member.email),
            Actor::Agent(agent) => format!("agent:{}", agent.agent_name),
        }
    }
}

/// A created API key with its secret, which is shown once and never stored.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

pub async fn create_workspace(store: &Store, name: &str) -> Result<Workspace> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid_field(
            "name",
            "workspace name must not be empty",
        ));
    }
    let row = Workspace {
        id: new_id(),
        name: name.to_string(),
        created_at: now_ms(),
    };
    store
        .transaction(async |db| {
            if model::find_workspace(db, name).await?.is_some() {
                return Err(Error::conflict(format!(
                    "workspace `{name}` already exists"
                )));
            }
            model::insert_workspace(db, &row).await?;
            Ok(())
        })
        .await?;
    Ok(row)
}

pub async fn list_workspaces(store: &Store) -> Result<Vec<Workspace>> {
    store
        .read(async |db| Ok(model::list_workspaces(db).await?))
        .await
}

/// A workspace by id or name, or `not_found` naming it.
pub async fn find_workspace(store: &Store, id_or_name: &str) -> Result<Workspace> {
    store
        .read(async |db| {
            model::find_workspace(db, id_or_name)
                .await?
                .ok_or_else(|| Error::not_found(format!("workspace `{id_or_name}`")))
        })
        .await
}

/// Sets how long approvals and questions of the workspace's new steps wait by default
/// (`None`: no deadline); returns the workspace.
pub async fn set_decision_timeout(
    store: &Store,
    id_or_name: &str,
    timeout_ms: Option<i64>,
) -> Result<Workspace> {
    store
        .transaction(async |db| {
            let workspace = model::find_workspace(db, id_or_name)
                .await?
                .ok_or_else(|| Error::not_found(format!("workspace `{id_or_name}`")))?;
            model::set_decision_timeout(db, &workspace.id, timeout_ms).await?;
            Ok(workspace)
        })
        .await
}

/// The workspace's default deadline of approvals and questions (`None`: no deadline).
pub async fn decision_timeout(store: &Store, workspace_id: &str) -> Result<Option<i64>> {
    store
        .read(async |db| {
            let timeout = model::decision_timeout_of(db, workspace_id).await;
            Ok(timeout
                .get(db)
                .await?
                .ok_or(diesel::result::Error::NotFound)?)
        })
        .await
}

pub async fn add_member(
    store: &Store,
    workspace_id: &str,
    email: &str,
    name: Option<&str>,
    role: Role,
) -> Result<Member> {
    let email = email.trim().to_lowercase();
    if !looks_like_email(&email) {
        return Err(Error::invalid_field(
            "email",
            format!("`{email}` is not an email address"),
        ));
    }
    let name = name
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| email.split('@').next().unwrap_or(""));
    let row = Member {
        id: new_id(),
        workspace_id: workspace_id.to_string(),
        email: email.clone(),
        name: name.to_string(),
        role: role.as_str().to_string(),
        created_at: now_ms(),
    };
    store
        .transaction(async |db| {
            if model::find_member(db, workspace_id, &email)
                .await?
                .is_some()
            {
                return Err(Error::conflict(format!(
                    "{email} is already a member of this workspace"
                )));
            }
            model::insert_member(db, &row).await?;
            Ok(())
        })
        .await?;
    Ok(row)
}

pub async fn list_members(store: &Store, workspace_id: &str) -> Result<Vec<Member>> {
    store
        .read(async |db| Ok(model::list_members(db, workspace_id).await?))
        .await
}

/// A member by id or email, or `not_found`.
pub async fn find_member(store: &Store, workspace_id: &str, id_or_email: &str) -> Result<Member> {
    store
        .read(async |db| {
            model::find_member(db, workspace_id, id_or_email)
                .await?
                .ok_or_else(|| Error::not_found(format!("member `{id_or_email}`")))
        })
        .await
}

/// Invites a member by email with a role (owners and admins; only an owner invites an
/// owner).
pub async fn invite_member(
    store: &Store,
    actor: &Actor,
    email: &str,
    name: Option<&str>,
    role: Role,
) -> Result<Member> {
    authority::may_set_role(actor, Role::Member, role)?;
    add_member(store, actor.workspace_id(), email, name, role).await
}

/// Changes a member's role (owners and admins; only an owner makes or unmakes owners).
/// The last owner stays an owner.
pub async fn change_role(
    store: &Store,
    actor: &Actor,
    id_or_email: &str,
    role: Role,
) -> Result<Member> {
    authority::may_manage_members(actor)?;
    let workspace_id = actor.workspace_id();
    store
        .transaction(async |db| {
            model::lock_workspace(db, workspace_id).await?;
            let member = model::find_member(db, workspace_id, id_or_email)
                .await?
                .ok_or_else(|| Error::not_found(format!("member `{id_or_email}`")))?;
            let from: Role = member.role.parse()?;
            authority::may_set_role(actor, from, role)?;
            if from == Role::Owner && role != Role::Owner {
                check_not_last_owner(db, &member).await?;
            }
            model::set_role(db, &member.id, role.as_str()).await?;
            Ok(Member {
                role: role.as_str().to_string(),
                ..member
            })
        })
        .await
}

/// Removes a member: their API keys go, their agents go with their tokens (live sessions
/// on every hub are closed), approvals waiting for them are re-routed to the step's other
/// approvers or to the task's creator, and questions asked of them go to the task's
/// creator (see [`crate::approvals::reroute_from`]). The last owner cannot be removed.
/// `actor` is `None` for an operator (the admin CLI).
pub async fn remove_member(
    ctx: &Ctx,
    actor: Option<&Actor>,
    workspace_id: &str,
    id_or_email: &str,
) -> Result<Member> {
    if let Some(actor) = actor {
        authority::may_manage_members(actor)?;
    }
    let mut outbox = crate::events::Outbox::default();
    let (member, token_hashes) = ctx
        .store
        .transaction(async |db| {
            // Two owners removing each other at once must not both succeed.
            model::lock_workspace(db, workspace_id).await?;
            let member = model::find_member(db, workspace_id, id_or_email)
                .await?
                .ok_or_else(|| Error::not_found(format!("member `{id_or_email}`")))?;
            let role: Role = member.role.parse()?;
            if let Some(actor) = actor {
                authority::may_set_role(actor, role, Role::Member)?;
            }
            if role == Role::Owner {
                check_not_last_owner(db, &member).await?;
            }
            let by = match actor {
                Some(actor) => crate::tasks::By::actor(actor),
                None => crate::tasks::By::hub(),
            };
            crate::approvals::reroute_from(db, &mut outbox, &member, &by).await?;
            // Their agents' token rows go with them: keep the hashes for the watchers.
            let now = now_ms();
            let token_hashes =
                crate::agents::model::active_token_hashes_of_member(db, &member.id).await?;
            crate::agents::model::insert_revoked_hashes(db, &token_hashes, now).await?;
            model::delete_member(db, &member.id).await?;
            outbox.flush(db, workspace_id).await?;
            Ok::<_, Error>((member, token_hashes))
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    crate::agents::close_sessions(ctx, &token_hashes);
    Ok(member)
}

async fn check_not_last_owner(db: &mut crate::store::Db<'_>, member: &Member) -> Result<()> {
    let owners = model::list_members(db, &member.workspace_id)
        .await?
        .into_iter()
        .filter(|other| other.role == Role::Owner.as_str())
        .count();
    if owners <= 1 {
        return Err(Error::conflict(format!(
            "{} is the last owner of the workspace",
            member.email
        )));
    }
    Ok(())
}

/// What a new API key is for.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub name: Option<&'a str>,
    pub scopes: Scopes,
    /// Unix ms after which the key is refused like a revoked one.
    pub expires_at: Option<i64>,
}

/// An API key with every scope and no expiry, for a member (the admin CLI).
pub async fn create_api_key(
    store: &Store,
    workspace_id: &str,
    member_id_or_email: &str,
    name: Option<&str>,
) -> Result<CreatedApiKey> {
    let new = NewApiKey {
        name,
        scopes: Scopes::ALL,
        expires_at: None,
    };
    insert_api_key(store, workspace_id, member_id_or_email, new).await
}

/// An API key of the caller's own, with the given scopes (at most the caller's own) and
/// expiry.
pub async fn create_own_api_key(
    store: &Store,
    actor: &Actor,
    new: NewApiKey<'_>,
) -> Result<CreatedApiKey> {
    let Actor::Member(member) = actor else {
        return Err(Error::forbidden(
            "an agent token cannot manage API keys; use a member's API key",
        ));
    };
    for scope in Scope::ALL {
        if new.scopes.has(scope) && !member.scopes.has(scope) {
            return Err(Error::forbidden(format!(
                "this API key lacks the `{scope}` scope, so it cannot give it to a new key"
            )));
        }
    }
    if let Some(name) = new.name
        && (name.trim().is_empty() || name.len() > 100)
    {
        return Err(Error::invalid_field(
            "name",
            "a key name is 1-100 characters",
        ));
    }
    if new.expires_at.is_some_and(|at| at <= now_ms()) {
        return Err(Error::invalid_field(
            "expires_at",
            "the expiry must be in the future",
        ));
    }
    insert_api_key(store, &member.workspace_id, &member.member_id, new).await
}

async fn insert_api_key(
    store: &Store,
    workspace_id: &str,
    member_id_or_email: &str,
    new: NewApiKey<'_>,
) -> Result<CreatedApiKey> {
    let token = token::generate(token::API_KEY_PREFIX);
    store
        .transaction(async |db| {
            let member = model::find_member(db, workspace_id, member_id_or_email)
                .await?
                .ok_or_else(|| Error::not_found(format!("member `{member_id_or_email}`")))?;
            let key = ApiKey {
                id: new_id(),
                workspace_id: workspace_id.to_string(),
                member_id: member.id.clone(),
                name: new.name.map(str::trim).unwrap_or("default").to_string(),
                token_hash: token.hash.clone(),
                token_prefix: token.display_prefix.clone(),
                created_at: now_ms(),
                last_used_at: None,
                revoked_at: None,
                expires_at: new.expires_at,
                scopes: new.scopes.to_stored(),
            };
            model::insert_api_key(db, &key).await?;
            Ok(CreatedApiKey {
                key,
                secret: token.secret.clone(),
            })
        })
        .await
}

pub async fn list_api_keys(store: &Store, workspace_id: &str) -> Result<Vec<ApiKey>> {
    store
        .read(async |db| Ok(model::list_api_keys(db, workspace_id).await?))
        .await
}

/// The caller's own API keys, or every key of the workspace for owners and admins.
pub async fn list_api_keys_for(store: &Store, actor: &Actor) -> Result<Vec<ApiKey>> {
    if let Actor::Agent(_) = actor {
        return Err(Error::forbidden(
            "an agent token cannot manage API keys; use a member's API key",
        ));
    }
    let keys = list_api_keys(store, actor.workspace_id()).await?;
    if authority::sees_all_keys(actor) {
        return Ok(keys);
    }
    Ok(keys
        .into_iter()
        .filter(|key| key.member_id == actor.member_id())
        .collect())
}

pub async fn revoke_api_key(store: &Store, workspace_id: &str, key_id: &str) -> Result<()> {
    let n_rows = store
        .transaction(async |db| {
            Ok::<_, Error>(model::revoke_api_key(db, workspace_id, key_id, now_ms()).await?)
        })
        .await?;
    if n_rows == 0 {
        return Err(Error::not_found(format!("active API key `{key_id}`")));
    }
    Ok(())
}

/// Revokes one of the caller's keys (owners and admins: any key of the workspace).
pub async fn revoke_api_key_as(store: &Store, actor: &Actor, key_id: &str) -> Result<()> {
    let workspace_id = actor.workspace_id();
    store
        .transaction(async |db| {
            let key = model::find_api_key(db, workspace_id, key_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("API key `{key_id}`")))?;
            authority::may_manage_key(actor, &key)?;
            if model::revoke_api_key(db, workspace_id, key_id, now_ms()).await? == 0 {
                return Err(Error::conflict("this API key is already revoked"));
            }
            Ok(())
        })
        .await
}

/// How stale `last_used_at` may get before a request writes it again.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// The member behind an API key; `unauthorized` for unknown, revoked or expired keys.
pub async fn authenticate_api_key(store: &Store, secret: &str) -> Result<MemberActor> {
    let unauthorized = || Error::Unauthorized("invalid or revoked API key".into());
    if !token::has_shape(secret, token::API_KEY_PREFIX) {
        return Err(unauthorized());
    }
    let hash = token::hash(secret);
    let (key, member) = store
        .read(async |db| Ok::<_, Error>(model::find_api_key_by_hash(db, &hash).await?))
        .await?
        .ok_or_else(unauthorized)?;
    let now = now_ms();
    if key.revoked_at.is_some() || key.expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(unauthorized());
    }
    if key
        .last_used_at
        .is_none_or(|last_used| now - last_used > LAST_USED_GRANULARITY_MS)
    {
        store
            .transaction(async |db| Ok::<_, Error>(model::touch_api_key(db, &key.id, now).await?))
            .await?;
    }
    Ok(MemberActor {
        workspace_id: member.workspace_id,
        member_id: member.id,
        email: member.email,
        role: member.role.parse()?,
        scopes: Scopes::from_stored(&key.scopes),
    })
}

fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
}
