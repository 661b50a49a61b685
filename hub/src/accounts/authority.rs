//! Who may do what, in one place. Domain functions call these before they change
//! anything, so REST, the agent protocol and the admin CLI (which acts as an owner) share
//! the same rules:
//!
//! - create a task: any member, and their agents;
//! - steer a task (publish, cancel, pause, resume, retry a step, change its workflow):
//!   its creator (the member, or an agent bound to them), an owner or an admin;
//! - decide an approval: a listed approver; answer a question: the member asked;
//! - manage members and roles, and other members' API keys: an owner or an admin (only an
//!   owner makes or unmakes owners), with an API key that has the `admin` scope;
//! - manage webhooks and read their deliveries: an owner or an admin, with an API key
//!   that has the `admin` scope;
//! - register an agent, rotate or revoke its token: its bound member, an owner or an
//!   admin (an admin for someone else's agent with the `admin` scope);
//! - an agent token acts as its agent on the steps assigned to it, and for its bound
//!   member on tasks; it never manages members, API keys or agents.

use std::fmt;
use std::str::FromStr;

use crate::accounts::{Actor, ApiKey, Role};
use crate::agents::Agent;
use crate::error::{Error, Result};
use crate::tasks::Task;

/// What an API key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GET` routes.
    Read,
    /// Every other route: tasks, steps, approvals, answers, uploads, one's own keys and
    /// agents.
    Write,
    /// Managing members, and other members' keys and agents (with an owner or admin role).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| {
                Error::invalid_field(
                    "scopes",
                    format!("unknown scope `{text}`; use read, write or admin"),
                )
            })
    }
}

/// The scopes of an API key (a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    read: bool,
    write: bool,
    admin: bool,
}

impl Scopes {
    /// Every scope: keys made by the admin CLI, agent tokens.
    pub const ALL: Scopes = Scopes {
        read: true,
        write: true,
        admin: true,
    };

    /// The scopes named in `names`: at least one, each known.
    pub fn parse(names: &[String]) -> Result<Scopes> {
        if names.is_empty() {
            return Err(Error::invalid_field(
                "scopes",
                "an API key needs at least one scope: read, write or admin",
            ));
        }
        let mut scopes = Scopes {
            read: false,
            write: false,
            admin: false,
        };
        for name in names {
            match name.parse::<Scope>()? {
                Scope::Read => scopes.read = true,
                Scope::Write => scopes.write = true,
                Scope::Admin => scopes.admin = true,
            }
        }
        Ok(scopes)
    }

    /// The stored form (a JSON array); an unreadable one grants nothing.
    pub fn from_stored(text: &str) -> Scopes {
        let names: Vec<String> = serde_json::from_str(text).unwrap_or_default();
        Scopes::parse(&names).unwrap_or(Scopes {
            read: false,
            write: false,
            admin: false,
        })
    }

    pub fn to_stored(self) -> String {
        serde_json::to_string(&self.names()).unwrap_or_default()
    }

    pub fn has(self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.read,
            Scope::Write => self.write,
            Scope::Admin => self.admin,
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|scope| self.has(*scope))
            .map(Scope::as_str)
            .collect()
    }
}

/// `forbidden` unless the caller's credential carries `scope` (agent tokens carry
/// `read` and `write`).
pub fn require_scope(actor: &Actor, scope: Scope) -> Result<()> {
    let granted = match actor {
        Actor::Member(member) => member.scopes.has(scope),
        Actor::Agent(_) => scope != Scope::Admin,
    };
    if granted {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "this API key lacks the `{scope}` scope"
    )))
}

/// The role of the member acting (an agent acts with its bound member's role).
pub fn role_of(actor: &Actor) -> Role {
    match actor {
        Actor::Member(member) => member.role,
        Actor::Agent(agent) => agent.role,
    }
}

/// The task's creator (the member, or an agent bound to them), an owner or an admin may
/// steer a task; anyone else gets `forbidden`.
pub fn may_steer(actor: &Actor, task: &Task) -> Result<()> {
    if task.creator_member_id.as_deref() == Some(actor.member_id()) || role_of(actor).is_admin() {
        return Ok(());
    }
    Err(Error::forbidden(
        "only the task's creator or a workspace owner or admin may do this",
    ))
}

