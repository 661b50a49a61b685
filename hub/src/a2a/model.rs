//! Rows and queries of the A2A bridge: the skills agents publish, what a task's A2A
//! view reads besides the task (its open questions and its approvals), and the calls
//! of steps delegated to outside A2A agents.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::agents::Agent;
use crate::approvals::{Approval, InputRequest};
use crate::schema::{a2a_calls, a2a_skills, agents, approvals, input_requests, steps, tasks};
use crate::store::Db;
use crate::tasks::model::Step;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = a2a_skills, treat_none_as_default_value = false)]
pub struct SkillRow {
    pub agent_id: String,
    pub workspace_id: String,
    pub description: String,
    /// JSON array of example requests.
    pub examples: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SkillRow {
    pub fn example_list(&self) -> Vec<String> {
        serde_json::from_str(&self.examples).unwrap_or_default()
    }
}

/// Inserts the skill, or replaces its description and examples.
pub async fn upsert_skill(db: &mut Db<'_>, row: &SkillRow) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(a2a_skills::table)
        .values(row)
        .on_conflict(a2a_skills::agent_id)
        .do_update()
        .set((
            a2a_skills::description.eq(&row.description),
            a2a_skills::examples.eq(&row.examples),
            a2a_skills::updated_at.eq(row.updated_at),
        ))
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn delete_skill(db: &mut Db<'_>, agent_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::delete(
        a2a_skills::table.filter(a2a_skills::agent_id.eq(agent_id))
    )
    .execute(conn)
    .await)
}

/// The skills of a workspace with their agents, by agent name.
pub async fn skills_of_workspace(
    db: &mut Db<'_>,
    workspace_id: &str,
) -> QueryResult<Vec<(SkillRow, Agent)>> {
    crate::db!(db, |conn| a2a_skills::table
        .inner_join(agents::table)
        .filter(a2a_skills::workspace_id.eq(workspace_id))
        .order(agents::name.asc())
        .select((SkillRow::as_select(), Agent::as_select()))
        .load(conn)
        .await)
}

pub async fn skill_of_agent(db: &mut Db<'_>, agent_id: &str) -> QueryResult<Option<SkillRow>> {
    crate::db!(db, |conn| a2a_skills::table
        .filter(a2a_skills::agent_id.eq(agent_id))
        .select(SkillRow::as_select())
        .first(conn)
        .await
        .optional())
}

