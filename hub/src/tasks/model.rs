//! Rows and queries of tasks, steps, their assignees, approvers and dependencies,
//! submissions, logs, usage and workflow changes.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::FutureExt;

use crate::schema::{
    agents, meeting_participants, meetings, plans, step_approvers, step_assignees, step_checks,
    step_dependencies, step_logs, step_submissions, steps, tasks, timeline, usage,
    workflow_approvals, workflow_changes,
};
use crate::store::{Ahead, Db, Fixed};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tasks, treat_none_as_default_value = false)]
pub struct Task {
    pub id: String,
    pub workspace_id: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub creator_member_id: Option<String>,
    pub creator_agent_id: Option<String>,
    pub due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// JSON: how the task ended (`TaskOutcome`).
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = steps, treat_none_as_default_value = false)]
pub struct Step {
    pub id: String,
    pub task_id: String,
    pub workspace_id: String,
    pub key: String,
    pub position: i32,
    pub title: String,
    pub description: String,
    pub status: String,
    pub approval_level: i32,
    pub executor: Option<String>,
    pub input: String,
    pub expected_inputs: Option<String>,
    pub expected_outputs: Option<String>,
    pub required_capabilities: String,
    pub result: Option<String>,
    pub summary: Option<String>,
    pub self_check: Option<String>,
    pub files: String,
    pub claimed_by: Option<String>,
    pub lease_until: Option<i64>,
    pub attempt: i32,
    pub rework_comment: Option<String>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_attempts: i32,
    pub continue_on_failure: bool,
    pub failures: i32,
    pub status_reason: Option<String>,
    pub skipped_because: Option<String>,
    pub progress_percent: Option<i32>,
    pub progress_message: Option<String>,
    /// The digest of the current result (see [`crate::tasks::result_digest`]).
    pub result_digest: Option<String>,
    /// How long approvals and questions wait; `None`: no deadline.
    pub decision_timeout_ms: Option<i64>,
    /// `reject`, `escalate` or `fail` (see [`crate::approvals::OnTimeout`]).
    pub on_timeout: String,
    /// [`STEP_KIND_TASK`] or [`STEP_KIND_MEETING`].
    pub kind: String,
    /// A rough estimate in minutes.
    pub estimate_minutes: Option<i32>,
}

/// A step an agent claims and runs.
pub const STEP_KIND_TASK: &str = "task";
/// A meeting step: never claimed; the hub asks its participants (see `tasks::meeting`).
pub const STEP_KIND_MEETING: &str = "meeting";

impl Step {
    pub fn is_meeting(&self) -> bool {
        self.kind == STEP_KIND_MEETING
    }
}

/// The columns a state transition may change; `None` leaves a column alone, and
/// `Some(None)` sets a nullable column to NULL.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = steps, treat_none_as_default_value = false)]
pub struct StepChange {
    pub status: Option<String>,
    pub claimed_by: Option<Option<String>>,
    pub lease_until: Option<Option<i64>>,
    pub attempt: Option<i32>,
    pub result: Option<Option<String>>,
    pub summary: Option<Option<String>>,
    pub self_check: Option<Option<String>>,
    pub files: Option<String>,
    pub rework_comment: Option<Option<String>>,
    pub started_at: Option<Option<i64>>,
    pub completed_at: Option<Option<i64>>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub position: Option<i32>,
    pub updated_at: Option<i64>,
    pub failures: Option<i32>,
    pub status_reason: Option<Option<String>>,
    pub skipped_because: Option<Option<String>>,
    pub progress_percent: Option<Option<i32>>,
    pub progress_message: Option<Option<String>>,
    pub result_digest: Option<Option<String>>,
}

/// One status change of a task (`step_id` empty) or of one of its steps.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = timeline, treat_none_as_default_value = false)]
pub struct TimelineRow {
    pub id: String,
    pub workspace_id: String,
    pub task_id: String,
    pub step_id: Option<String>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub attempt: Option<i32>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = step_submissions, treat_none_as_default_value = false)]
pub struct Submission {
    pub step_id: String,
    pub attempt: i32,
    pub agent_id: String,
    pub result: String,
    pub summary: Option<String>,
    pub self_check: Option<String>,
    pub files: String,
    pub outcome: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workflow_changes, treat_none_as_default_value = false)]
pub struct WorkflowChangeRow {
    pub id: String,
    pub workspace_id: String,
    pub task_id: String,
    pub kind: String,
    pub step_id: Option<String>,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub reason: String,
    pub triggered_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = step_logs, treat_none_as_default_value = false)]
pub struct StepLogRow {
    pub id: String,
    pub step_id: String,
    pub attempt: i32,
    pub stream: String,
    pub text: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage, treat_none_as_default_value = false)]
pub struct UsageRow {
    pub id: String,
    pub workspace_id: String,
    pub step_id: String,
    pub agent_id: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub created_at: i64,
}