/// Owners and admins manage members, roles and others' API keys, with a member's API key
/// that has the `admin` scope; never through an agent token.
pub fn may_manage_members(actor: &Actor) -> Result<()> {
    let Actor::Member(member) = actor else {
        return Err(Error::forbidden(
            "an agent token cannot manage members or API keys; use a member's API key",
        ));
    };
    if !member.role.is_admin() {
        return Err(Error::forbidden(
            "only a workspace owner or admin may manage members",
        ));
    }
    require_scope(actor, Scope::Admin)
}

/// Owners and admins manage the workspace's webhooks (their URLs, secrets and delivery
/// logs), with a member's API key that has the `admin` scope; never through an agent
/// token.
pub fn may_manage_webhooks(actor: &Actor) -> Result<()> {
    let Actor::Member(member) = actor else {
        return Err(Error::forbidden(
            "an agent token cannot manage webhooks; use a member's API key",
        ));
    };
    if !member.role.is_admin() {
        return Err(Error::forbidden(
            "only a workspace owner or admin may manage webhooks",
        ));
    }
    require_scope(actor, Scope::Admin)
}

/// Giving or taking the owner role is for owners only (on top of [`may_manage_members`]).
pub fn may_set_role(actor: &Actor, from: Role, to: Role) -> Result<()> {
    may_manage_members(actor)?;
    if (from == Role::Owner || to == Role::Owner) && role_of(actor) != Role::Owner {
        return Err(Error::forbidden("only an owner may make or unmake owners"));
    }
    Ok(())
}

/// A member manages their own API keys; owners and admins those of everyone.
pub fn may_manage_key(actor: &Actor, key: &ApiKey) -> Result<()> {
    match actor {
        Actor::Agent(_) => Err(Error::forbidden(
            "an agent token cannot manage API keys; use a member's API key",
        )),
        Actor::Member(member) if member.member_id == key.member_id => Ok(()),
        Actor::Member(_) => may_manage_members(actor),
    }
}

/// Whether the caller sees every API key of the workspace (owners and admins with the
/// `admin` scope) or only their own.
pub fn sees_all_keys(actor: &Actor) -> bool {
    may_manage_members(actor).is_ok()
}

/// A member registers agents bound to themselves; agent tokens register none.
pub fn may_register_agent(actor: &Actor) -> Result<()> {
    match actor {
        Actor::Agent(_) => Err(Error::forbidden(
            "an agent token cannot register agents; use a member's API key",
        )),
        Actor::Member(_) => Ok(()),
    }
}

/// An agent and its tokens are managed by its bound member, or by an owner or admin.
pub fn may_manage_agent(actor: &Actor, agent: &Agent) -> Result<()> {
    match actor {
        Actor::Agent(_) => Err(Error::forbidden(
            "an agent token cannot manage agents; use a member's API key",
        )),
        Actor::Member(member) if member.member_id == agent.owner_member_id => Ok(()),
        Actor::Member(member) if member.role.is_admin() => require_scope(actor, Scope::Admin),
        Actor::Member(_) => Err(Error::forbidden(
            "only the agent's member or a workspace owner or admin may manage this agent",
        )),
    }
}

/// Only the listed approver of an approval decides it (through their agents too).
pub fn may_decide(actor: &Actor, approver_member_id: &str) -> Result<()> {
    if approver_member_id == actor.member_id() {
        return Ok(());
    }
    Err(Error::forbidden(
        "only a listed approver of this step may decide",
    ))
}

/// Only the member asked answers a question (through their agents too); owners and
/// admins included, until the question's deadline escalated it to them.
pub fn may_answer(actor: &Actor, asked_member_id: &str, escalated: bool) -> Result<()> {
    if asked_member_id == actor.member_id() || (escalated && role_of(actor).is_admin()) {
        return Ok(());
    }
    Err(Error::forbidden(
        "this question was asked of another member; only they may answer it",
    ))
}
