//! Deadlines of approvals and questions, and what the hub does when one passes.
//!
//! A step names how long its approvals and questions wait (`decision_timeout`; a new step
//! that names none takes its workspace's default, 24 h unless changed; `none`: no
//! deadline) and what happens when nobody decided in time (`on_timeout`):
//!
//! | `on_timeout` | approval | question |
//! |---|---|---|
//! | `reject` | the pending approvals close; the step goes back for rework with the comment "no decision in time" | the question closes unanswered; the step runs again and its agent decides how to go on |
//! | `escalate` (default) | owners and admins become approvers of the attempt; one of them decides for every approver who did not | owners and admins may answer too |
//! | `fail` | the step fails for good | the step fails for good |
//!
//! Every hub sweeps; a deadline is acted on by exactly one of them: the sweep locks the
//! task, then closes the overdue rows with one conditional update, and only the
//! transaction that changed them acts.

use std::str::FromStr;

use agenthub_protocol::{
    ApprovalTimedOut, InputRequested, InputTimedOut, ServerFrame, TimeoutAction,
};

use crate::accounts;
use crate::approvals::{approval_requested, human_audiences, model, uuid};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::{self, By, StepStatus, model as task_model};

/// A workspace's default deadline until an admin changes it.
pub const DEFAULT_DECISION_TIMEOUT_MS: i64 = 24 * 3600 * 1000;
/// The longest deadline a step or workspace may set.
pub const MAX_DECISION_TIMEOUT_MS: i64 = 365 * 24 * 3600 * 1000;
/// The reason recorded when an approval timed out.
pub const NO_DECISION: &str = "no decision in time";
/// The reason recorded when a question timed out.
pub const NO_ANSWER: &str = "no answer in time";

/// What the hub does when an approval or a question gets no decision in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnTimeout {
    Reject,
    #[default]
    Escalate,
    Fail,
}

impl OnTimeout {
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Reject => "reject",
            OnTimeout::Escalate => "escalate",
            OnTimeout::Fail => "fail",
        }
    }

    fn wire(self) -> TimeoutAction {
        match self {
            OnTimeout::Reject => TimeoutAction::Reject,
            OnTimeout::Escalate => TimeoutAction::Escalate,
            OnTimeout::Fail => TimeoutAction::Fail,
        }
    }
}

impl FromStr for OnTimeout {
    type Err = Error;

    fn from_str(text: &str) -> Result<OnTimeout> {
        match text {
            "reject" => Ok(OnTimeout::Reject),
            "escalate" => Ok(OnTimeout::Escalate),
            "fail" => Ok(OnTimeout::Fail),
            other => Err(Error::invalid_field(
                "on_timeout",
                format!("unknown on_timeout `{other}`; use reject, escalate or fail"),
            )),
        }
    }
}

/// How long a step's approvals and questions wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecisionTimeout {
    /// The workspace's default, read when the step is created.
    #[default]
    WorkspaceDefault,
    /// No deadline.
    Never,
    /// Milliseconds (at least one second, at most [`MAX_DECISION_TIMEOUT_MS`]).
    After(i64),
}

impl DecisionTimeout {
    /// `none`, whole seconds, or a duration: whole numbers each followed by `d`, `h`, `m`
    /// or `s` (`"24h"`, `"1h30m"`, `"90s"`).
    pub fn parse(text: &str) -> Result<DecisionTimeout> {
        let text = text.trim();
        if text == "none" {
            return Ok(DecisionTimeout::Never);
        }
        if !text.is_empty() && text.chars().all(|ch| ch.is_ascii_digit()) {
            return DecisionTimeout::from_seconds(text.parse().unwrap_or(u64::MAX));
        }
        let refuse = || {
            Error::invalid_field(
                "decision_timeout",
                format!(
                    "`{text}` is not a duration: use `none`, seconds, or numbers with d, h, m or s, like `24h` or `1h30m`"
                ),
            )
        };
        let mut total_ms: i64 = 0;
        let mut digits = String::new();
        for ch in text.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let unit_ms: i64 = match ch {
                'd' => 24 * 3600 * 1000,
                'h' => 3600 * 1000,
                'm' => 60 * 1000,
                's' => 1000,
                _ => return Err(refuse()),
            };
            let count: i64 = digits.parse().map_err(|_| refuse())?;
            digits.clear();
            total_ms = count
                .checked_mul(unit_ms)
                .and_then(|ms| ms.checked_add(total_ms))
                .ok_or_else(refuse)?;
        }
        if !digits.is_empty() || text.is_empty() {
            return Err(refuse());
        }
        DecisionTimeout::from_ms(total_ms)
    }

    /// A whole number of seconds.
    pub fn from_seconds(seconds: u64) -> Result<DecisionTimeout> {
        let ms = i64::try_from(seconds)
            .ok()
            .and_then(|seconds| seconds.checked_mul(1000))
            .unwrap_or(i64::MAX);
        DecisionTimeout::from_ms(ms)
    }

    fn from_ms(ms: i64) -> Result<DecisionTimeout> {
        if !(1000..=MAX_DECISION_TIMEOUT_MS).contains(&ms) {
            return Err(Error::invalid_field(
                "decision_timeout",
                "a decision timeout is at least 1 second and at most 365 days (or `none`)",
            ));
        }
        Ok(DecisionTimeout::After(ms))
    }

    /// Milliseconds, or `None` for no deadline, given the workspace's default.
    pub fn resolve(self, workspace_default_ms: Option<i64>) -> Option<i64> {
        match self {
            DecisionTimeout::WorkspaceDefault => workspace_default_ms,
            DecisionTimeout::Never => None,
            DecisionTimeout::After(ms) => Some(ms),
        }
    }
}

