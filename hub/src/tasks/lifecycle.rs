//! The step lifecycle as seen from agents: claim, progress, log, submit, block, fail;
//! lease expiry; completion and readiness propagation.

use std::sync::Arc;

use agenthub_protocol::{LogStream, SelfCheck, StepRef, Usage};
use serde_json::Value;

use crate::accounts::AgentActor;
use crate::approvals;
use crate::content::{self, MAX_FILE_REF_BYTES, MAX_RESULT_BYTES, MAX_TEXT_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox, Written, feed};
use crate::store::{Ahead, Db, new_id, now_ms};
use crate::tasks::check::{record_check_in_tx, validate_check};
use crate::tasks::model::{self, Step, StepChange, Task};
use crate::tasks::settle::{self, end_if_finished, end_if_finished_with};
use crate::tasks::timeline::{self, By};
use crate::tasks::writes::{self, WriteOp, WriteOut};
use crate::tasks::{
    StepStatus, TaskStatus, frames, push_ready_steps, step_status, task_status, transition,
    transition_via,
};

/// A log entry, in bytes.
const MAX_LOG_BYTES: usize = 256 * 1024;

/// The answer to a successful claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub attempt: u32,
    pub lease_ms: u64,
}

/// A step result as submitted by its agent.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub step_id: String,
    pub attempt: u32,
    pub result: Value,
    pub summary: Option<String>,
    pub self_check: Option<String>,
    /// The agent's check of its result against the step and the task.
    pub check: Option<SelfCheck>,
    pub files: Vec<String>,
    pub usage: Option<Usage>,
}

/// Where a submit left the step: `done` or `awaiting_approval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOutcome {
    pub status: String,
}

/// Loads a step of the agent's workspace that is assigned to the agent.
async fn assigned_step(db: &mut Db<'_>, agent: &AgentActor, step_id: &str) -> Result<Step> {
    let found =
        model::find_step_for_agent(db, &agent.workspace_id, step_id, &agent.agent_id).await?;
    Ok(check_assigned(found, agent, step_id)?.0)
}

/// The step [`model::find_step_for_agent`] found, if it is assigned to the agent, and
/// whether it has other assignees too.
fn check_assigned(
    found: Option<(Step, bool, bool)>,
    agent: &AgentActor,
    step_id: &str,
) -> Result<(Step, bool)> {
    let (step, assigned, shared) =
        found.ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
    if !assigned {
        return Err(Error::forbidden(format!(
            "step `{step_id}` is not assigned to agent `{}`",
            agent.agent_name
        )));
    }
    Ok((step, shared))
}

/// Loads a step the agent holds at `attempt` in one of `statuses`.
async fn held_step(
    db: &mut Db<'_>,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
    statuses: &[StepStatus],
) -> Result<Step> {
    let step = assigned_step(db, agent, step_id).await?;
    check_held(step, agent, attempt, statuses)
}

/// `step` (already checked to be assigned to the agent) if the agent holds it at
/// `attempt` in one of `statuses`, else `conflict`.
fn check_held(
    step: Step,
    agent: &AgentActor,
    attempt: u32,
    statuses: &[StepStatus],
) -> Result<Step> {
    let status = step_status(&step);
    let held_by_caller = step.claimed_by.as_deref() == Some(agent.agent_id.as_str());
    if step.attempt as u32 != attempt {
        return Err(Error::conflict(format!(
            "step is {status} at attempt {}; attempt {attempt} is not current",
            step.attempt
        )));
    }
    if !held_by_caller || !status.is_held() && status != StepStatus::Blocked {
        return Err(Error::conflict(format!(
            "step is {status} at attempt {attempt} and this agent does not hold it"
        )));
    }
    if !statuses.contains(&status) {
        let allowed: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
        return Err(Error::conflict(format!(
            "step is {status}; this needs it {}",
            allowed.join(" or ")
        )));
    }
    Ok(step)
}

async fn task_of(db: &mut Db<'_>, step: &Step) -> Result<Task> {
    model::find_task(db, &step.workspace_id, &step.task_id)
        .await?
        .ok_or_else(|| Error::not_found("task"))
}

