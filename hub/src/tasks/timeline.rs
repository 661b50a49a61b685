//! The timeline: every status change of a task and of its steps, with who made it and
//! why, recorded in the transaction that makes the change (`timeline` rows).

use crate::accounts::{Actor, AgentActor};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::model::{self, Step, Task, TimelineRow};

/// Who made a change: a member, an agent, or the hub itself (the lease sweeper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct By {
    /// `member`, `agent` or `hub`.
    pub kind: String,
    pub id: Option<String>,
    /// The member's email or the agent's name.
    pub name: Option<String>,
}

impl By {
    pub fn hub() -> By {
        By {
            kind: "hub".into(),
            id: None,
            name: None,
        }
    }

    pub fn agent(agent: &AgentActor) -> By {
        By {
            kind: "agent".into(),
            id: Some(agent.agent_id.clone()),
            name: Some(agent.agent_name.clone()),
        }
    }

    pub fn actor(actor: &Actor) -> By {
        match actor {
            Actor::Member(member) => By {
                kind: "member".into(),
                id: Some(member.member_id.clone()),
                name: Some(member.email.clone()),
            },
            Actor::Agent(agent) => By::agent(agent),
        }
    }

    fn of_row(row: &TimelineRow) -> By {
        By {
            kind: row.actor_kind.clone(),
            id: row.actor_id.clone(),
            name: row.actor_name.clone(),
        }
    }
}

/// One entry of a task's timeline.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    /// Unix milliseconds.
    pub at: i64,
    /// Empty for a change of the task itself.
    pub step_id: Option<String>,
    pub step_key: Option<String>,
    /// Empty when the task or step was created.
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
    pub attempt: Option<i32>,
    pub actor: By,
}

/// A task's timeline, oldest first, with the steps' keys (a removed step has none).
pub async fn timeline(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<Vec<TimelineEntry>> {
    ctx.store
        .read(async |db| {
            let task = model::find_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            let steps = model::steps_of_task(db, &task.id).await?;
            let rows = model::timeline_of(db, &task.id).await?;
            Ok(rows
                .into_iter()
                .map(|row| TimelineEntry {
                    at: row.created_at,
                    step_key: row.step_id.as_ref().and_then(|step_id| {
                        steps
                            .iter()
                            .find(|step| &step.id == step_id)
                            .map(|step| step.key.clone())
                    }),
                    actor: By::of_row(&row),
                    step_id: row.step_id,
                    from: row.from_status,
                    to: row.to_status,
                    reason: row.reason,
                    attempt: row.attempt,
                })
                .collect())
        })
        .await
}

/// Records a step's move `from` → its current status.
pub(crate) async fn record_step(
    db: &mut Db<'_>,
    step: &Step,
    from: Option<&str>,
    by: &By,
    reason: Option<&str>,
) -> Result<()> {
    let row = TimelineRow {
        from_status: from.map(str::to_string),
        reason: reason.map(str::to_string),
        ..step_row(step, by)
    };
    Ok(model::insert_timeline(db, &[row]).await?)
}

/// Records a step's moves `from` → `via` → its current status, in one insert.
pub(crate) async fn record_step_via(
    db: &mut Db<'_>,
    step: &Step,
    from: &str,
    via: &str,
    by: &By,
) -> Result<()> {
    let first = TimelineRow {
        from_status: Some(from.to_string()),
        to_status: via.to_string(),
        ..step_row(step, by)
    };
    let second = TimelineRow {
        from_status: Some(via.to_string()),
        ..step_row(step, by)
    };
    Ok(model::insert_timeline(db, &[first, second]).await?)
}

/// Records the creation of a task and its steps, in one go.
pub(crate) async fn record_created(
    db: &mut Db<'_>,
    task: &Task,
    steps: &[Step],
    by: &By,
) -> Result<()> {
    let mut rows = vec![task_row(task, by)];
    rows.extend(steps.iter().map(|step| step_row(step, by)));
    Ok(model::insert_timeline(db, &rows).await?)
}

/// Records a task's move `from` → its current status.
pub(crate) async fn record_task(
    db: &mut Db<'_>,
    task: &Task,
    from: &str,
    by: &By,
    reason: Option<&str>,
) -> Result<()> {
    let row = TimelineRow {
        from_status: Some(from.to_string()),
        reason: reason.map(str::to_string),
        ..task_row(task, by)
    };
    Ok(model::insert_timeline(db, &[row]).await?)
}

/// Who moved the step to `status` last (the agent that failed it, the sweeper).
pub(crate) async fn last_mover(db: &mut Db<'_>, step: &Step, status: &str) -> Result<Option<By>> {
    Ok(
        model::last_timeline_of_step(db, &step.task_id, &step.id, status)
            .await?
            .as_ref()
            .map(By::of_row),
    )
}

/// The task's arrival at its current status, made by `by` (no `from`, no reason).
fn task_row(task: &Task, by: &By) -> TimelineRow {
    TimelineRow {
        to_status: task.status.clone(),
        ..entry(&task.workspace_id, &task.id, by)
    }
}

/// The step's arrival at its current status and attempt, made by `by`.
fn step_row(step: &Step, by: &By) -> TimelineRow {
    TimelineRow {
        step_id: Some(step.id.clone()),
        to_status: step.status.clone(),
        attempt: Some(step.attempt),
        ..entry(&step.workspace_id, &step.task_id, by)
    }
}

/// An entry of the task's timeline made now by `by`, with nothing else filled in.
fn entry(workspace_id: &str, task_id: &str, by: &By) -> TimelineRow {
    TimelineRow {
        id: new_id(),
        workspace_id: workspace_id.to_string(),
        task_id: task_id.to_string(),
        step_id: None,
        from_status: None,
        to_status: String::new(),
        reason: None,
        attempt: None,
        actor_kind: by.kind.clone(),
        actor_id: by.id.clone(),
        actor_name: by.name.clone(),
        created_at: now_ms(),
    }
}