/// A deadline as people write it: `24h`, `1h30m`, `45s`.
pub fn format_timeout(ms: i64) -> String {
    let seconds = ms / 1000;
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

/// When a request made now times out under `step`'s deadline.
pub(crate) fn due_at(step: &tasks::Step, now: i64) -> Option<i64> {
    step.decision_timeout_ms.map(|ms| now + ms)
}

/// Applies every deadline that passed: see the module documentation. Returns how many
/// approvals (counted per step) and questions were acted on by this call.
pub async fn sweep_overdue(ctx: &Ctx) -> Result<usize> {
    sweep_overdue_at(ctx, now_ms()).await
}

/// [`sweep_overdue`] as if it were `now` (unix milliseconds).
pub async fn sweep_overdue_at(ctx: &Ctx, now: i64) -> Result<usize> {
    let overdue = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::overdue_approvals(db, now, 200).await?))
        .await?;
    let mut n_acted = 0;
    for (workspace_id, step_id, attempt) in overdue {
        let mut outbox = Outbox::default();
        let res = ctx
            .store
            .transaction(async |db| {
                time_out_approval(db, &mut outbox, &workspace_id, &step_id, attempt, now).await?;
                outbox.flush(db, &workspace_id).await?;
                Ok::<_, Error>(())
            })
            .await;
        n_acted += settle_sweep(ctx, res, outbox).await?;
    }
    let overdue = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::overdue_questions(db, now, 200).await?))
        .await?;
    for request in overdue {
        let mut outbox = Outbox::default();
        let res = ctx
            .store
            .transaction(async |db| {
                time_out_question(db, &mut outbox, &request, ctx.settings.lease_ms, now).await?;
                outbox.flush(db, &request.workspace_id).await?;
                Ok::<_, Error>(())
            })
            .await;
        n_acted += settle_sweep(ctx, res, outbox).await?;
    }
    if n_acted > 0 {
        tracing::info!(n_acted, "applied the deadlines of approvals and questions");
    }
    Ok(n_acted)
}

/// Publishes what one expiry committed; a conflict means someone else acted first.
async fn settle_sweep(ctx: &Ctx, res: Result<()>, outbox: Outbox) -> Result<usize> {
    match res {
        Ok(()) => {
            ctx.publish(outbox.into_written()).await;
            Ok(1)
        }
        // Another hub's sweep, a decision or an answer got there first.
        Err(Error::Conflict(_)) => Ok(0),
        Err(err) => Err(err),
    }
}

async fn time_out_approval(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    workspace_id: &str,
    step_id: &str,
    attempt: i32,
    now: i64,
) -> Result<()> {
    let step = task_model::find_step(db, workspace_id, step_id)
        .await?
        .ok_or_else(|| Error::not_found("step"))?;
    // The task first, as a decision does, so that the two take locks in one order.
    let task = task_model::lock_task(db, workspace_id, &step.task_id)
        .await?
        .ok_or_else(|| Error::not_found("task"))?;
    let mut step = task_model::find_step(db, workspace_id, step_id)
        .await?
        .ok_or_else(|| Error::not_found("step"))?;
    if step.status != StepStatus::AwaitingApproval.as_str() || step.attempt != attempt {
        return Err(Error::conflict("the step moved on meanwhile"));
    }
    let action: OnTimeout = step.on_timeout.parse().unwrap_or_default();
    let timed_out =
        model::close_overdue_approvals(db, step_id, attempt, now, action != OnTimeout::Escalate)
            .await?;
    if timed_out.is_empty() {
        return Err(Error::conflict("the approvals were decided meanwhile"));
    }
    // Everyone involved hears of it: the approvers, the assignees, the task's creator.
    let mut audiences = Vec::new();
    for approval in &timed_out {
        audiences.extend(human_audiences(db, &approval.approver_member_id).await?);
    }
    for (_, agent_id) in task_model::assignees_of(db, std::slice::from_ref(&step.id)).await? {
        audiences.push(Audience::Agent(agent_id));
    }
    audiences.extend(task.creator_member_id.clone().map(Audience::Member));
    dedup(&mut audiences);
    let frame = ServerFrame::ApprovalTimedOut(ApprovalTimedOut {
        seq: 0,
        step_id: uuid(&step.id),
        task_id: uuid(&task.id),
        attempt: attempt as u32,
        action: action.wire(),
    });
    outbox.push_all(&audiences, &frame);
    let by = By::hub();
    match action {
        OnTimeout::Reject => {
            tasks::rework_in_tx(db, outbox, &task, &mut step, NO_DECISION, &by).await?;
        }
        OnTimeout::Fail => {
            tasks::fail_for_good_in_tx(db, outbox, &task, &mut step, NO_DECISION, &by).await?;
        }
        OnTimeout::Escalate => {
            let asked = model::approvals_of(db, step_id, attempt).await?;
            let rows: Vec<model::Approval> = escalation_members(db, workspace_id)
                .await?
                .into_iter()
                .filter(|member_id| {
                    !asked
                        .iter()
                        .any(|approval| &approval.approver_member_id == member_id)
                })
                .map(|member_id| model::Approval {
                    id: new_id(),
                    workspace_id: workspace_id.to_string(),
                    step_id: step.id.clone(),
                    attempt,
                    approver_member_id: member_id,
                    decision: None,
                    comment: None,
                    decided_at: None,
                    created_at: now_ms(),
                    due_at: None,
                    escalated: true,
                })
                .collect();
            model::insert_approvals(db, &rows).await?;
            let fits = task_model::find_check(db, &step.id, attempt)
                .await?
                .map(|check| check.fits);
            for approval in &rows {
                outbox.push_all(
                    &human_audiences(db, &approval.approver_member_id).await?,
                    &approval_requested(&task, &step, approval, fits),
                );
            }
            let reason = format!("{NO_DECISION}; owners and admins may decide");
            tasks::record_step(db, &step, Some(&step.status), &by, Some(&reason)).await?;
        }
    }
    Ok(())
}

