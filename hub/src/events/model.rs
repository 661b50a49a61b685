//! Rows and queries of the event outbox and the per-audience sequence counters.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::{audience_seqs, events, steps, tasks};
use crate::store::Db;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct EventRow {
    pub audience_id: String,
    pub seq: i64,
    pub workspace_id: String,
    pub audience_kind: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
}

/// Reserves the next `count` sequence numbers of an audience and returns the first.
/// The counter row is updated in the caller's transaction, so numbers are gap-free.
pub async fn reserve_seqs(db: &mut Db<'_>, audience_id: &str, count: i64) -> QueryResult<i64> {
    let last: i64 = crate::db!(db, |conn| {
        diesel::insert_into(audience_seqs::table)
            .values((
                audience_seqs::audience_id.eq(audience_id),
                audience_seqs::last_seq.eq(count),
            ))
            .on_conflict(audience_seqs::audience_id)
            .do_update()
            .set(audience_seqs::last_seq.eq(audience_seqs::last_seq + count))
            .returning(audience_seqs::last_seq)
            .get_result(conn)
            .await
    })?;
    Ok(last - count + 1)
}

pub async fn insert_events(db: &mut Db<'_>, rows: &[EventRow]) -> QueryResult<()> {
    // One statement per row: diesel has no multi-row VALUES for SQLite through diesel-async.
    for row in rows {
        crate::db!(db, |conn| diesel::insert_into(events::table)
            .values(row)
            .execute(conn)
            .await)?;
    }
    Ok(())
}

pub async fn events_after(
    db: &mut Db<'_>,
    audience_id: &str,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    crate::db!(db, |conn| {
        events::table
            .filter(
                events::audience_id
                    .eq(audience_id)
                    .and(events::seq.gt(after)),
            )
            .order(events::seq.asc())
            .limit(limit)
            .select(EventRow::as_select())
            .load(conn)
            .await
    })
}

pub async fn last_seq(db: &mut Db<'_>, audience_id: &str) -> QueryResult<i64> {
    let last: Option<i64> = crate::db!(db, |conn| {
        audience_seqs::table
            .find(audience_id)
            .select(audience_seqs::last_seq)
            .first(conn)
            .await
            .optional()
    })?;
    Ok(last.unwrap_or(0))
}

/// (step id, task id) of each of `step_ids` that exists.
pub async fn tasks_of_steps(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::id.eq_any(step_ids))
            .select((steps::id, steps::task_id))
            .load(conn)
            .await
    })
}

/// Whether a task exists in a workspace.
pub async fn task_exists(db: &mut Db<'_>, workspace_id: &str, task_id: &str) -> QueryResult<bool> {
    let found: Option<String> = crate::db!(db, |conn| {
        tasks::table
            .filter(
                tasks::id
                    .eq(task_id)
                    .and(tasks::workspace_id.eq(workspace_id)),
            )
            .select(tasks::id)
            .first(conn)
            .await
            .optional()
    })?;
    Ok(found.is_some())
}
