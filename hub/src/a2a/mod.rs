//! The A2A bridge (the Agent2Agent protocol, version 1.0): the hub as an A2A server,
//! and as an A2A client for steps delegated to outside agents ([`delegate`]).
//!
//! Each workspace is one A2A agent: its Agent Card lists one skill per agent its member
//! opted in ([`set_skill`]), and an A2A task is a hub task. A message without a task id
//! creates a one-step task for the skill's agent ([`send_message`]); a follow-up message
//! on a task that waits for a person answers its question or decides its approval. The
//! A2A view of a task ([`Snapshot`], rendered by [`wire`]) is read from the task, its
//! steps, questions and approvals, so it is never stored twice: a blocked step or an
//! approval waiting is `input-required`, a result is an artifact, a rejection is in the
//! history. Push notification configs are webhooks of one task (`a2a_token` set), so
//! they are delivered by the webhook worker, in order and at least once.

pub mod client;
pub mod delegate;
pub mod model;
pub mod wire;

use std::collections::HashSet;

use agenthub_protocol::Decision;
use serde_json::{Value, json};

use crate::accounts::{self, Actor, authority};
use crate::agents::{self, Agent};
use crate::approvals::{self, Approval, ApprovalRef, InputRequest, Verdict};
use crate::content::{self, MAX_TEXT_BYTES, MAX_TITLE_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{self, feed};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::{self, NewStep, NewTask, StepStatus, TaskAction, TaskFilter, TaskView};
use crate::webhooks::{self, Webhook};

pub use model::SkillRow;

/// The A2A protocol version served (the `A2A-Version` header, the card's interfaces).
pub const PROTOCOL_VERSION: &str = "1.0";
/// The executor of a step the hub delegates to an outside A2A agent, as a literal (the
/// partial index of those steps is found through SQL text: `model::ready_a2a_steps`).
macro_rules! executor {
    () => {
        "a2a"
    };
}
pub(crate) use executor;

/// The executor of a step the hub delegates to an outside A2A agent.
pub const EXECUTOR: &str = executor!();
/// The key of the one step of a task created by an A2A message.
pub const STEP_KEY: &str = "a2a";
/// The most examples one skill lists.
pub const MAX_EXAMPLES: usize = 20;
/// The most push notification configs one task has.
pub const MAX_PUSH_CONFIGS: usize = 10;
/// The events of a task that may change its A2A state: a push config follows these.
pub const PUSH_EVENT_TYPES: &[&str] = &[
    "task.updated",
    "step.completed",
    "approval.requested",
    "approval.resolved",
    "input.requested",
    "input.answered",
];

/// An agent published as a skill of its workspace's Agent Card.
#[derive(Debug, Clone)]
pub struct Skill {
    pub agent: Agent,
    pub row: SkillRow,
}

/// An A2A task state (`TASK_STATE_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Submitted,
    Working,
    InputRequired,
    Completed,
    Failed,
    Canceled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "TASK_STATE_SUBMITTED",
            State::Working => "TASK_STATE_WORKING",
            State::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            State::Completed => "TASK_STATE_COMPLETED",
            State::Failed => "TASK_STATE_FAILED",
            State::Canceled => "TASK_STATE_CANCELED",
        }
    }

    /// A stream ends after this state: the task is over, or it waits for the caller.
    pub fn ends_stream(self) -> bool {
        matches!(
            self,
            State::InputRequired | State::Completed | State::Failed | State::Canceled
        )
    }

    pub fn parse(text: &str) -> Option<State> {
        [
            State::Submitted,
            State::Working,
            State::InputRequired,
            State::Completed,
            State::Failed,
            State::Canceled,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// What a task waits for when it is `input-required`.
#[derive(Debug, Clone)]
pub enum Waiting {
    /// An agent's question to its member (a blocked step).
    Question(Box<InputRequest>),
    /// A result waiting for approval (the step, its current attempt).
    Approval(Box<tasks::Step>),
}

/// A task as A2A sees it: the task with its steps, and its questions and approvals.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub view: TaskView,
    pub questions: Vec<InputRequest>,
    pub approvals: Vec<Approval>,
}

impl Snapshot {
    /// The task's A2A state, and what it waits for when `input-required`.
    pub fn state(&self) -> (State, Option<Waiting>) {
        let steps = || self.view.steps.iter().map(|view| &view.step);
        let status_of = |step: &tasks::Step| step.status.parse::<StepStatus>().ok();
        match self.view.task.status.as_str() {
            "draft" => return (State::Submitted, None),
            "done" => return (State::Completed, None),
            "failed" => return (State::Failed, None),
            "cancelled" => return (State::Canceled, None),
            "archived" => {
                let state = if steps().any(|step| status_of(step) == Some(StepStatus::Failed)) {
                    State::Failed
                } else if steps().all(|step| {
                    matches!(
                        status_of(step),
                        Some(StepStatus::Done | StepStatus::Skipped)
                    )
                }) {
                    State::Completed
                } else {
                    State::Canceled
                };
                return (state, None);
            }
            _ => {}
        }
        for step in steps() {
            if status_of(step) == Some(StepStatus::Blocked)
                && let Some(question) = self.questions.iter().rev().find(|question| {
                    question.step_id == step.id
                        && question.attempt == step.attempt
                        && question.answer.is_none()
                        && question.expired_at.is_none()
                })
            {
                return (
                    State::InputRequired,
                    Some(Waiting::Question(Box::new(question.clone()))),
                );
            }
            if status_of(step) == Some(StepStatus::AwaitingApproval) {
                return (
                    State::InputRequired,
                    Some(Waiting::Approval(Box::new(step.clone()))),
                );
            }
        }
        let started = steps().any(|step| {
            !matches!(
                status_of(step),
                Some(StepStatus::Pending | StepStatus::Ready)
            )
        });
        if started || self.view.task.status == "paused" {
            (State::Working, None)
        } else {
            (State::Submitted, None)
        }
    }
}

/// What an A2A message asks, read from its parts and metadata.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// The text parts, joined by blank lines.
    pub text: String,
    /// The data parts' values.
    pub data: Vec<Value>,
    /// The url parts.
    pub urls: Vec<String>,
    /// A follow-up on this task.
    pub task_id: Option<String>,
    /// The skill (agent name or id) a new task goes to.
    pub agent: Option<String>,
    /// Members who approve the result (emails or ids).
    pub approvers: Vec<String>,
    /// 0-3; default 2 (review) when approvers are named, else 0.
    pub approval_level: Option<u8>,
    /// A follow-up's explicit decision on an approval: `approve` or `reject`.
    pub decision: Option<String>,
}