pub async fn insert_task(db: &mut Db<'_>, row: &Task) -> QueryResult<()> {
    crate::insert_deferred!(db, tasks::table, row)
}

pub async fn insert_steps(db: &mut Db<'_>, rows: &[Step]) -> QueryResult<()> {
    // One statement per row: diesel has no multi-row VALUES for SQLite through diesel-async.
    for row in rows {
        crate::insert_deferred!(db, steps::table, row)?;
    }
    Ok(())
}

/// A query for one task of a workspace ([`task_in`]).
type TaskIn<'a> = diesel::dsl::Filter<
    tasks::table,
    diesel::dsl::And<
        diesel::dsl::Eq<tasks::id, &'a str>,
        diesel::dsl::Eq<tasks::workspace_id, &'a str>,
    >,
>;

/// The task `task_id` of the workspace.
fn task_in<'a>(workspace_id: &'a str, task_id: &'a str) -> TaskIn<'a> {
    tasks::table.filter(
        tasks::id
            .eq(task_id)
            .and(tasks::workspace_id.eq(workspace_id)),
    )
}

pub async fn find_task(
    db: &mut Db<'_>,
    workspace_id: &str,
    task_id: &str,
) -> QueryResult<Option<Task>> {
    crate::db!(db, |conn| {
        task_in(workspace_id, task_id)
            .select(Task::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// Tasks of a workspace, newest first, that match every given condition.
pub async fn list_tasks(
    db: &mut Db<'_>,
    workspace_id: &str,
    filter: &super::TaskFilter,
) -> QueryResult<Vec<Task>> {
    crate::db!(db, |conn| {
        let mut query = tasks::table
            .filter(tasks::workspace_id.eq(workspace_id))
            .into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(tasks::status.eq(status.as_str()));
        }
        if let Some(creator) = &filter.created_by {
            query = query.filter(tasks::creator_member_id.eq(creator));
        }
        if let Some(ids) = &filter.ids {
            query = query.filter(tasks::id.eq_any(ids));
        }
        if let Some((created_at, id)) = &filter.after {
            query = query.filter(
                tasks::created_at
                    .lt(*created_at)
                    .or(tasks::created_at.eq(*created_at).and(tasks::id.lt(id))),
            );
        }
        query
            .order((tasks::created_at.desc(), tasks::id.desc()))
            .offset(i64::from(filter.offset))
            .limit(i64::from(filter.limit.clamp(1, 500)))
            .select(Task::as_select())
            .load(conn)
            .await
    })
}

/// How many tasks the workspace holds.
pub async fn count_tasks(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<i64> {
    crate::db!(db, |conn| {
        tasks::table
            .filter(tasks::workspace_id.eq(workspace_id))
            .count()
            .get_result(conn)
            .await
    })
}

/// `from` → `to` if the task is still `from`, setting (or clearing) its outcome.
pub async fn set_task_status(
    db: &mut Db<'_>,
    task_id: &str,
    from: &str,
    to: &str,
    outcome: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(tasks::table)
            .filter(tasks::id.eq(task_id).and(tasks::status.eq(from)))
            .set((
                tasks::status.eq(to),
                tasks::outcome.eq(outcome),
                tasks::updated_at.eq(now),
            ))
            .execute(conn)
            .await
    })
}

/// Inserts timeline rows: one row as one statement of a static type (cached without
/// rendering its SQL on either backend), more (a task's creation, a step moved twice at
/// once) through [`insert_rows_deferred!`](crate::insert_rows_deferred).
pub async fn insert_timeline(db: &mut Db<'_>, rows: &[TimelineRow]) -> QueryResult<()> {
    // On SQLite the writer's open group keeps them, to insert them all as it commits.
    if let Db::Sqlite(conn) = db.reborrow()
        && !rows.is_empty()
        && conn.keep_timeline(rows)
    {
        return Ok(());
    }
    match rows {
        [] => Ok(()),
        [row] => crate::insert_deferred!(db, timeline::table, row),
        _ => crate::insert_rows_deferred!(db, timeline::table, rows.to_vec()),
    }
}

/// A task's timeline, oldest first.
pub async fn timeline_of(db: &mut Db<'_>, task_id: &str) -> QueryResult<Vec<TimelineRow>> {
    crate::db!(db, |conn| {
        timeline::table
            .filter(timeline::task_id.eq(task_id))
            .order((timeline::created_at.asc(), timeline::id.asc()))
            .select(TimelineRow::as_select())
            .load(conn)
            .await
    })
}

/// The newest timeline entry of a step that moved it to `status`.
pub async fn last_timeline_of_step(
    db: &mut Db<'_>,
    task_id: &str,
    step_id: &str,
    status: &str,
) -> QueryResult<Option<TimelineRow>> {
    // On SQLite the rows the writer's open group keeps are the newest (not inserted yet).
    if let Db::Sqlite(conn) = db.reborrow()
        && let Some(row) = conn.kept_timeline().rev().find(|row| {
            row.task_id == task_id
                && row.step_id.as_deref() == Some(step_id)
                && row.to_status == status
        })
    {
        return Ok(Some(row.clone()));
    }
    crate::db!(db, |conn| {
        timeline::table
            .filter(timeline::task_id.eq(task_id))
            .filter(timeline::step_id.eq(step_id))
            .filter(timeline::to_status.eq(status))
            .order((timeline::created_at.desc(), timeline::id.desc()))
            .select(TimelineRow::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// Records the last progress of the held step and renews its lease.
pub async fn record_progress(
    db: &mut Db<'_>,
    step_id: &str,
    agent_id: &str,
    attempt: i32,
    lease_until: i64,
    percent: Option<i32>,
    message: Option<&str>,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| {
        diesel::update(steps::table)
            .filter(steps::id.eq(step_id))
            .filter(steps::claimed_by.eq(agent_id))
            .filter(steps::attempt.eq(attempt))
            .filter(steps::status.eq("claimed").or(steps::status.eq("running")))
            .set((
                steps::lease_until.eq(Some(lease_until)),
                steps::progress_percent.eq(percent),
                steps::progress_message.eq(message),
            ))
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}

pub async fn touch_task(db: &mut Db<'_>, task_id: &str, now: i64) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::update(tasks::table.find(task_id))
        .set(tasks::updated_at.eq(now))
        .execute(conn)
        .await)
}

/// Locks the task's row until the transaction ends and returns the task. Transactions
/// that read its steps to decide what follows (completion, readiness, approvals, workflow
/// changes) take it first, so each sees the others' committed changes: two steps finishing
/// at once cannot both miss that their common dependent is now ready.
pub async fn lock_task(
    db: &mut Db<'_>,
    workspace_id: &str,
    task_id: &str,
) -> QueryResult<Option<Task>> {
    let Db::Postgres(conn) = db else {
        // SQLite runs one write transaction at a time (`BEGIN IMMEDIATE` on the single
        // writer connection): reading the row is enough.
        return find_task(db, workspace_id, task_id).await;
    };
    // The lock an update of the row would take (a claim's share lock on the task waits
    // for it), without writing a new version of the row.
    task_in(workspace_id, task_id)
        .select(Task::as_select())
        .for_no_key_update()
        .get_result(*conn)
        .await
        .optional()
}

/// The task of the workspace's step `step_id`, locked as [`lock_task`] locks it; started
/// ahead ([`ahead!`](crate::ahead)): on PostgreSQL the lock goes out with the
/// transaction's next statement (a submit's read of the step, which then sees the step as
/// it is once its task is locked).
pub async fn lock_task_of_step(
    db: &mut Db<'_>,
    workspace_id: &str,
    step_id: &str,
) -> Ahead<Option<Task>> {
    let task_of_step = steps::table
        .filter(steps::id.eq(step_id.to_string()))
        .filter(steps::workspace_id.eq(workspace_id.to_string()))
        .select(steps::task_id)
        .single_value();
    let task = tasks::table.filter(tasks::id.nullable().eq(task_of_step));
    match db {
        Db::Sqlite(conn) => Ahead::answered(
            task.select(Task::as_select())
                .get_result(*conn)
                .await
                .optional(),
        ),
        Db::Postgres(conn) => {
            let query = Fixed(task.select(Task::as_select()).for_no_key_update());
            Ahead::sent(conn.ahead(move |mut conn| {
                async move { query.get_result(&mut conn).await.optional() }.boxed()
            }))
        }
    }
}

pub async fn find_step(
    db: &mut Db<'_>,
    workspace_id: &str,
    step_id: &str,
) -> QueryResult<Option<Step>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(
                steps::id
                    .eq(step_id)
                    .and(steps::workspace_id.eq(workspace_id)),
            )
            .select(Step::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// A step of the workspace, whether `agent_id` is one of its assignees and whether
/// the step has other assignees, in one statement (the claim, progress, log, submit and
/// fail of an agent all start here; a claim tells the other assignees, if any).
pub async fn find_step_for_agent(
    db: &mut Db<'_>,
    workspace_id: &str,
    step_id: &str,
    agent_id: &str,
) -> QueryResult<Option<(Step, bool, bool)>> {
    crate::db!(db, |conn| {
        Fixed(
            steps::table
                .filter(
                    steps::id
                        .eq(step_id)
                        .and(steps::workspace_id.eq(workspace_id)),
                )
                .select((
                    Step::as_select(),
                    diesel::dsl::exists(
                        step_assignees::table
                            .filter(step_assignees::step_id.eq(steps::id))
                            .filter(step_assignees::agent_id.eq(agent_id)),
                    ),
                    diesel::dsl::exists(
                        step_assignees::table
                            .filter(step_assignees::step_id.eq(steps::id))
                            .filter(step_assignees::agent_id.ne(agent_id)),
                    ),
                ))
                .limit(1),
        )
        .get_result(conn)
        .await
        .optional()
    })
}

pub async fn steps_of_task(db: &mut Db<'_>, task_id: &str) -> QueryResult<Vec<Step>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::task_id.eq(task_id))
            .order(steps::position.asc())
            .select(Step::as_select())
            .load(conn)
            .await
    })
}

/// The steps of a task but `step_id`, in their order.
pub async fn other_steps_of_task(
    db: &mut Db<'_>,
    task_id: &str,
    step_id: &str,
) -> QueryResult<Vec<Step>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::task_id.eq(task_id).and(steps::id.ne(step_id)))
            .order(steps::position.asc())
            .select(Step::as_select())
            .load(conn)
            .await
    })
}

/// The steps of several tasks (a page of a task list).
pub async fn steps_of_tasks(db: &mut Db<'_>, task_ids: &[String]) -> QueryResult<Vec<Step>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::task_id.eq_any(task_ids))
            .order(steps::position.asc())
            .select(Step::as_select())
            .load(conn)
            .await
    })
}

