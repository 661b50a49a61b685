//! Tasks and their steps: creation with DAG validation, the step lifecycle (claims,
//! leases, progress, submits, blocks, failures), readiness propagation, task status and
//! workflow changes. Every step status change goes through [`transition`].

mod check;
pub mod dag;
mod digest;
mod frames;
mod lifecycle;
pub mod meeting;
pub mod model;
mod plan;
mod retry;
mod settle;
pub mod state;
mod timeline;
mod workflow;
mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agenthub_protocol::{ServerFrame, YourStep};
use serde_json::Value;

use crate::accounts::{self, Actor, authority};
use crate::agents::{self, Agent};
use crate::approvals::{DecisionTimeout, OnTimeout};
use crate::content::{
    self, MAX_INPUT_BYTES, MAX_STEP_DESCRIPTION_BYTES, MAX_TASK_DESCRIPTION_BYTES, MAX_TEXT_BYTES,
    MAX_TITLE_BYTES,
};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::store::{Db, new_id, now_ms};

pub use check::{
    CheckView, WorkflowApprovalView, check_of_step, decide_workflow_approval, describe_suggestion,
    validate_check, workflow_approvals,
};
pub use digest::result_digest;
pub use lifecycle::{
    Claimed, SubmitOutcome, Submitted, claim_for_hub, claim_step, claim_step_at, fail_step,
    lease_ms_of, log_step, progress_step, submit_step, sweep_expired_leases,
};
pub(crate) use lifecycle::{
    block_step_in_tx, complete_in_tx, fail_for_good_in_tx, rework_in_tx, unblock_in_tx,
};
pub use meeting::{MeetingView, NewMeeting, NewParticipant, ParticipantView};
pub use model::{Plan, Step, StepLogRow, Task, WorkflowChangeRow};
pub use plan::{
    PlanRequest, PlanView, accept_plan, get_plan, new_step_of, plan_step_of, revise_plan,
    submit_plan,
};
pub use retry::{publish_task, retry_step};
pub use settle::Outcome;
pub use state::{StepStatus, TaskStatus};
pub(crate) use timeline::record_step;
pub use timeline::{By, TimelineEntry, timeline};
pub use workflow::{WorkflowChange, WorkflowOp, change_workflow};
pub use writes::Writes;
use writes::{WriteOp, WriteOut};

/// The executors a step may name.
/// `a2a` steps are run by the hub itself (see `a2a::delegate`): never pushed to agents.
pub const EXECUTORS: &[&str] = &[
    "claude",
    "claude-code",
    "shell",
    "manual",
    "external",
    "a2a",
];

/// Whether the hub runs the step itself (an outside A2A agent does it) instead of
/// pushing it to its assignees.
pub fn runs_in_hub(step: &Step) -> bool {
    step.executor.as_deref() == Some(crate::a2a::EXECUTOR)
}

/// A task to create, with its steps.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub due_at: Option<i64>,
    pub steps: Vec<NewStep>,
    /// Created as a draft: nothing starts until it is published.
    pub draft: bool,
    /// Created as a draft whose steps an agent of the creator proposes; `steps` (may be
    /// empty) are what the planner starts from.
    pub plan: Option<PlanRequest>,
}

/// A step to create. Steps name each other by `key`; assignees are agent names or ids,
/// approvers member emails or ids.
#[derive(Debug, Clone, Default)]
pub struct NewStep {
    pub key: String,
    pub title: String,
    pub description: String,
    pub assignees: Vec<String>,
    pub depends_on: Vec<String>,
    pub approval_level: u8,
    pub approvers: Vec<String>,
    pub required_capabilities: Vec<String>,
    pub executor: Option<String>,
    pub input: Value,
    pub expected_inputs: Option<String>,
    pub expected_outputs: Option<String>,
    /// Retryable failures and lease expiries allowed before the step fails for good
    /// (default [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: Option<u32>,
    /// When the step fails for good, its dependents treat it as finished.
    pub continue_on_failure: bool,
    /// How long its approvals and questions wait.
    pub decision_timeout: DecisionTimeout,
    /// What happens when nobody decides in time.
    pub on_timeout: OnTimeout,
    /// A meeting step (`"kind": "meeting"`): the hub finds a slot for its participants.
    pub meeting: Option<NewMeeting>,
    /// A rough estimate in minutes (1 to [`MAX_ESTIMATE_MINUTES`]).
    pub estimate_minutes: Option<u32>,
}

/// The longest estimate a step may carry: a year, in minutes.
pub const MAX_ESTIMATE_MINUTES: u32 = 366 * 24 * 60;

/// Steps of one task, at its creation and after any workflow change.
pub const MAX_STEPS: usize = 500;

/// Attempts a step gets when it names none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A task with everything a caller shows.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub task: Task,
    pub steps: Vec<StepView>,
    pub involved_agents: Vec<InvolvedAgent>,
    pub progress: Progress,
}

/// How far a task is: finished steps of all, and what the running ones last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Finished steps: done, failed, skipped or cancelled.
    pub done: u32,
    pub total: u32,
    pub running: Vec<RunningStep>,
}

/// A step that an agent holds or that waits for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningStep {
    pub step_id: String,
    pub key: String,
    pub title: String,
    pub status: String,
    /// The last `step.progress` of the current attempt.
    pub percent: Option<u8>,
    pub message: Option<String>,
}

