//! The agent registry: agents bound to members, their capabilities and concurrency,
//! their tokens, and presence.

pub mod model;
pub mod presence;

use agenthub_protocol::{AgentPresence, ServerFrame};
use uuid::Uuid;

use crate::accounts::token;
use crate::accounts::{self, Actor, AgentActor, authority};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::store::{Store, new_id, now_ms};

pub use model::Agent;
pub use presence::Presence;

/// What to register.
#[derive(Debug, Clone)]
pub struct NewAgent<'a> {
    pub workspace_id: &'a str,
    pub name: &'a str,
    /// Id or email of the member the agent is bound to.
    pub owner: &'a str,
    pub capabilities: &'a [String],
    pub max_concurrency: u32,
}

/// An agent as shown to callers: the row plus presence and what it is doing.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub agent: Agent,
    pub owner_email: String,
    pub online: bool,
    pub state: AgentState,
    pub last_seen_at: Option<i64>,
    /// The steps it holds or whose result awaits approval.
    pub holds: Vec<model::HeldStep>,
}

/// What an agent is doing (DESIGN section 4), derived from the steps it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Offline,
    Idle,
    /// Holds a claimed or running step.
    Working,
    /// Holds a step that waits for its person's answer.
    Blocked,
    /// A result it submitted awaits approval.
    Waiting,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Offline => "offline",
            AgentState::Idle => "idle",
            AgentState::Working => "working",
            AgentState::Blocked => "blocked",
            AgentState::Waiting => "waiting",
        }
    }

    /// The state of an online agent holding steps in `statuses`: what needs a person
    /// first (blocked), then work, then results awaiting approval.
    pub fn of(online: bool, statuses: &[&str]) -> AgentState {
        if !online {
            return AgentState::Offline;
        }
        let holds = |status: &str| statuses.contains(&status);
        if holds("blocked") {
            AgentState::Blocked
        } else if holds("claimed") || holds("running") {
            AgentState::Working
        } else if holds("awaiting_approval") {
            AgentState::Waiting
        } else {
            AgentState::Idle
        }
    }
}

/// A created agent with its first token (shown once).
#[derive(Debug)]
pub struct CreatedAgent {
    pub agent: Agent,
    pub token: String,
    /// The `step.ready` events of the steps assigned to the agent's member that it joined,
    /// to publish.
    pub written: crate::events::Written,
}