/// Applies `change` if the step is still in `expected_status` at `expected_attempt`.
/// Returns whether it applied: the one conditional update behind every transition.
pub async fn update_step_if(
    db: &mut Db<'_>,
    step_id: &str,
    expected_status: &str,
    expected_attempt: i32,
    change: &StepChange,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| {
        diesel::update(steps::table)
            .filter(steps::id.eq(step_id))
            .filter(steps::status.eq(expected_status))
            .filter(steps::attempt.eq(expected_attempt))
            .set(change)
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}

/// The claim: `ready` → `claimed` only while the task is active.
pub async fn claim_step(
    db: &mut Db<'_>,
    step_id: &str,
    agent_id: &str,
    lease_until: i64,
    now: i64,
) -> QueryResult<bool> {
    let claim = diesel::update(steps::table)
        .filter(steps::id.eq(step_id))
        .filter(steps::status.eq("ready"));
    let set = (
        steps::status.eq("claimed"),
        steps::claimed_by.eq(agent_id),
        steps::lease_until.eq(lease_until),
        steps::updated_at.eq(now),
    );
    // The task must be active. The subquery is correlated, so it reads one task row (an
    // `IN (SELECT …)` read every active task of the hub on SQLite).
    let active = tasks::table
        .filter(tasks::id.eq(steps::task_id))
        .filter(tasks::status.eq("active"));
    let n_rows = match db {
        Db::Sqlite(conn) => {
            Fixed(claim.filter(diesel::dsl::exists(active)).set(set))
                .execute(conn)
                .await?
        }
        // On PostgreSQL the task row is share-locked: a claim waits for a pause or cancel
        // of the task in flight (which holds the task's lock) and then sees the task as it
        // committed, so no step is claimed in a task that has just stopped.
        Db::Postgres(conn) => {
            Fixed(
                claim
                    .filter(diesel::dsl::exists(active.for_share()))
                    .set(set),
            )
            .execute(conn)
            .await?
        }
    };
    Ok(n_rows == 1)
}

/// Locks a held step whose lease at `attempt` is still expired at `now` (a no-op
/// update); false when it was renewed, submitted or moved on meanwhile.
pub async fn lock_expired_lease(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
    now: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| {
        diesel::update(steps::table)
            .filter(steps::id.eq(step_id))
            .filter(steps::attempt.eq(attempt))
            .filter(steps::status.eq("claimed").or(steps::status.eq("running")))
            .filter(steps::lease_until.lt(now))
            .set(steps::lease_until.eq(steps::lease_until))
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}

/// The agent's `max_concurrency` and how many steps it holds, for a claim; `None` when
/// the agent is not in the workspace. Started ahead ([`ahead!`](crate::ahead)): on
/// PostgreSQL it goes out with the claim's next statement. There the agent's row is
/// locked first (so two claims of one agent on different hubs count one after the other)
/// and the count is a statement of its own, sent right behind the lock: the server runs
/// it once the lock is granted, with a snapshot that sees a claim committed while it
/// waited. On SQLite (one writer) both are one statement.
pub async fn claim_capacity(
    db: &mut Db<'_>,
    workspace_id: &str,
    agent_id: &str,
) -> Ahead<Option<(i32, i64)>> {
    // Literally the predicate of the partial index `idx_steps_held_by`: both databases
    // use a partial index only when the query's condition matches it, and bound values
    // would not.
    let held =
        diesel::dsl::sql::<diesel::sql_types::Bool>("status IN ('claimed', 'running', 'blocked')");
    let held_by_agent = steps::table
        .filter(steps::claimed_by.eq(agent_id.to_string()))
        .filter(held);
    let agent = agents::table
        .find(agent_id.to_string())
        .filter(agents::workspace_id.eq(workspace_id.to_string()));
    match db {
        Db::Sqlite(conn) => Ahead::answered(
            agent
                .select((
                    agents::max_concurrency,
                    held_by_agent.count().single_value(),
                ))
                .get_result::<(i32, Option<i64>)>(*conn)
                .await
                .optional()
                .map(|found| found.map(|(max, held)| (max, held.unwrap_or(0)))),
        ),
        Db::Postgres(conn) => {
            let lock = Fixed(agent.select(agents::max_concurrency).for_no_key_update());
            let count = Fixed(held_by_agent.count());
            Ahead::sent(conn.ahead(move |mut conn| {
                async move {
                    let mut behind = conn;
                    let (max, held) = futures_util::join!(
                        lock.get_result::<i32>(&mut conn),
                        count.get_result::<i64>(&mut behind),
                    );
                    let (max, held) = (max.optional()?, held?);
                    Ok(max.map(|max| (max, held)))
                }
                .boxed()
            }))
        }
    }
}

/// Steps whose lease ran out, oldest first.
pub async fn expired_leases(db: &mut Db<'_>, now: i64, limit: i64) -> QueryResult<Vec<Step>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(steps::status.eq("claimed").or(steps::status.eq("running")))
            .filter(steps::lease_until.lt(now))
            .order(steps::lease_until.asc())
            .limit(limit)
            .select(Step::as_select())
            .load(conn)
            .await
    })
}