impl Progress {
    pub fn of(steps: &[Step]) -> Progress {
        let running = steps
            .iter()
            .filter(|step| {
                matches!(
                    step_status(step),
                    StepStatus::Claimed
                        | StepStatus::Running
                        | StepStatus::Blocked
                        | StepStatus::Submitted
                        | StepStatus::AwaitingApproval
                )
            })
            .map(|step| RunningStep {
                step_id: step.id.clone(),
                key: step.key.clone(),
                title: step.title.clone(),
                status: step.status.clone(),
                percent: step
                    .progress_percent
                    .map(|percent| percent.clamp(0, 100) as u8),
                message: step.progress_message.clone(),
            })
            .collect();
        Progress {
            done: steps
                .iter()
                .filter(|step| step_status(step).is_finished())
                .count() as u32,
            total: steps.len() as u32,
            running,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepView {
    pub step: Step,
    /// (agent id, agent name)
    pub assignees: Vec<(String, String)>,
    /// (member id, email) of the members the step is assigned to (`member:<email>`):
    /// their agents are among `assignees`.
    pub assigned_members: Vec<(String, String)>,
    /// (member id, email)
    pub approvers: Vec<(String, String)>,
    /// Keys of the steps this one depends on.
    pub depends_on: Vec<String>,
    /// Its agent's latest self-check (read by [`get_step`] only).
    pub check: Option<CheckView>,
    /// Its meeting, for a meeting step (read by [`get_step`] only).
    pub meeting: Option<MeetingView>,
}

#[derive(Debug, Clone)]
pub struct InvolvedAgent {
    pub id: String,
    pub name: String,
    pub online: bool,
}

impl InvolvedAgent {
    /// The agent as its row says (online when a hub renewed it lately).
    fn of(agent: &Agent) -> InvolvedAgent {
        InvolvedAgent {
            id: agent.id.clone(),
            name: agent.name.clone(),
            online: crate::agents::online_by_row(agent),
        }
    }
}

/// What `PATCH /v1/tasks/{id}` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAction {
    Pause,
    Resume,
    Cancel,
    Archive,
}

impl TaskAction {
    pub fn target(self) -> TaskStatus {
        match self {
            TaskAction::Pause => TaskStatus::Paused,
            TaskAction::Resume => TaskStatus::Active,
            TaskAction::Cancel => TaskStatus::Cancelled,
            TaskAction::Archive => TaskStatus::Archived,
        }
    }
}

pub async fn create_task(ctx: &Ctx, actor: &Actor, new: NewTask) -> Result<TaskView> {
    if new.plan.is_some() && new.steps.is_empty() {
        validate_task_text(&new)?;
    } else {
        validate_new_task(&new)?;
    }
    let op = CreateOp {
        actor: actor.clone(),
        new,
        task_id: new_id(),
        ran: AtomicBool::new(false),
    };
    match writes::run(ctx, WriteOp::Create(Arc::new(op))).await {
        WriteOut::Create(view) => Ok(with_presence(ctx, *view?)),
        _ => unreachable!("a create is answered as a create"),
    }
}

/// A task's creation as data, checked: what a batch of writes runs ([`writes`]).
#[derive(Debug)]
pub struct CreateOp {
    actor: Actor,
    new: NewTask,
    /// The new task's id, chosen before it runs: a creation run again finds its task.
    task_id: String,
    /// Set when a batch first runs it.
    ran: AtomicBool,
}

/// One task's creation in the transaction of its batch; the events it causes go to
/// `outbox` (flushed here, published after the commit). `Ok(Err(refusal))` when it is
/// refused before it writes anything (a step's assignee, approver or dependency names
/// nothing it may: see [`step_rows`]); `Err` when it was refused or failed after its
/// first write (the batch rolls back: see [`writes`]).
async fn create_in_tx(
    ctx: &Ctx,
    db: &mut Db<'_>,
    op: &CreateOp,
    outbox: &mut Outbox,
) -> Result<Result<TaskView>> {
    let CreateOp {
        actor,
        new,
        task_id,
        ran,
    } = op;
    let workspace_id = actor.workspace_id().to_string();
    // Run again because the leader of the batch that ran it went away: that batch may have
    // been committed (or may be, in the writer's open group): answer its task.
    if ran.swap(true, Ordering::Relaxed)
        && let Some(task) = model::find_task(db, &workspace_id, task_id).await?
    {
        let steps = model::steps_of_task(db, &task.id).await?;
        return load_view(db, &task, steps).await.map(Ok);
    }
    let by = By::actor(actor);
    let status = if new.draft || new.plan.is_some() {
        TaskStatus::Draft
    } else {
        TaskStatus::Active
    };
    let now = now_ms();
    let task = Task {
        id: task_id.clone(),
        workspace_id: workspace_id.clone(),
        title: new.title.trim().to_string(),
        description: new.description.clone(),
        status: status.as_str().to_string(),
        creator_member_id: Some(actor.member_id().to_string()),
        creator_agent_id: match actor {
            Actor::Agent(agent) => Some(agent.agent_id.clone()),
            Actor::Member(_) => None,
        },
        due_at: new.due_at,
        created_at: now,
        updated_at: now,
        outcome: None,
    };
    if let Some(request) = &new.plan {
        model::insert_task(db, &task).await?;
        outbox.created_task(&task.id);
        // The given steps are where the planner starts; the plan makes the steps.
        let start: Vec<_> = new.steps.iter().map(plan_step_of).collect();
        plan::request_in_tx(ctx, db, outbox, actor, &task, request, &start).await?;
        timeline::record_created(db, &task, &[], &by).await?;
        outbox.flush(db, &workspace_id).await?;
        return load_view(db, &task, Vec::new()).await.map(Ok);
    }
    // The steps' names are resolved before the task is written: a refusal for them
    // leaves nothing to undo.
    let rows = match step_rows(db, &task, &new.steps, &[]).await {
        Ok(rows) => rows,
        Err(failed @ (Error::Unavailable(_) | Error::Internal(_))) => return Err(failed),
        Err(refused) => return Ok(Err(refused)),
    };
    model::insert_task(db, &task).await?;
    outbox.created_task(&task.id);
    let (steps, written) = write_step_rows(db, &task, &new.steps, rows).await?;
    timeline::record_created(db, &task, &steps, &by).await?;
    let view = match view_of_written(&task, &steps, &written) {
        Some(view) => view,
        None => load_view(db, &task, steps).await?,
    };
    if status == TaskStatus::Draft {
        // Nobody hears of a draft until it is published.
        return Ok(Ok(view));
    }
    // Everyone involved hears of the task; ready steps are pushed to assignees.
    push_task_created(outbox, &view);
    for step_view in &view.steps {
        if step_view.step.status != StepStatus::Ready.as_str() {
            continue;
        }
        if runs_in_hub(&step_view.step) {
            // The hub's A2A worker takes it; no agent is told.
            continue;
        }
        if step_view.depends_on.is_empty() && !step_view.step.is_meeting() {
            // The view holds every step of the new task: this one depends on none,
            // so its push has no inputs to read (a meeting starts in `push_ready`).
            let frame = frames::step_ready_after(db, &task, &step_view.step, Vec::new()).await?;
            outbox.push_all(&assignee_audiences(step_view), &frame);
        } else {
            push_ready(db, outbox, &task, step_view).await?;
        }
    }
    outbox.flush(db, &workspace_id).await?;
    Ok(Ok(view))
}

fn validate_task_text(new: &NewTask) -> Result<()> {
    if new.title.trim().is_empty() {
        return Err(Error::invalid_field("title", "title must not be empty"));
    }
    content::person_text("title", &new.title, MAX_TITLE_BYTES)?;
    content::person_text("description", &new.description, MAX_TASK_DESCRIPTION_BYTES)
}

fn validate_new_task(new: &NewTask) -> Result<()> {
    validate_task_text(new)?;
    if new.steps.is_empty() {
        return Err(Error::invalid_field(
            "steps",
            "a task needs at least one step",
        ));
    }
    if new.steps.len() > MAX_STEPS {
        return Err(Error::invalid_field(
            "steps",
            format!("a task has at most {MAX_STEPS} steps"),
        ));
    }
    let mut keys = HashSet::new();
    for step in &new.steps {
        validate_new_step(step)?;
        if !keys.insert(step.key.as_str()) {
            return Err(Error::invalid_field(
                "steps.key",
                format!("two steps have the key `{}`", step.key),
            ));
        }
    }
    let keys: Vec<&str> = new.steps.iter().map(|step| step.key.as_str()).collect();
    let edges = new
        .steps
        .iter()
        .map(|step| {
            (
                step.key.as_str(),
                step.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    dag::validate(&keys, &edges)
}

fn validate_new_step(step: &NewStep) -> Result<()> {
    let key = &step.key;
    if key.is_empty()
        || key.len() > 64
        || !key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return Err(Error::invalid_field(
            "steps.key",
            format!("step key `{key}` must be 1-64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    if step.title.trim().is_empty() {
        return Err(Error::invalid_field(
            "steps.title",
            format!("step `{key}` needs a title"),
        ));
    }
    content::person_text("steps.title", &step.title, MAX_TITLE_BYTES)?;
    content::person_text(
        "steps.description",
        &step.description,
        MAX_STEP_DESCRIPTION_BYTES,
    )?;
    content::person_text_opt(
        "steps.expected_inputs",
        step.expected_inputs.as_deref(),
        MAX_TEXT_BYTES,
    )?;
    content::person_text_opt(
        "steps.expected_outputs",
        step.expected_outputs.as_deref(),
        MAX_TEXT_BYTES,
    )?;
    for label in &step.required_capabilities {
        content::person_text("steps.required_capabilities", label, MAX_TITLE_BYTES)?;
    }
    content::json_value("steps.input", &step.input, MAX_INPUT_BYTES)?;
    if let Some(minutes) = step.estimate_minutes
        && !(1..=MAX_ESTIMATE_MINUTES).contains(&minutes)
    {
        return Err(Error::invalid_field(
            "steps.estimate_minutes",
            format!(
                "step `{key}`: an estimate is 1 to {MAX_ESTIMATE_MINUTES} minutes, not {minutes}"
            ),
        ));
    }
    check_names("steps.assignees", &step.assignees)?;
    check_names("steps.approvers", &step.approvers)?;
    check_names("steps.depends_on", &step.depends_on)?;
    if step.assignees.is_empty() {
        return Err(Error::invalid_field(
            "steps.assignees",
            format!("step `{key}` needs at least one assignee"),
        ));
    }
    if step.approval_level > 3 {
        return Err(Error::invalid_field(
            "steps.approval_level",
            format!("step `{key}`: approval level must be 0 to 3"),
        ));
    }
    if step.approval_level > 0 && step.approvers.is_empty() {
        return Err(Error::invalid_field(
            "steps.approvers",
            format!(
                "step `{key}` has approval level {} but no approvers",
                step.approval_level
            ),
        ));
    }
    if let Some(max_attempts) = step.max_attempts
        && !(1..=100).contains(&max_attempts)
    {
        return Err(Error::invalid_field(
            "steps.max_attempts",
            format!("step `{key}`: max_attempts must be 1 to 100"),
        ));
    }
    if let Some(executor) = &step.executor
        && !EXECUTORS.contains(&executor.as_str())
    {
        return Err(Error::invalid_field(
            "steps.executor",
            format!(
                "step `{key}`: unknown executor `{executor}`; use one of {}",
                EXECUTORS.join(", ")
            ),
        ));
    }
    if step.executor.as_deref() == Some(crate::a2a::EXECUTOR) {
        let card_url = step.input.get("agent_card_url");
        let valid = card_url
            .and_then(Value::as_str)
            .is_some_and(crate::a2a::client::is_http_url);
        if !valid {
            return Err(Error::invalid_field(
                "steps.input.agent_card_url",
                format!(
                    "step `{key}`: an a2a step needs `input.agent_card_url`, the absolute \
                     http(s) URL of the outside agent's Agent Card"
                ),
            ));
        }
        if step
            .assignees
            .iter()
            .all(|assignee| assignee.starts_with("member:"))
        {
            return Err(Error::invalid_field(
                "steps.assignees",
                format!(
                    "step `{key}`: the hub runs an a2a step for an agent, whose member answers \
                     the outside agent's questions: name an agent among its assignees"
                ),
            ));
        }
    }
    if let Some(meeting) = &step.meeting {
        if step.approval_level > 0 {
            return Err(Error::invalid_field(
                "steps.approval_level",
                format!(
                    "step `{key}`: a meeting step is confirmed by its assignee and takes no approval level"
                ),
            ));
        }
        if step.executor.is_some() {
            return Err(Error::invalid_field(
                "steps.executor",
                format!(
                    "step `{key}`: a meeting step is coordinated by the hub and names no executor"
                ),
            ));
        }
        if step.assignees.is_empty() {
            return Err(Error::invalid_field(
                "steps.assignees",
                format!("step `{key}`: a meeting step needs an assignee, who confirms the slot"),
            ));
        }
        meeting::validate(key, meeting, now_ms())?;
    }
    Ok(())
}

/// Names of agents, members or steps that a request refers to: lookups work on both
/// backends (no NUL) and stay short.
pub(crate) fn check_names(field: &str, names: &[String]) -> Result<()> {
    names
        .iter()
        .try_for_each(|name| content::person_text(field, name, MAX_TITLE_BYTES))
}

/// Inserts validated steps of `task` after its `existing` ones, with their assignees,
/// approvers and dependencies, resolving names. Dependencies may name existing steps.
/// Steps without unfinished dependencies are inserted `ready`; returns the new rows.
async fn insert_steps(
    db: &mut Db<'_>,
    task: &Task,
    new_steps: &[NewStep],
    existing: &[Step],
) -> Result<Vec<Step>> {
    Ok(insert_steps_written(db, task, new_steps, existing).await?.0)
}

/// What [`insert_steps_written`] wrote besides the steps, so that a new task's view is
/// built without reading it back.
struct Written {
    assignees: Vec<model::AssigneeRow>,
    /// The rows of the assigned agents, as read to assign them.
    agents: Vec<Agent>,
    /// (step id, member id)
    approvers: Vec<(String, String)>,
    /// (step id, depends-on step id)
    dependencies: Vec<(String, String)>,
}

/// [`insert_steps`], and what it wrote besides the steps.
async fn insert_steps_written(
    db: &mut Db<'_>,
    task: &Task,
    new_steps: &[NewStep],
    existing: &[Step],
) -> Result<(Vec<Step>, Written)> {
    let rows = step_rows(db, task, new_steps, existing).await?;
    write_step_rows(db, task, new_steps, rows).await
}

/// The rows [`insert_steps`] writes for `new_steps`, read and checked but not written:
/// every name resolved (an unknown assignee or approver, a dependency on no step, a key
/// taken is refused here, before anything is written).
struct StepRows {
    steps: Vec<Step>,
    written: Written,
}

/// Resolves and checks what [`insert_steps`] writes ([`StepRows`]); reads only.
async fn step_rows(
    db: &mut Db<'_>,
    task: &Task,
    new_steps: &[NewStep],
    existing: &[Step],
) -> Result<StepRows> {
    let now = now_ms();
    let first_position = existing
        .iter()
        .map(|step| step.position)
        .max()
        .map_or(0, |last| last + 1);
    let mut ids_by_key: HashMap<String, String> = existing
        .iter()
        .map(|step| (step.key.clone(), step.id.clone()))
        .collect();
    // Goes out with the first assignees' read, and is answered after it.
    let mut decision_timeout_of = if new_steps
        .iter()
        .any(|new| new.decision_timeout == DecisionTimeout::WorkspaceDefault)
    {
        Some(accounts::model::decision_timeout_of(db, &task.workspace_id).await)
    } else {
        None
    };
    let mut default_decision_timeout_ms = None;
    let mut rows = Vec::new();
    let mut assignee_rows = Vec::new();
    let mut agents_read = Vec::new();
    let mut approver_rows = Vec::new();
    let mut dependency_rows = Vec::new();
    for new in new_steps {
        if ids_by_key.contains_key(&new.key) {
            return Err(Error::invalid_field(
                "steps.key",
                format!("the task already has a step `{}`", new.key),
            ));
        }
        ids_by_key.insert(new.key.clone(), new_id());
    }
    for (offset, new) in new_steps.iter().enumerate() {
        let step_id = ids_by_key[&new.key].clone();
        let target = AssigneeTarget {
            workspace_id: &task.workspace_id,
            step_id: &step_id,
            step_key: &new.key,
            field: "steps.assignees",
        };
        assignee_rows.extend(
            resolve_assignees_into(
                db,
                &target,
                &new.assignees,
                &new.required_capabilities,
                &mut agents_read,
            )
            .await?,
        );
        if let Some(timeout) = decision_timeout_of.take() {
            default_decision_timeout_ms = timeout
                .get(db)
                .await?
                .ok_or(diesel::result::Error::NotFound)?;
        }
        for name in dedup(&new.approvers) {
            let member = accounts::model::find_member(db, &task.workspace_id, name)
                .await?
                .ok_or_else(|| {
                    Error::invalid_field(
                        "steps.approvers",
                        format!(
                            "step `{}`: approver `{name}` is not a member of this workspace",
                            new.key
                        ),
                    )
                })?;
            approver_rows.push((step_id.clone(), member.id));
        }
        for dep in dedup(&new.depends_on) {
            let dep_id = ids_by_key.get(dep).ok_or_else(|| {
                Error::invalid_field(
                    "depends_on",
                    format!(
                        "step `{}` depends on `{dep}`, which is not a step of this task",
                        new.key
                    ),
                )
            })?;
            dependency_rows.push((step_id.clone(), dep_id.clone()));
        }
        rows.push(Step {
            id: step_id,
            task_id: task.id.clone(),
            workspace_id: task.workspace_id.clone(),
            key: new.key.clone(),
            position: first_position + offset as i32,
            title: new.title.trim().to_string(),
            description: new.description.clone(),
            status: StepStatus::Pending.as_str().to_string(),
            approval_level: i32::from(new.approval_level),
            executor: new.executor.clone(),
            input: serde_json::to_string(&new.input)?,
            expected_inputs: new.expected_inputs.clone(),
            expected_outputs: new.expected_outputs.clone(),
            required_capabilities: serde_json::to_string(&new.required_capabilities)?,
            result: None,
            summary: None,
            self_check: None,
            files: "[]".into(),
            claimed_by: None,
            lease_until: None,
            attempt: 1,
            rework_comment: None,
            started_at: None,
            completed_at: None,
            input_tokens: 0,
            output_tokens: 0,
            created_at: now,
            updated_at: now,
            max_attempts: new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS) as i32,
            continue_on_failure: new.continue_on_failure,
            failures: 0,
            status_reason: None,
            skipped_because: None,
            progress_percent: None,
            progress_message: None,
            result_digest: None,
            decision_timeout_ms: new.decision_timeout.resolve(default_decision_timeout_ms),
            on_timeout: new.on_timeout.as_str().to_string(),
            kind: if new.meeting.is_some() {
                model::STEP_KIND_MEETING
            } else {
                model::STEP_KIND_TASK
            }
            .to_string(),
            estimate_minutes: new.estimate_minutes.map(|minutes| minutes as i32),
        });
    }
    // Steps without unfinished dependencies start ready (`pending` → `ready` is the state
    // machine's first move; it is made before the insert instead of by a second update),
    // except in a draft, where nothing starts before it is published.
    let finished: HashSet<&str> = existing
        .iter()
        .filter(|step| settle::satisfies(step))
        .map(|step| step.id.as_str())
        .collect();
    let may_start = task_status(task) != TaskStatus::Draft;
    for row in rows.iter_mut().filter(|_| may_start) {
        let waits = dependency_rows
            .iter()
            .any(|(step_id, dep)| step_id == &row.id && !finished.contains(dep.as_str()));
        if !waits {
            debug_assert!(StepStatus::Pending.allows(StepStatus::Ready));
            row.status = StepStatus::Ready.as_str().to_string();
        }
    }
    Ok(StepRows {
        steps: rows,
        written: Written {
            assignees: assignee_rows,
            agents: agents_read,
            approvers: approver_rows,
            dependencies: dependency_rows,
        },
    })
}

/// Writes what [`step_rows`] resolved for `new_steps` of `task`: the steps, their
/// assignees, approvers, dependencies and meetings.
async fn write_step_rows(
    db: &mut Db<'_>,
    task: &Task,
    new_steps: &[NewStep],
    StepRows { steps, written }: StepRows,
) -> Result<(Vec<Step>, Written)> {
    model::insert_steps(db, &steps).await?;
    if !written.assignees.is_empty() {
        model::insert_assignees(db, &written.assignees).await?;
    }
    if !written.approvers.is_empty() {
        model::insert_approvers(db, &written.approvers).await?;
    }
    if !written.dependencies.is_empty() {
        model::insert_dependencies(db, &written.dependencies).await?;
    }
    for (row, new) in steps.iter().zip(new_steps) {
        if let Some(new_meeting) = &new.meeting {
            meeting::insert(db, task, &row.id, &new.key, new_meeting).await?;
        }
    }
    Ok((steps, written))
}

/// The view of a task just created with `steps`, built from what was written instead of
/// read back (what [`load_view`] would read), in the common case where that gives the
/// same view in the same order on both databases: no approvers, no member assignees, at
/// most one assignee and one dependency per step. `None` otherwise.
fn view_of_written(task: &Task, steps: &[Step], written: &Written) -> Option<TaskView> {
    fn at_most_one_per_step<'a>(mut step_ids: impl Iterator<Item = &'a String>) -> bool {
        let mut seen = HashSet::new();
        step_ids.all(|step_id| seen.insert(step_id.as_str()))
    }
    if !written.approvers.is_empty()
        || written
            .assignees
            .iter()
            .any(|row| row.via_member_id.is_some())
        || !at_most_one_per_step(written.assignees.iter().map(|row| &row.step_id))
        || !at_most_one_per_step(written.dependencies.iter().map(|(step_id, _)| step_id))
    {
        return None;
    }
    let mut agents: Vec<&Agent> = Vec::new();
    for row in &written.assignees {
        let agent = written
            .agents
            .iter()
            .find(|agent| agent.id == row.agent_id)?;
        if !agents.iter().any(|seen| seen.id == agent.id) {
            agents.push(agent);
        }
    }
    agents.sort_by(|left, right| left.name.cmp(&right.name));
    let key_of: HashMap<&str, &str> = steps
        .iter()
        .map(|step| (step.id.as_str(), step.key.as_str()))
        .collect();
    let step_views = steps
        .iter()
        .map(|step| StepView {
            assignees: written
                .assignees
                .iter()
                .filter(|row| row.step_id == step.id)
                .filter_map(|row| {
                    let agent = agents.iter().find(|agent| agent.id == row.agent_id)?;
                    Some((agent.id.clone(), agent.name.clone()))
                })
                .collect(),
            assigned_members: Vec::new(),
            approvers: Vec::new(),
            depends_on: written
                .dependencies
                .iter()
                .filter(|(step_id, _)| step_id == &step.id)
                .filter_map(|(_, dep)| key_of.get(dep.as_str()).map(|key| key.to_string()))
                .collect(),
            step: step.clone(),
            check: None,
            meeting: None,
        })
        .collect();
    let involved_agents = agents.into_iter().map(InvolvedAgent::of).collect();
    Some(TaskView {
        task: task.clone(),
        progress: Progress::of(steps),
        steps: step_views,
        involved_agents,
    })
}

fn dedup(names: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    names
        .iter()
        .map(|name| name.trim())
        .filter(|name| seen.insert(*name))
        .collect()
}

/// The prefix of an assignee that names a member: any of the member's agents may take the
/// step.
pub const MEMBER_ASSIGNEE_PREFIX: &str = "member:";

/// The assignment rows of step `step_id` for `names`: agent names or ids, and
/// `member:<email or id>` for every agent of that member (each row marked with the
/// member). Every agent must have the `required` capabilities; of a member's agents those
/// that lack one are left out, and a member without any agent that has them is refused.
/// An agent named twice (itself and through its member) is assigned once.
pub(crate) async fn resolve_assignees(
    db: &mut Db<'_>,
    workspace_id: &str,
    step_id: &str,
    step_key: &str,
    names: &[String],
    required: &[String],
    field: &str,
) -> Result<Vec<model::AssigneeRow>> {
    let mut agents_read = Vec::new();
    let target = AssigneeTarget {
        workspace_id,
        step_id,
        step_key,
        field,
    };
    resolve_assignees_into(db, &target, names, required, &mut agents_read).await
}

/// Where [`resolve_assignees_into`] assigns: the step, and the field named in errors.
struct AssigneeTarget<'a> {
    workspace_id: &'a str,
    step_id: &'a str,
    step_key: &'a str,
    field: &'a str,
}

/// [`resolve_assignees`], also adding every agent row it read to `agents_read`.
async fn resolve_assignees_into(
    db: &mut Db<'_>,
    target: &AssigneeTarget<'_>,
    names: &[String],
    required: &[String],
    agents_read: &mut Vec<Agent>,
) -> Result<Vec<model::AssigneeRow>> {
    let AssigneeTarget {
        workspace_id,
        step_id,
        step_key,
        field,
    } = *target;
    let mut rows: Vec<model::AssigneeRow> = Vec::new();
    let lacks = |agent: &Agent| {
        let capabilities = agent.capability_list();
        required
            .iter()
            .find(|label| !capabilities.contains(label))
            .cloned()
    };
    for name in dedup(names) {
        let (agents, via_member_id) = match name.strip_prefix(MEMBER_ASSIGNEE_PREFIX) {
            Some(member) => {
                let member = accounts::model::find_member(db, workspace_id, member.trim())
                    .await?
                    .ok_or_else(|| {
                        Error::invalid_field(
                            field,
                            format!(
                                "step `{step_key}`: assignee `{name}` is not a member of this workspace"
                            ),
                        )
                    })?;
                let agents: Vec<Agent> = agents::model::agents_of_member(db, &member.id)
                    .await?
                    .into_iter()
                    .filter(|agent| lacks(agent).is_none())
                    .collect();
                if agents.is_empty() {
                    let need = if required.is_empty() {
                        String::new()
                    } else {
                        format!(" with the capabilities {}", required.join(", "))
                    };
                    return Err(Error::invalid_field(
                        field,
                        format!(
                            "step `{step_key}`: member `{}` has no agent{need} to take it; \
                             they can register one with `agentd login`",
                            member.email
                        ),
                    ));
                }
                (agents, Some(member.id))
            }
            None => {
                let agent = agents::model::find_agent(db, workspace_id, name)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid_field(
                            field,
                            format!(
                                "step `{step_key}`: assignee `{name}` is not an agent of this workspace"
                            ),
                        )
                    })?;
                if let Some(missing) = lacks(&agent) {
                    return Err(Error::invalid_field(
                        field,
                        format!(
                            "step `{step_key}`: agent `{}` lacks the required capability `{missing}`",
                            agent.name
                        ),
                    ));
                }
                (vec![agent], None)
            }
        };
        for agent in agents {
            if !agents_read.iter().any(|read| read.id == agent.id) {
                agents_read.push(agent.clone());
            }
            match rows.iter_mut().find(|row| row.agent_id == agent.id) {
                Some(row) => {
                    if row.via_member_id.is_none() {
                        row.via_member_id = via_member_id.clone();
                    }
                }
                None => rows.push(model::AssigneeRow {
                    step_id: step_id.to_string(),
                    agent_id: agent.id,
                    via_member_id: via_member_id.clone(),
                }),
            }
        }
    }
    Ok(rows)
}

pub(crate) fn step_status(step: &Step) -> StepStatus {
    step.status.parse().unwrap_or(StepStatus::Failed)
}

pub(crate) fn task_status(task: &Task) -> TaskStatus {
    task.status.parse().unwrap_or(TaskStatus::Cancelled)
}

/// Moves `step` to `to` if the state machine allows it and nobody changed the step
/// since it was read; otherwise `conflict` naming the current state. Updates `step` and
/// records the move in the task's timeline, with who made it and why.
pub(crate) async fn transition(
    db: &mut Db<'_>,
    step: &mut Step,
    to: StepStatus,
    mut change: model::StepChange,
    by: &By,
    reason: Option<&str>,
) -> Result<()> {
    let from = step_status(step);
    from.check(to)?;
    let now = now_ms();
    change.status = Some(to.as_str().to_string());
    change.updated_at = Some(now);
    if !model::update_step_if(db, &step.id, &step.status, step.attempt, &change).await? {
        let current = model::find_step(db, &step.workspace_id, &step.id)
            .await?
            .ok_or_else(|| Error::not_found("step"))?;
        return Err(Error::conflict(format!(
            "step is {} (attempt {}); it cannot become {to}",
            current.status, current.attempt
        )));
    }
    apply_change(step, &change);
    timeline::record_step(db, step, Some(from.as_str()), by, reason).await
}

/// What cancelling or pausing a task does to each of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepStop {
    /// Every unfinished step is cancelled and revoked from the agent holding it.
    Cancel,
    /// A held step returns to `ready` and is revoked from its holder (not a failure).
    Pause,
}

/// Cancels or pauses one step of a task being cancelled or paused. The task's lock does
/// not stop an agent's claim, progress or submit on PostgreSQL, so a step that moved
/// since it was read is read again and stopped as it now is.
async fn stop_step(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    mut step: Step,
    stop: StepStop,
    by: &By,
) -> Result<()> {
    let mut tries_left = 3;
    loop {
        let status = step_status(&step);
        let stopped = match stop {
            StepStop::Cancel if !status.is_finished() => {
                cancel_step(db, outbox, &mut step, by).await
            }
            StepStop::Pause if status.is_held() => {
                let why = lifecycle::Requeue::Paused;
                lifecycle::requeue_in_tx(db, outbox, task, &mut step, why, by).await
            }
            _ => return Ok(()),
        };
        match stopped {
            Err(Error::Conflict(_)) if tries_left > 1 => {
                tries_left -= 1;
                step = model::find_step(db, &step.workspace_id, &step.id)
                    .await?
                    .ok_or_else(|| Error::not_found("step"))?;
            }
            stopped => return stopped,
        }
    }
}

/// Cancels an unfinished step and revokes it from the agent holding it.
async fn cancel_step(db: &mut Db<'_>, outbox: &mut Outbox, step: &mut Step, by: &By) -> Result<()> {
    let holder = step.claimed_by.clone();
    let attempt = step.attempt;
    let change = model::StepChange {
        lease_until: Some(None),
        ..Default::default()
    };
    let reason = Some("the task was cancelled");
    transition(db, step, StepStatus::Cancelled, change, by, reason).await?;
    if let Some(agent_id) = holder {
        outbox.push(
            Audience::Agent(agent_id),
            frames::step_revoked(step, attempt, "the task was cancelled"),
        );
    }
    Ok(())
}

/// Moves `step` through `via` to `to` with one conditional update (a submit that
/// completes its step, or asks for approval, at once), recording both moves in the
/// timeline with one insert. `change` applies to the final state; the state machine must
/// allow both moves, exactly as two [`transition`]s would.
pub(crate) async fn transition_via(
    db: &mut Db<'_>,
    step: &mut Step,
    via: StepStatus,
    to: StepStatus,
    mut change: model::StepChange,
    by: &By,
) -> Result<()> {
    let from = step_status(step);
    from.check(via)?;
    via.check(to)?;
    let now = now_ms();
    change.status = Some(to.as_str().to_string());
    change.updated_at = Some(now);
    if !model::update_step_if(db, &step.id, &step.status, step.attempt, &change).await? {
        let current = model::find_step(db, &step.workspace_id, &step.id)
            .await?
            .ok_or_else(|| Error::not_found("step"))?;
        return Err(Error::conflict(format!(
            "step is {} (attempt {}); it cannot become {via}",
            current.status, current.attempt
        )));
    }
    apply_change(step, &change);
    timeline::record_step_via(db, step, from.as_str(), via.as_str(), by).await
}

fn apply_change(step: &mut Step, change: &model::StepChange) {
    macro_rules! apply {
        ($($field:ident),*) => { $( if let Some(value) = &change.$field { step.$field = value.clone(); } )* };
    }
    apply!(
        status,
        claimed_by,
        lease_until,
        attempt,
        result,
        summary,
        self_check,
        files,
        rework_comment,
        started_at,
        completed_at,
        input_tokens,
        output_tokens,
        position,
        updated_at,
        failures,
        status_reason,
        skipped_because,
        progress_percent,
        progress_message,
        result_digest
    );
}

/// The task with its steps, assignees, approvers, dependencies and involved agents.
pub async fn load_view(db: &mut Db<'_>, task: &Task, steps: Vec<Step>) -> Result<TaskView> {
    let mut views = views_of(db, vec![(task, steps)]).await?;
    views
        .pop()
        .ok_or_else(|| Error::internal("a task's view went missing"))
}

/// [`load_view`] of several tasks with one query per kind for all of them: `steps` holds
/// the steps of every task (in position order); the views come in the order of `tasks`.
pub async fn load_views(
    db: &mut Db<'_>,
    tasks: &[Task],
    steps: Vec<Step>,
) -> Result<Vec<TaskView>> {
    let mut steps_by_task: HashMap<String, Vec<Step>> = HashMap::new();
    for step in steps {
        steps_by_task
            .entry(step.task_id.clone())
            .or_default()
            .push(step);
    }
    let groups = tasks
        .iter()
        .map(|task| (task, steps_by_task.remove(&task.id).unwrap_or_default()))
        .collect();
    views_of(db, groups).await
}

/// The views of tasks, each with the steps given for it.
async fn views_of(db: &mut Db<'_>, groups: Vec<(&Task, Vec<Step>)>) -> Result<Vec<TaskView>> {
    let step_ids: Vec<String> = groups
        .iter()
        .flat_map(|(_, steps)| steps.iter().map(|step| step.id.clone()))
        .collect();
    let assignees = model::assignees_of(db, &step_ids).await?;
    let approvers = model::approvers_of(db, &step_ids).await?;
    let assigned_members = model::member_assignees_of(db, &step_ids).await?;
    let dependencies = model::dependencies_of(db, &step_ids).await?;
    let agent_ids: Vec<String> = assignees
        .iter()
        .map(|(_, agent_id)| agent_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut agents = agents::model::agents_by_ids(db, &agent_ids).await?;
    agents.sort_by(|left, right| left.name.cmp(&right.name));
    // The members are read for the approvers' and assigned members' emails only.
    let mut members = Vec::new();
    if !approvers.is_empty() || !assigned_members.is_empty() {
        let mut workspace_ids: Vec<&str> = groups
            .iter()
            .map(|(task, _)| task.workspace_id.as_str())
            .collect();
        workspace_ids.sort_unstable();
        workspace_ids.dedup();
        for workspace_id in workspace_ids {
            members.extend(accounts::model::list_members(db, workspace_id).await?);
        }
    }
    let agent_name = |id: &str| {
        agents
            .iter()
            .find(|agent| agent.id == id)
            .map(|agent| agent.name.clone())
            .unwrap_or_default()
    };
    let member_email = |id: &str| {
        members
            .iter()
            .find(|member| member.id == id)
            .map(|member| member.email.clone())
            .unwrap_or_default()
    };
    let assignees = by_step(&assignees);
    let approvers = by_step(&approvers);
    let assigned_members = by_step(&assigned_members);
    let dependencies = by_step(&dependencies);
    // The ids a step's rows name, each with what `name_of` finds for it.
    let named = |rows: &HashMap<&str, Vec<&str>>, step: &Step, name_of: &dyn Fn(&str) -> String| {
        rows.get(step.id.as_str())
            .into_iter()
            .flatten()
            .map(|id| (id.to_string(), name_of(id)))
            .collect::<Vec<_>>()
    };
    let mut views = Vec::with_capacity(groups.len());
    for (task, steps) in groups {
        let key_of: HashMap<&str, &str> = steps
            .iter()
            .map(|step| (step.id.as_str(), step.key.as_str()))
            .collect();
        let step_views: Vec<StepView> = steps
            .iter()
            .map(|step| StepView {
                step: step.clone(),
                check: None,
                meeting: None,
                assignees: named(&assignees, step, &agent_name),
                approvers: named(&approvers, step, &member_email),
                assigned_members: named(&assigned_members, step, &member_email),
                depends_on: dependencies
                    .get(step.id.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|dep| key_of.get(dep).map(|key| key.to_string()))
                    .collect(),
            })
            .collect();
        let involved_agents = agents
            .iter()
            .filter(|agent| {
                step_views.iter().any(|view| {
                    view.assignees
                        .iter()
                        .any(|(agent_id, _)| *agent_id == agent.id)
                })
            })
            .map(InvolvedAgent::of)
            .collect();
        views.push(TaskView {
            task: task.clone(),
            progress: Progress::of(&steps),
            steps: step_views,
            involved_agents,
        });
    }
    Ok(views)
}

/// (step id, other id) rows grouped by step, each group in the rows' order.
fn by_step(rows: &[(String, String)]) -> HashMap<&str, Vec<&str>> {
    let mut grouped: HashMap<&str, Vec<&str>> = HashMap::new();
    for (step_id, other_id) in rows {
        grouped
            .entry(step_id.as_str())
            .or_default()
            .push(other_id.as_str());
    }
    grouped
}

/// Queues `task.created` for those who hear of a task's creation (or publication): each
/// agent assigned to its steps, with its own steps (ready now or waiting for which), and
/// its creator and approvers.
fn push_task_created(outbox: &mut Outbox, view: &TaskView) {
    let frame = frames::task_created(&view.task);
    for agent in &view.involved_agents {
        let mut frame = frame.clone();
        if let ServerFrame::TaskCreated(created) = &mut frame {
            created.your_steps = your_steps(view, &agent.id);
        }
        outbox.push(Audience::Agent(agent.id.clone()), frame);
    }
    outbox.push_all(&member_audiences(&view.task, &view.steps), &frame);
}

/// Steps a `task.created` lists as the receiver's own, and titles of what each waits for.
pub const MAX_YOUR_STEPS: usize = 10;
const MAX_WAITING_FOR: usize = 5;

/// The first [`MAX_YOUR_STEPS`] steps of `agent_id` in `view`, each ready when nothing it
/// depends on is unfinished.
fn your_steps(view: &TaskView, agent_id: &str) -> Vec<YourStep> {
    view.steps
        .iter()
        .filter(|step_view| step_view.assignees.iter().any(|(id, _)| id == agent_id))
        .take(MAX_YOUR_STEPS)
        .map(|step_view| {
            let waiting_for: Vec<String> = view
                .steps
                .iter()
                .filter(|other| step_view.depends_on.contains(&other.step.key))
                .filter(|other| !settle::satisfies(&other.step))
                .map(|other| other.step.title.clone())
                .take(MAX_WAITING_FOR)
                .collect();
            let status = if waiting_for.is_empty() {
                StepStatus::Ready
            } else {
                StepStatus::Pending
            };
            YourStep {
                step_id: frames::uuid(&step_view.step.id),
                key: step_view.step.key.clone(),
                title: step_view.step.title.clone(),
                status: status.as_str().to_string(),
                waiting_for,
            }
        })
        .collect()
}

/// Members who follow a task: its creator and every approver.
fn member_audiences(task: &Task, steps: &[StepView]) -> Vec<Audience> {
    let mut ids: Vec<&str> = task.creator_member_id.iter().map(String::as_str).collect();
    for step in steps {
        for (member_id, _) in &step.approvers {
            if !ids.contains(&member_id.as_str()) {
                ids.push(member_id);
            }
        }
    }
    ids.into_iter()
        .map(|id| Audience::Member(id.to_string()))
        .collect()
}

/// Makes a new agent of `agent.owner_member_id` an assignee of the steps assigned to its
/// member that may still run and whose required capabilities it has, and queues
/// `step.ready` for it of those ready in an active task.
pub(crate) async fn join_member_steps(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    agent: &Agent,
) -> Result<()> {
    let steps = model::open_steps_of_member(db, &agent.owner_member_id).await?;
    let capabilities = agent.capability_list();
    for step in steps {
        let required: Vec<String> =
            serde_json::from_str(&step.required_capabilities).unwrap_or_default();
        if required.iter().any(|label| !capabilities.contains(label)) {
            continue;
        }
        model::insert_assignees(
            db,
            &[model::AssigneeRow {
                step_id: step.id.clone(),
                agent_id: agent.id.clone(),
                via_member_id: Some(agent.owner_member_id.clone()),
            }],
        )
        .await?;
        if step_status(&step) != StepStatus::Ready || runs_in_hub(&step) {
            continue;
        }
        let Some(task) = model::find_task(db, &agent.workspace_id, &step.task_id).await? else {
            continue;
        };
        if task_status(&task) == TaskStatus::Active {
            let frame = frames::step_ready(db, &task, &step).await?;
            outbox.push(Audience::Agent(agent.id.clone()), frame);
        }
    }
    Ok(())
}

/// Queues `step.ready` for every assignee of a ready step.
pub(crate) async fn push_ready(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step_view: &StepView,
) -> Result<()> {
    let meetings =
        meeting::start_ready(db, outbox, task, std::slice::from_ref(&step_view.step)).await?;
    if !meetings.is_empty() || runs_in_hub(&step_view.step) {
        return Ok(());
    }
    let frame = frames::step_ready(db, task, &step_view.step).await?;
    outbox.push_all(&assignee_audiences(step_view), &frame);
    Ok(())
}

/// The step's assignees, as the audiences of its `step.ready`.
fn assignee_audiences(step_view: &StepView) -> Vec<Audience> {
    step_view
        .assignees
        .iter()
        .map(|(agent_id, _)| Audience::Agent(agent_id.clone()))
        .collect()
}

/// Queues `step.ready` for every assignee of each of `steps` (ready steps of `task`),
/// reading only their assignees.
pub(crate) async fn push_ready_steps(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    steps: &[Step],
) -> Result<()> {
    let meetings = meeting::start_ready(db, outbox, task, steps).await?;
    let steps: Vec<&Step> = steps
        .iter()
        .filter(|step| !meetings.contains(&step.id) && !runs_in_hub(step))
        .collect();
    let ids: Vec<String> = steps.iter().map(|step| step.id.clone()).collect();
    let assignees = model::assignees_of(db, &ids).await?;
    for step in steps {
        let frame = frames::step_ready(db, task, step).await?;
        let audiences: Vec<Audience> = assignees
            .iter()
            .filter(|(step_id, _)| step_id == &step.id)
            .map(|(_, agent_id)| Audience::Agent(agent_id.clone()))
            .collect();
        outbox.push_all(&audiences, &frame);
    }
    Ok(())
}

pub async fn get_task(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<TaskView> {
    let view = ctx
        .store
        .read(async |db| {
            let task = model::find_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            let steps = model::steps_of_task(db, &task.id).await?;
            load_view(db, &task, steps).await
        })
        .await?;
    Ok(with_presence(ctx, view))
}

/// Marks the involved agents with a session on this hub online (the rows say whether any
/// hub has renewed them lately).
fn with_presence(ctx: &Ctx, mut view: TaskView) -> TaskView {
    for agent in &mut view.involved_agents {
        agent.online = agent.online || ctx.presence.is_online(&agent.id);
    }
    view
}

/// The newest tasks of the workspace, each with its progress.
/// Which tasks [`list_tasks`] answers: every condition given holds; newest first,
/// `offset` skipped, at most `limit` (1-500).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    /// Created by this member.
    pub created_by: Option<String>,
    /// One of these tasks.
    pub ids: Option<Vec<String>>,
    /// Only tasks listed after this one (its `created_at` and id): the next page of a
    /// listing that new tasks do not shift.
    pub after: Option<(i64, String)>,
    pub offset: u32,
    pub limit: u32,
}

impl TaskFilter {
    /// The newest `limit` tasks.
    pub fn newest(limit: u32) -> TaskFilter {
        TaskFilter {
            limit,
            ..TaskFilter::default()
        }
    }
}

/// How many tasks the caller's workspace holds.
pub async fn count_tasks(ctx: &Ctx, actor: &Actor) -> Result<u64> {
    let workspace_id = actor.workspace_id();
    let count = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::count_tasks(db, workspace_id).await?))
        .await?;
    Ok(count as u64)
}

