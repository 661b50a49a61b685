//! Planning a task: a task created with `plan` is a draft whose steps an agent of its
//! creator proposes (`plan.requested` → `plan.submit`). A proposal is checked like a
//! task's creation, with every error listed; the creator accepts it (as is or edited),
//! which starts the task, or asks again with a comment (a new round).

use std::collections::HashSet;

use agenthub_protocol::{PlanAgent, PlanMember, PlanRequested, PlanStep, ServerFrame};
use serde_json::json;

use crate::accounts::{self, Actor, AgentActor, authority};
use crate::agents::{self, Agent};
use crate::content::{self, MAX_REASON_BYTES, MAX_TEXT_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::notifications::{self, Notification, Priority};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::model::{self, Plan, Task, WorkflowChangeRow};
use crate::tasks::retry::publish_in_tx;
use crate::tasks::timeline::By;
use crate::tasks::{
    MAX_STEPS, NewStep, TaskStatus, TaskView, frames, get_task, insert_steps, resolve_assignees,
    task_status, validate_new_step,
};

/// Agents and members a `plan.requested` lists at most.
pub const MAX_PLAN_CONTEXT: usize = 200;

/// How a task asks for a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// The agent (of the creator) to ask; default: the creator's agent that sent the
    /// request, else one of the creator's agents, online ones first.
    pub planner: Option<String>,
}

/// A planning round as the creator sees it.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub plan: Plan,
    pub planner_name: String,
    pub start_steps: Vec<PlanStep>,
    /// The proposal (empty while `requested`).
    pub steps: Vec<PlanStep>,
}

/// A plan step as a step to create, with the defaults of `POST /v1/tasks`.
pub fn new_step_of(step: &PlanStep) -> NewStep {
    NewStep {
        key: step.key.clone(),
        title: step.title.clone(),
        description: step.description.clone(),
        assignees: step.assignees.clone(),
        depends_on: step.depends_on.clone(),
        approval_level: step.approval_level,
        approvers: step.approvers.clone(),
        required_capabilities: step.required_capabilities.clone(),
        executor: step.executor.clone(),
        expected_inputs: step.expected_inputs.clone(),
        expected_outputs: step.expected_outputs.clone(),
        estimate_minutes: step.estimate_minutes,
        ..NewStep::default()
    }
}

/// A step to create as a plan step (what a planner starts from).
pub fn plan_step_of(step: &NewStep) -> PlanStep {
    PlanStep {
        key: step.key.clone(),
        title: step.title.clone(),
        description: step.description.clone(),
        assignees: step.assignees.clone(),
        depends_on: step.depends_on.clone(),
        approval_level: step.approval_level,
        approvers: step.approvers.clone(),
        required_capabilities: step.required_capabilities.clone(),
        executor: step.executor.clone(),
        expected_inputs: step.expected_inputs.clone(),
        expected_outputs: step.expected_outputs.clone(),
        estimate_minutes: step.estimate_minutes,
    }
}

/// Opens round 1 for a draft just created: picks the planner and queues
/// `plan.requested` for it.
pub(crate) async fn request_in_tx(
    ctx: &Ctx,
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    actor: &Actor,
    task: &Task,
    request: &PlanRequest,
    start_steps: &[PlanStep],
) -> Result<Plan> {
    let planner = choose_planner(ctx, db, actor, request.planner.as_deref()).await?;
    open_round(ctx, db, outbox, task, &planner, 1, None, start_steps).await
}

/// The creator's agent that plans: the one named (which must be theirs), else the agent
/// that asked, else the creator's agent online on any hub (the most recently seen first).
async fn choose_planner(
    ctx: &Ctx,
    db: &mut Db<'_>,
    actor: &Actor,
    named: Option<&str>,
) -> Result<Agent> {
    if let Some(name) = named {
        crate::tasks::check_names("planner", &[name.to_string()])?;
        let agent = agents::model::find_agent(db, actor.workspace_id(), name.trim())
            .await?
            .filter(|agent| agent.owner_member_id == actor.member_id())
            .ok_or_else(|| {
                Error::invalid_field(
                    "planner",
                    format!("planner `{name}` is not an agent of yours in this workspace"),
                )
            })?;
        return Ok(agent);
    }
    if let Actor::Agent(agent) = actor
        && let Some(found) =
            agents::model::find_agent(db, actor.workspace_id(), &agent.agent_id).await?
    {
        return Ok(found);
    }
    let mut mine = agents::model::agents_of_member(db, actor.member_id()).await?;
    mine.sort_by_key(|agent| {
        let online = ctx.presence.is_online(&agent.id) || agents::online_by_row(agent);
        (!online, std::cmp::Reverse(agent.last_seen_at))
    });
    mine.into_iter().next().ok_or_else(|| {
        Error::invalid_field(
            "plan",
            "you have no agent to plan the task: register one with `agentd login`, or give the \
             steps yourself",
        )
    })
}