/// The step's task, locked for the rest of the transaction (see [`model::lock_task`]).
pub(crate) async fn lock_task_of(db: &mut Db<'_>, step: &Step) -> Result<Task> {
    model::lock_task(db, &step.workspace_id, &step.task_id)
        .await?
        .ok_or_else(|| Error::not_found("task"))
}

/// The step's task from its lock started ahead ([`model::lock_task_of_step`]).
async fn locked_task(db: &mut Db<'_>, locked: Ahead<Option<Task>>) -> Result<Task> {
    locked
        .get(db)
        .await?
        .ok_or_else(|| Error::not_found("task"))
}

/// How long a claim or a progress report holds `step`. A step the hub runs itself (an
/// `a2a` step) is held for longer than a hub holds its call, so when that hub dies
/// another takes the call over and goes on with the same attempt before the lease
/// runs out.
pub fn lease_ms_of(ctx: &Ctx, step: &Step) -> u64 {
    if crate::tasks::runs_in_hub(step) {
        ctx.settings.a2a.lease_floor_ms() + ctx.settings.lease_ms
    } else {
        ctx.settings.lease_ms
    }
}

/// Takes a `ready` step at whatever attempt it is.
pub async fn claim_step(ctx: &Ctx, agent: &AgentActor, step_id: &str) -> Result<Claimed> {
    claim_step_at(ctx, agent, step_id, None).await
}

/// Takes a `ready` step. With `attempt`, the claim answers the push of that attempt and
/// is refused when the step has moved on to another one.
pub async fn claim_step_at(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: Option<u32>,
) -> Result<Claimed> {
    claim(ctx, agent, step_id, attempt, false).await
}

/// Takes a `ready` step the hub runs itself (an `a2a` step) at `attempt`, on behalf of
/// its assignee `agent`: the claim is the lock, so of hubs racing for it one wins.
pub async fn claim_for_hub(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
) -> Result<Claimed> {
    claim(ctx, agent, step_id, Some(attempt), true).await
}

/// A claim as data: what a batch of writes runs ([`writes`]).
#[derive(Debug, Clone)]
pub struct ClaimOp {
    agent: AgentActor,
    step_id: String,
    attempt: Option<u32>,
    by_hub: bool,
}

async fn claim(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: Option<u32>,
    by_hub: bool,
) -> Result<Claimed> {
    let op = ClaimOp {
        agent: agent.clone(),
        step_id: step_id.to_string(),
        attempt,
        by_hub,
    };
    match writes::run(ctx, WriteOp::Claim(op)).await {
        WriteOut::Claim(claimed) => claimed,
        _ => unreachable!("a claim is answered as a claim"),
    }
}

