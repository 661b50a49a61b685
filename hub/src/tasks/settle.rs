//! How a task moves on after one of its steps changed: which steps become ready, which
//! are skipped because a step failed for good, and when the task ends (`done`, `failed`).
//!
//! Every task ends. A step that fails for good (without `continue_on_failure`) fails its
//! task at once: every step that has not started is skipped (those downstream of the
//! failure name it; the others say the task failed), nothing new starts, and steps that
//! are running on independent branches finish and are recorded. A person's retry of the
//! failed step brings back the steps its failure skipped and re-opens the task.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::agents;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::store::{Ahead, Db, now_ms};
use crate::tasks::model::{self, Step, StepChange, Task};
use crate::tasks::timeline::{self, By};
use crate::tasks::{
    StepStatus, TaskStatus, frames, push_ready_steps, step_status, task_status, transition,
};

/// Whether a dependency on `step` is met: it is done, skipped by a person, or failed
/// with `continue_on_failure`.
pub(crate) fn satisfies(step: &Step) -> bool {
    match step_status(step) {
        StepStatus::Done => true,
        StepStatus::Skipped => step.skipped_because.is_none(),
        StepStatus::Failed => step.continue_on_failure,
        _ => false,
    }
}

/// A step that failed for good and takes its task down with it.
fn fails_task(step: &Step) -> bool {
    step_status(step) == StepStatus::Failed && !step.continue_on_failure
}

/// What [`settle`] did.
pub(crate) struct Settled {
    /// Every step of the task as it is now.
    pub steps: Vec<Step>,
    /// The steps that became ready.
    pub newly_ready: Vec<Step>,
}

/// Moves the task's steps on after a change: with a step failed for good, every step
/// that has not started is skipped; otherwise pending steps whose dependencies are met
/// become `ready` (pushed when the task is active) and ready steps with unmet
/// dependencies go back to `pending`. Ends nothing: see [`end_if_finished`].
pub(crate) async fn settle(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    by: &By,
) -> Result<Settled> {
    let steps = model::steps_of_task(db, &task.id).await?;
    settle_steps(db, outbox, task, by, steps).await
}

/// [`settle`] after `moved`, a step of the task its caller has just changed (and holds as
/// it is now): only the task's other steps are read.
pub(crate) async fn settle_after(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    by: &By,
    moved: &Step,
) -> Result<Settled> {
    let mut steps = model::other_steps_of_task(db, &task.id, &moved.id).await?;
    let at = steps.partition_point(|step| step.position < moved.position);
    steps.insert(at, moved.clone());
    settle_steps(db, outbox, task, by, steps).await
}

/// [`settle`] over `steps`, every step of the task as it is now, in their order.
async fn settle_steps(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    by: &By,
    mut steps: Vec<Step>,
) -> Result<Settled> {
    // Only pending and ready steps move here; without them the dependencies are not read.
    let may_move = steps
        .iter()
        .any(|step| matches!(step_status(step), StepStatus::Pending | StepStatus::Ready));
    let dependencies = if may_move {
        let ids: Vec<String> = steps.iter().map(|step| step.id.clone()).collect();
        model::dependencies_of(db, &ids).await?
    } else {
        Vec::new()
    };
    let mut newly_ready = Vec::new();
    let open = matches!(task_status(task), TaskStatus::Active | TaskStatus::Paused);
    if open && steps.iter().any(fails_task) {
        skip_unstarted(db, outbox, &mut steps, &dependencies, by).await?;
        return Ok(Settled { steps, newly_ready });
    }
    let met: HashMap<String, bool> = steps
        .iter()
        .map(|step| (step.id.clone(), satisfies(step)))
        .collect();
    let mut unmet: HashSet<&str> = HashSet::new();
    for (step_id, dep) in &dependencies {
        if !met.get(dep).copied().unwrap_or(false) {
            unmet.insert(step_id.as_str());
        }
    }
    let may_start = task_status(task) != TaskStatus::Draft;
    for step in &mut steps {
        match step_status(step) {
            StepStatus::Pending if may_start && !unmet.contains(step.id.as_str()) => {
                transition(db, step, StepStatus::Ready, StepChange::default(), by, None).await?;
                if task_status(task) == TaskStatus::Active {
                    push_ready_steps(db, outbox, task, std::slice::from_ref(step)).await?;
                }
                newly_ready.push(step.clone());
            }
            StepStatus::Ready if unmet.contains(step.id.as_str()) => {
                let reason = "a new dependency must finish first";
                transition(
                    db,
                    step,
                    StepStatus::Pending,
                    StepChange::default(),
                    by,
                    Some(reason),
                )
                .await?;
                revoke_from_assignees(db, outbox, step, reason).await?;
            }
            _ => {}
        }
    }
    Ok(Settled { steps, newly_ready })
}