/// The workspace named in an A2A URL (its id or name).
pub async fn workspace(ctx: &Ctx, id_or_name: &str) -> Result<accounts::Workspace> {
    accounts::find_workspace(&ctx.store, id_or_name).await
}

/// The caller must belong to the workspace of the URL it called.
pub fn require_workspace(actor: &Actor, workspace: &accounts::Workspace) -> Result<()> {
    if actor.workspace_id() != workspace.id {
        return Err(Error::forbidden(
            "this token belongs to another workspace; call that workspace's A2A endpoint",
        ));
    }
    Ok(())
}

/// The workspace's skills, by agent name.
pub async fn skills(ctx: &Ctx, workspace_id: &str) -> Result<Vec<Skill>> {
    let rows = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::skills_of_workspace(db, workspace_id).await?))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(row, agent)| Skill { agent, row })
        .collect())
}

/// Publishes an agent as a skill of its workspace's Agent Card, or changes its words.
/// Its member, an owner or an admin may.
pub async fn set_skill(
    ctx: &Ctx,
    actor: &Actor,
    agent_id_or_name: &str,
    description: &str,
    examples: &[String],
) -> Result<Skill> {
    content::person_text("description", description, MAX_TEXT_BYTES)?;
    if examples.len() > MAX_EXAMPLES {
        return Err(Error::invalid_field(
            "examples",
            format!("a skill lists at most {MAX_EXAMPLES} examples"),
        ));
    }
    for example in examples {
        content::person_text("examples", example, MAX_TITLE_BYTES)?;
    }
    let examples = serde_json::to_string(examples)?;
    ctx.store
        .transaction(async |db| {
            let agent = find_agent(db, actor, agent_id_or_name).await?;
            authority::may_manage_agent(actor, &agent)?;
            let now = now_ms();
            let row = SkillRow {
                agent_id: agent.id.clone(),
                workspace_id: agent.workspace_id.clone(),
                description: description.to_string(),
                examples: examples.clone(),
                created_at: now,
                updated_at: now,
            };
            model::upsert_skill(db, &row).await?;
            let row = model::skill_of_agent(db, &agent.id)
                .await?
                .ok_or_else(|| Error::internal("a skill just written is gone"))?;
            Ok::<_, Error>(Skill { agent, row })
        })
        .await
}