/// One claim of a batch: `Ok(Err(refusal))` when it is refused (nothing is written),
/// `Err` when the database failed (the batch rolls back). The events it causes are added
/// to `written`, for after the commit.
pub(super) async fn claim_in_tx(
    ctx: &Ctx,
    db: &mut Db<'_>,
    op: &ClaimOp,
    written: &mut Vec<Written>,
) -> Result<Result<Claimed>> {
    let ClaimOp {
        agent,
        step_id,
        attempt,
        by_hub,
    } = op;
    // Goes out with the step's read.
    let capacity = model::claim_capacity(db, &agent.workspace_id, &agent.agent_id).await;
    let found =
        model::find_step_for_agent(db, &agent.workspace_id, step_id, &agent.agent_id).await?;
    let (step, shared) = match check_assigned(found, agent, step_id) {
        Ok(found) => found,
        Err(refused) => return Ok(Err(refused)),
    };
    let lease_ms = lease_ms_of(ctx, &step);
    let status = step_status(&step);
    match check_claim(&step, agent, *attempt, *by_hub) {
        Ok(None) => {}
        Ok(Some(attempt)) => return Ok(Ok(Claimed { attempt, lease_ms })),
        Err(refused) => return Ok(Err(refused)),
    }
    let Some((max_concurrency, held)) = capacity.get(db).await? else {
        return Ok(Err(Error::not_found("agent")));
    };
    if held >= i64::from(max_concurrency) {
        return Ok(Err(Error::conflict(format!(
            "agent `{}` already holds {held} steps (max concurrency {max_concurrency})",
            agent.agent_name
        ))));
    }
    let now = now_ms();
    if !model::claim_step(db, &step.id, &agent.agent_id, now + lease_ms as i64, now).await? {
        let Some(current) = model::find_step(db, &agent.workspace_id, &step.id).await? else {
            return Ok(Err(Error::not_found("step")));
        };
        let Some(task) = model::find_task(db, &current.workspace_id, &current.task_id).await?
        else {
            return Ok(Err(Error::not_found("task")));
        };
        if current.status == StepStatus::Ready.as_str() && task_status(&task) != TaskStatus::Active
        {
            return Ok(Err(Error::conflict(format!(
                "task is {}; its steps cannot be claimed",
                task.status
            ))));
        }
        return Ok(Err(Error::conflict(format!(
            "step is {}; it cannot become claimed",
            current.status
        ))));
    }
    let claimed = Step {
        status: StepStatus::Claimed.as_str().to_string(),
        claimed_by: Some(agent.agent_id.clone()),
        ..step.clone()
    };
    timeline::record_step(db, &claimed, Some(status.as_str()), &By::agent(agent), None).await?;
    // Other assignees drop the step from their ready list.
    if shared {
        let mut outbox = Outbox::default();
        let reason = format!("claimed by {}", agent.agent_name);
        for (_, other) in model::assignees_of(db, std::slice::from_ref(&step.id))
            .await?
            .into_iter()
            .filter(|(_, other)| other != &agent.agent_id)
        {
            outbox.push(
                Audience::Agent(other),
                frames::step_revoked(&step, step.attempt, &reason),
            );
        }
        outbox.flush(db, &agent.workspace_id).await?;
        written.push(outbox.into_written());
    }
    Ok(Ok(Claimed {
        attempt: step.attempt as u32,
        lease_ms,
    }))
}

/// Whether `step` may be claimed by `agent` as asked: `Ok(None)` to go on, `Ok(Some(attempt))`
/// when the agent holds it already (a repeated claim, e.g. after a reconnect, gets the
/// same answer), else why not.
fn check_claim(
    step: &Step,
    agent: &AgentActor,
    attempt: Option<u32>,
    by_hub: bool,
) -> Result<Option<u32>> {
    let status = step_status(step);
    if let Some(attempt) = attempt.filter(|attempt| *attempt as i32 != step.attempt) {
        return Err(Error::conflict(format!(
            "step is {status} at attempt {}; the push of attempt {attempt} is stale",
            step.attempt
        )));
    }
    if crate::tasks::runs_in_hub(step) != by_hub {
        return Err(Error::conflict(if by_hub {
            "the hub runs only a2a steps itself"
        } else {
            "an a2a step is not claimed: the hub sends it to the outside A2A agent \
             its input names"
        }));
    }
    if !by_hub && status.is_held() && step.claimed_by.as_deref() == Some(agent.agent_id.as_str()) {
        return Ok(Some(step.attempt as u32));
    }
    status.check(StepStatus::Claimed)?;
    if step.is_meeting() {
        return Err(Error::conflict(
            "a meeting step is not claimed: the hub asks its participants, and its assignee confirms the slot",
        ));
    }
    Ok(None)
}