/// Skips every pending or ready step of a task with a step failed for good. A step
/// downstream of a failed step names it; the others name the first failure.
async fn skip_unstarted(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    steps: &mut [Step],
    dependencies: &[(String, String)],
    by: &By,
) -> Result<()> {
    let failed: Vec<Step> = first_failures(steps);
    let Some(first) = failed.first() else {
        return Ok(());
    };
    let mut cause_of: HashMap<String, &Step> = HashMap::new();
    for failure in &failed {
        for step_id in downstream(&failure.id, dependencies) {
            cause_of.entry(step_id).or_insert(failure);
        }
    }
    for step in steps.iter_mut() {
        let status = step_status(step);
        if !matches!(status, StepStatus::Pending | StepStatus::Ready) {
            continue;
        }
        let (cause, reason) = match cause_of.get(&step.id) {
            Some(cause) => (*cause, format!("step `{}` failed", cause.key)),
            None => (
                first,
                format!("the task failed: step `{}` failed", first.key),
            ),
        };
        let change = StepChange {
            status_reason: Some(Some(reason.clone())),
            skipped_because: Some(Some(cause.id.clone())),
            ..Default::default()
        };
        transition(db, step, StepStatus::Skipped, change, by, Some(&reason)).await?;
        if status == StepStatus::Ready {
            revoke_from_assignees(db, outbox, step, &format!("skipped: {reason}")).await?;
        }
    }
    Ok(())
}

/// The steps failed for good, the earliest failure first.
fn first_failures(steps: &[Step]) -> Vec<Step> {
    let mut failed: Vec<Step> = steps
        .iter()
        .filter(|step| fails_task(step))
        .cloned()
        .collect();
    failed.sort_by_key(|step| (step.completed_at.unwrap_or(i64::MAX), step.position));
    failed
}

/// The ids of every step that depends on `step_id`, directly or not.
fn downstream(step_id: &str, dependencies: &[(String, String)]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut queue = vec![step_id.to_string()];
    while let Some(current) = queue.pop() {
        for (dependent, dep) in dependencies {
            if dep == &current && !found.contains(dependent) {
                found.push(dependent.clone());
                queue.push(dependent.clone());
            }
        }
    }
    found
}

async fn revoke_from_assignees(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    step: &Step,
    reason: &str,
) -> Result<()> {
    let assignees = model::assignees_of(db, std::slice::from_ref(&step.id)).await?;
    for (_, agent_id) in assignees {
        outbox.push(
            Audience::Agent(agent_id),
            frames::step_revoked(step, step.attempt, reason),
        );
    }
    Ok(())
}

/// Ends the task if it is over: `failed` when a step failed for good (the task may be
/// active or paused), `done` when every step of an active task is finished. Writes the
/// end's `task.updated` (after whatever the caller queued for the step that caused it)
/// to everyone who follows the task. Returns the ended task.
pub(crate) async fn end_if_finished(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    steps: &[Step],
    by: &By,
) -> Result<Option<Task>> {
    end_if_finished_with(db, outbox, task, steps, by, None).await
}

/// [`end_if_finished`] with the assignees of every step in `steps`, (step id, agent id),
/// when the caller has already read them.
pub(crate) async fn end_if_finished_with(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    steps: &[Step],
    by: &By,
    assignees: Option<Vec<(String, String)>>,
) -> Result<Option<Task>> {
    let from = task_status(task);
    let failures = first_failures(steps);
    let (to, outcome) = if let Some(failed) = failures.first() {
        if !matches!(from, TaskStatus::Active | TaskStatus::Paused) {
            return Ok(None);
        }
        let culprit = timeline::last_mover(db, failed, StepStatus::Failed.as_str())
            .await?
            .unwrap_or_else(|| by.clone());
        let outcome = Outcome {
            status: TaskStatus::Failed,
            step: Some((failed.id.clone(), failed.key.clone())),
            reason: failed.status_reason.clone(),
            by: Some(culprit),
            at: now_ms(),
        };
        (TaskStatus::Failed, outcome)
    } else if from == TaskStatus::Active && steps.iter().all(|step| step_status(step).is_finished())
    {
        let outcome = Outcome {
            status: TaskStatus::Done,
            step: None,
            reason: None,
            by: None,
            at: now_ms(),
        };
        (TaskStatus::Done, outcome)
    } else {
        return Ok(None);
    };
    let outcome_json = outcome.to_json().to_string();
    // Goes out with the task's update.
    let creator_agents = creator_agents(db, task).await;
    let ended = move_task(
        db,
        task,
        to,
        Some(&outcome_json),
        by,
        outcome.reason.as_deref(),
    )
    .await?;
    let audiences = followers_with(db, &ended, steps, assignees, creator_agents).await?;
    outbox.push_all(&audiences, &frames::task_updated(&ended));
    Ok(Some(ended))
}

