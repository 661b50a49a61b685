//! Rows and queries of the event outbox and the per-audience sequence counters.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::upsert::excluded;
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

/// Reserves the next sequence numbers of several audiences: for each (audience id, count)
/// the first of its `count` new numbers, by audience id. The counter rows are updated in
/// the caller's transaction, so numbers are gap-free: on PostgreSQL in one statement, in
/// the order given (sort it, so concurrent transactions lock them in one order); in a
/// SQLite writer's group by the connection, which writes them as the group commits.
pub async fn reserve_seqs(
    db: &mut Db<'_>,
    counts: &[(&str, i64)],
) -> QueryResult<HashMap<String, i64>> {
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    if let Db::Sqlite(conn) = db.reborrow()
        && let Some(firsts) = conn.reserve_seqs(counts)?
    {
        // The writer's group keeps the counters and writes them as it commits.
        return Ok(firsts);
    }
    let rows: Vec<_> = counts
        .iter()
        .map(|(audience_id, count)| {
            (
                audience_seqs::audience_id.eq(audience_id.to_string()),
                audience_seqs::last_seq.eq(*count),
            )
        })
        .collect();
    let lasts: Vec<(String, i64)> = match db.reborrow() {
        Db::Sqlite(conn) => {
            // Outside a writer's group: one cached single-row upsert per audience (see `insert_rows_deferred!`).
            let mut lasts = Vec::with_capacity(rows.len());
            for row in rows {
                lasts.push(
                    diesel::insert_into(audience_seqs::table)
                        .values(row)
                        .on_conflict(audience_seqs::audience_id)
                        .do_update()
                        .set(
                            audience_seqs::last_seq
                                .eq(audience_seqs::last_seq + excluded(audience_seqs::last_seq)),
                        )
                        .returning((audience_seqs::audience_id, audience_seqs::last_seq))
                        .get_result(conn)
                        .await?,
                );
            }
            lasts
        }
        Db::Postgres(conn) => {
            diesel::insert_into(audience_seqs::table)
                .values(rows)
                .on_conflict(audience_seqs::audience_id)
                .do_update()
                .set(
                    audience_seqs::last_seq
                        .eq(audience_seqs::last_seq + excluded(audience_seqs::last_seq)),
                )
                .returning((audience_seqs::audience_id, audience_seqs::last_seq))
                .get_results(conn)
                .await?
        }
    };
    let count_of: HashMap<&str, i64> = counts.iter().copied().collect();
    let mut firsts = HashMap::with_capacity(lasts.len());
    for (audience_id, last) in lasts {
        let count = count_of.get(audience_id.as_str()).copied().unwrap_or(0);
        firsts.insert(audience_id, last - count + 1);
    }
    Ok(firsts)
}

/// Writes outbox rows: one statement per [`crate::store::ROWS_PER_INSERT`] rows.
pub async fn insert_events(db: &mut Db<'_>, rows: Vec<EventRow>) -> QueryResult<()> {
    // On SQLite the writer's open group keeps them, to insert them all as it commits.
    let rows = match db.reborrow() {
        Db::Sqlite(conn) => match conn.keep_events(rows) {
            Some(rows) => rows,
            None => return Ok(()),
        },
        Db::Postgres(_) => rows,
    };
    crate::insert_rows_deferred!(db, events::table, rows)
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

/// The last number given in `audience_id`'s feed (0 before its first): what a cursor
/// created now starts after.
pub async fn last_seq(db: &mut Db<'_>, audience_id: &str) -> QueryResult<i64> {
    // On SQLite the writer's open group numbers in memory until its commit.
    if let Db::Sqlite(conn) = db.reborrow()
        && let Some(last) = conn.last_seq_in_group(audience_id)
    {
        return Ok(last);
    }
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