/// Renews the lease and keeps the last percent and message; the first progress moves a
/// claimed step to running.
pub async fn progress_step(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
    percent: Option<u8>,
    message: Option<&str>,
) -> Result<u64> {
    if percent.is_some_and(|percent| percent > 100) {
        return Err(Error::invalid_field("percent", "percent must be 0 to 100"));
    }
    let message = message.map(|message| content::agent_text(message, MAX_TEXT_BYTES));
    let message = message.as_deref();
    let percent = percent.map(i32::from);
    let mut outbox = Outbox::default();
    let lease_ms = ctx
        .store
        .transaction(async |db| {
            let mut step = held_step(
                db,
                agent,
                step_id,
                attempt,
                &[StepStatus::Claimed, StepStatus::Running],
            )
            .await?;
            let lease_ms = lease_ms_of(ctx, &step);
            let lease_until = now_ms() + lease_ms as i64;
            if step_status(&step) == StepStatus::Claimed {
                let change = StepChange {
                    lease_until: Some(Some(lease_until)),
                    started_at: Some(Some(now_ms())),
                    progress_percent: Some(percent),
                    progress_message: Some(message.map(str::to_string)),
                    ..Default::default()
                };
                transition(
                    db,
                    &mut step,
                    StepStatus::Running,
                    change,
                    &By::agent(agent),
                    None,
                )
                .await?;
            } else if !model::record_progress(
                db,
                &step.id,
                &agent.agent_id,
                step.attempt,
                lease_until,
                percent,
                message,
            )
            .await?
            {
                return Err(Error::conflict("the lease was lost meanwhile"));
            }
            outbox.push_feed_entry(
                &step.task_id,
                feed::STEP_PROGRESS,
                feed::step_progress(&step.task_id, &step.id, step.attempt, percent, message),
            );
            outbox.flush(db, &agent.workspace_id).await?;
            Ok::<_, Error>(lease_ms)
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(lease_ms)
}

/// Stores a log line of a held step.
pub async fn log_step(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
    stream: LogStream,
    text: &str,
) -> Result<()> {
    if text.len() > MAX_LOG_BYTES {
        return Err(Error::TooLarge("a log entry is at most 256 KiB".into()));
    }
    let text = content::agent_text(text, MAX_LOG_BYTES);
    let mut outbox = Outbox::default();
    ctx.store
        .transaction(async |db| {
            let mut step = held_step(
                db,
                agent,
                step_id,
                attempt,
                &[
                    StepStatus::Claimed,
                    StepStatus::Running,
                    StepStatus::Blocked,
                ],
            )
            .await?;
            if step_status(&step) == StepStatus::Claimed {
                transition(
                    db,
                    &mut step,
                    StepStatus::Running,
                    StepChange {
                        started_at: Some(Some(now_ms())),
                        ..Default::default()
                    },
                    &By::agent(agent),
                    None,
                )
                .await?;
            }
            let stream = match stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
                LogStream::Info => "info",
            };
            let row = model::StepLogRow {
                id: new_id(),
                step_id: step.id.clone(),
                attempt: step.attempt,
                stream: stream.into(),
                text,
                created_at: now_ms(),
            };
            model::insert_log(db, &row).await?;
            outbox.push_feed_entry(
                &step.task_id,
                feed::STEP_LOG,
                feed::step_log(&feed::LogLine {
                    task_id: &step.task_id,
                    step_id: &row.step_id,
                    log_id: &row.id,
                    attempt: row.attempt,
                    stream: &row.stream,
                    text: &row.text,
                    created_at: row.created_at,
                }),
            );
            outbox.flush(db, &agent.workspace_id).await?;
            Ok::<_, Error>(())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(())
}

/// Records a result. Idempotent per (step, attempt): a retry returns the first outcome.
pub async fn submit_step(
    ctx: &Ctx,
    agent: &AgentActor,
    submitted: Submitted,
) -> Result<SubmitOutcome> {
    if submitted.files.len() > 100 {
        return Err(Error::invalid_field(
            "files",
            "a result references at most 100 files",
        ));
    }
    for file in &submitted.files {
        content::person_text("files", file, MAX_FILE_REF_BYTES)?;
    }
    content::json_value("result", &submitted.result, MAX_RESULT_BYTES)?;
    if let Some(check) = &submitted.check {
        validate_check(check)?;
    }
    let submitted = Submitted {
        summary: submitted
            .summary
            .map(|summary| content::agent_text(&summary, MAX_TEXT_BYTES)),
        self_check: submitted
            .self_check
            .map(|self_check| content::agent_text(&self_check, MAX_TEXT_BYTES)),
        ..submitted
    };
    // What the result is stored as, before the writer is taken: it depends on the
    // submit alone.
    let result = serde_json::to_string(&submitted.result)?;
    let files = serde_json::to_string(&submitted.files)?;
    let digest = crate::tasks::result_digest(
        submitted.summary.as_deref(),
        &submitted.result,
        &submitted.files,
    );
    let op = SubmitOp {
        agent: agent.clone(),
        submitted,
        result,
        files,
        digest,
    };
    match writes::run(ctx, WriteOp::Submit(Arc::new(op))).await {
        WriteOut::Submit(outcome) => outcome,
        _ => unreachable!("a submit is answered as a submit"),
    }
}

/// A submit as data, checked and with its result rendered: what a batch of writes
/// runs ([`writes`]).
#[derive(Debug)]
pub struct SubmitOp {
    agent: AgentActor,
    submitted: Submitted,
    /// The result, the files and the digest as stored.
    result: String,
    files: String,
    digest: String,
}

/// One submit in the transaction of its batch; the events it causes go to `outbox`
/// (flushed here, published after the commit). `Ok(Err(refusal))` when it is refused
/// before it writes anything (not the agent's step, not held at that attempt); `Err` when
/// it failed, possibly after its first write.
pub(super) async fn submit_in_tx(
    db: &mut Db<'_>,
    op: &SubmitOp,
    outbox: &mut Outbox,
) -> Result<Result<SubmitOutcome>> {
    let SubmitOp {
        agent,
        submitted,
        result,
        files,
        digest,
    } = op;
    // The step's task, locked: goes out with the step's read.
    let locked = model::lock_task_of_step(db, &agent.workspace_id, &submitted.step_id).await;
    let found =
        model::find_step_for_agent(db, &agent.workspace_id, &submitted.step_id, &agent.agent_id)
            .await?;
    let (step, shared) = match check_assigned(found, agent, &submitted.step_id) {
        Ok(found) => found,
        Err(refused) => return Ok(Err(refused)),
    };
    // A step leaves `claimed`/`running` at an attempt for good when that attempt is
    // submitted (every way back to an agent starts a new attempt), so while the
    // caller still holds it at this attempt there is no earlier submit to answer.
    let first_submit = step.attempt == submitted.attempt as i32
        && step_status(&step).is_held()
        && step.claimed_by.as_deref() == Some(agent.agent_id.as_str());
    let previous = if first_submit {
        None
    } else {
        model::find_submission(db, &step.id, submitted.attempt as i32).await?
    };
    if let Some(previous) = previous {
        if previous.agent_id != agent.agent_id {
            return Ok(Err(Error::conflict(format!(
                "attempt {} was submitted by another agent",
                submitted.attempt
            ))));
        }
        // A resent submit records a check the first one did not carry.
        if let Some(check) = &submitted.check {
            let task = locked_task(db, locked).await?;
            record_check_in_tx(db, agent, &task, &step, submitted.attempt, check).await?;
        }
        return Ok(Ok(SubmitOutcome {
            status: previous.outcome,
        }));
    }
    let held = check_held(
        step,
        agent,
        submitted.attempt,
        &[StepStatus::Claimed, StepStatus::Running],
    );
    let mut step = match held {
        Ok(step) => step,
        Err(refused) => return Ok(Err(refused)),
    };
    let task = locked_task(db, locked).await?;
    let now = now_ms();
    let (input_tokens, output_tokens) = submitted.usage.as_ref().map_or((0, 0), |usage| {
        (usage.input_tokens as i64, usage.output_tokens as i64)
    });
    let change = StepChange {
        result: Some(Some(result.clone())),
        summary: Some(submitted.summary.clone()),
        self_check: Some(submitted.self_check.clone()),
        files: Some(files.clone()),
        result_digest: Some(Some(digest.clone())),
        lease_until: Some(None),
        started_at: Some(Some(step.started_at.unwrap_or(now))),
        input_tokens: Some(step.input_tokens + input_tokens),
        output_tokens: Some(step.output_tokens + output_tokens),
        ..Default::default()
    };
    let by = By::agent(agent);
    // Submitted and, at once, done (level 0) or awaiting approval: one update.
    let status = if step.approval_level == 0 {
        StepStatus::Done
    } else {
        StepStatus::AwaitingApproval
    };
    let change = StepChange {
        completed_at: (status == StepStatus::Done).then_some(Some(now)),
        ..change
    };
    transition_via(db, &mut step, StepStatus::Submitted, status, change, &by).await?;
    // Before the approval is asked, which says whether the result fits.
    if let Some(check) = &submitted.check {
        record_check_in_tx(db, agent, &task, &step, submitted.attempt, check).await?;
    }
    if let Some(usage) = &submitted.usage {
        let row = model::UsageRow {
            id: new_id(),
            workspace_id: step.workspace_id.clone(),
            step_id: step.id.clone(),
            agent_id: agent.agent_id.clone(),
            model: usage.model.clone(),
            input_tokens,
            output_tokens,
            created_at: now,
        };
        model::insert_usage(db, &row).await?;
    }
    if status == StepStatus::Done {
        // Without other assignees the submitting agent is the step's only one.
        let assignees = (!shared).then(|| vec![(step.id.clone(), agent.agent_id.clone())]);
        completed_in_tx(db, outbox, &task, &step, &by, assignees).await?;
    } else {
        approvals::request_in_tx(db, outbox, &task, &step).await?;
    }
    let submission = model::Submission {
        step_id: step.id.clone(),
        attempt: step.attempt,
        agent_id: agent.agent_id.clone(),
        result: result.clone(),
        summary: submitted.summary.clone(),
        self_check: submitted.self_check.clone(),
        files: files.clone(),
        outcome: status.as_str().to_string(),
        created_at: now,
    };
    model::insert_submission(db, &submission).await?;
    outbox.flush(db, &step.workspace_id).await?;
    Ok(Ok(SubmitOutcome {
        status: status.as_str().to_string(),
    }))
}

/// The step needs its human: it becomes `blocked` (the caller records the question).
pub async fn block_step_in_tx(
    db: &mut Db<'_>,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
) -> Result<(Task, Step)> {
    let mut step = held_step(
        db,
        agent,
        step_id,
        attempt,
        &[StepStatus::Claimed, StepStatus::Running],
    )
    .await?;
    let task = task_of(db, &step).await?;
    // The lease pauses while a human is asked.
    transition(
        db,
        &mut step,
        StepStatus::Blocked,
        StepChange {
            lease_until: Some(None),
            ..Default::default()
        },
        &By::agent(agent),
        None,
    )
    .await?;
    Ok((task, step))
}

/// A blocked step runs again with a fresh lease (`by`: who answered, or the agent that
/// went on without an answer; `reason`: which of the two).
pub async fn unblock_in_tx(
    db: &mut Db<'_>,
    step: &mut Step,
    lease_ms: u64,
    by: &By,
    reason: &str,
) -> Result<()> {
    let change = StepChange {
        lease_until: Some(Some(now_ms() + lease_ms as i64)),
        ..Default::default()
    };
    transition(db, step, StepStatus::Running, change, by, Some(reason)).await
}

/// The step could not be done: back to `ready` for another attempt when `retryable`
/// and attempts are left, otherwise `failed` for good (see [`settle`]). Returns the
/// step's status.
pub async fn fail_step(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
    reason: &str,
    retryable: bool,
) -> Result<String> {
    let reason = &content::agent_text(reason, MAX_TEXT_BYTES);
    let by = By::agent(agent);
    let mut outbox = Outbox::default();
    let status = ctx
        .store
        .transaction(async |db| {
            let mut step = held_step(
                db,
                agent,
                step_id,
                attempt,
                &[
                    StepStatus::Claimed,
                    StepStatus::Running,
                    StepStatus::Blocked,
                ],
            )
            .await?;
            let task = lock_task_of(db, &step).await?;
            if retryable {
                let requeue = Requeue::Failed(reason.to_string());
                requeue_in_tx(db, &mut outbox, &task, &mut step, requeue, &by).await?;
            } else {
                fail_for_good_in_tx(db, &mut outbox, &task, &mut step, reason, &by).await?;
            }
            outbox.flush(db, &step.workspace_id).await?;
            Ok::<_, Error>(step.status.clone())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(status)
}

/// Why a held step goes back to `ready`.
#[derive(Debug, Clone)]
pub(crate) enum Requeue {
    /// The lease ran out: counts as a failure; the holder is told.
    LeaseExpired,
    /// The agent failed it with `retryable`: counts as a failure.
    Failed(String),
    /// The task was paused: not a failure; the holder is told.
    Paused,
}

/// Returns a held step to `ready` with attempt + 1, tells the old holder and pushes it
/// again; a lease expiry or retryable failure on the last allowed attempt fails the step
/// for good instead.
pub(crate) async fn requeue_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &mut Step,
    why: Requeue,
    by: &By,
) -> Result<()> {
    let failures = match why {
        Requeue::LeaseExpired | Requeue::Failed(_) => step.failures + 1,
        Requeue::Paused => step.failures,
    };
    let (reason, revoke) = match &why {
        Requeue::LeaseExpired => ("lease expired".to_string(), true),
        Requeue::Failed(reason) => (reason.clone(), false),
        Requeue::Paused => ("the task was paused".to_string(), true),
    };
    let holder = step.claimed_by.clone();
    let old_attempt = step.attempt;
    if failures >= step.max_attempts {
        let reason = format!("{reason} on attempt {failures} of {}", step.max_attempts);
        if let Some(holder) = holder.filter(|_| revoke) {
            outbox.push(
                Audience::Agent(holder),
                frames::step_revoked(step, old_attempt, &reason),
            );
        }
        return fail_for_good_in_tx(db, outbox, task, step, &reason, by).await;
    }
    let change = StepChange {
        claimed_by: Some(None),
        lease_until: Some(None),
        attempt: Some(step.attempt + 1),
        failures: Some(failures),
        progress_percent: Some(None),
        progress_message: Some(None),
        ..Default::default()
    };
    transition(db, step, StepStatus::Ready, change, by, Some(&reason)).await?;
    if let Some(holder) = holder.filter(|_| revoke) {
        outbox.push(
            Audience::Agent(holder),
            frames::step_revoked(step, old_attempt, &reason),
        );
    }
    if task_status(task) == TaskStatus::Active {
        push_ready_steps(db, outbox, task, std::slice::from_ref(step)).await?;
    }
    Ok(())
}

/// The step failed for good: `failed` with the reason; the task's creator is told, and
/// the task moves on (see [`settle`]): skipped steps, and the task's end.
pub(crate) async fn fail_for_good_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &mut Step,
    reason: &str,
    by: &By,
) -> Result<()> {
    let change = StepChange {
        lease_until: Some(None),
        summary: Some(Some(reason.to_string())),
        status_reason: Some(Some(reason.to_string())),
        completed_at: Some(Some(now_ms())),
        ..Default::default()
    };
    transition(db, step, StepStatus::Failed, change, by, Some(reason)).await?;
    if let Some(creator) = &task.creator_member_id {
        outbox.push(
            Audience::Member(creator.clone()),
            frames::step_revoked(step, step.attempt, reason),
        );
    }
    let settled = settle::settle_after(db, outbox, task, by, step).await?;
    end_if_finished(db, outbox, task, &settled.steps, by).await?;
    Ok(())
}

/// Returns every step whose lease expired to `ready` (attempt + 1) and pushes it again.
/// Each step is returned by exactly one caller, however many hubs sweep at once.
pub async fn sweep_expired_leases(ctx: &Ctx) -> Result<usize> {
    let now = now_ms();
    let expired = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::expired_leases(db, now, 200).await?))
        .await?;
    let mut n_requeued = 0;
    for stale in expired {
        let mut outbox = Outbox::default();
        let res = ctx
            .store
            .transaction(async |db| {
                let mut step = stale.clone();
                // A progress that renewed the lease since the read keeps the step.
                if !model::lock_expired_lease(db, &step.id, step.attempt, now).await? {
                    return Err(Error::conflict("the lease was renewed meanwhile"));
                }
                let task = lock_task_of(db, &step).await?;
                requeue_in_tx(
                    db,
                    &mut outbox,
                    &task,
                    &mut step,
                    Requeue::LeaseExpired,
                    &By::hub(),
                )
                .await?;
                outbox.flush(db, &step.workspace_id).await?;
                Ok::<_, Error>(())
            })
            .await;
        match res {
            Ok(()) => {
                n_requeued += 1;
                ctx.publish(outbox.into_written()).await;
            }
            // Another sweeper, a late progress or a submit got there first.
            Err(Error::Conflict(_)) => {}
            Err(err) => return Err(err),
        }
    }
    if n_requeued > 0 {
        tracing::info!(n_requeued, "returned steps with expired leases to ready");
    }
    Ok(n_requeued)
}

/// `submitted`/`awaiting_approval` → `done`, then readiness propagation, `step.completed`
/// for everyone concerned and, after it, the task's end if this was its last step.
pub async fn complete_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &mut Step,
    by: &By,
) -> Result<()> {
    transition(
        db,
        step,
        StepStatus::Done,
        StepChange {
            completed_at: Some(Some(now_ms())),
            ..Default::default()
        },
        by,
        None,
    )
    .await?;
    completed_in_tx(db, outbox, task, step, by, None).await
}