pub async fn list_tasks(
    ctx: &Ctx,
    actor: &Actor,
    filter: &TaskFilter,
) -> Result<Vec<(Task, Progress)>> {
    ctx.store
        .read(async |db| {
            let tasks = model::list_tasks(db, actor.workspace_id(), filter).await?;
            let ids: Vec<String> = tasks.iter().map(|task| task.id.clone()).collect();
            let mut steps_by_task: HashMap<String, Vec<Step>> = HashMap::new();
            for step in model::steps_of_tasks(db, &ids).await? {
                steps_by_task
                    .entry(step.task_id.clone())
                    .or_default()
                    .push(step);
            }
            Ok(tasks
                .into_iter()
                .map(|task| {
                    let progress =
                        Progress::of(steps_by_task.get(&task.id).map_or(&[], Vec::as_slice));
                    (task, progress)
                })
                .collect())
        })
        .await
}

/// The tasks [`list_tasks`] lists, each as [`get_task`] shows it, read with one query per
/// kind for all of them.
pub async fn list_views(ctx: &Ctx, actor: &Actor, filter: &TaskFilter) -> Result<Vec<TaskView>> {
    let views = ctx
        .store
        .read(async |db| {
            let tasks = model::list_tasks(db, actor.workspace_id(), filter).await?;
            let ids: Vec<String> = tasks.iter().map(|task| task.id.clone()).collect();
            let steps = model::steps_of_tasks(db, &ids).await?;
            load_views(db, &tasks, steps).await
        })
        .await?;
    Ok(views
        .into_iter()
        .map(|view| with_presence(ctx, view))
        .collect())
}