/// One assignment of a step to an agent; `via_member_id` when the step was assigned to
/// the agent's member.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = step_assignees, treat_none_as_default_value = false)]
pub struct AssigneeRow {
    pub step_id: String,
    pub agent_id: String,
    pub via_member_id: Option<String>,
}

pub async fn insert_assignees(db: &mut Db<'_>, rows: &[AssigneeRow]) -> QueryResult<()> {
    for row in rows {
        crate::insert_deferred!(db, step_assignees::table, row)?;
    }
    Ok(())
}

/// (step id, member id) of the steps among `step_ids` assigned to a member.
pub async fn member_assignees_of(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    if step_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::db!(db, |conn| {
        step_assignees::table
            .filter(step_assignees::step_id.eq_any(step_ids))
            .filter(step_assignees::via_member_id.is_not_null())
            .select((
                step_assignees::step_id,
                step_assignees::via_member_id.assume_not_null(),
            ))
            .distinct()
            .load(conn)
            .await
    })
}

/// The steps assigned to a member (`member:<email>`) that may still run (all but done
/// and cancelled ones: a failed or skipped step can be retried), for an agent of the
/// member that joins them.
pub async fn open_steps_of_member(db: &mut Db<'_>, member_id: &str) -> QueryResult<Vec<Step>> {
    crate::db!(db, |conn| {
        steps::table
            .filter(
                steps::id.eq_any(
                    step_assignees::table
                        .filter(step_assignees::via_member_id.eq(member_id))
                        .select(step_assignees::step_id),
                ),
            )
            .filter(steps::status.ne_all(["done", "cancelled"]))
            .select(Step::as_select())
            .load(conn)
            .await
    })
}