/// Takes an agent off its workspace's Agent Card; tasks it has keep going.
pub async fn remove_skill(ctx: &Ctx, actor: &Actor, agent_id_or_name: &str) -> Result<()> {
    ctx.store
        .transaction(async |db| {
            let agent = find_agent(db, actor, agent_id_or_name).await?;
            authority::may_manage_agent(actor, &agent)?;
            if model::delete_skill(db, &agent.id).await? == 0 {
                return Err(Error::not_found(format!(
                    "A2A skill of agent `{}`",
                    agent.name
                )));
            }
            Ok::<_, Error>(())
        })
        .await
}

async fn find_agent(db: &mut Db<'_>, actor: &Actor, id_or_name: &str) -> Result<Agent> {
    agents::model::find_agent(db, actor.workspace_id(), id_or_name)
        .await?
        .ok_or_else(|| Error::not_found(format!("agent `{id_or_name}`")))
}

/// `SendMessage`: a message without a task id creates a one-step task for the skill it
/// names (`metadata.agent`; the only skill when there is one); with a task id it answers
/// what the task waits for.
pub async fn send_message(ctx: &Ctx, actor: &Actor, incoming: Incoming) -> Result<Snapshot> {
    if let Some(task_id) = incoming.task_id.clone() {
        follow_up(ctx, actor, &task_id, &incoming).await?;
        return snapshot(ctx, actor, &task_id).await;
    }
    let text = incoming.text.trim();
    if text.is_empty() {
        return Err(Error::invalid_field(
            "message.parts",
            "the message has no text part; say what the task is",
        ));
    }
    let skills = skills(ctx, actor.workspace_id()).await?;
    let skill = match incoming.agent.as_deref() {
        Some(name) => skills
            .iter()
            .find(|skill| skill.agent.name == name || skill.agent.id == name),
        None if skills.len() == 1 => skills.first(),
        None => {
            return Err(Error::invalid_field(
                "message.metadata.agent",
                format!(
                    "name the skill (agent) to send the task to in `metadata.agent`: one of {}",
                    skill_names(&skills)
                ),
            ));
        }
    };
    let Some(skill) = skill else {
        return Err(Error::invalid_field(
            "message.metadata.agent",
            format!(
                "no skill `{}` in this workspace; the Agent Card lists {}",
                incoming.agent.as_deref().unwrap_or_default(),
                skill_names(&skills)
            ),
        ));
    };
    let title = title_of(text);
    let approval_level = incoming
        .approval_level
        .unwrap_or(if incoming.approvers.is_empty() { 0 } else { 2 });
    let new = NewTask {
        title: title.clone(),
        description: text.to_string(),
        steps: vec![NewStep {
            key: STEP_KEY.into(),
            title,
            description: text.to_string(),
            assignees: vec![skill.agent.name.clone()],
            approval_level,
            approvers: incoming.approvers.clone(),
            input: json!({"text": text, "data": incoming.data, "urls": incoming.urls}),
            ..NewStep::default()
        }],
        ..NewTask::default()
    };
    let view = tasks::create_task(ctx, actor, new).await?;
    snapshot(ctx, actor, &view.task.id).await
}