async fn time_out_question(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    request: &model::InputRequest,
    lease_ms: u64,
    now: i64,
) -> Result<()> {
    let workspace_id = request.workspace_id.as_str();
    let step = task_model::find_step(db, workspace_id, &request.step_id)
        .await?
        .ok_or_else(|| Error::not_found("step"))?;
    let task = task_model::lock_task(db, workspace_id, &step.task_id)
        .await?
        .ok_or_else(|| Error::not_found("task"))?;
    let mut step = task_model::find_step(db, workspace_id, &request.step_id)
        .await?
        .ok_or_else(|| Error::not_found("step"))?;
    if step.status != StepStatus::Blocked.as_str() || step.attempt != request.attempt {
        return Err(Error::conflict("the step moved on meanwhile"));
    }
    let action: OnTimeout = step.on_timeout.parse().unwrap_or_default();
    if !model::close_overdue_question(db, &request.id, now, action != OnTimeout::Escalate).await? {
        return Err(Error::conflict("the question was answered meanwhile"));
    }
    let mut audiences = vec![Audience::Agent(request.agent_id.clone())];
    audiences.extend(human_audiences(db, &request.member_id).await?);
    dedup(&mut audiences);
    let frame = ServerFrame::InputTimedOut(InputTimedOut {
        seq: 0,
        input_request_id: uuid(&request.id),
        step_id: uuid(&step.id),
        task_id: uuid(&task.id),
        action: action.wire(),
    });
    outbox.push_all(&audiences, &frame);
    let by = By::hub();
    match action {
        OnTimeout::Reject => {
            let change = task_model::StepChange {
                lease_until: Some(Some(now_ms() + lease_ms as i64)),
                ..Default::default()
            };
            tasks::transition(
                db,
                &mut step,
                StepStatus::Running,
                change,
                &by,
                Some(NO_ANSWER),
            )
            .await?;
        }
        OnTimeout::Fail => {
            tasks::fail_for_good_in_tx(db, outbox, &task, &mut step, NO_ANSWER, &by).await?;
        }
        OnTimeout::Escalate => {
            let frame = ServerFrame::InputRequested(InputRequested {
                seq: 0,
                input_request_id: uuid(&request.id),
                step_id: uuid(&step.id),
                task_id: uuid(&task.id),
                question: request.question.clone(),
                options: serde_json::from_str(&request.options).unwrap_or_default(),
            });
            let mut escalated = Vec::new();
            for member_id in escalation_members(db, workspace_id).await? {
                if member_id != request.member_id {
                    escalated.extend(human_audiences(db, &member_id).await?);
                }
            }
            dedup(&mut escalated);
            outbox.push_all(&escalated, &frame);
            let reason = format!("{NO_ANSWER}; owners and admins may answer");
            tasks::record_step(db, &step, Some(&step.status), &by, Some(&reason)).await?;
        }
    }
    Ok(())
}

/// The workspace's owners and admins.
async fn escalation_members(db: &mut Db<'_>, workspace_id: &str) -> Result<Vec<String>> {
    Ok(accounts::model::list_members(db, workspace_id)
        .await?
        .into_iter()
        .filter(|member| {
            member
                .role
                .parse::<accounts::Role>()
                .is_ok_and(accounts::Role::is_admin)
        })
        .map(|member| member.id)
        .collect())
}

fn dedup(audiences: &mut Vec<Audience>) {
    let mut seen = Vec::with_capacity(audiences.len());
    audiences.retain(|audience| {
        if seen.contains(audience) {
            return false;
        }
        seen.push(audience.clone());
        true
    });
}
