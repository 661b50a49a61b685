//! Rows and queries of the notification inbox.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::FutureExt;

use crate::schema::{
    agents, approvals, availability_requests, input_requests, meeting_participants, notifications,
    steps,
};
use crate::store::{Ahead, Db, Fixed};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = notifications, treat_none_as_default_value = false)]
pub struct NotificationRow {
    pub id: String,
    pub workspace_id: String,
    pub member_id: String,
    pub kind: String,
    pub priority: String,
    pub task_id: Option<String>,
    pub step_id: Option<String>,
    pub subject_id: Option<String>,
    pub title: String,
    pub body: String,
    /// JSON object.
    pub data: String,
    pub event_seq: Option<i64>,
    pub created_at: i64,
    pub read_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

/// An action item still open, with what decides whether it still waits.
#[derive(Debug, Clone, Queryable)]
pub struct OpenItem {
    pub id: String,
    pub kind: String,
    pub subject_id: Option<String>,
}

/// Which of a member's notifications a read or a bulk change covers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Only unread ones (neither read nor resolved).
    pub unread: bool,
    pub priority: Option<&'a str>,
    /// Only ids below this one (older).
    pub before: Option<&'a str>,
    /// Only ids up to and including this one.
    pub up_to: Option<&'a str>,
}

pub async fn insert(db: &mut Db<'_>, row: &NotificationRow) -> QueryResult<()> {
    crate::insert_deferred!(db, notifications::table, row)
}

/// A member's notifications matching `filter`, newest first, at most `limit`.
pub async fn list(
    db: &mut Db<'_>,
    member_id: &str,
    filter: Filter<'_>,
    limit: i64,
) -> QueryResult<Vec<NotificationRow>> {
    crate::db!(db, |conn| {
        let mut query = notifications::table
            .filter(notifications::member_id.eq(member_id))
            .into_boxed();
        if filter.unread {
            query = query
                .filter(notifications::read_at.is_null())
                .filter(notifications::resolved_at.is_null());
        }
        if let Some(priority) = filter.priority {
            query = query.filter(notifications::priority.eq(priority));
        }
        if let Some(before) = filter.before {
            query = query.filter(notifications::id.lt(before));
        }
        query
            .order(notifications::id.desc())
            .limit(limit)
            .select(NotificationRow::as_select())
            .load(conn)
            .await
    })
}

/// (priority, count) of a member's unread notifications.
pub async fn unread_counts(db: &mut Db<'_>, member_id: &str) -> QueryResult<Vec<(String, i64)>> {
    crate::db!(db, |conn| {
        notifications::table
            .filter(
                notifications::member_id
                    .eq(member_id)
                    .and(notifications::read_at.is_null())
                    .and(notifications::resolved_at.is_null()),
            )
            .group_by(notifications::priority)
            .select((notifications::priority, diesel::dsl::count_star()))
            .load(conn)
            .await
    })
}

pub async fn find(
    db: &mut Db<'_>,
    member_id: &str,
    id: &str,
) -> QueryResult<Option<NotificationRow>> {
    crate::db!(db, |conn| {
        notifications::table
            .filter(
                notifications::id
                    .eq(id)
                    .and(notifications::member_id.eq(member_id)),
            )
            .select(NotificationRow::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// Sets or clears `read_at` of one of a member's notifications; the row after.
pub async fn set_read(
    db: &mut Db<'_>,
    member_id: &str,
    id: &str,
    read_at: Option<i64>,
) -> QueryResult<Option<NotificationRow>> {
    crate::db!(db, |conn| {
        diesel::update(notifications::table)
            .filter(
                notifications::id
                    .eq(id)
                    .and(notifications::member_id.eq(member_id)),
            )
            .set(notifications::read_at.eq(read_at))
            .returning(NotificationRow::as_returning())
            .get_result(conn)
            .await
            .optional()
    })
}

/// Marks every unread notification of a member matching `filter` read; how many.
pub async fn mark_read(
    db: &mut Db<'_>,
    member_id: &str,
    filter: Filter<'_>,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        let mut query = diesel::update(notifications::table)
            .filter(notifications::member_id.eq(member_id))
            .filter(notifications::read_at.is_null())
            .into_boxed();
        if let Some(priority) = filter.priority {
            query = query.filter(notifications::priority.eq(priority));
        }
        if let Some(up_to) = filter.up_to {
            query = query.filter(notifications::id.le(up_to));
        }
        query
            .set(notifications::read_at.eq(now))
            .execute(conn)
            .await
    })
}

/// Open action items about any of `task_ids`, started ahead
/// ([`ahead!`](crate::ahead)): on PostgreSQL the read goes out with the transaction's
/// next statement.
pub async fn open_items_of_tasks(db: &mut Db<'_>, task_ids: &[String]) -> Ahead<Vec<OpenItem>> {
    // Literally the predicate of the partial index `idx_notifications_waiting`: with the
    // priority bound as a value neither database can use it, and SQLite walks every
    // unresolved notification of the hub (every ended task's) on every step change.
    let waiting =
        diesel::dsl::sql::<diesel::sql_types::Bool>("resolved_at IS NULL AND priority = 'action'");
    let query = notifications::table
        .filter(notifications::task_id.eq_any(task_ids.to_vec()))
        .filter(waiting)
        .select((
            notifications::id,
            notifications::kind,
            notifications::subject_id,
        ));
    match db {
        Db::Sqlite(conn) => Ahead::answered(query.load(*conn).await),
        // `= ANY($1)` on PostgreSQL: one text whatever the number of tasks, kept.
        Db::Postgres(conn) => Ahead::sent(
            conn.ahead(move |mut conn| async move { Fixed(query).load(&mut conn).await }.boxed()),
        ),
    }
}

/// Marks notifications resolved at `now`.
pub async fn resolve(db: &mut Db<'_>, ids: &[String], now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(notifications::table)
            .filter(
                notifications::id
                    .eq_any(ids)
                    .and(notifications::resolved_at.is_null()),
            )
            .set(notifications::resolved_at.eq(now))
            .execute(conn)
            .await
    })
}

