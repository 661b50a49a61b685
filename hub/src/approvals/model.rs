//! Rows and queries of approvals, input requests and availability requests.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::{approvals, availability_requests, input_requests, steps};
use crate::store::Db;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = approvals, treat_none_as_default_value = false)]
pub struct Approval {
    pub id: String,
    pub workspace_id: String,
    pub step_id: String,
    pub attempt: i32,
    pub approver_member_id: String,
    pub decision: Option<String>,
    pub comment: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
    /// When it times out; `None`: never, or already escalated.
    pub due_at: Option<i64>,
    /// Added by an escalation: an owner or admin deciding in place of the approvers.
    pub escalated: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = input_requests, treat_none_as_default_value = false)]
pub struct InputRequest {
    pub id: String,
    pub workspace_id: String,
    pub step_id: String,
    pub attempt: i32,
    pub agent_id: String,
    pub member_id: String,
    pub question: String,
    pub options: String,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<i64>,
    pub created_at: i64,
    /// When it times out; `None`: never, or already escalated.
    pub due_at: Option<i64>,
    /// When owners and admins were asked too.
    pub escalated_at: Option<i64>,
    /// When it closed unanswered.
    pub expired_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = availability_requests, treat_none_as_default_value = false)]
pub struct AvailabilityRequest {
    pub id: String,
    pub workspace_id: String,
    pub task_id: Option<String>,
    pub agent_id: String,
    pub asked_by_member_id: String,
    pub question: String,
    pub available: Option<bool>,
    pub note: Option<String>,
    pub responded_at: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_approvals(db: &mut Db<'_>, rows: &[Approval]) -> QueryResult<()> {
    // One statement per row: diesel has no multi-row VALUES for SQLite through diesel-async.
    for row in rows {
        crate::db!(db, |conn| diesel::insert_into(approvals::table)
            .values(row)
            .execute(conn)
            .await)?;
    }
    Ok(())
}

pub async fn find_approval(
    db: &mut Db<'_>,
    workspace_id: &str,
    approval_id: &str,
) -> QueryResult<Option<Approval>> {
    crate::db!(db, |conn| {
        approvals::table
            .filter(
                approvals::id
                    .eq(approval_id)
                    .and(approvals::workspace_id.eq(workspace_id)),
            )
            .select(Approval::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn approvals_of(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
) -> QueryResult<Vec<Approval>> {
    crate::db!(db, |conn| {
        approvals::table
            .filter(
                approvals::step_id
                    .eq(step_id)
                    .and(approvals::attempt.eq(attempt)),
            )
            .select(Approval::as_select())
            .load(conn)
            .await
    })
}

/// Records a decision if none was made yet.
pub async fn decide(
    db: &mut Db<'_>,
    approval_id: &str,
    decision: &str,
    comment: Option<&str>,
    now: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| {
        diesel::update(approvals::table)
            .filter(
                approvals::id
                    .eq(approval_id)
                    .and(approvals::decision.is_null()),
            )
            .set((
                approvals::decision.eq(decision),
                approvals::comment.eq(comment),
                approvals::decided_at.eq(now),
            ))
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}

/// Steps (workspace, step, attempt) awaiting approval whose pending approvals are past
/// their deadline at `now`.
pub async fn overdue_approvals(
    db: &mut Db<'_>,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<(String, String, i32)>> {
    crate::db!(db, |conn| {
        approvals::table
            .inner_join(steps::table)
            .filter(approvals::decision.is_null())
            .filter(approvals::due_at.le(now))
            .filter(steps::status.eq("awaiting_approval"))
            .filter(steps::attempt.eq(approvals::attempt))
            .select((
                approvals::workspace_id,
                approvals::step_id,
                approvals::attempt,
            ))
            .distinct()
            .limit(limit)
            .load(conn)
            .await
    })
}

/// Takes the overdue pending approvals of a step's attempt, once: their deadline is
/// cleared and, with `close`, they are marked `expired`. Returns the rows taken; none
/// when another caller took them first or a decision came.
pub async fn close_overdue_approvals(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
    now: i64,
    close: bool,
) -> QueryResult<Vec<Approval>> {
    let overdue = approvals::step_id
        .eq(step_id)
        .and(approvals::attempt.eq(attempt))
        .and(approvals::decision.is_null())
        .and(approvals::due_at.le(now));
    if close {
        return crate::db!(db, |conn| {
            diesel::update(approvals::table)
                .filter(overdue)
                .set((
                    approvals::due_at.eq(None::<i64>),
                    approvals::decision.eq("expired"),
                    approvals::comment.eq(crate::approvals::NO_DECISION),
                    approvals::decided_at.eq(now),
                ))
                .returning(Approval::as_returning())
                .get_results(conn)
                .await
        });
    }
    crate::db!(db, |conn| {
        diesel::update(approvals::table)
            .filter(overdue)
            .set(approvals::due_at.eq(None::<i64>))
            .returning(Approval::as_returning())
            .get_results(conn)
            .await
    })
}

/// Open questions of blocked steps that are past their deadline at `now`.
pub async fn overdue_questions(
    db: &mut Db<'_>,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<InputRequest>> {
    crate::db!(db, |conn| {
        input_requests::table
            .inner_join(steps::table)
            .filter(input_requests::answer.is_null())
            .filter(input_requests::expired_at.is_null())
            .filter(input_requests::due_at.le(now))
            .filter(steps::status.eq("blocked"))
            .filter(steps::attempt.eq(input_requests::attempt))
            .order(input_requests::due_at.asc())
            .limit(limit)
            .select(InputRequest::as_select())
            .load(conn)
            .await
    })
}

/// Takes an overdue open question, once: its deadline is cleared and it is marked
/// `expired` (`close`) or escalated. False when it was answered or taken meanwhile.
pub async fn close_overdue_question(
    db: &mut Db<'_>,
    id: &str,
    now: i64,
    close: bool,
) -> QueryResult<bool> {
    let overdue = input_requests::id
        .eq(id)
        .and(input_requests::answer.is_null())
        .and(input_requests::expired_at.is_null())
        .and(input_requests::due_at.le(now));
    let n_rows = if close {
        crate::db!(db, |conn| {
            diesel::update(input_requests::table)
                .filter(overdue)
                .set((
                    input_requests::due_at.eq(None::<i64>),
                    input_requests::expired_at.eq(now),
                ))
                .execute(conn)
                .await
        })?
    } else {
        crate::db!(db, |conn| {
            diesel::update(input_requests::table)
                .filter(overdue)
                .set((
                    input_requests::due_at.eq(None::<i64>),
                    input_requests::escalated_at.eq(now),
                ))
                .execute(conn)
                .await
        })?
    };
    Ok(n_rows == 1)
}

/// Open questions of the workspace that were escalated to its owners and admins.
pub async fn escalated_questions(
    db: &mut Db<'_>,
    workspace_id: &str,
) -> QueryResult<Vec<InputRequest>> {
    crate::db!(db, |conn| {
        input_requests::table
            .filter(input_requests::workspace_id.eq(workspace_id))
            .filter(input_requests::answer.is_null())
            .filter(input_requests::expired_at.is_null())
            .filter(input_requests::escalated_at.is_not_null())
            .order(input_requests::created_at.asc())
            .select(InputRequest::as_select())
            .load(conn)
            .await
    })
}

pub async fn pending_approvals_for(db: &mut Db<'_>, member_id: &str) -> QueryResult<Vec<Approval>> {
    crate::db!(db, |conn| {
        approvals::table
            .filter(
                approvals::approver_member_id
                    .eq(member_id)
                    .and(approvals::decision.is_null()),
            )
            .order(approvals::created_at.asc())
            .select(Approval::as_select())
            .load(conn)
            .await
    })
}

pub async fn insert_input_request(db: &mut Db<'_>, row: &InputRequest) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(input_requests::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn find_input_request(
    db: &mut Db<'_>,
    workspace_id: &str,
    id: &str,
) -> QueryResult<Option<InputRequest>> {
    crate::db!(db, |conn| {
        input_requests::table
            .filter(
                input_requests::id
                    .eq(id)
                    .and(input_requests::workspace_id.eq(workspace_id)),
            )
            .select(InputRequest::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn answer_input_request(
    db: &mut Db<'_>,
    id: &str,
    answer: &str,
    answered_by: &str,
    now: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| {
        diesel::update(input_requests::table)
            .filter(
                input_requests::id
                    .eq(id)
                    .and(input_requests::answer.is_null())
                    .and(input_requests::expired_at.is_null()),
            )
            .set((
                input_requests::answer.eq(answer),
                input_requests::answered_by.eq(answered_by),
                input_requests::answered_at.eq(now),
            ))
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}

/// Asks another member an open question (its member was removed).
pub async fn reassign_input_request(
    db: &mut Db<'_>,
    request_id: &str,
    member_id: &str,
) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(input_requests::table.find(request_id))
            .set(input_requests::member_id.eq(member_id))
            .execute(conn)
            .await
    })
}

pub async fn open_questions_for(
    db: &mut Db<'_>,
    member_id: &str,
) -> QueryResult<Vec<InputRequest>> {
    crate::db!(db, |conn| {
        input_requests::table
            .filter(
                input_requests::member_id
                    .eq(member_id)
                    .and(input_requests::answer.is_null())
                    .and(input_requests::expired_at.is_null()),
            )
            .order(input_requests::created_at.asc())
            .select(InputRequest::as_select())
            .load(conn)
            .await
    })
}

pub async fn insert_availability_request(
    db: &mut Db<'_>,
    row: &AvailabilityRequest,
) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(availability_requests::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn find_availability_request(
    db: &mut Db<'_>,
    workspace_id: &str,
    id: &str,
) -> QueryResult<Option<AvailabilityRequest>> {
    crate::db!(db, |conn| {
        availability_requests::table
            .filter(
                availability_requests::id
                    .eq(id)
                    .and(availability_requests::workspace_id.eq(workspace_id)),
            )
            .select(AvailabilityRequest::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// Records the agent's answer if none was recorded yet.
pub async fn respond_availability(
    db: &mut Db<'_>,
    id: &str,
    agent_id: &str,
    available: bool,
    note: Option<&str>,
    now: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| {
        diesel::update(availability_requests::table)
            .filter(
                availability_requests::id
                    .eq(id)
                    .and(availability_requests::agent_id.eq(agent_id))
                    .and(availability_requests::responded_at.is_null()),
            )
            .set((
                availability_requests::available.eq(available),
                availability_requests::note.eq(note),
                availability_requests::responded_at.eq(now),
            ))
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}