/// Everyone who hears of a task's status changes: the agents assigned to its steps, the
/// agents bound to its creator, its creator and its approvers.
pub(crate) async fn followers(
    db: &mut Db<'_>,
    task: &Task,
    steps: &[Step],
) -> Result<Vec<Audience>> {
    let creator_agents = creator_agents(db, task).await;
    followers_with(db, task, steps, None, creator_agents).await
}

/// The ids of the agents bound to the task's creator, started ahead
/// ([`ahead!`](crate::ahead)); `None` without a creator.
async fn creator_agents(db: &mut Db<'_>, task: &Task) -> Option<Ahead<Vec<String>>> {
    let creator = task.creator_member_id.clone()?;
    Some(agents::model::agent_ids_of_member(db, creator).await)
}

/// [`followers`], with the assignees of `steps` when they are already known, and the
/// creator's agents' read ([`creator_agents`]).
async fn followers_with(
    db: &mut Db<'_>,
    task: &Task,
    steps: &[Step],
    assignees: Option<Vec<(String, String)>>,
    creator_agents: Option<Ahead<Vec<String>>>,
) -> Result<Vec<Audience>> {
    let ids: Vec<String> = steps.iter().map(|step| step.id.clone()).collect();
    let assignees = match assignees {
        Some(known) => known,
        None => model::assignees_of(db, &ids).await?,
    };
    let mut agent_ids: Vec<String> = assignees
        .into_iter()
        .map(|(_, agent_id)| agent_id)
        .collect();
    let mut member_ids: Vec<String> = task.creator_member_id.iter().cloned().collect();
    if let Some(creator_agents) = creator_agents {
        agent_ids.extend(creator_agents.get(db).await?);
    }
    if steps.iter().any(|step| step.approval_level > 0) {
        member_ids.extend(
            model::approvers_of(db, &ids)
                .await?
                .into_iter()
                .map(|(_, member_id)| member_id),
        );
    }
    agent_ids.sort();
    agent_ids.dedup();
    // The creator first, then approvers in the order they were found.
    let mut seen = HashSet::new();
    member_ids.retain(|id| seen.insert(id.clone()));
    Ok(agent_ids
        .into_iter()
        .map(Audience::Agent)
        .chain(member_ids.into_iter().map(Audience::Member))
        .collect())
}

/// How a task ended, stored as JSON on the task.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: TaskStatus,
    /// (id, key) of the step whose failure ended the task.
    pub step: Option<(String, String)>,
    pub reason: Option<String>,
    pub by: Option<By>,
    /// Unix milliseconds.
    pub at: i64,
}

impl Outcome {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "status": self.status.as_str(),
            "step_id": self.step.as_ref().map(|(id, _)| id),
            "step_key": self.step.as_ref().map(|(_, key)| key),
            "reason": self.reason,
            "by": self.by.as_ref().map(|by| json!({"kind": by.kind, "id": by.id, "name": by.name})),
            "at": self.at,
        })
    }

    /// The outcome stored on `task`, if it ended.
    pub fn of(task: &Task) -> Option<Outcome> {
        let value: Value = serde_json::from_str(task.outcome.as_deref()?).ok()?;
        let text = |value: &Value, field: &str| {
            value.get(field).and_then(Value::as_str).map(str::to_string)
        };
        Some(Outcome {
            status: text(&value, "status")?.parse().ok()?,
            step: text(&value, "step_id").zip(text(&value, "step_key")),
            reason: text(&value, "reason"),
            by: value.get("by").filter(|by| by.is_object()).map(|by| By {
                kind: text(by, "kind").unwrap_or_default(),
                id: text(by, "id"),
                name: text(by, "name"),
            }),
            at: value.get("at").and_then(Value::as_i64).unwrap_or_default(),
        })
    }
}

/// Moves the task to `to` (it must not have changed since it was read), records it and
/// returns the task as it is now.
pub(crate) async fn move_task(
    db: &mut Db<'_>,
    task: &Task,
    to: TaskStatus,
    outcome: Option<&str>,
    by: &By,
    reason: Option<&str>,
) -> Result<Task> {
    let from = task_status(task);
    from.check(to)?;
    let now = now_ms();
    if model::set_task_status(db, &task.id, from.as_str(), to.as_str(), outcome, now).await? == 0 {
        return Err(Error::conflict("the task changed meanwhile; retry"));
    }
    let task = Task {
        status: to.as_str().to_string(),
        outcome: outcome.map(str::to_string),
        updated_at: now,
        ..task.clone()
    };
    timeline::record_task(db, &task, from.as_str(), by, reason).await?;
    Ok(task)
}