/// Marks the open notifications about `subject_id` resolved at `now`.
pub async fn resolve_subject(db: &mut Db<'_>, subject_id: &str, now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(notifications::table)
            .filter(
                notifications::subject_id
                    .eq(subject_id)
                    .and(notifications::resolved_at.is_null()),
            )
            .set(notifications::resolved_at.eq(now))
            .execute(conn)
            .await
    })
}

/// Whether a member has an unread notification of `kind` about `subject_id`.
pub async fn has_unread(
    db: &mut Db<'_>,
    member_id: &str,
    kind: &str,
    subject_id: &str,
) -> QueryResult<bool> {
    let found: Option<String> = crate::db!(db, |conn| {
        notifications::table
            .filter(
                notifications::subject_id
                    .eq(subject_id)
                    .and(notifications::resolved_at.is_null())
                    .and(notifications::member_id.eq(member_id))
                    .and(notifications::kind.eq(kind))
                    .and(notifications::read_at.is_null()),
            )
            .select(notifications::id)
            .first(conn)
            .await
            .optional()
    })?;
    Ok(found.is_some())
}

/// Deletes notifications read before `cutoff`; how many.
pub async fn delete_read_before(db: &mut Db<'_>, cutoff: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::delete(notifications::table)
            .filter(
                notifications::read_at
                    .lt(cutoff)
                    .and(notifications::created_at.lt(cutoff)),
            )
            .execute(conn)
            .await
    })
}

/// Where an approval or a question stands.
#[derive(Debug, Clone)]
pub struct SubjectState {
    pub id: String,
    pub step_id: String,
    pub attempt: i32,
    /// Not decided, answered or closed.
    pub open: bool,
}

#[derive(Queryable)]
struct ApprovalState {
    id: String,
    step_id: String,
    attempt: i32,
    decision: Option<String>,
}

#[derive(Queryable)]
struct QuestionState {
    id: String,
    step_id: String,
    attempt: i32,
    answer: Option<String>,
    expired_at: Option<i64>,
}

/// The approvals among `ids` that exist.
pub async fn approvals_by_id(db: &mut Db<'_>, ids: &[String]) -> QueryResult<Vec<SubjectState>> {
    let rows: Vec<ApprovalState> = crate::db!(db, |conn| {
        approvals::table
            .filter(approvals::id.eq_any(ids))
            .select((
                approvals::id,
                approvals::step_id,
                approvals::attempt,
                approvals::decision,
            ))
            .load(conn)
            .await
    })?;
    Ok(rows
        .into_iter()
        .map(|row| SubjectState {
            open: row.decision.is_none(),
            id: row.id,
            step_id: row.step_id,
            attempt: row.attempt,
        })
        .collect())
}

/// The input requests among `ids` that exist.
pub async fn questions_by_id(db: &mut Db<'_>, ids: &[String]) -> QueryResult<Vec<SubjectState>> {
    let rows: Vec<QuestionState> = crate::db!(db, |conn| {
        input_requests::table
            .filter(input_requests::id.eq_any(ids))
            .select((
                input_requests::id,
                input_requests::step_id,
                input_requests::attempt,
                input_requests::answer,
                input_requests::expired_at,
            ))
            .load(conn)
            .await
    })?;
    Ok(rows
        .into_iter()
        .map(|row| SubjectState {
            open: row.answer.is_none() && row.expired_at.is_none(),
            id: row.id,
            step_id: row.step_id,
            attempt: row.attempt,
        })
        .collect())
}

/// Ids of the availability requests among `ids` not answered yet.
pub async fn open_availability_requests(
    db: &mut Db<'_>,
    ids: &[String],
) -> QueryResult<Vec<String>> {
    let mut open: Vec<String> = crate::db!(db, |conn| {
        availability_requests::table
            .filter(
                availability_requests::id
                    .eq_any(ids)
                    .and(availability_requests::responded_at.is_null()),
            )
            .select(availability_requests::id)
            .load(conn)
            .await
    })?;
    // A meeting's request to a participant's agent waits until it is answered.
    let meetings: Vec<String> = crate::db!(db, |conn| {
        meeting_participants::table
            .filter(
                meeting_participants::id
                    .eq_any(ids)
                    .and(meeting_participants::responded_at.is_null()),
            )
            .select(meeting_participants::id)
            .load(conn)
            .await
    })?;
    open.extend(meetings);
    Ok(open)
}

/// (step id, status, attempt) of each of `ids` that exists.
pub async fn step_states(
    db: &mut Db<'_>,
    ids: &[String],
) -> QueryResult<Vec<(String, String, i32)>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::id.eq_any(ids))
            .select((steps::id, steps::status, steps::attempt))
            .load(conn)
            .await
    })
}

/// The member an agent is bound to, and its name.
pub async fn agent_owner(db: &mut Db<'_>, agent_id: &str) -> QueryResult<Option<(String, String)>> {
    crate::db!(db, |conn| {
        agents::table
            .find(agent_id)
            .select((agents::owner_member_id, agents::name))
            .first(conn)
            .await
            .optional()
    })
}
