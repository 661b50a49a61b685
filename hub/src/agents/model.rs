//! Rows and queries of agents and agent tokens.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::{agent_tokens, agents, members, revoked_agent_tokens};
use crate::store::{Ahead, Db};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agents, treat_none_as_default_value = false)]
pub struct Agent {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub owner_member_id: String,
    /// JSON array of labels.
    pub capabilities: String,
    pub max_concurrency: i32,
    pub status: String,
    pub last_seen_at: Option<i64>,
    pub auto_approve: bool,
    pub created_at: i64,
}

impl Agent {
    pub fn capability_list(&self) -> Vec<String> {
        serde_json::from_str(&self.capabilities).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agent_tokens, treat_none_as_default_value = false)]
pub struct AgentToken {
    pub id: String,
    pub agent_id: String,
    pub token_hash: String,
    pub token_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub async fn insert_agent(db: &mut Db<'_>, row: &Agent) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(agents::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn insert_token(db: &mut Db<'_>, row: &AgentToken) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(agent_tokens::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn list_agents(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<Vec<Agent>> {
    crate::db!(db, |conn| {
        agents::table
            .filter(agents::workspace_id.eq(workspace_id))
            .order(agents::name.asc())
            .select(Agent::as_select())
            .load(conn)
            .await
    })
}

/// An agent of the workspace by id or name.
pub async fn find_agent(
    db: &mut Db<'_>,
    workspace_id: &str,
    id_or_name: &str,
) -> QueryResult<Option<Agent>> {
    // Two lookups, each on its own unique index: for `id = ? OR name = ?` PostgreSQL
    // scanned the workspace's `(workspace_id, name)` index, ~100 rows per claim. Ids are
    // UUIDs, so anything else is looked up by name only.
    if uuid::Uuid::parse_str(id_or_name).is_err() {
        return find_agent_by_name(db, workspace_id, id_or_name).await;
    }
    let by_id = crate::db!(db, |conn| {
        agents::table
            .find(id_or_name)
            .filter(agents::workspace_id.eq(workspace_id))
            .select(Agent::as_select())
            .get_result(conn)
            .await
            .optional()
    })?;
    if by_id.is_some() {
        return Ok(by_id);
    }
    find_agent_by_name(db, workspace_id, id_or_name).await
}

async fn find_agent_by_name(
    db: &mut Db<'_>,
    workspace_id: &str,
    name: &str,
) -> QueryResult<Option<Agent>> {
    crate::db!(db, |conn| {
        agents::table
            .filter(agents::workspace_id.eq(workspace_id))
            .filter(agents::name.eq(name))
            .select(Agent::as_select())
            .get_result(conn)
            .await
            .optional()
    })
}

pub async fn agents_of_member(db: &mut Db<'_>, member_id: &str) -> QueryResult<Vec<Agent>> {
    crate::db!(db, |conn| {
        agents::table
            .filter(agents::owner_member_id.eq(member_id))
            .select(Agent::as_select())
            .load(conn)
            .await
    })
}

/// The ids of the agents bound to `member_id`, started ahead ([`ahead!`](crate::ahead)).
pub async fn agent_ids_of_member(db: &mut Db<'_>, member_id: String) -> Ahead<Vec<String>> {
    crate::ahead!(db, |conn| async move {
        agents::table
            .filter(agents::owner_member_id.eq(member_id))
            .select(agents::id)
            .load(conn)
            .await
    })
}

pub async fn agents_by_ids(db: &mut Db<'_>, ids: &[String]) -> QueryResult<Vec<Agent>> {
    // One id with `=`: a statement with an `IN` list is prepared again on every call.
    match ids {
        [] => Ok(Vec::new()),
        [id] => crate::db!(db, |conn| {
            agents::table
                .filter(agents::id.eq(id))
                .select(Agent::as_select())
                .load(conn)
                .await
        }),
        _ => crate::db!(db, |conn| {
            agents::table
                .filter(agents::id.eq_any(ids))
                .order(agents::name.asc())
                .select(Agent::as_select())
                .load(conn)
                .await
        }),
    }
}

/// A token, its agent and the role of the agent's member.
pub async fn find_token(
    db: &mut Db<'_>,
    token_hash: &str,
) -> QueryResult<Option<(AgentToken, Agent, String)>> {
    crate::db!(db, |conn| {
        agent_tokens::table
            .inner_join(agents::table.inner_join(members::table))
            .filter(agent_tokens::token_hash.eq(token_hash))
            .select((AgentToken::as_select(), Agent::as_select(), members::role))
            .first(conn)
            .await
            .optional()
    })
}

/// Hashes of the unrevoked tokens of an agent.
pub async fn active_token_hashes_of(db: &mut Db<'_>, agent_id: &str) -> QueryResult<Vec<String>> {
    crate::db!(db, |conn| {
        agent_tokens::table
            .filter(agent_tokens::agent_id.eq(agent_id))
            .filter(agent_tokens::revoked_at.is_null())
            .select(agent_tokens::token_hash)
            .load(conn)
            .await
    })
}

/// Hashes of the unrevoked tokens of a member's agents.
pub async fn active_token_hashes_of_member(
    db: &mut Db<'_>,
    member_id: &str,
) -> QueryResult<Vec<String>> {
    crate::db!(db, |conn| {
        agent_tokens::table
            .inner_join(agents::table)
            .filter(agents::owner_member_id.eq(member_id))
            .filter(agent_tokens::revoked_at.is_null())
            .select(agent_tokens::token_hash)
            .load(conn)
            .await
    })
}

/// Records token hashes whose rows are about to be deleted, for [`revoked_since`].
pub async fn insert_revoked_hashes(
    db: &mut Db<'_>,
    token_hashes: &[String],
    now: i64,
) -> QueryResult<()> {
    // One statement per row: SQLite takes no multi-row VALUES through diesel-async.
    for hash in token_hashes {
        crate::db!(db, |conn| diesel::insert_into(revoked_agent_tokens::table)
            .values((
                revoked_agent_tokens::token_hash.eq(hash),
                revoked_agent_tokens::revoked_at.eq(now),
            ))
            .execute(conn)
            .await)?;
    }
    Ok(())
}

pub async fn revoke_tokens(db: &mut Db<'_>, agent_id: &str, now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(agent_tokens::table)
            .filter(
                agent_tokens::agent_id
                    .eq(agent_id)
                    .and(agent_tokens::revoked_at.is_null()),
            )
            .set(agent_tokens::revoked_at.eq(now))
            .execute(conn)
            .await
    })
}

pub async fn touch_token(db: &mut Db<'_>, token_id: &str, now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(agent_tokens::table.find(token_id))
            .set(agent_tokens::last_used_at.eq(now))
            .execute(conn)
            .await
    })
}