pub async fn create_agent(store: &Store, new: NewAgent<'_>) -> Result<CreatedAgent> {
    let name = new.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return Err(Error::invalid_field(
            "name",
            format!("agent name `{name}` must be 1-64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    if new.max_concurrency == 0 || new.max_concurrency > 1024 {
        return Err(Error::invalid_field(
            "max_concurrency",
            "max concurrency must be between 1 and 1024",
        ));
    }
    let new_token = token::generate(token::AGENT_TOKEN_PREFIX);
    store
        .transaction(async |db| {
            let owner = accounts::model::find_member(db, new.workspace_id, new.owner)
                .await?
                .ok_or_else(|| Error::not_found(format!("member `{}`", new.owner)))?;
            if model::find_agent(db, new.workspace_id, name)
                .await?
                .is_some()
            {
                return Err(Error::conflict(format!(
                    "an agent named `{name}` already exists"
                )));
            }
            let now = now_ms();
            let agent = Agent {
                id: new_id(),
                workspace_id: new.workspace_id.to_string(),
                name: name.to_string(),
                owner_member_id: owner.id,
                capabilities: serde_json::to_string(new.capabilities)?,
                max_concurrency: new.max_concurrency as i32,
                status: "idle".into(),
                last_seen_at: None,
                auto_approve: false,
                created_at: now,
            };
            model::insert_agent(db, &agent).await?;
            model::insert_token(db, &token_row(&agent.id, &new_token, now)).await?;
            // A person's new machine joins the steps assigned to the person.
            let mut outbox = Outbox::default();
            crate::tasks::join_member_steps(db, &mut outbox, &agent).await?;
            outbox.flush(db, &agent.workspace_id).await?;
            Ok(CreatedAgent {
                agent,
                token: new_token.secret.clone(),
                written: outbox.into_written(),
            })
        })
        .await
}

fn token_row(agent_id: &str, new_token: &token::NewToken, now: i64) -> model::AgentToken {
    model::AgentToken {
        id: new_id(),
        agent_id: agent_id.to_string(),
        token_hash: new_token.hash.clone(),
        token_prefix: new_token.display_prefix.clone(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    }
}

pub async fn list_agents(
    store: &Store,
    presence: &dyn Presence,
    workspace_id: &str,
) -> Result<Vec<AgentView>> {
    let (agents, members, held) = store
        .read(async |db| {
            let agents = model::list_agents(db, workspace_id).await?;
            let members = accounts::model::list_members(db, workspace_id).await?;
            let held = model::held_steps_in_workspace(db, workspace_id).await?;
            Ok::<_, Error>((agents, members, held))
        })
        .await?;
    Ok(agents
        .into_iter()
        .map(|agent| {
            let owner_email = members
                .iter()
                .find(|member| member.id == agent.owner_member_id)
                .map(|member| member.email.clone())
                .unwrap_or_default();
            view(agent, owner_email, presence, &held)
        })
        .collect())
}

pub async fn get_agent(
    store: &Store,
    presence: &dyn Presence,
    workspace_id: &str,
    id_or_name: &str,
) -> Result<AgentView> {
    let (agent, owner, held) = store
        .read(async |db| {
            let agent = model::find_agent(db, workspace_id, id_or_name)
                .await?
                .ok_or_else(|| Error::not_found(format!("agent `{id_or_name}`")))?;
            let owner = accounts::model::get_member(db, &agent.owner_member_id).await?;
            let held = model::held_steps_of(db, &agent.id).await?;
            Ok::<_, Error>((agent, owner, held))
        })
        .await?;
    Ok(view(agent, owner.email, presence, &held))
}

/// A hub renews `last_seen_at` of its connected agents this often.
pub const PRESENCE_REFRESH_MS: i64 = 15_000;
/// An agent marked online but not renewed for this long belongs to a hub that is gone.
pub const PRESENCE_TTL_MS: i64 = 3 * PRESENCE_REFRESH_MS;

/// Whether a hub (any hub) holds a session of the agent, by its row: marked online and
/// renewed within [`PRESENCE_TTL_MS`]. This hub's own sessions are in [`Presence`].
pub fn online_by_row(agent: &Agent) -> bool {
    agent.status == "online"
        && agent
            .last_seen_at
            .is_some_and(|seen| now_ms() - seen < PRESENCE_TTL_MS)
}

/// Online when it has a session on this hub, or on another hub that renewed it lately.
/// `held`: the steps agents hold (of this agent and maybe others).
fn view(
    agent: Agent,
    owner_email: String,
    presence: &dyn Presence,
    held: &[model::HeldStep],
) -> AgentView {
    let online = presence.is_online(&agent.id) || online_by_row(&agent);
    let holds: Vec<model::HeldStep> = held
        .iter()
        .filter(|step| step.agent_id == agent.id)
        .cloned()
        .collect();
    let statuses: Vec<&str> = holds.iter().map(|step| step.status.as_str()).collect();
    let state = AgentState::of(online, &statuses);
    // The row is renewed while connected; this hub's entry dates from the session's start.
    let last_seen_at = presence.last_seen(&agent.id).max(agent.last_seen_at);
    AgentView {
        agent,
        owner_email,
        online,
        state,
        last_seen_at,
        holds,
    }
}

/// Registers an agent bound to the caller (a member's API key); its token is shown once.
pub async fn register_agent(
    ctx: &Ctx,
    actor: &Actor,
    name: &str,
    capabilities: &[String],
    max_concurrency: u32,
) -> Result<CreatedAgent> {
    authority::may_register_agent(actor)?;
    let created = create_agent(
        &ctx.store,
        NewAgent {
            workspace_id: actor.workspace_id(),
            name,
            owner: actor.member_id(),
            capabilities,
            max_concurrency,
        },
    )
    .await?;
    ctx.publish(created.written.clone()).await;
    Ok(created)
}

/// Revokes every token of an agent (its bound member, an owner or an admin) and closes
/// its live sessions; with `reissue`, returns a fresh token (shown once).
pub async fn revoke_tokens_as(
    ctx: &Ctx,
    actor: &Actor,
    id_or_name: &str,
    reissue: bool,
) -> Result<(Agent, Option<String>)> {
    let workspace_id = actor.workspace_id();
    let new_token = token::generate(token::AGENT_TOKEN_PREFIX);
    let (agent, hashes, secret) = ctx
        .store
        .transaction(async |db| {
            let agent = model::find_agent(db, workspace_id, id_or_name)
                .await?
                .ok_or_else(|| Error::not_found(format!("agent `{id_or_name}`")))?;
            authority::may_manage_agent(actor, &agent)?;
            let hashes = model::active_token_hashes_of(db, &agent.id).await?;
            let now = now_ms();
            model::revoke_tokens(db, &agent.id, now).await?;
            let secret = if reissue {
                model::insert_token(db, &token_row(&agent.id, &new_token, now)).await?;
                Some(new_token.secret.clone())
            } else {
                None
            };
            Ok::<_, Error>((agent, hashes, secret))
        })
        .await?;
    close_sessions(ctx, &hashes);
    Ok((agent, secret))
}

/// Closes this hub's sessions of the given token hashes at once (`4001`); the other hubs'
/// session watchers close theirs within a few seconds.
pub fn close_sessions(ctx: &Ctx, token_hashes: &[String]) {
    if !token_hashes.is_empty() {
        ctx.presence.close_revoked(token_hashes);
    }
}

/// Revokes every token of the agent; with `reissue`, returns a fresh one.
pub async fn revoke_tokens(
    store: &Store,
    workspace_id: &str,
    id_or_name: &str,
    reissue: bool,
) -> Result<(Agent, usize, Option<String>)> {
    let new_token = token::generate(token::AGENT_TOKEN_PREFIX);
    store
        .transaction(async |db| {
            let agent = model::find_agent(db, workspace_id, id_or_name)
                .await?
                .ok_or_else(|| Error::not_found(format!("agent `{id_or_name}`")))?;
            let now = now_ms();
            let n_revoked = model::revoke_tokens(db, &agent.id, now).await?;
            let secret = if reissue {
                model::insert_token(db, &token_row(&agent.id, &new_token, now)).await?;
                Some(new_token.secret.clone())
            } else {
                None
            };
            Ok((agent, n_revoked, secret))
        })
        .await
}

/// The agent behind a token; `unauthorized` for unknown or revoked tokens.
pub async fn authenticate_token(store: &Store, secret: &str) -> Result<AgentActor> {
    let unauthorized = || Error::Unauthorized("invalid or revoked agent token".into());
    if !token::has_shape(secret, token::AGENT_TOKEN_PREFIX) {
        return Err(unauthorized());
    }
    let hash = token::hash(secret);
    let (agent_token, agent, role) = store
        .read(async |db| Ok::<_, Error>(model::find_token(db, &hash).await?))
        .await?
        .ok_or_else(unauthorized)?;
    if agent_token.revoked_at.is_some() {
        return Err(unauthorized());
    }
    let now = now_ms();
    if agent_token
        .last_used_at
        .is_none_or(|last_used| now - last_used > 60_000)
    {
        store
            .transaction(async |db| {
                Ok::<_, Error>(model::touch_token(db, &agent_token.id, now).await?)
            })
            .await?;
    }
    Ok(AgentActor {
        workspace_id: agent.workspace_id,
        agent_id: agent.id,
        agent_name: agent.name,
        member_id: agent.owner_member_id,
        role: role.parse()?,
    })
}

/// Whether the token still authenticates (used by live sessions to notice revocation).
pub async fn token_is_active(store: &Store, secret: &str) -> Result<bool> {
    let hash = token::hash(secret);
    let found = store
        .read(async |db| Ok::<_, Error>(model::find_token(db, &hash).await?))
        .await?;
    Ok(found.is_some_and(|(agent_token, _, _)| agent_token.revoked_at.is_none()))
}

/// A session of the agent opened (`online`) or closed: records last seen and tells who
/// cares with `agent.online` / `agent.offline`: its owner, the creators of active tasks
/// it works on, and the agents that work on those tasks with it. Presence itself is kept
/// by the gateway.
pub async fn announce_presence(ctx: &Ctx, agent: &AgentActor, online: bool) -> Result<()> {
    let mut outbox = Outbox::default();
    ctx.store
        .transaction(async |db| {
            let status = if online { "online" } else { "offline" };
            model::set_presence(db, &agent.agent_id, status, now_ms()).await?;
            let mut members = model::members_watching(db, &agent.agent_id).await?;
            members.push(agent.member_id.clone());
            members.sort();
            members.dedup();
            let presence = AgentPresence {
                seq: 0,
                agent_id: Uuid::parse_str(&agent.agent_id).unwrap_or_default(),
                name: agent.agent_name.clone(),
            };
            let frame = if online {
                ServerFrame::AgentOnline(presence)
            } else {
                ServerFrame::AgentOffline(presence)
            };
            let mut audiences: Vec<Audience> = members.into_iter().map(Audience::Member).collect();
            audiences.extend(
                model::agents_sharing_active_tasks(db, &agent.agent_id)
                    .await?
                    .into_iter()
                    .map(Audience::Agent),
            );
            outbox.push_all(&audiences, &frame);
            outbox.flush(db, &agent.workspace_id).await
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(())
}

/// Renews the presence of the agents connected to this hub (one statement per 500).
pub async fn refresh_presence(store: &Store, agent_ids: &[String]) -> Result<()> {
    let now = now_ms();
    for chunk in agent_ids.chunks(500) {
        store
            .transaction(async |db| Ok::<_, Error>(model::touch_online(db, chunk, now).await?))
            .await?;
    }
    Ok(())
}

/// Hashes of the tokens revoked at or after `since` (unix ms).
pub async fn revoked_tokens_since(store: &Store, since: i64) -> Result<Vec<String>> {
    store
        .read(async |db| Ok::<_, Error>(model::revoked_since(db, since).await?))
        .await
}