/// Every question asked on these steps, oldest first.
pub async fn questions_of_steps(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<InputRequest>> {
    if step_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::db!(db, |conn| input_requests::table
        .filter(input_requests::step_id.eq_any(step_ids))
        .order((input_requests::created_at.asc(), input_requests::id.asc()))
        .select(InputRequest::as_select())
        .load(conn)
        .await)
}

/// Every approval of these steps, oldest first.
pub async fn approvals_of_steps(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<Approval>> {
    if step_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::db!(db, |conn| approvals::table
        .filter(approvals::step_id.eq_any(step_ids))
        .order((approvals::created_at.asc(), approvals::id.asc()))
        .select(Approval::as_select())
        .load(conn)
        .await)
}

/// A step delegated to an outside A2A agent, at one attempt.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = a2a_calls, treat_none_as_default_value = false)]
pub struct CallRow {
    pub step_id: String,
    pub attempt: i32,
    pub workspace_id: String,
    pub agent_id: String,
    pub agent_card_url: String,
    pub endpoint: Option<String>,
    pub remote_task_id: Option<String>,
    pub input_request_id: Option<String>,
    pub answered_status: Option<String>,
    pub follower: Option<String>,
    pub follow_until: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// What a follower records about its call (`None`: left as it is).
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = a2a_calls)]
pub struct CallChange {
    pub endpoint: Option<Option<String>>,
    pub remote_task_id: Option<Option<String>>,
    pub input_request_id: Option<Option<String>>,
    pub answered_status: Option<Option<String>>,
    pub finished_at: Option<Option<i64>>,
}

/// Inserts a call; an existing row of the same step and attempt is left as it is.
pub async fn insert_call(db: &mut Db<'_>, row: &CallRow) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(a2a_calls::table)
        .values(row)
        .on_conflict((a2a_calls::step_id, a2a_calls::attempt))
        .do_nothing()
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn find_call(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
) -> QueryResult<Option<CallRow>> {
    crate::db!(db, |conn| a2a_calls::table
        .filter(a2a_calls::step_id.eq(step_id))
        .filter(a2a_calls::attempt.eq(attempt))
        .select(CallRow::as_select())
        .first(conn)
        .await
        .optional())
}

/// The condition of the partial index `idx_steps_a2a` (the `a2a` executor), as SQL: a
/// query finds that index through this text, not through a bound value, which neither
/// SQLite nor a generic PostgreSQL plan can match against the index's condition.
const A2A_STEP: &str = concat!("steps.executor = '", crate::a2a::executor!(), "'");

/// Ready steps of active tasks that name the `a2a` executor, oldest first: read from the
/// partial index of those steps, so the look costs nothing however many others are ready.
pub async fn ready_a2a_steps(db: &mut Db<'_>, limit: i64) -> QueryResult<Vec<Step>> {
    crate::db!(db, |conn| steps::table
        .inner_join(tasks::table.on(tasks::id.eq(steps::task_id)))
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(A2A_STEP))
        .filter(steps::status.eq("ready"))
        .filter(tasks::status.eq("active"))
        .order(steps::id.asc())
        .limit(limit)
        .select(Step::as_select())
        .load(conn)
        .await)
}

/// Unfinished calls nobody follows: never taken, or their follower's time ran out.
pub async fn orphaned_calls(db: &mut Db<'_>, now: i64, limit: i64) -> QueryResult<Vec<CallRow>> {
    crate::db!(db, |conn| a2a_calls::table
        .filter(a2a_calls::finished_at.is_null())
        .filter(a2a_calls::follow_until.lt(now))
        .order(a2a_calls::follow_until.asc())
        .limit(limit)
        .select(CallRow::as_select())
        .load(conn)
        .await)
}

/// Takes or renews the following of an unfinished call for `owner` until `until`: only
/// when nobody follows it, its follower's time ran out, or `owner` follows it already.
/// One conditional update, so of hubs racing for it exactly one wins.
pub async fn follow_call(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
    owner: &str,
    now: i64,
    until: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| diesel::update(
        a2a_calls::table
            .filter(a2a_calls::step_id.eq(step_id))
            .filter(a2a_calls::attempt.eq(attempt))
            .filter(a2a_calls::finished_at.is_null())
            .filter(
                a2a_calls::follower
                    .is_null()
                    .or(a2a_calls::follow_until.lt(now))
                    .or(a2a_calls::follower.eq(owner))
            )
    )
    .set((
        a2a_calls::follower.eq(owner),
        a2a_calls::follow_until.eq(until),
    ))
    .execute(conn)
    .await)?;
    Ok(n_rows == 1)
}

/// Records `change` while `owner` follows the call; `false` when it does not.
pub async fn update_call(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
    owner: &str,
    change: &CallChange,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| diesel::update(
        a2a_calls::table
            .filter(a2a_calls::step_id.eq(step_id))
            .filter(a2a_calls::attempt.eq(attempt))
            .filter(a2a_calls::follower.eq(owner))
    )
    .set(change)
    .execute(conn)
    .await)?;
    Ok(n_rows == 1)
}

/// Gives the following of a call up, so another hub takes it at once.
pub async fn release_call(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
    owner: &str,
) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::update(
        a2a_calls::table
            .filter(a2a_calls::step_id.eq(step_id))
            .filter(a2a_calls::attempt.eq(attempt))
            .filter(a2a_calls::follower.eq(owner))
    )
    .set((
        a2a_calls::follower.eq(None::<String>),
        a2a_calls::follow_until.eq(0),
    ))
    .execute(conn)
    .await)?;
    Ok(())
}