pub async fn insert_approvers(db: &mut Db<'_>, rows: &[(String, String)]) -> QueryResult<()> {
    let values: Vec<_> = rows
        .iter()
        .map(|(step_id, member_id)| {
            (
                step_approvers::step_id.eq(step_id),
                step_approvers::member_id.eq(member_id),
            )
        })
        .collect();
    for value in values {
        crate::db!(db, |conn| diesel::insert_into(step_approvers::table)
            .values(value)
            .execute(conn)
            .await)?;
    }
    Ok(())
}

pub async fn insert_dependencies(db: &mut Db<'_>, rows: &[(String, String)]) -> QueryResult<()> {
    let values: Vec<_> = rows
        .iter()
        .map(|(step_id, depends_on)| {
            (
                step_dependencies::step_id.eq(step_id),
                step_dependencies::depends_on.eq(depends_on),
            )
        })
        .collect();
    for value in values {
        crate::db!(db, |conn| diesel::insert_into(step_dependencies::table)
            .values(value)
            .execute(conn)
            .await)?;
    }
    Ok(())
}

// The `*_of` lookups below read one step with `=`, not `IN (…)`: a statement with an
// `IN` list is prepared again on every call (diesel caches only fixed SQL), and one step
// is the common case (a claim, a submit, a step becoming ready).

