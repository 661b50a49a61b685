//! Self-checks of results: an agent's judgment, sent with a submit, whether its result
//! fits the step and the task, and the workflow changes it suggests. Nothing changes by
//! itself: each suggestion is a workflow approval for the task's creator, applied as a
//! workflow change (triggered by the agent, through the step) only when approved; a
//! result that does not fit is flagged to the creator.

use agenthub_protocol::{SelfCheck, Suggestion, SuggestionOp};
use serde_json::json;

use crate::accounts::{Actor, AgentActor, authority};
use crate::content::{self, MAX_REASON_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::Outbox;
use crate::notifications::{self, Notification, Priority};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::model::{self, Step, StepCheck, Task, WorkflowApproval};
use crate::tasks::plan::new_step_of;
use crate::tasks::timeline::By;
use crate::tasks::workflow::{change_in_tx, check_change};
use crate::tasks::{WorkflowChange, WorkflowOp, validate_new_step};

/// Reasons and suggestions a check holds at most.
pub const MAX_CHECK_ENTRIES: usize = 20;

/// A workflow approval with the suggestion it holds.
#[derive(Debug, Clone)]
pub struct WorkflowApprovalView {
    pub row: WorkflowApproval,
    pub suggestion: Suggestion,
}

/// A recorded check of a step's attempt.
#[derive(Debug, Clone)]
pub struct CheckView {
    pub attempt: i32,
    pub fits: bool,
    pub reasons: Vec<String>,
}

/// The rules of a check: bounded lists and texts, each suggestion with what its `op`
/// needs.
pub fn validate_check(check: &SelfCheck) -> Result<()> {
    if check.reasons.len() > MAX_CHECK_ENTRIES || check.suggestions.len() > MAX_CHECK_ENTRIES {
        return Err(Error::invalid_field(
            "check",
            format!(
                "a check has at most {MAX_CHECK_ENTRIES} reasons and {MAX_CHECK_ENTRIES} suggestions"
            ),
        ));
    }
    for reason in &check.reasons {
        content::person_text("check.reasons", reason, MAX_REASON_BYTES)?;
    }
    for (idx, suggestion) in check.suggestions.iter().enumerate() {
        let field = format!("check.suggestions[{idx}]");
        if suggestion.reason.trim().is_empty() {
            return Err(Error::invalid_field(field, "a suggestion needs a reason"));
        }
        content::person_text(&field, &suggestion.reason, MAX_REASON_BYTES)?;
        op_of(suggestion).map_err(|err| match err {
            Error::Invalid { message, .. } => Error::invalid_field(field.clone(), message),
            other => other,
        })?;
    }
    Ok(())
}

/// The workflow operation a suggestion stands for.
fn op_of(suggestion: &Suggestion) -> Result<WorkflowOp> {
    let step = || {
        suggestion
            .step
            .clone()
            .filter(|step| !step.trim().is_empty())
            .ok_or_else(|| Error::invalid("a skip or a reassignment names its `step`"))
    };
    Ok(match suggestion.op {
        SuggestionOp::Insert => {
            let new_step = suggestion
                .new_step
                .as_ref()
                .ok_or_else(|| Error::invalid("an insert carries its `new_step`"))?;
            let new_step = new_step_of(new_step);
            validate_new_step(&new_step)?;
            WorkflowOp::AddStep(Box::new(new_step))
        }
        SuggestionOp::Skip => WorkflowOp::SkipStep { step: step()? },
        SuggestionOp::Reassign => {
            if suggestion.assignees.is_empty() {
                return Err(Error::invalid("a reassignment names its `assignees`"));
            }
            WorkflowOp::SetAssignees {
                step: step()?,
                assignees: suggestion.assignees.clone(),
            }
        }
    })
}

/// Records the check of the attempt `agent` submitted, in the submit's transaction
/// (once per attempt: a resent submit records it only when it is missing), makes each
/// suggestion a workflow approval for the task's creator and flags a result that does
/// not fit. The check was validated with [`validate_check`].
pub(crate) async fn record_check_in_tx(
    db: &mut Db<'_>,
    agent: &AgentActor,
    task: &Task,
    step: &Step,
    attempt: u32,
    check: &SelfCheck,
) -> Result<()> {
    if model::find_check(db, &step.id, attempt as i32)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let now = now_ms();
    model::insert_check(
        db,
        &StepCheck {
            step_id: step.id.clone(),
            attempt: attempt as i32,
            workspace_id: step.workspace_id.clone(),
            task_id: task.id.clone(),
            agent_id: agent.agent_id.clone(),
            fits: check.fits,
            reasons: serde_json::to_string(&check.reasons)?,
            created_at: now,
        },
    )
    .await?;
    let Some(creator) = task.creator_member_id.clone() else {
        return Ok(());
    };
    for suggestion in &check.suggestions {
        let row = WorkflowApproval {
            id: new_id(),
            workspace_id: task.workspace_id.clone(),
            task_id: task.id.clone(),
            step_id: step.id.clone(),
            attempt: attempt as i32,
            agent_id: agent.agent_id.clone(),
            approver_member_id: creator.clone(),
            suggestion: serde_json::to_string(suggestion)?,
            status: "pending".into(),
            comment: None,
            decided_by: None,
            decided_at: None,
            created_at: now,
        };
        model::insert_workflow_approval(db, &row).await?;
        notifications::notify(
            db,
            &task.workspace_id,
            &creator,
            Notification {
                kind: notifications::WORKFLOW_PROPOSED.into(),
                priority: Priority::Action,
                task_id: Some(task.id.clone()),
                step_id: Some(step.id.clone()),
                subject_id: Some(row.id.clone()),
                title: format!(
                    "{} suggests to {} in \"{}\"",
                    agent.agent_name,
                    describe_suggestion(suggestion),
                    task.title
                ),
                body: suggestion.reason.clone(),
                data: json!({"workflow_approval_id": row.id, "suggestion": suggestion,
                             "step_key": step.key, "agent_name": agent.agent_name}),
            },
        )
        .await?;
    }
    if !check.fits {
        notifications::notify(
            db,
            &task.workspace_id,
            &creator,
            Notification {
                kind: notifications::STEP_UNFIT.into(),
                priority: Priority::Info,
                task_id: Some(task.id.clone()),
                step_id: Some(step.id.clone()),
                subject_id: None,
                title: format!(
                    "{} says the result of \"{}\" does not fit the task",
                    agent.agent_name, step.title
                ),
                body: check.reasons.join("\n"),
                data: json!({"step_key": step.key, "attempt": attempt,
                             "reasons": check.reasons}),
            },
        )
        .await?;
    }
    Ok(())
}

/// A suggestion in a few words: skip `review`, add the step "Summary", give `draft` to min.
pub fn describe_suggestion(suggestion: &Suggestion) -> String {
    let step = suggestion.step.as_deref().unwrap_or_default();
    match suggestion.op {
        SuggestionOp::Insert => format!(
            "add the step \"{}\"",
            suggestion
                .new_step
                .as_ref()
                .map(|new_step| new_step.title.as_str())
                .unwrap_or_default()
        ),
        SuggestionOp::Skip => format!("skip `{step}`"),
        SuggestionOp::Reassign => format!("give `{step}` to {}", suggestion.assignees.join(", ")),
    }
}

/// The latest check of a step, if any.
pub async fn check_of_step(ctx: &Ctx, actor: &Actor, step_id: &str) -> Result<Option<CheckView>> {
    ctx.store
        .read(async |db| {
            model::find_step(db, actor.workspace_id(), step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            Ok(model::latest_check(db, step_id)
                .await?
                .map(|check| CheckView {
                    attempt: check.attempt,
                    fits: check.fits,
                    reasons: serde_json::from_str(&check.reasons).unwrap_or_default(),
                }))
        })
        .await
}

/// The workflow approvals of a task, oldest first.
pub async fn workflow_approvals(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
) -> Result<Vec<WorkflowApprovalView>> {
    ctx.store
        .read(async |db| {
            model::find_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            model::workflow_approvals_of(db, task_id)
                .await?
                .into_iter()
                .map(view)
                .collect()
        })
        .await
}

fn view(row: WorkflowApproval) -> Result<WorkflowApprovalView> {
    let suggestion = serde_json::from_str(&row.suggestion)?;
    Ok(WorkflowApprovalView { row, suggestion })
}

/// The task's creator (or an owner or admin) decides a suggestion: approved, it is applied
/// as a workflow change triggered by the agent through its step (refused, with nothing
/// decided, when the change no longer applies); rejected, nothing changes.
pub async fn decide_workflow_approval(
    ctx: &Ctx,
    actor: &Actor,
    id: &str,
    approve: bool,
    comment: Option<&str>,
) -> Result<WorkflowApprovalView> {
    content::person_text_opt("comment", comment, MAX_REASON_BYTES)?;
    let comment = comment.map(str::trim).filter(|comment| !comment.is_empty());
    let by = By::actor(actor);
    let mut outbox = Outbox::for_request();
    let decided = ctx
        .store
        .transaction(async |db| {
            let row = model::find_workflow_approval(db, actor.workspace_id(), id)
                .await?
                .ok_or_else(|| Error::not_found(format!("workflow approval `{id}`")))?;
            let task = model::lock_task(db, actor.workspace_id(), &row.task_id)
                .await?
                .ok_or_else(|| Error::not_found("task"))?;
            authority::may_steer(actor, &task)?;
            if row.status != "pending" {
                return Err(Error::conflict(format!(
                    "the suggestion is already {}",
                    row.status
                )));
            }
            let status = if approve { "approved" } else { "rejected" };
            if approve {
                let suggestion: Suggestion = serde_json::from_str(&row.suggestion)?;
                let change = WorkflowChange {
                    reason: suggestion.reason.clone(),
                    operations: vec![op_of(&suggestion)?],
                };
                check_change(&change)?;
                let agent_name =
                    crate::agents::model::agents_by_ids(db, std::slice::from_ref(&row.agent_id))
                        .await?
                        .into_iter()
                        .next()
                        .map_or_else(|| row.agent_id.clone(), |agent| agent.name);
                let step_key = model::find_step(db, &row.workspace_id, &row.step_id)
                    .await?
                    .map_or_else(|| row.step_id.clone(), |step| step.key);
                let triggered_by = format!(
                    "agent:{agent_name} (check of step `{step_key}`), approved by {}",
                    actor.describe()
                );
                change_in_tx(db, &mut outbox, &task, &change, &by, &triggered_by).await?;
            }
            if model::decide_workflow_approval(
                db,
                &row.id,
                status,
                comment,
                &actor.describe(),
                now_ms(),
            )
            .await?
                == 0
            {
                return Err(Error::conflict("the suggestion was decided meanwhile"));
            }
            notifications::resolve_subject(db, &row.id).await?;
            outbox.flush(db, &task.workspace_id).await?;
            let row = model::find_workflow_approval(db, actor.workspace_id(), id)
                .await?
                .ok_or_else(|| Error::not_found("workflow approval"))?;
            view(row)
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(decided)
}