/// Records a session opening (`online`) or closing (`offline`) and when.
pub async fn set_presence(
    db: &mut Db<'_>,
    agent_id: &str,
    status: &str,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(agents::table.find(agent_id))
            .set((agents::status.eq(status), agents::last_seen_at.eq(now)))
            .execute(conn)
            .await
    })
}

/// Renews `last_seen_at` of agents with a live session.
pub async fn touch_online(db: &mut Db<'_>, agent_ids: &[String], now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(agents::table.filter(agents::id.eq_any(agent_ids)))
            .set((agents::status.eq("online"), agents::last_seen_at.eq(now)))
            .execute(conn)
            .await
    })
}

/// Hashes of tokens revoked at or after `since`, with those deleted with their member.
pub async fn revoked_since(db: &mut Db<'_>, since: i64) -> QueryResult<Vec<String>> {
    let mut hashes: Vec<String> = crate::db!(db, |conn| {
        agent_tokens::table
            .filter(agent_tokens::revoked_at.ge(since))
            .select(agent_tokens::token_hash)
            .load(conn)
            .await
    })?;
    let deleted: Vec<String> = crate::db!(db, |conn| {
        revoked_agent_tokens::table
            .filter(revoked_agent_tokens::revoked_at.ge(since))
            .select(revoked_agent_tokens::token_hash)
            .load(conn)
            .await
    })?;
    hashes.extend(deleted);
    Ok(hashes)
}

/// Members who created active tasks with a step assigned to the agent: the people who
/// want to know when it comes and goes.
pub async fn members_watching(db: &mut Db<'_>, agent_id: &str) -> QueryResult<Vec<String>> {
    use crate::schema::{step_assignees, steps, tasks};
    crate::db!(db, |conn| {
        step_assignees::table
            .inner_join(steps::table.inner_join(tasks::table))
            .filter(step_assignees::agent_id.eq(agent_id))
            .filter(tasks::status.eq("active"))
            .filter(tasks::creator_member_id.is_not_null())
            .select(tasks::creator_member_id.assume_not_null())
            .distinct()
            .load(conn)
            .await
    })
}

/// Statuses in which a step occupies its agent, for the agent's state.
const OCCUPYING: [&str; 4] = ["claimed", "running", "blocked", "awaiting_approval"];

/// A step an agent holds or waits on.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct HeldStep {
    pub agent_id: String,
    pub status: String,
    pub step_id: String,
    pub task_id: String,
    pub title: String,
}

/// Every step an agent of the workspace holds or waits on.
pub async fn held_steps_in_workspace(
    db: &mut Db<'_>,
    workspace_id: &str,
) -> QueryResult<Vec<HeldStep>> {
    use crate::schema::steps;
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::workspace_id.eq(workspace_id))
            .filter(steps::status.eq_any(OCCUPYING))
            .filter(steps::claimed_by.is_not_null())
            .select((
                steps::claimed_by.assume_not_null(),
                steps::status,
                steps::id,
                steps::task_id,
                steps::title,
            ))
            .order(steps::started_at.asc())
            .load(conn)
            .await
    })
}

/// The steps one agent holds or waits on.
pub async fn held_steps_of(db: &mut Db<'_>, agent_id: &str) -> QueryResult<Vec<HeldStep>> {
    use crate::schema::steps;
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::claimed_by.eq(agent_id))
            .filter(steps::status.eq_any(OCCUPYING))
            .select((
                steps::claimed_by.assume_not_null(),
                steps::status,
                steps::id,
                steps::task_id,
                steps::title,
            ))
            .order(steps::started_at.asc())
            .load(conn)
            .await
    })
}

/// The other agents assigned to a step of an active task that `agent_id` is assigned to.
pub async fn agents_sharing_active_tasks(
    db: &mut Db<'_>,
    agent_id: &str,
) -> QueryResult<Vec<String>> {
    use crate::schema::{step_assignees, steps, tasks};
    let task_ids: Vec<String> = crate::db!(db, |conn| {
        step_assignees::table
            .inner_join(steps::table.inner_join(tasks::table))
            .filter(step_assignees::agent_id.eq(agent_id))
            .filter(tasks::status.eq("active"))
            .select(steps::task_id)
            .distinct()
            .load(conn)
            .await
    })?;
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::db!(db, |conn| {
        step_assignees::table
            .inner_join(steps::table)
            .filter(steps::task_id.eq_any(&task_ids))
            .filter(step_assignees::agent_id.ne(agent_id))
            .select(step_assignees::agent_id)
            .distinct()
            .load(conn)
            .await
    })
}