/// A step of the caller's workspace.
pub async fn get_step(ctx: &Ctx, actor: &Actor, step_id: &str) -> Result<StepView> {
    let view = ctx
        .store
        .read(async |db| {
            let step = model::find_step(db, actor.workspace_id(), step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            let task = model::find_task(db, actor.workspace_id(), &step.task_id)
                .await?
                .ok_or_else(|| Error::not_found("task"))?;
            let steps = model::steps_of_task(db, &task.id).await?;
            let check = model::latest_check(db, step_id).await?;
            let meeting = if step.is_meeting() {
                meeting::view_of(db, step_id).await?
            } else {
                None
            };
            Ok::<_, Error>((load_view(db, &task, steps).await?, check, meeting))
        })
        .await?;
    let (view, check, meeting) = view;
    let mut step_view = view
        .steps
        .into_iter()
        .find(|step_view| step_view.step.id == step_id)
        .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
    step_view.check = check.map(|check| CheckView {
        attempt: check.attempt,
        fits: check.fits,
        reasons: serde_json::from_str(&check.reasons).unwrap_or_default(),
    });
    step_view.meeting = meeting;
    Ok(step_view)
}

pub async fn step_logs(ctx: &Ctx, actor: &Actor, step_id: &str) -> Result<Vec<StepLogRow>> {
    ctx.store
        .read(async |db| {
            model::find_step(db, actor.workspace_id(), step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            Ok(model::logs_of(db, step_id).await?)
        })
        .await
}

pub async fn history(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<Vec<WorkflowChangeRow>> {
    ctx.store
        .read(async |db| {
            model::find_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            Ok(model::workflow_changes_of(db, task_id).await?)
        })
        .await
}

/// Pauses, resumes, cancels or archives a task. Pausing revokes held steps (they return
/// to `ready` at the next attempt, not counted as a failure) and nothing is claimed until
/// the task resumes; resuming pushes ready steps again. Cancelling cancels every
/// unfinished step and revokes held ones.
pub async fn set_task_status(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    action: TaskAction,
) -> Result<TaskView> {
    let by = By::actor(actor);
    let mut outbox = Outbox::for_request();
    ctx.store
        .transaction(async |db| {
            let task = model::lock_task(db, actor.workspace_id(), task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            authority::may_steer(actor, &task)?;
            let from = task_status(&task);
            let to = action.target();
            // Only a paused task resumes: a draft is published, a failed task re-opens by a
            // retry of its failed step.
            match (action, from) {
                (TaskAction::Resume, TaskStatus::Draft) => {
                    return Err(Error::conflict("task is draft; publish it to start it"));
                }
                (TaskAction::Resume, TaskStatus::Failed) => {
                    return Err(Error::conflict(
                        "task is failed; it cannot become active: retry its failed step",
                    ));
                }
                _ => from.check(to)?,
            }
            let outcome = match action {
                TaskAction::Cancel => Some(
                    Outcome {
                        status: TaskStatus::Cancelled,
                        step: None,
                        reason: None,
                        by: Some(by.clone()),
                        at: now_ms(),
                    }
                    .to_json()
                    .to_string(),
                ),
                _ => task.outcome.clone(),
            };
            let task = settle::move_task(db, &task, to, outcome.as_deref(), &by, None).await?;
            let steps = model::steps_of_task(db, &task.id).await?;
            let view = load_view(db, &task, steps).await?;
            match action {
                TaskAction::Cancel | TaskAction::Pause => {
                    let stop = if action == TaskAction::Cancel {
                        StepStop::Cancel
                    } else {
                        StepStop::Pause
                    };
                    for step_view in &view.steps {
                        let step = step_view.step.clone();
                        stop_step(db, &mut outbox, &task, step, stop, &by).await?;
                    }
                }
                TaskAction::Resume => {
                    for step_view in view
                        .steps
                        .iter()
                        .filter(|step_view| step_view.step.status == StepStatus::Ready.as_str())
                    {
                        push_ready(db, &mut outbox, &task, step_view).await?;
                    }
                }
                TaskAction::Archive => {}
            }
            let steps: Vec<Step> = view
                .steps
                .iter()
                .map(|step_view| step_view.step.clone())
                .collect();
            let audiences = settle::followers(db, &task, &steps).await?;
            outbox.push_all(&audiences, &frames::task_updated(&task));
            if action == TaskAction::Resume {
                // Steps may have finished or failed while the task was paused.
                let settled = settle::settle(db, &mut outbox, &task, &by).await?;
                settle::end_if_finished(db, &mut outbox, &task, &settled.steps, &by).await?;
            }
            outbox.flush(db, &task.workspace_id).await?;
            Ok::<_, Error>(())
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    get_task(ctx, actor, task_id).await
}
