//! A person moves a task on: a draft is published, a failed or skipped step is retried
//! (which re-opens a failed task).

use serde_json::json;

use crate::accounts::{Actor, authority};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::Outbox;
use crate::store::{Db, new_id, now_ms};
use crate::tasks::model::{self, Step, StepChange, Task, WorkflowChangeRow};
use crate::tasks::settle::{self, end_if_finished, followers, move_task};
use crate::tasks::timeline::By;
use crate::tasks::{
    StepStatus, TaskStatus, TaskView, frames, get_task, load_view, push_ready_steps,
    push_task_created, step_status, task_status, transition,
};

/// A draft becomes active: its first steps become ready and everyone involved hears of
/// the task (`task.created`, then `step.ready`). A draft in planning starts when its plan
/// is accepted instead.
pub async fn publish_task(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<TaskView> {
    let by = By::actor(actor);
    let mut outbox = Outbox::for_request();
    ctx.store
        .transaction(async |db| {
            let task = find_task(db, actor, task_id).await?;
            authority::may_steer(actor, &task)?;
            let from = task_status(&task);
            if from != TaskStatus::Draft {
                return Err(Error::conflict(format!(
                    "task is {from}; only a draft can be published"
                )));
            }
            if let Some(plan) = model::latest_plan(db, &task.id).await?
                && plan.status != "accepted"
            {
                return Err(Error::conflict(format!(
                    "task is being planned (round {} is {}); accept its plan with \
                     POST /v1/tasks/{}/plan/accept",
                    plan.round, plan.status, task.id
                )));
            }
            publish_in_tx(db, &mut outbox, &task, &by).await?;
            outbox.flush(db, &task.workspace_id).await?;
            Ok(())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    get_task(ctx, actor, task_id).await
}

/// Makes the locked draft `task` active and queues what its publication tells: each
/// involved agent's `task.created` with its own steps, then readiness.
pub(crate) async fn publish_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    by: &By,
) -> Result<()> {
    let task = move_task(db, task, TaskStatus::Active, None, by, None).await?;
    // Those a created task is told to hear of it now (see `create_task`).
    let steps = model::steps_of_task(db, &task.id).await?;
    let view = load_view(db, &task, steps).await?;
    push_task_created(outbox, &view);
    let settled = settle::settle(db, outbox, &task, by).await?;
    end_if_finished(db, outbox, &task, &settled.steps, by).await?;
    Ok(())
}

/// A failed or skipped step gets a new attempt: it becomes `ready` (or `pending` until
/// its dependencies finish) with its failure count reset, the steps its failure skipped
/// come back, and a failed task is active again. Recorded in the workflow history.
pub async fn retry_step(
    ctx: &Ctx,
    actor: &Actor,
    step_id: &str,
    reason: Option<&str>,
) -> Result<TaskView> {
    crate::content::person_text_opt("reason", reason, crate::content::MAX_REASON_BYTES)?;
    let reason = reason.map(str::trim).filter(|reason| !reason.is_empty());
    let by = By::actor(actor);
    let mut outbox = Outbox::for_request();
    let task_id = ctx
        .store
        .transaction(async |db| {
            let step = model::find_step(db, actor.workspace_id(), step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            let task = model::lock_task(db, actor.workspace_id(), &step.task_id)
                .await?
                .ok_or_else(|| Error::not_found("task"))?;
            // Read again under the task's lock: a concurrent retry of the same step is
            // seen here, and this one is refused.
            let step = model::find_step(db, actor.workspace_id(), step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            authority::may_steer(actor, &task)?;
            let from = task_status(&task);
            if !matches!(
                from,
                TaskStatus::Active | TaskStatus::Paused | TaskStatus::Failed
            ) {
                return Err(Error::conflict(format!(
                    "task is {from}; only a step of an active, paused or failed task can be retried"
                )));
            }
            let status = step_status(&step);
            if !matches!(status, StepStatus::Failed | StepStatus::Skipped) {
                return Err(Error::conflict(format!(
                    "step `{}` is {status}; only a failed or skipped step can be retried",
                    step.key
                )));
            }
            let mut steps = model::steps_of_task(db, &task.id).await?;
            if let Some(cause) = step
                .skipped_because
                .as_ref()
                .and_then(|cause| steps.iter().find(|other| &other.id == cause))
                .filter(|cause| step_status(cause) == StepStatus::Failed)
            {
                return Err(Error::conflict(format!(
                    "step `{}` was skipped because step `{}` failed; retry `{}`",
                    step.key, cause.key, cause.key
                )));
            }
            // A failed task is active again before anything of it moves.
            let task = if from == TaskStatus::Failed {
                move_task(db, &task, TaskStatus::Active, None, &by, reason).await?
            } else {
                task
            };
            let retried_reason = reason.unwrap_or("retried");
            let again = |failures: Option<i32>| StepChange {
                claimed_by: Some(None),
                lease_until: Some(None),
                status_reason: Some(None),
                skipped_because: Some(None),
                completed_at: Some(None),
                progress_percent: Some(None),
                progress_message: Some(None),
                failures,
                ..Default::default()
            };
            for other in &mut steps {
                let is_retried = other.id == step.id;
                let was_skipped_by_it = other.skipped_because.as_deref() == Some(step.id.as_str())
                    && step_status(other) == StepStatus::Skipped;
                if !is_retried && !was_skipped_by_it {
                    continue;
                }
                let change = if is_retried {
                    StepChange {
                        attempt: Some(other.attempt + 1),
                        ..again(Some(0))
                    }
                } else {
                    again(None)
                };
                // Back to `pending`; settling makes it ready when its dependencies are met.
                transition(db, other, StepStatus::Pending, change, &by, Some(retried_reason))
                    .await?;
            }
            let record = WorkflowChangeRow {
                id: new_id(),
                workspace_id: task.workspace_id.clone(),
                task_id: task.id.clone(),
                kind: "step_retried".into(),
                step_id: Some(step.id.clone()),
                before_json: Some(
                    json!({"status": status.as_str(), "attempt": step.attempt, "reason": step.status_reason})
                        .to_string(),
                ),
                after_json: Some(json!({"attempt": step.attempt + 1}).to_string()),
                reason: retried_reason.to_string(),
                triggered_by: actor.describe(),
                created_at: now_ms(),
            };
            model::insert_workflow_change(db, &record).await?;
            if from == TaskStatus::Failed {
                let audiences = followers(db, &task, &steps).await?;
                outbox.push_all(&audiences, &frames::task_updated(&task));
                // Steps that went back to `ready` while the task was failed (a retryable
                // failure, a lease expiry, a rejection on another branch) were not pushed.
                let waiting: Vec<Step> = steps
                    .iter()
                    .filter(|other| step_status(other) == StepStatus::Ready)
                    .cloned()
                    .collect();
                push_ready_steps(db, &mut outbox, &task, &waiting).await?;
            }
            let settled = settle::settle(db, &mut outbox, &task, &by).await?;
            end_if_finished(db, &mut outbox, &task, &settled.steps, &by).await?;
            model::touch_task(db, &task.id, now_ms()).await?;
            outbox.flush(db, &task.workspace_id).await?;
            Ok::<_, Error>(task.id)
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    get_task(ctx, actor, &task_id).await
}

async fn find_task(db: &mut Db<'_>, actor: &Actor, task_id: &str) -> Result<Task> {
    model::lock_task(db, actor.workspace_id(), task_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))
}