#[allow(clippy::too_many_arguments)]
async fn open_round(
    ctx: &Ctx,
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    planner: &Agent,
    round: i32,
    comment: Option<&str>,
    start_steps: &[PlanStep],
) -> Result<Plan> {
    let plan = Plan {
        id: new_id(),
        workspace_id: task.workspace_id.clone(),
        task_id: task.id.clone(),
        round,
        status: "requested".into(),
        planner_agent_id: planner.id.clone(),
        comment: comment.map(str::to_string),
        start_steps: serde_json::to_string(start_steps)?,
        steps: None,
        note: None,
        created_at: now_ms(),
        proposed_at: None,
        decided_at: None,
    };
    model::insert_plan(db, &plan).await?;
    let frame = plan_requested(ctx, db, task, &plan, start_steps).await?;
    outbox.push(Audience::Agent(planner.id.clone()), frame);
    Ok(plan)
}

/// `plan.requested` with the workspace's agents (their load: the steps they hold) and
/// members.
async fn plan_requested(
    ctx: &Ctx,
    db: &mut Db<'_>,
    task: &Task,
    plan: &Plan,
    start_steps: &[PlanStep],
) -> Result<ServerFrame> {
    let members = accounts::model::list_members(db, &task.workspace_id).await?;
    let agents = agents::model::list_agents(db, &task.workspace_id).await?;
    let held = agents::model::held_steps_in_workspace(db, &task.workspace_id).await?;
    let email_of = |member_id: &str| {
        members
            .iter()
            .find(|member| member.id == member_id)
            .map(|member| member.email.clone())
            .unwrap_or_default()
    };
    let plan_agents = agents
        .iter()
        .take(MAX_PLAN_CONTEXT)
        .map(|agent| PlanAgent {
            name: agent.name.clone(),
            member: email_of(&agent.owner_member_id),
            capabilities: agent.capability_list(),
            online: ctx.presence.is_online(&agent.id) || agents::online_by_row(agent),
            load: held.iter().filter(|step| step.agent_id == agent.id).count() as u32,
        })
        .collect();
    let plan_members = members
        .iter()
        .take(MAX_PLAN_CONTEXT)
        .map(|member| PlanMember {
            email: member.email.clone(),
            role: member.role.clone(),
        })
        .collect();
    let ServerFrame::TaskCreated(created) = frames::task_created(task) else {
        return Err(Error::internal("task_created builds task.created"));
    };
    Ok(ServerFrame::PlanRequested(Box::new(PlanRequested {
        seq: 0,
        plan_id: frames::uuid(&plan.id),
        task: created.task,
        round: plan.round as u32,
        comment: plan.comment.clone(),
        steps: start_steps.to_vec(),
        agents: plan_agents,
        members: plan_members,
    })))
}

