//! Rows and queries of the A2A bridge: the skills agents publish, and what a task's A2A
//! view reads besides the task (its open questions and its approvals).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::agents::Agent;
use crate::approvals::{Approval, InputRequest};
use crate::schema::{a2a_skills, agents, approvals, input_requests};
use crate::store::Db;

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
