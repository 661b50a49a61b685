//! Workflow changes on a live task: add, remove and reorder steps, change assignees or
//! dependencies. Each operation is recorded with before, after, reason and who did it;
//! a change that would break the DAG or touch a finished or running step is refused.

use std::collections::HashMap;

use agenthub_protocol::{ServerFrame, WorkflowChanged};
use serde_json::json;

use crate::accounts::{Actor, authority};
use crate::content::{self, MAX_REASON_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::model::{self, Step, StepChange, Task, WorkflowChangeRow};
use crate::tasks::settle::{self, end_if_finished};
use crate::tasks::timeline::By;
use crate::tasks::{
    MAX_STEPS, NewStep, StepStatus, TaskView, check_names, dag, frames, get_task, insert_steps,
    load_view, member_audiences, push_ready, push_ready_steps, step_status, task_status,
    transition, validate_new_step,
};

/// One operation of a workflow change.
#[derive(Debug, Clone)]
pub enum WorkflowOp {
    AddStep(Box<NewStep>),
    /// A step by key or id.
    RemoveStep {
        step: String,
    },
    /// Every step key, in the new order.
    Reorder {
        order: Vec<String>,
    },
    SetAssignees {
        step: String,
        assignees: Vec<String>,
    },
    SetDependencies {
        step: String,
        depends_on: Vec<String>,
    },
    /// A pending or ready step is not needed: it is skipped with the change's reason and
    /// its dependents go on as if it were done.
    SkipStep {
        step: String,
    },
}

/// A change request: operations applied in order, all or nothing.
#[derive(Debug, Clone)]
pub struct WorkflowChange {
    pub reason: String,
    pub operations: Vec<WorkflowOp>,
}

pub async fn change_workflow(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    change: WorkflowChange,
) -> Result<TaskView> {
    check_change(&change)?;
    let by = By::actor(actor);
    let mut outbox = Outbox::for_request();
    ctx.store
        .transaction(async |db| {
            let task = model::lock_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            authority::may_steer(actor, &task)?;
            change_in_tx(db, &mut outbox, &task, &change, &by, &actor.describe()).await?;
            outbox.flush(db, &task.workspace_id).await?;
            Ok::<_, Error>(())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    get_task(ctx, actor, task_id).await
}

/// The rules of a change that need no database: a reason, 1 to [`MAX_STEPS`] operations,
/// names a lookup can use.
pub(crate) fn check_change(change: &WorkflowChange) -> Result<()> {
    if change.reason.trim().is_empty() {
        return Err(Error::invalid_field(
            "reason",
            "a workflow change needs a reason",
        ));
    }
    content::person_text("reason", &change.reason, MAX_REASON_BYTES)?;
    if change.operations.is_empty() {
        return Err(Error::invalid_field(
            "operations",
            "a workflow change needs at least one operation",
        ));
    }
    if change.operations.len() > MAX_STEPS {
        return Err(Error::invalid_field(
            "operations",
            format!("a workflow change has at most {MAX_STEPS} operations"),
        ));
    }
    for op in &change.operations {
        check_op(op)?;
    }
    Ok(())
}

/// Applies a checked change to the locked `task`, records each operation with
/// `triggered_by` and queues `workflow.changed` for the task's agents and members.
pub(crate) async fn change_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    change: &WorkflowChange,
    by: &By,
    triggered_by: &str,
) -> Result<()> {
    if !matches!(task.status.as_str(), "active" | "paused" | "draft") {
        return Err(Error::conflict(format!(
            "task is {}; its workflow cannot change",
            task.status
        )));
    }
    let mut records = Vec::new();
    for op in &change.operations {
        records.push(apply(db, outbox, task, op, by, &change.reason).await?);
    }
    // The graph must still be a DAG, within the size a task may have.
    let steps = model::steps_of_task(db, &task.id).await?;
    if steps.len() > MAX_STEPS {
        return Err(Error::invalid_field(
            "operations",
            format!(
                "the change would leave the task with {} steps; a task has at most \
                 {MAX_STEPS}",
                steps.len()
            ),
        ));
    }
    let ids: Vec<String> = steps.iter().map(|step| step.id.clone()).collect();
    let dependencies = model::dependencies_of(db, &ids).await?;
    let key_of: HashMap<&str, &str> = steps
        .iter()
        .map(|step| (step.id.as_str(), step.key.as_str()))
        .collect();
    let keys: Vec<&str> = steps.iter().map(|step| step.key.as_str()).collect();
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for (step_id, dep) in &dependencies {
        edges
            .entry(key_of[step_id.as_str()])
            .or_default()
            .push(key_of[dep.as_str()]);
    }
    dag::validate(&keys, &edges)?;
    let settled = settle::settle(db, outbox, task, by).await?;
    let view = load_view(db, task, settled.steps.clone()).await?;
    let now = now_ms();
    let agents: Vec<Audience> = view
        .involved_agents
        .iter()
        .map(|agent| Audience::Agent(agent.id.clone()))
        .collect();
    let members = member_audiences(task, &view.steps);
    for (kind, step_id, before, after) in records {
        let row = WorkflowChangeRow {
            id: new_id(),
            workspace_id: task.workspace_id.clone(),
            task_id: task.id.clone(),
            kind: kind.to_string(),
            step_id: step_id.clone(),
            before_json: before.map(|value| value.to_string()),
            after_json: after.map(|value| value.to_string()),
            reason: change.reason.clone(),
            triggered_by: triggered_by.to_string(),
            created_at: now,
        };
        model::insert_workflow_change(db, &row).await?;
        let frame = ServerFrame::WorkflowChanged(WorkflowChanged {
            seq: 0,
            task_id: frames::uuid(&task.id),
            change_id: frames::uuid(&row.id),
            kind: row.kind.clone(),
            reason: row.reason.clone(),
            step_id: step_id.as_deref().map(frames::uuid),
        });
        outbox.push_all(&agents, &frame);
        outbox.push_all(&members, &frame);
    }
    model::touch_task(db, &task.id, now).await?;
    // Skipping the last open step finishes the task.
    end_if_finished(db, outbox, task, &settled.steps, by).await?;
    Ok(())
}

/// What an operation names is text a lookup can use on both backends.
fn check_op(op: &WorkflowOp) -> Result<()> {
    match op {
        WorkflowOp::AddStep(new) => validate_new_step(new),
        WorkflowOp::RemoveStep { step } | WorkflowOp::SkipStep { step } => {
            check_names("step", std::slice::from_ref(step))
        }
        WorkflowOp::Reorder { order } => check_names("order", order),
        WorkflowOp::SetAssignees { step, assignees } => {
            check_names("step", std::slice::from_ref(step))?;
            check_names("assignees", assignees)
        }
        WorkflowOp::SetDependencies { step, depends_on } => {
            check_names("step", std::slice::from_ref(step))?;
            check_names("depends_on", depends_on)
        }
    }
}

type Record = (
    &'static str,
    Option<String>,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
);

async fn apply(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    op: &WorkflowOp,
    by: &By,
    reason: &str,
) -> Result<Record> {
    match op {
        WorkflowOp::SkipStep { step } => {
            let mut step = find_changeable(db, task, step).await?;
            let before = describe(&step_view(db, task, &step).await?);
            let was_ready = step.status == StepStatus::Ready.as_str();
            let change = StepChange {
                status_reason: Some(Some(reason.to_string())),
                ..Default::default()
            };
            transition(db, &mut step, StepStatus::Skipped, change, by, Some(reason)).await?;
            if was_ready {
                for (_, agent_id) in model::assignees_of(db, std::slice::from_ref(&step.id)).await?
                {
                    outbox.push(
                        Audience::Agent(agent_id),
                        frames::step_revoked(&step, step.attempt, "the step was skipped"),
                    );
                }
            }
            let after = json!({"key": step.key, "status": step.status});
            Ok((
                "step_skipped",
                Some(step.id.clone()),
                Some(before),
                Some(after),
            ))
        }
        WorkflowOp::AddStep(new) => {
            validate_new_step(new)?;
            let existing = model::steps_of_task(db, &task.id).await?;
            let added = insert_steps(db, task, std::slice::from_ref(new), &existing).await?;
            let step = &added[0];
            if step.status == StepStatus::Ready.as_str() && task_status(task).as_str() == "active" {
                push_ready_steps(db, outbox, task, std::slice::from_ref(step)).await?;
            }
            let after = json!({"key": step.key, "title": step.title, "assignees": new.assignees, "depends_on": new.depends_on});
            Ok(("step_added", Some(step.id.clone()), None, Some(after)))
        }
        WorkflowOp::RemoveStep { step } => {
            let step = find_changeable(db, task, step).await?;
            let view = step_view(db, task, &step).await?;
            let before = describe(&view);
            for (agent_id, _) in &view.assignees {
                if step.status == StepStatus::Ready.as_str() {
                    outbox.push(
                        Audience::Agent(agent_id.clone()),
                        frames::step_revoked(&step, step.attempt, "the step was removed"),
                    );
                }
            }
            model::delete_step(db, &step.id).await?;
            Ok(("step_removed", Some(step.id.clone()), Some(before), None))
        }
        WorkflowOp::Reorder { order } => {
            let steps = model::steps_of_task(db, &task.id).await?;
            let mut keys: Vec<&str> = order.iter().map(String::as_str).collect();
            keys.sort_unstable();
            let mut existing: Vec<&str> = steps.iter().map(|step| step.key.as_str()).collect();
            existing.sort_unstable();
            if keys != existing {
                return Err(Error::invalid_field(
                    "order",
                    "order must list every step key of the task exactly once",
                ));
            }
            let before: Vec<&str> = steps.iter().map(|step| step.key.as_str()).collect();
            for (position, key) in order.iter().enumerate() {
                let step = steps
                    .iter()
                    .find(|step| &step.key == key)
                    .ok_or_else(|| Error::not_found("step"))?;
                let change = StepChange {
                    position: Some(position as i32),
                    updated_at: Some(now_ms()),
                    ..Default::default()
                };
                if !model::update_step_if(db, &step.id, &step.status, step.attempt, &change).await?
                {
                    return Err(Error::conflict(format!(
                        "step `{key}` changed meanwhile; retry"
                    )));
                }
            }
            Ok((
                "steps_reordered",
                None,
                Some(json!(before)),
                Some(json!(order)),
            ))
        }
        WorkflowOp::SetAssignees { step, assignees } => {
            let step = find_changeable(db, task, step).await?;
            if assignees.is_empty() {
                return Err(Error::invalid_field(
                    "assignees",
                    format!("step `{}` needs at least one assignee", step.key),
                ));
            }
            let before_view = load_view(db, task, vec![step.clone()]).await?;
            let before: Vec<String> = before_view.steps[0]
                .assignees
                .iter()
                .map(|(_, name)| name.clone())
                .collect();
            model::delete_assignees(db, &step.id).await?;
            let required: Vec<String> =
                serde_json::from_str(&step.required_capabilities).unwrap_or_default();
            let rows = crate::tasks::resolve_assignees(
                db,
                &task.workspace_id,
                &step.id,
                &step.key,
                assignees,
                &required,
                "assignees",
            )
            .await?;
            model::insert_assignees(db, &rows).await?;
            let after_view = load_view(db, task, vec![step.clone()]).await?;
            if step.status == StepStatus::Ready.as_str() {
                for (agent_id, _) in &before_view.steps[0].assignees {
                    if !rows.iter().any(|row| &row.agent_id == agent_id) {
                        outbox.push(
                            Audience::Agent(agent_id.clone()),
                            frames::step_revoked(&step, step.attempt, "reassigned"),
                        );
                    }
                }
                if task_status(task).as_str() == "active" {
                    push_ready(db, outbox, task, &after_view.steps[0]).await?;
                }
            }
            let after: Vec<String> = after_view.steps[0]
                .assignees
                .iter()
                .map(|(_, name)| name.clone())
                .collect();
            Ok((
                "assignees_changed",
                Some(step.id.clone()),
                Some(json!(before)),
                Some(json!(after)),
            ))
        }
        WorkflowOp::SetDependencies { step, depends_on } => {
            let step = find_changeable(db, task, step).await?;
            let steps = model::steps_of_task(db, &task.id).await?;
            let before = step_view(db, task, &step).await?.depends_on;
            model::delete_dependencies(db, &step.id).await?;
            let mut rows = Vec::new();
            for key in crate::tasks::dedup(depends_on) {
                let dep = steps
                    .iter()
                    .find(|other| other.key == key || other.id == key)
                    .ok_or_else(|| {
                        Error::invalid_field(
                            "depends_on",
                            format!(
                                "step `{}` depends on `{key}`, which is not a step of this task",
                                step.key
                            ),
                        )
                    })?;
                rows.push((step.id.clone(), dep.id.clone()));
            }
            if !rows.is_empty() {
                model::insert_dependencies(db, &rows).await?;
            }
            Ok((
                "dependencies_changed",
                Some(step.id.clone()),
                Some(json!(before)),
                Some(json!(depends_on)),
            ))
        }
    }
}

/// A step by key or id that a workflow change may touch: pending or ready.
async fn find_changeable(db: &mut Db<'_>, task: &Task, key_or_id: &str) -> Result<Step> {
    let steps = model::steps_of_task(db, &task.id).await?;
    let step = steps
        .into_iter()
        .find(|step| step.key == key_or_id || step.id == key_or_id)
        .ok_or_else(|| Error::invalid_field("step", format!("task has no step `{key_or_id}`")))?;
    let status = step_status(&step);
    if status.is_finished() {
        return Err(Error::conflict(format!(
            "step `{}` is {status}; finished steps cannot change",
            step.key
        )));
    }
    if !matches!(status, StepStatus::Pending | StepStatus::Ready) {
        return Err(Error::conflict(format!(
            "step `{}` is {status}; only pending or ready steps can change",
            step.key
        )));
    }
    Ok(step)
}

/// The view of one step of `task`, with the keys of its dependencies (which
/// [`load_view`] resolves only among the steps it is given).
async fn step_view(db: &mut Db<'_>, task: &Task, step: &Step) -> Result<crate::tasks::StepView> {
    let steps = model::steps_of_task(db, &task.id).await?;
    load_view(db, task, steps)
        .await?
        .steps
        .into_iter()
        .find(|view| view.step.id == step.id)
        .ok_or_else(|| Error::not_found("step"))
}

fn describe(view: &crate::tasks::StepView) -> serde_json::Value {
    json!({
        "key": view.step.key,
        "title": view.step.title,
        "status": view.step.status,
        "assignees": view.assignees.iter().map(|(_, name)| name).collect::<Vec<_>>(),
        "depends_on": view.depends_on,
    })
}