/// What follows a step's move to `done`: readiness propagation, `step.completed` for
/// everyone concerned and, after it, the task's end if this was its last step.
/// `assignees`: the step's (step id, agent id) pairs when the caller knows them.
async fn completed_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &Step,
    by: &By,
    assignees: Option<Vec<(String, String)>>,
) -> Result<()> {
    let settled = settle::settle_after(db, outbox, task, by, step).await?;
    let newly_ready = &settled.newly_ready;
    let assignees = match assignees {
        Some(known) => known,
        None => model::assignees_of(db, std::slice::from_ref(&step.id)).await?,
    };
    let next_assignees = model::assignees_of(
        db,
        &newly_ready
            .iter()
            .map(|ready| ready.id.clone())
            .collect::<Vec<_>>(),
    )
    .await?;
    // When the task has no other steps than this one and those now ready, the task's
    // end (if it ends) reaches the assignees read here without reading them again.
    let known = settled
        .steps
        .iter()
        .all(|other| other.id == step.id || newly_ready.iter().any(|ready| ready.id == other.id));
    let known_assignees = known.then(|| {
        let mut all = assignees.clone();
        all.extend(next_assignees.iter().cloned());
        all
    });
    let mut receivers: Vec<String> = assignees
        .into_iter()
        .map(|(_, agent_id)| agent_id)
        .collect();
    for (_, agent_id) in &next_assignees {
        if !receivers.contains(agent_id) {
            receivers.push(agent_id.clone());
        }
    }
    for agent_id in receivers {
        let next: Vec<StepRef> = newly_ready
            .iter()
            .filter(|ready| {
                next_assignees
                    .iter()
                    .any(|(step_id, assignee)| step_id == &ready.id && assignee == &agent_id)
            })
            .map(frames::step_ref)
            .collect();
        outbox.push(
            Audience::Agent(agent_id),
            frames::step_completed(step, next),
        );
    }
    if let Some(creator) = &task.creator_member_id {
        outbox.push(
            Audience::Member(creator.clone()),
            frames::step_completed(step, newly_ready.iter().map(frames::step_ref).collect()),
        );
    }
    end_if_finished_with(db, outbox, task, &settled.steps, by, known_assignees).await?;
    Ok(())
}

/// A reviewer rejected the result: `rejected` → `ready` with attempt + 1 and the comment.
pub async fn rework_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &mut Step,
    comment: &str,
    by: &By,
) -> Result<()> {
    transition(
        db,
        step,
        StepStatus::Rejected,
        StepChange::default(),
        by,
        Some(comment),
    )
    .await?;
    let change = StepChange {
        claimed_by: Some(None),
        lease_until: Some(None),
        attempt: Some(step.attempt + 1),
        rework_comment: Some(Some(comment.to_string())),
        progress_percent: Some(None),
        progress_message: Some(None),
        ..Default::default()
    };
    transition(db, step, StepStatus::Ready, change, by, Some("rework")).await?;
    if task_status(task) == TaskStatus::Active {
        push_ready_steps(db, outbox, task, std::slice::from_ref(step)).await?;
    }
    Ok(())
}