fn skill_names(skills: &[Skill]) -> String {
    if skills.is_empty() {
        return "none (no agent of this workspace is published)".into();
    }
    skills
        .iter()
        .map(|skill| format!("`{}`", skill.agent.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first line of the text, cut to a title's length on a character boundary.
fn title_of(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// Answers the question of an `input-required` task, or decides its approval: `approve`
/// (or `metadata.decision: "approve"`) approves, any other text rejects with itself as
/// the comment.
async fn follow_up(ctx: &Ctx, actor: &Actor, task_id: &str, incoming: &Incoming) -> Result<()> {
    let snap = snapshot(ctx, actor, task_id).await?;
    let (state, waiting) = snap.state();
    let text = incoming.text.trim();
    match waiting {
        Some(Waiting::Question(question)) => {
            approvals::answer(ctx, actor, &question.id, text).await?;
        }
        Some(Waiting::Approval(step)) => {
            let decision = match incoming.decision.as_deref() {
                Some("approve") => Decision::Approve,
                Some("reject") => Decision::Reject,
                Some(other) => {
                    return Err(Error::invalid_field(
                        "message.metadata.decision",
                        format!("`{other}` is not a decision; use `approve` or `reject`"),
                    ));
                }
                None if is_approval(text) => Decision::Approve,
                None => Decision::Reject,
            };
            let comment = (decision == Decision::Reject && !text.is_empty()).then_some(text);
            approvals::decide(
                ctx,
                actor,
                ApprovalRef::Step(&step.id, step.attempt as u32),
                Verdict::new(decision, comment),
            )
            .await?;
        }
        None => {
            return Err(Error::conflict(format!(
                "the task is {}; a follow-up message answers only a task that is \
                 TASK_STATE_INPUT_REQUIRED",
                state.as_str()
            )));
        }
    }
    Ok(())
}

fn is_approval(text: &str) -> bool {
    let word = text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    matches!(
        word.as_str(),
        "approve" | "approved" | "yes" | "ok" | "lgtm" | "accept"
    )
}

/// The task's A2A view, for the caller.
pub async fn snapshot(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<Snapshot> {
    let view = tasks::get_task(ctx, actor, task_id).await?;
    with_requests(ctx, view).await
}

async fn with_requests(ctx: &Ctx, view: TaskView) -> Result<Snapshot> {
    let mut snapshots = with_requests_of_all(ctx, vec![view]).await?;
    snapshots
        .pop()
        .ok_or_else(|| Error::internal("a task's snapshot went missing"))
}

/// The tasks' snapshots, with one query for the questions and one for the approvals of
/// all of them.
async fn with_requests_of_all(ctx: &Ctx, views: Vec<TaskView>) -> Result<Vec<Snapshot>> {
    let step_ids: Vec<String> = views
        .iter()
        .flat_map(|view| view.steps.iter().map(|step| step.step.id.clone()))
        .collect();
    let (mut questions, mut approvals) = ctx
        .store
        .read(async |db| {
            Ok::<_, Error>((
                model::questions_of_steps(db, &step_ids).await?,
                model::approvals_of_steps(db, &step_ids).await?,
            ))
        })
        .await?;
    let mut snapshots = Vec::with_capacity(views.len());
    for view in views {
        let of_task: HashSet<&str> = view
            .steps
            .iter()
            .map(|step| step.step.id.as_str())
            .collect();
        let (task_questions, others) = questions
            .into_iter()
            .partition(|question| of_task.contains(question.step_id.as_str()));
        questions = others;
        let (task_approvals, others) = approvals
            .into_iter()
            .partition(|approval| of_task.contains(approval.step_id.as_str()));
        approvals = others;
        snapshots.push(Snapshot {
            view,
            questions: task_questions,
            approvals: task_approvals,
        });
    }
    Ok(snapshots)
}

/// Hub tasks read per round of a `ListTasks` page.
const LIST_ROUND: u32 = 100;
/// The most hub tasks one `ListTasks` page looks at: with a state filter a page may hold
/// fewer tasks than asked, and a next page token.
pub const LIST_SCAN: u32 = 1_000;

/// One page of `ListTasks`.
#[derive(Debug)]
pub struct TaskPage {
    pub tasks: Vec<Snapshot>,
    /// Where the next page starts (the last task looked at); none at the end.
    pub next: Option<PageToken>,
    /// The workspace's tasks in all (without a state filter), or those in the state
    /// found up to the end of this page (with one): the states are not stored, so
    /// counting them all would read every task.
    pub total: u64,
}

/// Where a `ListTasks` page starts: after the task created at `created_at` with `id`
/// (newest first), so tasks created meanwhile do not shift the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub created_at: i64,
    pub id: String,
    /// Tasks in the filtered state on the pages before.
    pub matched_before: u64,
}

impl PageToken {
    /// The opaque text of the token: `<created_at>.<matched before>.<task id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.created_at, self.matched_before, self.id)
    }

    pub fn parse(text: &str) -> Result<PageToken> {
        let invalid = || {
            Error::invalid_field(
                "pageToken",
                "not a page token of this server: pass the `nextPageToken` of the page before",
            )
        };
        let mut parts = text.splitn(3, '.');
        let created_at = parts.next().and_then(|part| part.parse().ok());
        let matched_before = parts.next().and_then(|part| part.parse().ok());
        let id = parts.next().filter(|id| !id.is_empty() && id.len() <= 64);
        match (created_at, matched_before, id) {
            (Some(created_at), Some(matched_before), Some(id)) => Ok(PageToken {
                created_at,
                id: id.to_string(),
                matched_before,
            }),
            _ => Err(invalid()),
        }
    }
}

/// `ListTasks`: the workspace's tasks, newest first, `limit` (1-100) per page, only
/// those in `state` when given, starting after `from`.
pub async fn list_tasks(
    ctx: &Ctx,
    actor: &Actor,
    limit: u32,
    state: Option<State>,
    from: Option<PageToken>,
) -> Result<TaskPage> {
    let limit = limit.clamp(1, 100);
    let mut after = from
        .as_ref()
        .map(|token| (token.created_at, token.id.clone()));
    let mut matched = from.as_ref().map_or(0, |token| token.matched_before);
    let mut snapshots = Vec::new();
    let mut looked_at = 0;
    loop {
        let round = if state.is_some() { LIST_ROUND } else { limit };
        let filter = TaskFilter {
            after: after.clone(),
            ..TaskFilter::newest(round)
        };
        let views = tasks::list_views(ctx, actor, &filter).await?;
        let fetched = views.len() as u32;
        for (n, snap) in with_requests_of_all(ctx, views)
            .await?
            .into_iter()
            .enumerate()
        {
            after = Some((snap.view.task.created_at, snap.view.task.id.clone()));
            looked_at += 1;
            if state.is_some_and(|state| snap.state().0 != state) {
                continue;
            }
            snapshots.push(snap);
            matched += 1;
            let more = n + 1 < fetched as usize || fetched == round;
            if snapshots.len() as u32 == limit {
                let next = more.then(|| token(after.as_ref(), matched));
                return page(ctx, actor, from.as_ref(), state, snapshots, next, matched).await;
            }
        }
        if fetched < round {
            return page(ctx, actor, from.as_ref(), state, snapshots, None, matched).await;
        }
        if looked_at >= LIST_SCAN {
            let next = Some(token(after.as_ref(), matched));
            return page(ctx, actor, from.as_ref(), state, snapshots, next, matched).await;
        }
    }
}

fn token(after: Option<&(i64, String)>, matched_before: u64) -> PageToken {
    let (created_at, id) = after.cloned().unwrap_or_default();
    PageToken {
        created_at,
        id,
        matched_before,
    }
}

async fn page(
    ctx: &Ctx,
    actor: &Actor,
    from: Option<&PageToken>,
    state: Option<State>,
    tasks: Vec<Snapshot>,
    next: Option<PageToken>,
    matched: u64,
) -> Result<TaskPage> {
    let total = match (state, from, &next) {
        (Some(_), _, _) => matched,
        // The first page holds every task: they are counted already.
        (None, None, None) => tasks.len() as u64,
        (None, _, _) => tasks::count_tasks(ctx, actor).await?,
    };
    Ok(TaskPage { tasks, next, total })
}

/// `CancelTask`: cancels the hub task (its unfinished steps, and the agents' work).
pub async fn cancel_task(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<Snapshot> {
    tasks::set_task_status(ctx, actor, task_id, TaskAction::Cancel).await?;
    snapshot(ctx, actor, task_id).await
}

/// A push notification config: a webhook of one task.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub webhook: Webhook,
}

/// `CreateTaskPushNotificationConfig`: a webhook of the task that receives its A2A state
/// (a `StreamResponse` holding the task) whenever it may have changed, with the token in
/// `X-A2A-Notification-Token`. Any member who sees the task may create one.
pub async fn create_push_config(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    url: &str,
    token: &str,
) -> Result<PushConfig> {
    let task = tasks::get_task(ctx, actor, task_id).await?.task;
    let parsed = webhooks::check_target(url, ctx.settings.webhooks.allow_private)?;
    if token.len() > 512 {
        return Err(Error::invalid_field(
            "token",
            "a notification token is at most 512 bytes",
        ));
    }
    let member_id = match actor {
        Actor::Member(member) => Some(member.member_id.clone()),
        Actor::Agent(agent) => Some(agent.member_id.clone()),
    };
    ctx.store
        .transaction(async |db| {
            let existing = webhooks::model::list_webhooks(db, &task.workspace_id).await?;
            let n_configs = existing
                .iter()
                .filter(|hook| {
                    hook.a2a_token.is_some() && hook.task_id.as_deref() == Some(&task.id)
                })
                .count();
            if n_configs >= MAX_PUSH_CONFIGS {
                return Err(Error::conflict(format!(
                    "this task has {n_configs} push notification configs, the most it may have"
                )));
            }
            let feed_id = feed::workspace_audience_id(&task.workspace_id);
            let cursor_seq = events::model::last_seq(db, &feed_id).await?;
            let now = now_ms();
            let row = Webhook {
                id: new_id(),
                workspace_id: task.workspace_id.clone(),
                url: parsed.to_string(),
                secret: String::new(),
                event_types: serde_json::to_string(PUSH_EVENT_TYPES)?,
                task_id: Some(task.id.clone()),
                description: format!("A2A push notifications of task {}", task.id),
                enabled: true,
                disabled_reason: None,
                cursor_seq,
                lease_owner: None,
                lease_until: None,
                created_by: member_id,
                created_at: now,
                updated_at: now,
                a2a_token: Some(token.to_string()),
            };
            webhooks::model::insert_webhook(db, &row).await?;
            Ok::<_, Error>(PushConfig { webhook: row })
        })
        .await
}

/// The task's push notification configs (`ListTaskPushNotificationConfigs`).
pub async fn push_configs(ctx: &Ctx, actor: &Actor, task_id: &str) -> Result<Vec<PushConfig>> {
    let task = tasks::get_task(ctx, actor, task_id).await?.task;
    let hooks = ctx
        .store
        .read(async |db| {
            Ok::<_, Error>(webhooks::model::list_webhooks(db, &task.workspace_id).await?)
        })
        .await?;
    Ok(hooks
        .into_iter()
        .filter(|hook| hook.a2a_token.is_some() && hook.task_id.as_deref() == Some(&task.id))
        .map(|webhook| PushConfig { webhook })
        .collect())
}

/// One push notification config of the task (`GetTaskPushNotificationConfig`).
pub async fn push_config(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    config_id: &str,
) -> Result<PushConfig> {
    push_configs(ctx, actor, task_id)
        .await?
        .into_iter()
        .find(|config| config.webhook.id == config_id)
        .ok_or_else(|| Error::not_found(format!("push notification config `{config_id}`")))
}

/// Deletes a push notification config (`DeleteTaskPushNotificationConfig`).
pub async fn delete_push_config(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    config_id: &str,
) -> Result<()> {
    let config = push_config(ctx, actor, task_id, config_id).await?;
    ctx.store
        .transaction(async |db| {
            webhooks::model::delete_webhook(db, &config.webhook.id).await?;
            Ok::<_, Error>(())
        })
        .await
}

/// The body of a push notification: the task's A2A state now, as a `StreamResponse`.
/// Read by the webhook worker, without a caller.
pub async fn push_body(ctx: &Ctx, webhook: &Webhook) -> Result<String> {
    let task_id = webhook.task_id.as_deref().unwrap_or_default();
    let workspace_id = &webhook.workspace_id;
    let view = ctx
        .store
        .read(async |db| {
            let task = tasks::model::find_task(db, workspace_id, task_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("task `{task_id}`")))?;
            let steps = tasks::model::steps_of_task(db, &task.id).await?;
            tasks::load_view(db, &task, steps).await
        })
        .await?;
    let snap = with_requests(ctx, view).await?;
    Ok(json!({"task": wire::task(&snap, &ctx.settings.public_url, None)}).to_string())
}

/// Follows a task for `SendStreamingMessage` and `SubscribeToTask`: the queue gets the
/// task first (`{"task": …}`), then an `artifactUpdate` for each step that finishes and
/// a `statusUpdate` whenever the state or what the task waits for changes; it closes
/// after a terminal state or `input-required` (the caller answers with a follow-up
/// message and subscribes again), or when the hub shuts down. Counted against the event
/// stream limits under `stream_key`.
pub async fn follow(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    stream_key: &str,
) -> Result<tokio::sync::mpsc::Receiver<Value>> {
    // Follow from the feed's end as it is before the task is read, so that nothing that
    // changes the task afterwards is missed (and nothing older is replayed).
    let after = events::last_seq(&ctx.store, &feed::audience_id(task_id)).await?;
    let mut events = events::stream::follow_task(ctx, actor, task_id, stream_key, after).await?;
    let first = snapshot(ctx, actor, task_id).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let ctx = ctx.clone();
    let actor = actor.clone();
    let task_id = task_id.to_string();
    tokio::spawn(async move {
        let public_url = ctx.settings.public_url.clone();
        let mut shown = Shown::of(&first);
        if sender
            .send(json!({"task": wire::task(&first, &public_url, None)}))
            .await
            .is_err()
            || first.state().0.ends_stream()
        {
            return;
        }
        while events.recv().await.is_some() {
            // Events that arrived meanwhile are covered by one read.
            while events.try_recv().is_ok() {}
            let snap = match snapshot(&ctx, &actor, &task_id).await {
                Ok(snap) => snap,
                Err(err) => {
                    tracing::warn!(task.id = %task_id, error = %err, "A2A stream cannot read its task; ending it");
                    return;
                }
            };
            for update in shown.updates(&snap, &public_url) {
                if sender.send(update).await.is_err() {
                    return;
                }
            }
            if snap.state().0.ends_stream() {
                return;
            }
        }
    });
    Ok(receiver)
}

/// What a stream has shown of a task: its status and the artifacts (step, attempt).
struct Shown {
    status: Value,
    artifacts: Vec<(String, i32)>,
}

impl Shown {
    fn of(snap: &Snapshot) -> Shown {
        Shown {
            status: status_key(snap),
            artifacts: done_steps(snap),
        }
    }

    /// The events that bring a follower from what it was shown to `snap`.
    fn updates(&mut self, snap: &Snapshot, public_url: &str) -> Vec<Value> {
        let mut updates = Vec::new();
        for (step_id, attempt) in done_steps(snap) {
            if self.artifacts.contains(&(step_id.clone(), attempt)) {
                continue;
            }
            if let Some(view) = snap.view.steps.iter().find(|view| view.step.id == step_id) {
                updates.push(wire::artifact_update(snap, &view.step, public_url));
            }
            self.artifacts.push((step_id, attempt));
        }
        let status = status_key(snap);
        if status != self.status {
            updates.push(wire::status_update(snap));
            self.status = status;
        }
        updates
    }
}

/// A task's status without its timestamp: it changes when the state or the message does.
fn status_key(snap: &Snapshot) -> Value {
    let mut status = wire::status(snap);
    if let Some(object) = status.as_object_mut() {
        object.remove("timestamp");
    }
    status
}

fn done_steps(snap: &Snapshot) -> Vec<(String, i32)> {
    snap.view
        .steps
        .iter()
        .filter(|view| view.step.status == StepStatus::Done.as_str())
        .map(|view| (view.step.id.clone(), view.step.attempt))
        .collect()
}