/// (step id, agent id) of every assignee of the given steps.
pub async fn assignees_of(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    match step_ids {
        [] => Ok(Vec::new()),
        [step_id] => crate::db!(db, |conn| {
            step_assignees::table
                .filter(step_assignees::step_id.eq(step_id))
                .select((step_assignees::step_id, step_assignees::agent_id))
                .load(conn)
                .await
        }),
        _ => crate::db!(db, |conn| {
            step_assignees::table
                .filter(step_assignees::step_id.eq_any(step_ids))
                .select((step_assignees::step_id, step_assignees::agent_id))
                .load(conn)
                .await
        }),
    }
}

/// (step id, member id) of every approver of the given steps.
pub async fn approvers_of(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    match step_ids {
        [] => Ok(Vec::new()),
        [step_id] => crate::db!(db, |conn| {
            step_approvers::table
                .filter(step_approvers::step_id.eq(step_id))
                .select((step_approvers::step_id, step_approvers::member_id))
                .load(conn)
                .await
        }),
        _ => crate::db!(db, |conn| {
            step_approvers::table
                .filter(step_approvers::step_id.eq_any(step_ids))
                .select((step_approvers::step_id, step_approvers::member_id))
                .load(conn)
                .await
        }),
    }
}

/// (step id, depends-on step id) of the given steps.
pub async fn dependencies_of(
    db: &mut Db<'_>,
    step_ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    match step_ids {
        [] => Ok(Vec::new()),
        [step_id] => crate::db!(db, |conn| {
            step_dependencies::table
                .filter(step_dependencies::step_id.eq(step_id))
                .select((step_dependencies::step_id, step_dependencies::depends_on))
                .load(conn)
                .await
        }),
        _ => crate::db!(db, |conn| {
            step_dependencies::table
                .filter(step_dependencies::step_id.eq_any(step_ids))
                .select((step_dependencies::step_id, step_dependencies::depends_on))
                .load(conn)
                .await
        }),
    }
}

pub async fn delete_assignees(db: &mut Db<'_>, step_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::delete(
        step_assignees::table.filter(step_assignees::step_id.eq(step_id))
    )
    .execute(conn)
    .await)
}

pub async fn delete_dependencies(db: &mut Db<'_>, step_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::delete(step_dependencies::table.filter(step_dependencies::step_id.eq(step_id)))
            .execute(conn)
            .await
    })
}

pub async fn delete_step(db: &mut Db<'_>, step_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::delete(step_dependencies::table.filter(step_dependencies::depends_on.eq(step_id)))
            .execute(conn)
            .await
    })?;
    crate::db!(db, |conn| diesel::delete(steps::table.find(step_id))
        .execute(conn)
        .await)
}

