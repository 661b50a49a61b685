//! Human decisions: approvals of step results (levels 1-3), questions from blocked
//! steps, and availability requests.
//!
//! Level 1: one listed approver confirms. Level 2: an approver approves, or rejects with
//! a comment (the step goes back to `ready` for rework). Level 3: every listed approver
//! must approve; one rejection sends the step back. Only listed approvers decide; a
//! decision made through an agent counts as its bound member's.
//!
//! A decision is bound to what its approver saw: the attempt it names must be current
//! and, when it carries the result's digest, the digest must be the current result's.
//! Deadlines and what happens when one passes are in [`deadline`].

pub mod deadline;
pub mod model;

use agenthub_protocol::{
    ApprovalRequested, ApprovalResolved, AvailabilityRequested, Decision, InputAnswered,
    InputRequested, ServerFrame,
};

use crate::accounts::{self, Actor, AgentActor, Member, Role, authority};
use crate::agents;
use crate::content::{self, MAX_OPTIONS, MAX_TEXT_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::{self, By, Step, StepStatus, Task, WorkflowChangeRow, model as task_model};

pub use deadline::{
    DecisionTimeout, NO_ANSWER, NO_DECISION, OnTimeout, format_timeout, sweep_overdue,
    sweep_overdue_at,
};
pub use model::{Approval, AvailabilityRequest, InputRequest};

fn uuid(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

/// Which approval a decision is about.
#[derive(Debug, Clone)]
pub enum ApprovalRef<'a> {
    /// An approval id (from `approval.requested`): its attempt.
    Id(&'a str),
    /// The caller's approval of a step's attempt (step id, attempt).
    Step(&'a str, u32),
}

/// A decision and what it was made on.
#[derive(Debug, Clone, Copy)]
pub struct Verdict<'a> {
    pub decision: Decision,
    /// Required to reject.
    pub comment: Option<&'a str>,
    /// The result digest the approver saw; refused with `conflict` when it differs.
    pub digest: Option<&'a str>,
}

impl<'a> Verdict<'a> {
    /// A decision not bound to a digest.
    pub fn new(decision: Decision, comment: Option<&'a str>) -> Verdict<'a> {
        Verdict {
            decision,
            comment,
            digest: None,
        }
    }

    /// The same decision, made on the result with this digest.
    pub fn seen(self, digest: &'a str) -> Verdict<'a> {
        Verdict {
            digest: Some(digest),
            ..self
        }
    }
}

/// Where a decision left the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub approval_id: String,
    pub step_status: String,
}

/// A member's pending decisions.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    pub approvals: Vec<(Approval, Step)>,
    pub questions: Vec<(InputRequest, Step)>,
}

/// The member and their agents: where a human's notifications go.
async fn human_audiences(db: &mut Db<'_>, member_id: &str) -> Result<Vec<Audience>> {
    let mut audiences = vec![Audience::Member(member_id.to_string())];
    for agent in agents::model::agents_of_member(db, member_id).await? {
        audiences.push(Audience::Agent(agent.id));
    }
    Ok(audiences)
}

/// Creates one approval per listed approver for the step's current attempt and asks them.
pub(crate) async fn request_in_tx(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &Step,
) -> Result<()> {
    let approvers = task_model::approvers_of(db, std::slice::from_ref(&step.id)).await?;
    let member_ids: Vec<String> = approvers
        .into_iter()
        .map(|(_, member_id)| member_id)
        .collect();
    ask_approvers(db, outbox, task, step, &member_ids).await
}

/// Creates one approval per member in `member_ids` for the step's current attempt and
/// asks them.
async fn ask_approvers(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &Step,
    member_ids: &[String],
) -> Result<()> {
    let now = now_ms();
    let rows: Vec<Approval> = member_ids
        .iter()
        .map(|member_id| Approval {
            id: new_id(),
            workspace_id: step.workspace_id.clone(),
            step_id: step.id.clone(),
            attempt: step.attempt,
            approver_member_id: member_id.clone(),
            decision: None,
            comment: None,
            decided_at: None,
            created_at: now,
            due_at: deadline::due_at(step, now),
            escalated: false,
        })
        .collect();
    if rows.is_empty() {
        return Err(Error::conflict(format!(
            "step `{}` needs approval but lists no approvers",
            step.key
        )));
    }
    model::insert_approvals(db, &rows).await?;
    // The submitting agent's own judgment, recorded with the submit.
    let fits = task_model::find_check(db, &step.id, step.attempt)
        .await?
        .map(|check| check.fits);
    for approval in &rows {
        outbox.push_all(
            &human_audiences(db, &approval.approver_member_id).await?,
            &approval_requested(task, step, approval, fits),
        );
    }
    Ok(())
}

/// `approval.requested` for one approval of the step's current result; `fits`: the
/// submitting agent's check of it, if any.
fn approval_requested(
    task: &Task,
    step: &Step,
    approval: &Approval,
    fits: Option<bool>,
) -> ServerFrame {
    ServerFrame::ApprovalRequested(ApprovalRequested {
        seq: 0,
        approval_id: uuid(&approval.id),
        step_id: uuid(&step.id),
        task_id: uuid(&task.id),
        task_title: task.title.clone(),
        step_title: step.title.clone(),
        approval_level: step.approval_level as u8,
        attempt: approval.attempt as u32,
        digest: step.result_digest.clone().unwrap_or_default(),
        summary: step.summary.clone(),
        result: step
            .result
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default(),
        files: serde_json::from_str(&step.files).unwrap_or_default(),
        fits,
    })
}

pub async fn decide(
    ctx: &Ctx,
    actor: &Actor,
    which: ApprovalRef<'_>,
    verdict: Verdict<'_>,
) -> Result<Decided> {
    let Verdict {
        decision,
        comment,
        digest,
    } = verdict;
    content::person_text_opt("comment", comment, MAX_TEXT_BYTES)?;
    let comment = comment.map(str::trim).filter(|comment| !comment.is_empty());
    let workspace_id = actor.workspace_id();
    let member_id = actor.member_id();
    let by = tasks::By::actor(actor);
    let mut outbox = Outbox::default();
    let decided = ctx
        .store
        .transaction(async |db| {
            let approval = find_for_decision(db, workspace_id, member_id, &which).await?;
            authority::may_decide(actor, &approval.approver_member_id)?;
            let step = task_model::find_step(db, workspace_id, &approval.step_id)
                .await?
                .ok_or_else(|| Error::not_found("step"))?;
            // Deciders of one step take turns, so the last of a level 3 sees every other
            // approval; the step is read again under the lock.
            let task = task_model::lock_task(db, workspace_id, &step.task_id)
                .await?
                .ok_or_else(|| Error::not_found("task"))?;
            let mut step = task_model::find_step(db, workspace_id, &approval.step_id)
                .await?
                .ok_or_else(|| Error::not_found("step"))?;
            if step.status != StepStatus::AwaitingApproval.as_str()
                || step.attempt != approval.attempt
            {
                return Err(Error::conflict(format!(
                    "step is {} at attempt {}; this approval was for attempt {}",
                    step.status, step.attempt, approval.attempt
                )));
            }
            if let Some(seen) = digest
                && step.result_digest.as_deref() != Some(seen)
            {
                return Err(Error::conflict(format!(
                    "the result of attempt {} has digest `{}`, not `{seen}`; look at it again before deciding",
                    step.attempt,
                    step.result_digest.as_deref().unwrap_or("none")
                )));
            }
            if approval.decision.is_some() {
                return Err(Error::conflict("this approval was already decided"));
            }
            if decision == Decision::Reject && step.approval_level == 1 {
                return Err(Error::conflict(
                    "level 1 approvals are confirmations; only levels 2 and 3 can reject",
                ));
            }
            // Checked after the level: a level 1 step cannot be rejected, comment or not.
            if decision == Decision::Reject && comment.is_none() {
                return Err(Error::invalid_field(
                    "comment",
                    "a rejection needs a comment telling the assignee what to change",
                ));
            }
            let decision_text = match decision {
                Decision::Approve => "approve",
                Decision::Reject => "reject",
            };
            if !model::decide(db, &approval.id, decision_text, comment, now_ms()).await? {
                return Err(Error::conflict("this approval was already decided"));
            }
            // The decision is told first; what it causes (rework, completion, the
            // task's end) follows it in every audience's order.
            let decider = accounts::model::get_member(db, member_id).await?;
            let frame = ServerFrame::ApprovalResolved(ApprovalResolved {
                seq: 0,
                approval_id: uuid(&approval.id),
                step_id: uuid(&step.id),
                decision,
                comment: comment.map(str::to_string),
                decided_by: decider.email,
            });
            let assignees = task_model::assignees_of(db, std::slice::from_ref(&step.id)).await?;
            let mut audiences: Vec<Audience> = assignees
                .into_iter()
                .map(|(_, agent_id)| Audience::Agent(agent_id))
                .collect();
            for audience in human_audiences(db, member_id).await? {
                if !audiences.contains(&audience) {
                    audiences.push(audience);
                }
            }
            outbox.push_all(&audiences, &frame);
            match decision {
                Decision::Reject => {
                    tasks::rework_in_tx(
                        db,
                        &mut outbox,
                        &task,
                        &mut step,
                        comment.unwrap_or_default(),
                        &by,
                    )
                    .await?;
                }
                Decision::Approve => {
                    // An owner or admin added by an escalation decides for every
                    // approver who did not.
                    let everyone_approved = approval.escalated
                        || model::approvals_of(db, &step.id, approval.attempt)
                            .await?
                            .iter()
                            .filter(|other| !other.escalated)
                            .all(|other| {
                                other.id == approval.id
                                    || other.decision.as_deref() == Some("approve")
                            });
                    if step.approval_level < 3 || everyone_approved {
                        tasks::complete_in_tx(db, &mut outbox, &task, &mut step, &by).await?;
                    }
                }
            }
            outbox.flush(db, workspace_id).await?;
            Ok::<_, Error>(Decided {
                approval_id: approval.id,
                step_status: step.status,
            })
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(decided)
}

async fn find_for_decision(
    db: &mut Db<'_>,
    workspace_id: &str,
    member_id: &str,
    which: &ApprovalRef<'_>,
) -> Result<Approval> {
    match which {
        ApprovalRef::Id(id) => model::find_approval(db, workspace_id, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("approval `{id}`"))),
        ApprovalRef::Step(step_id, attempt) => {
            let step = task_model::find_step(db, workspace_id, step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            // Escalated approvers are not listed on the step but have an approval.
            let mine = model::approvals_of(db, &step.id, *attempt as i32)
                .await?
                .into_iter()
                .find(|approval| approval.approver_member_id == member_id);
            let approvers = task_model::approvers_of(db, std::slice::from_ref(&step.id)).await?;
            if mine.is_none() && !approvers.iter().any(|(_, approver)| approver == member_id) {
                return Err(Error::forbidden(
                    "only a listed approver of this step may decide",
                ));
            }
            if step.attempt != *attempt as i32 {
                return Err(Error::conflict(format!(
                    "attempt {attempt} is no longer current: the step is {} at attempt {}",
                    step.status, step.attempt
                )));
            }
            mine.ok_or_else(|| {
                Error::conflict(format!(
                    "step is {}; there is nothing to approve",
                    step.status
                ))
            })
        }
    }
}

/// `step.block`: the agent asks its human a question; the step waits in `blocked`.
pub async fn ask(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
    question: &str,
    options: &[String],
) -> Result<String> {
    if question.trim().is_empty() {
        return Err(Error::invalid_field(
            "question",
            "the question must not be empty",
        ));
    }
    if options.len() > MAX_OPTIONS {
        return Err(Error::invalid_field(
            "options",
            format!("a question has at most {MAX_OPTIONS} options"),
        ));
    }
    let question = &content::agent_text(question, MAX_TEXT_BYTES);
    let options: &[String] = &options
        .iter()
        .map(|option| content::agent_text(option, MAX_TEXT_BYTES))
        .collect::<Vec<_>>();
    let mut outbox = Outbox::default();
    let request_id = ctx
        .store
        .transaction(async |db| {
            let (task, step) = tasks::block_step_in_tx(db, agent, step_id, attempt).await?;
            let request = InputRequest {
                id: new_id(),
                workspace_id: step.workspace_id.clone(),
                step_id: step.id.clone(),
                attempt: step.attempt,
                agent_id: agent.agent_id.clone(),
                member_id: agent.member_id.clone(),
                question: question.to_string(),
                options: serde_json::to_string(options)?,
                answer: None,
                answered_by: None,
                answered_at: None,
                created_at: now_ms(),
                due_at: deadline::due_at(&step, now_ms()),
                escalated_at: None,
                expired_at: None,
            };
            model::insert_input_request(db, &request).await?;
            let frame = ServerFrame::InputRequested(InputRequested {
                seq: 0,
                input_request_id: uuid(&request.id),
                step_id: uuid(&step.id),
                task_id: uuid(&task.id),
                question: request.question.clone(),
                options: options.to_vec(),
            });
            outbox.push_all(&human_audiences(db, &agent.member_id).await?, &frame);
            outbox.flush(db, &step.workspace_id).await?;
            Ok::<_, Error>(request.id)
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(request_id)
}

/// Answers a question; the blocked step runs again and its agent is told.
pub async fn answer(
    ctx: &Ctx,
    actor: &Actor,
    input_request_id: &str,
    answer: &str,
) -> Result<InputRequest> {
    if answer.trim().is_empty() {
        return Err(Error::invalid_field(
            "answer",
            "the answer must not be empty",
        ));
    }
    content::person_text("answer", answer, MAX_TEXT_BYTES)?;
    let mut outbox = Outbox::default();
    let request = ctx
        .store
        .transaction(async |db| {
            let request = model::find_input_request(db, actor.workspace_id(), input_request_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("input request `{input_request_id}`")))?;
            authority::may_answer(actor, &request.member_id, request.escalated_at.is_some())?;
            let member = accounts::model::get_member(db, actor.member_id()).await?;
            if request.answer.is_some() {
                return Err(Error::conflict("this question was already answered"));
            }
            if request.expired_at.is_some() {
                return Err(Error::conflict(format!(
                    "this question closed unanswered ({NO_ANSWER})"
                )));
            }
            let mut step = task_model::find_step(db, actor.workspace_id(), &request.step_id)
                .await?
                .ok_or_else(|| Error::not_found("step"))?;
            if step.status != StepStatus::Blocked.as_str() || step.attempt != request.attempt {
                return Err(Error::conflict(format!(
                    "step is {} at attempt {}; the question no longer applies",
                    step.status, step.attempt
                )));
            }
            if !model::answer_input_request(db, &request.id, answer, &member.email, now_ms())
                .await?
            {
                return Err(Error::conflict("this question was already answered"));
            }
            let lease_ms = tasks::lease_ms_of(ctx, &step);
            let by = tasks::By::actor(actor);
            tasks::unblock_in_tx(db, &mut step, lease_ms, &by, "answered").await?;
            let frame = ServerFrame::InputAnswered(InputAnswered {
                seq: 0,
                input_request_id: uuid(&request.id),
                step_id: uuid(&step.id),
                answer: answer.to_string(),
                answered_by: member.email.clone(),
            });
            outbox.push(Audience::Agent(request.agent_id.clone()), frame.clone());
            outbox.push(Audience::Member(request.member_id.clone()), frame);
            outbox.flush(db, actor.workspace_id()).await?;
            Ok::<_, Error>(InputRequest {
                answer: Some(answer.to_string()),
                answered_by: Some(member.email),
                ..request
            })
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(request)
}

/// The agent that asked goes on without the answer (an outside A2A agent finished while
/// its question waited): the blocked step runs again for it with a fresh lease, so, as
/// when a step is cancelled, the question leaves its member's inbox and can no longer be
/// answered. False when nothing waits on it any more: it was answered or closed, or its
/// step moved on.
pub async fn withdraw_question(
    ctx: &Ctx,
    agent: &AgentActor,
    input_request_id: &str,
    reason: &str,
) -> Result<bool> {
    ctx.store
        .transaction(async |db| {
            let Some(request) =
                model::find_input_request(db, &agent.workspace_id, input_request_id).await?
            else {
                return Ok::<_, Error>(false);
            };
            if request.agent_id != agent.agent_id
                || request.answer.is_some()
                || request.expired_at.is_some()
            {
                return Ok(false);
            }
            let Some(mut step) =
                task_model::find_step(db, &request.workspace_id, &request.step_id).await?
            else {
                return Ok(false);
            };
            // An answer or a deadline racing this one: the conditional update of the step
            // lets one of them through, the other gets `conflict`.
            if step.status != StepStatus::Blocked.as_str() || step.attempt != request.attempt {
                return Ok(false);
            }
            let lease_ms = tasks::lease_ms_of(ctx, &step);
            tasks::unblock_in_tx(db, &mut step, lease_ms, &By::agent(agent), reason).await?;
            Ok(true)
        })
        .await
}

/// Pending approvals of steps awaiting them, and open questions of blocked steps.
pub async fn inbox(ctx: &Ctx, actor: &Actor) -> Result<Inbox> {
    let member_id = actor.member_id();
    let workspace_id = actor.workspace_id();
    ctx.store
        .read(async |db| {
            let mut inbox = Inbox::default();
            for approval in model::pending_approvals_for(db, member_id).await? {
                if let Some(step) =
                    task_model::find_step(db, workspace_id, &approval.step_id).await?
                    && step.status == StepStatus::AwaitingApproval.as_str()
                    && step.attempt == approval.attempt
                {
                    inbox.approvals.push((approval, step));
                }
            }
            let mut questions = model::open_questions_for(db, member_id).await?;
            // Questions nobody answered in time reach owners and admins too.
            let member = accounts::model::get_member(db, member_id).await?;
            if member
                .role
                .parse::<accounts::Role>()
                .is_ok_and(accounts::Role::is_admin)
            {
                for question in model::escalated_questions(db, workspace_id).await? {
                    if !questions.iter().any(|mine| mine.id == question.id) {
                        questions.push(question);
                    }
                }
            }
            for question in questions {
                if let Some(step) =
                    task_model::find_step(db, workspace_id, &question.step_id).await?
                    && step.status == StepStatus::Blocked.as_str()
                    && step.attempt == question.attempt
                {
                    inbox.questions.push((question, step));
                }
            }
            Ok::<_, Error>(inbox)
        })
        .await
}

/// A member asks an agent whether it can take on work.
pub async fn request_availability(
    ctx: &Ctx,
    actor: &Actor,
    agent: &str,
    question: &str,
    task_id: Option<&str>,
) -> Result<AvailabilityRequest> {
    if question.trim().is_empty() {
        return Err(Error::invalid_field(
            "question",
            "the question must not be empty",
        ));
    }
    content::person_text("question", question, MAX_TEXT_BYTES)?;
    content::person_text("agent", agent, MAX_TEXT_BYTES)?;
    let workspace_id = actor.workspace_id();
    let mut outbox = Outbox::default();
    let request = ctx
        .store
        .transaction(async |db| {
            let agent = agents::model::find_agent(db, workspace_id, agent)
                .await?
                .ok_or_else(|| Error::not_found(format!("agent `{agent}`")))?;
            if let Some(task_id) = task_id {
                task_model::find_task(db, workspace_id, task_id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            }
            let request = AvailabilityRequest {
                id: new_id(),
                workspace_id: workspace_id.to_string(),
                task_id: task_id.map(str::to_string),
                agent_id: agent.id.clone(),
                asked_by_member_id: actor.member_id().to_string(),
                question: question.to_string(),
                available: None,
                note: None,
                responded_at: None,
                created_at: now_ms(),
            };
            model::insert_availability_request(db, &request).await?;
            let frame = ServerFrame::AvailabilityRequested(AvailabilityRequested {
                seq: 0,
                request_id: uuid(&request.id),
                task_id: task_id.map(uuid),
                question: request.question.clone(),
                step_id: None,
                window: None,
                duration_minutes: None,
            });
            outbox.push(Audience::Agent(agent.id), frame);
            outbox.flush(db, workspace_id).await?;
            Ok::<_, Error>(request)
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(request)
}

/// `availability.respond`: the asked agent answers, once.
pub async fn respond_availability(
    ctx: &Ctx,
    agent: &AgentActor,
    request_id: &str,
    available: bool,
    note: Option<&str>,
) -> Result<()> {
    content::person_text_opt("note", note, MAX_TEXT_BYTES)?;
    ctx.store
        .transaction(async |db| {
            let request = model::find_availability_request(db, &agent.workspace_id, request_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("availability request `{request_id}`")))?;
            if request.agent_id != agent.agent_id {
                return Err(Error::forbidden(
                    "this availability request was addressed to another agent",
                ));
            }
            if request.responded_at.is_some()
                || !model::respond_availability(
                    db,
                    &request.id,
                    &agent.agent_id,
                    available,
                    note,
                    now_ms(),
                )
                .await?
            {
                return Err(Error::conflict(
                    "this availability request was already answered",
                ));
            }
            crate::notifications::resolve_subject(db, &request.id).await?;
            Ok::<_, Error>(())
        })
        .await
}

/// The member an agent acts for answers an availability request on its behalf (from
/// the dashboard's inbox), once; the same rules as [`respond_availability`].
pub async fn respond_availability_for_agent(
    ctx: &Ctx,
    actor: &Actor,
    request_id: &str,
    available: bool,
    note: Option<&str>,
) -> Result<()> {
    content::person_text_opt("note", note, MAX_TEXT_BYTES)?;
    let Actor::Member(member) = actor else {
        return Err(Error::forbidden(
            "an agent answers its availability requests over its connection",
        ));
    };
    ctx.store
        .transaction(async |db| {
            let request = model::find_availability_request(db, &member.workspace_id, request_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("availability request `{request_id}`")))?;
            let owner = crate::notifications::model::agent_owner(db, &request.agent_id).await?;
            if owner.is_none_or(|(member_id, _)| member_id != member.member_id) {
                return Err(Error::forbidden(
                    "this availability request was addressed to another member's agent",
                ));
            }
            if request.responded_at.is_some()
                || !model::respond_availability(
                    db,
                    &request.id,
                    &request.agent_id,
                    available,
                    note,
                    now_ms(),
                )
                .await?
            {
                return Err(Error::conflict(
                    "this availability request was already answered",
                ));
            }
            crate::notifications::resolve_subject(db, &request.id).await?;
            Ok::<_, Error>(())
        })
        .await
}

/// A member is about to be removed: every approval waiting for them is re-routed (the
/// step's other approvers decide; if none remain, the task's creator is asked, or the
/// workspace's first owner when the creator is the one removed), and every open question
/// asked of them goes to the task's creator (or that owner). Each change is recorded in
/// the task's history (`approver_removed`, `question_rerouted`) and the new people are
/// asked (`approval.requested`, `input.requested`). Runs in the removal's transaction,
/// before the member's rows go.
pub(crate) async fn reroute_from(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    removed: &Member,
    by: &By,
) -> Result<()> {
    let workspace_id = removed.workspace_id.as_str();
    let fallback = accounts::model::list_members(db, workspace_id)
        .await?
        .into_iter()
        .find(|member| member.id != removed.id && member.role == Role::Owner.as_str());
    let reason = format!("{} was removed from the workspace", removed.email);
    for approval in model::pending_approvals_for(db, &removed.id).await? {
        let Some(step) = task_model::find_step(db, workspace_id, &approval.step_id).await? else {
            continue;
        };
        let task = task_model::lock_task(db, workspace_id, &step.task_id)
            .await?
            .ok_or_else(|| Error::not_found("task"))?;
        let mut step = task_model::find_step(db, workspace_id, &approval.step_id)
            .await?
            .ok_or_else(|| Error::not_found("step"))?;
        let approvers = task_model::approvers_of(db, std::slice::from_ref(&step.id)).await?;
        let remaining: Vec<String> = approvers
            .into_iter()
            .map(|(_, member_id)| member_id)
            .filter(|member_id| member_id != &removed.id)
            .collect();
        let waiting = step.status == StepStatus::AwaitingApproval.as_str()
            && step.attempt == approval.attempt;
        let mut added = None;
        if remaining.is_empty() {
            let Some(new_approver) = successor(db, &task, removed, fallback.as_ref()).await? else {
                continue;
            };
            task_model::insert_approvers(db, &[(step.id.clone(), new_approver.id.clone())]).await?;
            if waiting {
                ask_approvers(
                    db,
                    outbox,
                    &task,
                    &step,
                    std::slice::from_ref(&new_approver.id),
                )
                .await?;
            }
            added = Some(new_approver.email);
        } else if waiting && step.approval_level == 3 {
            // The removed approver may have been the last one missing.
            let everyone_else_approved = model::approvals_of(db, &step.id, step.attempt)
                .await?
                .iter()
                .filter(|other| other.approver_member_id != removed.id)
                .all(|other| other.decision.as_deref() == Some("approve"));
            if everyone_else_approved {
                tasks::complete_in_tx(db, outbox, &task, &mut step, by).await?;
            }
        }
        let row = WorkflowChangeRow {
            before_json: Some(serde_json::json!({"approver": removed.email}).to_string()),
            after_json: Some(serde_json::json!({"added_approver": added}).to_string()),
            ..history_row(&task, &step.id, "approver_removed", &reason, by)
        };
        task_model::insert_workflow_change(db, &row).await?;
    }
    for question in model::open_questions_for(db, &removed.id).await? {
        let Some(step) = task_model::find_step(db, workspace_id, &question.step_id).await? else {
            continue;
        };
        let Some(task) = task_model::find_task(db, workspace_id, &step.task_id).await? else {
            continue;
        };
        let Some(new_member) = successor(db, &task, removed, fallback.as_ref()).await? else {
            continue;
        };
        model::reassign_input_request(db, &question.id, &new_member.id).await?;
        if step.status == StepStatus::Blocked.as_str() && step.attempt == question.attempt {
            let frame = ServerFrame::InputRequested(InputRequested {
                seq: 0,
                input_request_id: uuid(&question.id),
                step_id: uuid(&step.id),
                task_id: uuid(&task.id),
                question: question.question.clone(),
                options: serde_json::from_str(&question.options).unwrap_or_default(),
            });
            outbox.push_all(&human_audiences(db, &new_member.id).await?, &frame);
        }
        let row = WorkflowChangeRow {
            before_json: Some(serde_json::json!({"asked": removed.email}).to_string()),
            after_json: Some(serde_json::json!({"asked": new_member.email}).to_string()),
            ..history_row(&task, &step.id, "question_rerouted", &reason, by)
        };
        task_model::insert_workflow_change(db, &row).await?;
    }
    Ok(())
}

/// Who takes over from a removed member on a task: its creator, or `fallback` (the first
/// owner) when the creator is the one removed or gone.
async fn successor(
    db: &mut Db<'_>,
    task: &Task,
    removed: &Member,
    fallback: Option<&Member>,
) -> Result<Option<Member>> {
    if let Some(creator_id) = task.creator_member_id.as_deref()
        && creator_id != removed.id
        && let Some(creator) =
            accounts::model::find_member(db, &task.workspace_id, creator_id).await?
    {
        return Ok(Some(creator));
    }
    Ok(fallback.cloned())
}

/// A history row of a step of `task`, without before and after.
fn history_row(task: &Task, step_id: &str, kind: &str, reason: &str, by: &By) -> WorkflowChangeRow {
    WorkflowChangeRow {
        id: new_id(),
        workspace_id: task.workspace_id.clone(),
        task_id: task.id.clone(),
        kind: kind.to_string(),
        step_id: Some(step_id.to_string()),
        before_json: None,
        after_json: None,
        reason: reason.to_string(),
        triggered_by: match &by.name {
            Some(name) => format!("{}:{name}", by.kind),
            None => by.kind.clone(),
        },
        created_at: now_ms(),
    }
}