/// Every error of a plan's steps, as a create would find them one at a time: the steps'
/// own rules, duplicate keys, the graph, unknown assignees and approvers.
async fn plan_errors(
    db: &mut Db<'_>,
    workspace_id: &str,
    steps: &[NewStep],
) -> Result<Vec<String>> {
    let mut errors = Vec::new();
    if steps.is_empty() {
        errors.push("a plan needs at least one step".to_string());
    }
    if steps.len() > MAX_STEPS {
        errors.push(format!("a plan has at most {MAX_STEPS} steps"));
        return Ok(errors);
    }
    let mut keys = HashSet::new();
    let mut unique_keys = true;
    for step in steps {
        if let Err(err) = validate_new_step(step) {
            errors.push(err.to_string());
        }
        if !keys.insert(step.key.as_str()) {
            unique_keys = false;
            errors.push(format!("two steps have the key `{}`", step.key));
        }
    }
    // The graph is checked once every key names one step.
    if unique_keys {
        let keys: Vec<&str> = steps.iter().map(|step| step.key.as_str()).collect();
        let edges = steps
            .iter()
            .map(|step| {
                (
                    step.key.as_str(),
                    step.depends_on.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        if let Err(err) = crate::tasks::dag::validate(&keys, &edges) {
            errors.push(err.to_string());
        }
    }
    for step in steps {
        let names_ok = crate::tasks::check_names("steps.assignees", &step.assignees).is_ok()
            && crate::tasks::check_names("steps.approvers", &step.approvers).is_ok();
        if !names_ok {
            continue;
        }
        match resolve_assignees(
            db,
            workspace_id,
            "",
            &step.key,
            &step.assignees,
            &step.required_capabilities,
            "steps.assignees",
        )
        .await
        {
            Ok(_) => {}
            Err(err @ Error::Invalid { .. }) => errors.push(err.to_string()),
            Err(err) => return Err(err),
        }
        for approver in &step.approvers {
            if accounts::model::find_member(db, workspace_id, approver.trim())
                .await?
                .is_none()
            {
                errors.push(format!(
                    "step `{}`: approver `{approver}` is not a member of this workspace",
                    step.key
                ));
            }
        }
    }
    errors.dedup();
    Ok(errors)
}

/// One `invalid` error listing every error of a plan, one per line.
fn plan_invalid(errors: &[String]) -> Error {
    let count = errors.len();
    let noun = if count == 1 { "error" } else { "errors" };
    Error::invalid_field(
        "steps",
        format!("the plan has {count} {noun}:\n- {}", errors.join("\n- ")),
    )
}

/// The planner submits its proposal. An invalid plan changes nothing and is answered
/// with every error; a valid one replaces an earlier proposal of the same round and is
/// announced to the creator (a notification).
pub async fn submit_plan(
    ctx: &Ctx,
    agent: &AgentActor,
    plan_id: &str,
    steps: Vec<PlanStep>,
    note: Option<&str>,
) -> Result<()> {
    content::person_text_opt("note", note, MAX_TEXT_BYTES)?;
    let new_steps: Vec<NewStep> = steps.iter().map(new_step_of).collect();
    let mut outbox = Outbox::for_request();
    ctx.store
        .transaction(async |db| {
            let plan = model::find_plan(db, &agent.workspace_id, plan_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("plan `{plan_id}`")))?;
            if plan.planner_agent_id != agent.agent_id {
                return Err(Error::forbidden(
                    "only the agent asked for this plan may submit it",
                ));
            }
            let task = model::lock_task(db, &agent.workspace_id, &plan.task_id)
                .await?
                .ok_or_else(|| Error::not_found("task"))?;
            let status = task_status(&task);
            if status != TaskStatus::Draft {
                return Err(Error::conflict(format!(
                    "task is {status}; its plan can no longer change"
                )));
            }
            if !matches!(plan.status.as_str(), "requested" | "proposed") {
                return Err(Error::conflict(format!(
                    "plan round {} is {}; only the open round takes a plan",
                    plan.round, plan.status
                )));
            }
            let errors = plan_errors(db, &agent.workspace_id, &new_steps).await?;
            if !errors.is_empty() {
                return Err(plan_invalid(&errors));
            }
            let now = now_ms();
            let steps_json = serde_json::to_string(&steps)?;
            let note = note.map(str::trim).filter(|note| !note.is_empty());
            if model::propose_plan(db, &plan.id, &steps_json, note, now).await? == 0 {
                return Err(Error::conflict("the plan round closed meanwhile"));
            }
            if let Some(creator) = &task.creator_member_id {
                notifications::resolve_subject(db, &plan.id).await?;
                notifications::notify(
                    db,
                    &task.workspace_id,
                    creator,
                    Notification {
                        kind: notifications::PLAN_PROPOSED.into(),
                        priority: Priority::Action,
                        task_id: Some(task.id.clone()),
                        step_id: None,
                        subject_id: Some(plan.id.clone()),
                        title: format!("A plan for \"{}\" waits for you", task.title),
                        body: format!(
                            "{} proposes {} steps{}",
                            agent.agent_name,
                            steps.len(),
                            note.map(|note| format!(": {note}")).unwrap_or_default()
                        ),
                        data: json!({"task_id": task.id, "plan_id": plan.id, "round": plan.round}),
                    },
                )
                .await?;
            }
            outbox.flush(db, &task.workspace_id).await?;
            Ok::<_, Error>(())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(())
}

/// The task's latest planning round.
pub async fn get_plan(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<PlanView> {
    ctx.store
        .read(async |db| {
            let task = model::find_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            let plan = model::latest_plan(db, &task.id)
                .await?
                .ok_or_else(|| Error::not_found(format!("plan of task `{task_id}`")))?;
            plan_view(db, plan).await
        })
        .await
}

async fn plan_view(db: &mut Db<'_>, plan: Plan) -> Result<PlanView> {
    let planner_name =
        agents::model::agents_by_ids(db, std::slice::from_ref(&plan.planner_agent_id))
            .await?
            .into_iter()
            .next()
            .map(|agent| agent.name)
            .unwrap_or_default();
    let start_steps = serde_json::from_str(&plan.start_steps).unwrap_or_default();
    let steps = plan
        .steps
        .as_deref()
        .and_then(|steps| serde_json::from_str(steps).ok())
        .unwrap_or_default();
    Ok(PlanView {
        plan,
        planner_name,
        start_steps,
        steps,
    })
}

/// The creator (or an owner or admin) accepts the proposal, or `edited` steps in its
/// place (checked like a create): the steps are created and the task starts, each
/// involved agent told which steps are its own.
pub async fn accept_plan(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    edited: Option<Vec<NewStep>>,
) -> Result<TaskView> {
    let by = By::actor(actor);
    let mut outbox = Outbox::for_request();
    ctx.store
        .transaction(async |db| {
            let (task, plan) = open_plan(db, actor, task_id).await?;
            if plan.status != "proposed" {
                return Err(Error::conflict(format!(
                    "plan round {} is {}; wait for its proposal",
                    plan.round, plan.status
                )));
            }
            let was_edited = edited.is_some();
            let steps = match &edited {
                Some(steps) => steps.clone(),
                None => {
                    let proposal: Vec<PlanStep> =
                        serde_json::from_str(plan.steps.as_deref().unwrap_or("[]"))
                            .unwrap_or_default();
                    proposal.iter().map(new_step_of).collect()
                }
            };
            let errors = plan_errors(db, &task.workspace_id, &steps).await?;
            if !errors.is_empty() {
                return Err(plan_invalid(&errors));
            }
            // The plan replaces whatever the draft held.
            for step in model::steps_of_task(db, &task.id).await? {
                model::delete_step(db, &step.id).await?;
            }
            insert_steps(db, &task, &steps, &[]).await?;
            let now = now_ms();
            if model::decide_plan(db, &plan.id, "accepted", now).await? == 0 {
                return Err(Error::conflict("the plan round closed meanwhile"));
            }
            notifications::resolve_subject(db, &plan.id).await?;
            let reason = if was_edited {
                format!("plan round {} accepted with edits", plan.round)
            } else {
                format!("plan round {} accepted", plan.round)
            };
            model::insert_workflow_change(
                db,
                &WorkflowChangeRow {
                    id: new_id(),
                    workspace_id: task.workspace_id.clone(),
                    task_id: task.id.clone(),
                    kind: "plan_accepted".into(),
                    step_id: None,
                    before_json: None,
                    after_json: Some(
                        json!({"plan_id": plan.id, "round": plan.round, "edited": was_edited,
                               "steps": steps.iter().map(|step| &step.key).collect::<Vec<_>>()})
                        .to_string(),
                    ),
                    reason,
                    triggered_by: actor.describe(),
                    created_at: now,
                },
            )
            .await?;
            publish_in_tx(db, &mut outbox, &task, &by).await?;
            outbox.flush(db, &task.workspace_id).await?;
            Ok::<_, Error>(())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    get_task(ctx, actor, task_id).await
}

/// The creator asks for another plan, saying what to change: the round closes as
/// `replaced` and the next one asks the same planner (or `planner`), starting from the
/// proposal.
pub async fn revise_plan(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    comment: &str,
    planner: Option<&str>,
) -> Result<PlanView> {
    if comment.trim().is_empty() {
        return Err(Error::invalid_field(
            "comment",
            "say what the next plan should change",
        ));
    }
    content::person_text("comment", comment, MAX_REASON_BYTES)?;
    let mut outbox = Outbox::for_request();
    let view =
        ctx.store
            .transaction(async |db| {
                let (task, plan) = open_plan(db, actor, task_id).await?;
                let planner = match planner {
                    Some(name) => choose_planner(ctx, db, actor, Some(name)).await?,
                    None => agents::model::agents_by_ids(
                        db,
                        std::slice::from_ref(&plan.planner_agent_id),
                    )
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        Error::invalid_field("planner", "the previous planner is gone; name one")
                    })?,
                };
                if model::decide_plan(db, &plan.id, "replaced", now_ms()).await? == 0 {
                    return Err(Error::conflict("the plan round closed meanwhile"));
                }
                notifications::resolve_subject(db, &plan.id).await?;
                let start: Vec<PlanStep> = plan
                    .steps
                    .as_deref()
                    .or(Some(plan.start_steps.as_str()))
                    .and_then(|steps| serde_json::from_str(steps).ok())
                    .unwrap_or_default();
                let next = open_round(
                    ctx,
                    db,
                    &mut outbox,
                    &task,
                    &planner,
                    plan.round + 1,
                    Some(comment.trim()),
                    &start,
                )
                .await?;
                outbox.flush(db, &task.workspace_id).await?;
                plan_view(db, next).await
            })
            .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(view)
}

/// The locked draft the caller may steer, with its open planning round.
async fn open_plan(db: &mut Db<'_>, actor: &Actor, task_id: &str) -> Result<(Task, Plan)> {
    let task = model::lock_task(db, actor.workspace_id(), task_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
    authority::may_steer(actor, &task)?;
    let plan = model::latest_plan(db, &task.id)
        .await?
        .ok_or_else(|| Error::not_found(format!("plan of task `{task_id}`")))?;
    let status = task_status(&task);
    if status != TaskStatus::Draft || !matches!(plan.status.as_str(), "requested" | "proposed") {
        return Err(Error::conflict(format!(
            "task is {status} and its plan round {} is {}; the plan can no longer change",
            plan.round, plan.status
        )));
    }
    Ok((task, plan))
}