pub async fn find_submission(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
) -> QueryResult<Option<Submission>> {
    crate::db!(db, |conn| {
        step_submissions::table
            .find((step_id, attempt))
            .select(Submission::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn insert_submission(db: &mut Db<'_>, row: &Submission) -> QueryResult<()> {
    crate::insert_deferred!(db, step_submissions::table, row)
}

pub async fn insert_workflow_change(db: &mut Db<'_>, row: &WorkflowChangeRow) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(workflow_changes::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn workflow_changes_of(
    db: &mut Db<'_>,
    task_id: &str,
) -> QueryResult<Vec<WorkflowChangeRow>> {
    crate::db!(db, |conn| {
        workflow_changes::table
            .filter(workflow_changes::task_id.eq(task_id))
            .order((
                workflow_changes::created_at.asc(),
                workflow_changes::id.asc(),
            ))
            .select(WorkflowChangeRow::as_select())
            .load(conn)
            .await
    })
}

pub async fn insert_log(db: &mut Db<'_>, row: &StepLogRow) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(step_logs::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn logs_of(db: &mut Db<'_>, step_id: &str) -> QueryResult<Vec<StepLogRow>> {
    crate::db!(db, |conn| {
        step_logs::table
            .filter(step_logs::step_id.eq(step_id))
            .order((step_logs::created_at.asc(), step_logs::id.asc()))
            .select(StepLogRow::as_select())
            .load(conn)
            .await
    })
}

pub async fn insert_usage(db: &mut Db<'_>, row: &UsageRow) -> QueryResult<()> {
    crate::insert_deferred!(db, usage::table, row)
}

/// A planning round of a task.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = plans, treat_none_as_default_value = false)]
pub struct Plan {
    pub id: String,
    pub workspace_id: String,
    pub task_id: String,
    pub round: i32,
    /// `requested`, `proposed`, `accepted` or `replaced`.
    pub status: String,
    pub planner_agent_id: String,
    pub comment: Option<String>,
    /// JSON list of `PlanStep`.
    pub start_steps: String,
    /// JSON list of `PlanStep`: the proposal.
    pub steps: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
    pub proposed_at: Option<i64>,
    pub decided_at: Option<i64>,
}

pub async fn insert_plan(db: &mut Db<'_>, row: &Plan) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(plans::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

/// The plan of the caller's workspace with this id.
pub async fn find_plan(
    db: &mut Db<'_>,
    workspace_id: &str,
    plan_id: &str,
) -> QueryResult<Option<Plan>> {
    crate::db!(db, |conn| {
        plans::table
            .filter(plans::id.eq(plan_id))
            .filter(plans::workspace_id.eq(workspace_id))
            .select(Plan::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// The task's latest planning round.
pub async fn latest_plan(db: &mut Db<'_>, task_id: &str) -> QueryResult<Option<Plan>> {
    crate::db!(db, |conn| {
        plans::table
            .filter(plans::task_id.eq(task_id))
            .order(plans::round.desc())
            .select(Plan::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// Records a proposal on a round that is still open (`requested` or `proposed`).
pub async fn propose_plan(
    db: &mut Db<'_>,
    plan_id: &str,
    steps_json: &str,
    note: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::update(
        plans::table
            .filter(plans::id.eq(plan_id))
            .filter(plans::status.eq_any(["requested", "proposed"]))
    )
    .set((
        plans::status.eq("proposed"),
        plans::steps.eq(steps_json),
        plans::note.eq(note),
        plans::proposed_at.eq(now),
    ))
    .execute(conn)
    .await)
}

/// Closes an open round as `accepted` or `replaced`.
pub async fn decide_plan(
    db: &mut Db<'_>,
    plan_id: &str,
    status: &str,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::update(
        plans::table
            .filter(plans::id.eq(plan_id))
            .filter(plans::status.eq_any(["requested", "proposed"]))
    )
    .set((plans::status.eq(status), plans::decided_at.eq(now)))
    .execute(conn)
    .await)
}

/// An agent's check of a submitted attempt.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = step_checks, treat_none_as_default_value = false)]
pub struct StepCheck {
    pub step_id: String,
    pub attempt: i32,
    pub workspace_id: String,
    pub task_id: String,
    pub agent_id: String,
    pub fits: bool,
    /// JSON list of strings.
    pub reasons: String,
    pub created_at: i64,
}

/// A workflow change a check suggested, for the task's creator.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workflow_approvals, treat_none_as_default_value = false)]
pub struct WorkflowApproval {
    pub id: String,
    pub workspace_id: String,
    pub task_id: String,
    pub step_id: String,
    pub attempt: i32,
    pub agent_id: String,
    pub approver_member_id: String,
    /// JSON: the protocol's `Suggestion`.
    pub suggestion: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
}

pub async fn find_check(
    db: &mut Db<'_>,
    step_id: &str,
    attempt: i32,
) -> QueryResult<Option<StepCheck>> {
    crate::db!(db, |conn| {
        step_checks::table
            .find((step_id, attempt))
            .select(StepCheck::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// The check of the step's latest checked attempt.
pub async fn latest_check(db: &mut Db<'_>, step_id: &str) -> QueryResult<Option<StepCheck>> {
    crate::db!(db, |conn| {
        step_checks::table
            .filter(step_checks::step_id.eq(step_id))
            .order(step_checks::attempt.desc())
            .select(StepCheck::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn insert_check(db: &mut Db<'_>, row: &StepCheck) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(step_checks::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn insert_workflow_approval(db: &mut Db<'_>, row: &WorkflowApproval) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(workflow_approvals::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn workflow_approvals_of(
    db: &mut Db<'_>,
    task_id: &str,
) -> QueryResult<Vec<WorkflowApproval>> {
    crate::db!(db, |conn| {
        workflow_approvals::table
            .filter(workflow_approvals::task_id.eq(task_id))
            .order((
                workflow_approvals::created_at.asc(),
                workflow_approvals::id.asc(),
            ))
            .select(WorkflowApproval::as_select())
            .load(conn)
            .await
    })
}

pub async fn find_workflow_approval(
    db: &mut Db<'_>,
    workspace_id: &str,
    id: &str,
) -> QueryResult<Option<WorkflowApproval>> {
    crate::db!(db, |conn| {
        workflow_approvals::table
            .filter(workflow_approvals::id.eq(id))
            .filter(workflow_approvals::workspace_id.eq(workspace_id))
            .select(WorkflowApproval::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// Decides a pending workflow approval; 0 when it was decided meanwhile.
pub async fn decide_workflow_approval(
    db: &mut Db<'_>,
    id: &str,
    status: &str,
    comment: Option<&str>,
    decided_by: &str,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::update(
        workflow_approvals::table
            .filter(workflow_approvals::id.eq(id))
            .filter(workflow_approvals::status.eq("pending"))
    )
    .set((
        workflow_approvals::status.eq(status),
        workflow_approvals::comment.eq(comment),
        workflow_approvals::decided_by.eq(decided_by),
        workflow_approvals::decided_at.eq(now),
    ))
    .execute(conn)
    .await)
}

/// A meeting step's coordination.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = meetings, treat_none_as_default_value = false)]
pub struct Meeting {
    pub step_id: String,
    pub workspace_id: String,
    pub task_id: String,
    pub duration_minutes: i32,
    pub window_from: i64,
    pub window_to: i64,
    /// `waiting`, `collecting`, `proposed`, `no_fit` or `scheduled`.
    pub status: String,
    pub slot_from: Option<i64>,
    pub slot_to: Option<i64>,
    pub file_id: Option<String>,
    pub confirmed_by: Option<String>,
    pub updated_at: i64,
}

/// One participant of a meeting; `id` is the request id its agent answers.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = meeting_participants, treat_none_as_default_value = false)]
pub struct MeetingParticipant {
    pub id: String,
    pub step_id: String,
    pub workspace_id: String,
    pub position: i32,
    pub email: String,
    pub name: Option<String>,
    pub member_id: Option<String>,
    pub agent_id: Option<String>,
    /// JSON list of `{"from", "to"}`.
    pub intervals: Option<String>,
    pub responded_at: Option<i64>,
}

pub async fn insert_meeting(
    db: &mut Db<'_>,
    meeting: &Meeting,
    participants: &[MeetingParticipant],
) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(meetings::table)
        .values(meeting)
        .execute(conn)
        .await)?;
    for row in participants {
        crate::db!(db, |conn| diesel::insert_into(meeting_participants::table)
            .values(row)
            .execute(conn)
            .await)?;
    }
    Ok(())
}

/// The meetings among `step_ids` (most steps are none).
pub async fn meetings_among(db: &mut Db<'_>, step_ids: &[String]) -> QueryResult<Vec<Meeting>> {
    match step_ids {
        [] => Ok(Vec::new()),
        [id] => crate::db!(db, |conn| {
            meetings::table
                .filter(meetings::step_id.eq(id))
                .select(Meeting::as_select())
                .load(conn)
                .await
        }),
        _ => crate::db!(db, |conn| {
            meetings::table
                .filter(meetings::step_id.eq_any(step_ids))
                .select(Meeting::as_select())
                .load(conn)
                .await
        }),
    }
}

pub async fn find_meeting(db: &mut Db<'_>, step_id: &str) -> QueryResult<Option<Meeting>> {
    crate::db!(db, |conn| {
        meetings::table
            .filter(meetings::step_id.eq(step_id))
            .select(Meeting::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn participants_of(
    db: &mut Db<'_>,
    step_id: &str,
) -> QueryResult<Vec<MeetingParticipant>> {
    crate::db!(db, |conn| {
        meeting_participants::table
            .filter(meeting_participants::step_id.eq(step_id))
            .order(meeting_participants::position.asc())
            .select(MeetingParticipant::as_select())
            .load(conn)
            .await
    })
}

pub async fn find_participant(
    db: &mut Db<'_>,
    workspace_id: &str,
    id: &str,
) -> QueryResult<Option<MeetingParticipant>> {
    crate::db!(db, |conn| {
        meeting_participants::table
            .filter(
                meeting_participants::id
                    .eq(id)
                    .and(meeting_participants::workspace_id.eq(workspace_id)),
            )
            .select(MeetingParticipant::as_select())
            .first(conn)
            .await
            .optional()
    })
}

pub async fn set_intervals(
    db: &mut Db<'_>,
    participant_id: &str,
    intervals: &str,
    now: i64,
) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(meeting_participants::table)
            .filter(meeting_participants::id.eq(participant_id))
            .set((
                meeting_participants::intervals.eq(intervals),
                meeting_participants::responded_at.eq(now),
            ))
            .execute(conn)
            .await
    })
}

/// Writes the meeting's status, slot, invitation and confirmer.
pub async fn update_meeting(db: &mut Db<'_>, meeting: &Meeting) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(meetings::table)
            .filter(meetings::step_id.eq(&meeting.step_id))
            .set((
                meetings::status.eq(&meeting.status),
                meetings::window_from.eq(meeting.window_from),
                meetings::window_to.eq(meeting.window_to),
                meetings::slot_from.eq(meeting.slot_from),
                meetings::slot_to.eq(meeting.slot_to),
                meetings::file_id.eq(&meeting.file_id),
                meetings::confirmed_by.eq(&meeting.confirmed_by),
                meetings::updated_at.eq(meeting.updated_at),
            ))
            .execute(conn)
            .await
    })
}

/// Drops every participant's answer (the window changed).
pub async fn reset_participants(db: &mut Db<'_>, step_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| {
        diesel::update(meeting_participants::table)
            .filter(meeting_participants::step_id.eq(step_id))
            .set((
                meeting_participants::intervals.eq(None::<String>),
                meeting_participants::responded_at.eq(None::<i64>),
            ))
            .execute(conn)
            .await
    })
}
