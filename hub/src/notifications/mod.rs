//! The notification inbox: what asks something of a member, kept for when they come
//! back. Priority `action` for what waits on them (an approval, a question, an
//! availability request to one of their agents), `info` for what they should know (a
//! task they created ended, an agent of theirs went offline holding work).
//!
//! Notifications are a projection of the outbox: [`crate::events::Outbox::flush`] hands
//! every member-audience frame (and `availability.requested` to an agent) to
//! [`project`], and [`record`] writes the items in the same transaction, so none can be
//! missed and none exists without its event. The same flush re-checks the open action
//! items of every task its events touch: an item whose approval was decided, whose
//! question was answered or closed, or whose step moved on (a timeout, a cancellation,
//! a rework, a removed step) is resolved, and a resolved item no longer counts as
//! unread. Other modules notify a member directly with [`notify`].

pub mod model;

use std::collections::HashMap;

use agenthub_protocol::ServerFrame;
use serde_json::{Value, json};

use crate::accounts::Actor;
use crate::content;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::Audience;
use crate::store::{Ahead, Db, Store, new_id, now_ms};

use model::{Filter, NotificationRow};

/// Kinds the hub writes itself.
pub const APPROVAL_REQUESTED: &str = "approval.requested";
pub const INPUT_REQUESTED: &str = "input.requested";
pub const AVAILABILITY_REQUESTED: &str = "availability.requested";
pub const TASK_COMPLETED: &str = "task.completed";
pub const TASK_FAILED: &str = "task.failed";
pub const TASK_CANCELLED: &str = "task.cancelled";
pub const AGENT_OFFLINE: &str = "agent.offline";
/// Written by the webhook worker ([`notify`]).
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
/// Written when an agent proposes a plan for a task the member creates ([`notify`]).
pub const PLAN_PROPOSED: &str = "plan.proposed";
/// Written when a step's check suggests a workflow change to the task's creator.
pub const WORKFLOW_PROPOSED: &str = "workflow.proposed";
/// Written when a step's check says its result does not fit the task.
pub const STEP_UNFIT: &str = "step.unfit";

/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 200;
/// Longest body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024;
/// Largest page of [`list`].
pub const MAX_PAGE: u32 = 200;
/// The part of a step's result an `approval.requested` item's body quotes.
const RESULT_EXCERPT_BYTES: usize = 300;
/// Held steps an `agent.offline` item names.
const MAX_HELD_LISTED: usize = 10;

/// How much a notification asks of its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Something waits on the member until they act (or it stops waiting).
    Action,
    /// Something they should know.
    Info,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Action => "action",
            Priority::Info => "info",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = Error;

    fn from_str(text: &str) -> Result<Priority> {
        match text {
            "action" => Ok(Priority::Action),
            "info" => Ok(Priority::Info),
            other => Err(Error::BadRequest {
                message: format!("unknown priority `{other}`; use `action` or `info`"),
                field: Some("priority".into()),
            }),
        }
    }
}

/// A notification to write.
#[derive(Debug, Clone)]
pub struct Notification {
    pub kind: String,
    pub priority: Priority,
    pub task_id: Option<String>,
    pub step_id: Option<String>,
    /// The object it is about (an approval, a question, a request, an agent, a webhook).
    pub subject_id: Option<String>,
    /// Cut to [`MAX_TITLE_BYTES`].
    pub title: String,
    /// Cut to [`MAX_BODY_BYTES`].
    pub body: String,
    /// A JSON object with what a client needs to act.
    pub data: Value,
}

/// The unread counts of a member, per priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub action: u64,
    pub info: u64,
}

/// What [`list`] asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only those neither read nor resolved.
    pub unread: bool,
    pub priority: Option<Priority>,
    /// The cursor: only notifications older than this id.
    pub before: Option<String>,
    /// At most this many (1..=[`MAX_PAGE`]).
    pub limit: u32,
}

/// A page of a member's notifications, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub notifications: Vec<NotificationRow>,
    pub has_more: bool,
    pub counts: Counts,
}

/// What a bulk read covers.
#[derive(Debug, Clone, Default)]
pub struct ReadAll {
    /// Only this notification and older ones (ids sort by creation).
    pub up_to: Option<String>,
    pub priority: Option<Priority>,
}

/// Writes a notification for a member, in the caller's transaction. Returns its id.
pub async fn notify(
    db: &mut Db<'_>,
    workspace_id: &str,
    member_id: &str,
    notification: Notification,
) -> Result<String> {
    insert(db, workspace_id, member_id, notification, None).await
}

/// Resolves the open notifications about `subject_id` (an answered availability
/// request, say), in the caller's transaction.
pub async fn resolve_subject(db: &mut Db<'_>, subject_id: &str) -> Result<()> {
    model::resolve_subject(db, subject_id, now_ms()).await?;
    Ok(())
}

/// A page of the caller's notifications (an agent's: its member's) with the unread
/// counts.
pub async fn list(ctx: &Ctx, actor: &Actor, query: &ListQuery) -> Result<Page> {
    if let Some(before) = &query.before {
        check_id("before", before)?;
    }
    let limit = query.limit.clamp(1, MAX_PAGE);
    let member_id = actor.member_id();
    ctx.store
        .read(async |db| {
            let filter = Filter {
                unread: query.unread,
                priority: query.priority.map(Priority::as_str),
                before: query.before.as_deref(),
                up_to: None,
            };
            let mut notifications =
                model::list(db, member_id, filter, i64::from(limit) + 1).await?;
            let has_more = notifications.len() > limit as usize;
            notifications.truncate(limit as usize);
            let counts = counts(db, member_id).await?;
            Ok::<_, Error>(Page {
                notifications,
                has_more,
                counts,
            })
        })
        .await
}

/// The unread counts of a member (the dashboard's header shows them on every page).
pub async fn unread_counts(store: &Store, member_id: &str) -> Result<Counts> {
    store.read(async |db| counts(db, member_id).await).await
}

/// One of the caller's notifications; another member's is not found.
pub async fn get(ctx: &Ctx, actor: &Actor, id: &str) -> Result<NotificationRow> {
    let member_id = actor.member_id();
    ctx.store
        .read(async |db| {
            model::find(db, member_id, id)
                .await?
                .ok_or_else(|| not_found(id))
        })
        .await
}

/// Marks one of the caller's notifications read (`read`) or unread again; the row
/// after, and the unread counts.
pub async fn set_read(
    ctx: &Ctx,
    actor: &Actor,
    id: &str,
    read: bool,
) -> Result<(NotificationRow, Counts)> {
    let member_id = actor.member_id();
    ctx.store
        .transaction(async |db| {
            let current = model::find(db, member_id, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            // Reading twice keeps the first time.
            let read_at = match (read, current.read_at) {
                (true, Some(at)) => Some(at),
                (true, None) => Some(now_ms()),
                (false, _) => None,
            };
            let row = model::set_read(db, member_id, id, read_at)
                .await?
                .ok_or_else(|| not_found(id))?;
            Ok::<_, Error>((row, counts(db, member_id).await?))
        })
        .await
}

/// Marks the caller's unread notifications read (all, or those `read_all` covers);
/// how many, and the unread counts after.
pub async fn mark_all_read(ctx: &Ctx, actor: &Actor, read_all: &ReadAll) -> Result<(u64, Counts)> {
    if let Some(up_to) = &read_all.up_to {
        check_id("up_to", up_to)?;
    }
    let member_id = actor.member_id();
    ctx.store
        .transaction(async |db| {
            let filter = Filter {
                priority: read_all.priority.map(Priority::as_str),
                up_to: read_all.up_to.as_deref(),
                ..Filter::default()
            };
            let marked = model::mark_read(db, member_id, filter, now_ms()).await?;
            Ok::<_, Error>((marked as u64, counts(db, member_id).await?))
        })
        .await
}

/// Deletes notifications read before `cutoff` (unix ms); how many. The sweep calls it.
pub async fn delete_read_before(store: &Store, cutoff: i64) -> Result<usize> {
    store
        .transaction(async |db| Ok::<_, Error>(model::delete_read_before(db, cutoff).await?))
        .await
}

/// What a flushed frame may become; [`record`] finishes it inside the transaction.
#[derive(Debug)]
pub(crate) enum Projected {
    /// A notification for a member, complete.
    Ready {
        member_id: String,
        seq: i64,
        notification: Notification,
    },
    /// An agent went offline: its member hears of it when it holds work.
    AgentOffline {
        member_id: String,
        agent_id: String,
        name: String,
        seq: i64,
    },
    /// An agent was asked for its availability: its member acts on it.
    Availability {
        agent_id: String,
        notification: Notification,
    },
}

/// The notification a frame written for `audience` at `seq` stands for, if any.
pub(crate) fn project(audience: &Audience, seq: i64, frame: &ServerFrame) -> Option<Projected> {
    match (audience, frame) {
        (Audience::Member(member_id), ServerFrame::ApprovalRequested(event)) => {
            let mut body = format!("Task: {}", event.task_title);
            if let Some(summary) = &event.summary {
                body.push_str(&format!("\nSummary: {summary}"));
            }
            if !event.result.is_null() {
                // The result as the desktop shows it: a reader decides from the item alone.
                let result = event.result.to_string();
                let (shown, cut) = content::excerpt(&result, RESULT_EXCERPT_BYTES);
                body.push_str(&format!("\nResult: {shown}{}", if cut { "…" } else { "" }));
            }
            if event.fits == Some(false) {
                body.push_str("\nIts agent says the result does not fit the task.");
            }
            Some(Projected::Ready {
                member_id: member_id.clone(),
                seq,
                notification: Notification {
                    kind: APPROVAL_REQUESTED.into(),
                    priority: Priority::Action,
                    task_id: Some(event.task_id.to_string()),
                    step_id: Some(event.step_id.to_string()),
                    subject_id: Some(event.approval_id.to_string()),
                    title: format!("Approve \"{}\"?", event.step_title),
                    body,
                    data: json!({
                        "approval_id": event.approval_id,
                        "attempt": event.attempt,
                        "digest": event.digest,
                        "approval_level": event.approval_level,
                        "task_title": event.task_title,
                        "step_title": event.step_title,
                        "files": event.files,
                        "fits": event.fits,
                    }),
                },
            })
        }
        (Audience::Member(member_id), ServerFrame::InputRequested(event)) => {
            let mut body = event.question.clone();
            if !event.options.is_empty() {
                body.push_str(&format!(" [{}]", event.options.join(" / ")));
            }
            let (question, _) = content::excerpt(&event.question, content::EXCERPT_BYTES);
            Some(Projected::Ready {
                member_id: member_id.clone(),
                seq,
                notification: Notification {
                    kind: INPUT_REQUESTED.into(),
                    priority: Priority::Action,
                    task_id: Some(event.task_id.to_string()),
                    step_id: Some(event.step_id.to_string()),
                    subject_id: Some(event.input_request_id.to_string()),
                    title: format!("Question: {}", first_line(&event.question)),
                    body,
                    data: json!({
                        "input_request_id": event.input_request_id,
                        "question": question,
                        "options": event.options,
                    }),
                },
            })
        }
        (Audience::Member(member_id), ServerFrame::TaskUpdated(event)) => {
            let task = &event.task;
            if task.creator_member_id.map(|id| id.to_string()).as_ref() != Some(member_id) {
                return None;
            }
            let outcome = task.outcome.as_ref();
            let by = outcome.and_then(|outcome| outcome.by.as_ref());
            let (kind, title) = match task.status.as_str() {
                "done" => (TASK_COMPLETED, format!("Task finished: {}", task.title)),
                "failed" => (TASK_FAILED, format!("Task failed: {}", task.title)),
                "cancelled" => {
                    // Nobody needs telling that they cancelled a task themselves.
                    let by_creator = by.is_some_and(|by| {
                        by.kind == "member"
                            && by.id.map(|id| id.to_string()).as_ref() == Some(member_id)
                    });
                    if by_creator {
                        return None;
                    }
                    (TASK_CANCELLED, format!("Task cancelled: {}", task.title))
                }
                _ => return None,
            };
            let mut body = String::new();
            if let Some(key) = outcome.and_then(|outcome| outcome.step_key.as_deref()) {
                body.push_str(&format!("step `{key}`"));
            }
            if let Some(reason) = outcome.and_then(|outcome| outcome.reason.as_deref()) {
                if !body.is_empty() {
                    body.push_str(": ");
                }
                body.push_str(reason);
            }
            if let Some(name) = by.and_then(|by| by.name.as_deref())
                && task.status != "done"
            {
                body.push_str(&format!(" (by {name})"));
            }
            Some(Projected::Ready {
                member_id: member_id.clone(),
                seq,
                notification: Notification {
                    kind: kind.into(),
                    priority: Priority::Info,
                    task_id: Some(task.task_id.to_string()),
                    step_id: outcome.and_then(|outcome| outcome.step_id.map(|id| id.to_string())),
                    subject_id: None,
                    title,
                    body: body.trim().to_string(),
                    data: json!({
                        "status": task.status,
                        "outcome": outcome,
                    }),
                },
            })
        }
        (Audience::Member(member_id), ServerFrame::AgentOffline(event)) => {
            Some(Projected::AgentOffline {
                member_id: member_id.clone(),
                agent_id: event.agent_id.to_string(),
                name: event.name.clone(),
                seq,
            })
        }
        (Audience::Agent(agent_id), ServerFrame::AvailabilityRequested(event)) => {
            Some(Projected::Availability {
                agent_id: agent_id.clone(),
                notification: Notification {
                    kind: AVAILABILITY_REQUESTED.into(),
                    priority: Priority::Action,
                    task_id: event.task_id.map(|id| id.to_string()),
                    step_id: event.step_id.map(|id| id.to_string()),
                    subject_id: Some(event.request_id.to_string()),
                    title: String::new(),
                    body: event.question.clone(),
                    data: json!({
                        "request_id": event.request_id,
                        "agent_id": agent_id,
                        "question": content::excerpt(&event.question, content::EXCERPT_BYTES).0,
                        "window": event.window,
                        "duration_minutes": event.duration_minutes,
                    }),
                },
            })
        }
        _ => None,
    }
}

/// Resolves the open action items of `task_ids` that no longer wait. Runs in the
/// flush's transaction, before its events are numbered ([`record`] does it again when it
/// adds action items).
pub(crate) async fn settle(db: &mut Db<'_>, task_ids: &[String]) -> Result<()> {
    settle_ahead(db, task_ids).await.finish(db).await
}

/// [`settle`], started ahead: on PostgreSQL its first read goes out with the
/// transaction's next statement, and [`Settling::finish`] resolves what it found.
pub(crate) async fn settle_ahead(db: &mut Db<'_>, task_ids: &[String]) -> Settling {
    if task_ids.is_empty() {
        return Settling(None);
    }
    Settling(Some(model::open_items_of_tasks(db, task_ids).await))
}

/// A [`settle`] whose first read was started ahead ([`settle_ahead`]).
#[must_use = "settling ends with `finish`"]
pub(crate) struct Settling(Option<Ahead<Vec<model::OpenItem>>>);

impl Settling {
    pub(crate) async fn finish(self, db: &mut Db<'_>) -> Result<()> {
        match self.0 {
            Some(open) => {
                let open = open.get(db).await?;
                resolve_open(db, open).await
            }
            None => Ok(()),
        }
    }
}

/// Writes what [`project`] found; when that adds action items, resolves those of
/// `task_ids` that no longer wait (as [`settle`]). Runs in the flush's transaction.
pub(crate) async fn record(
    db: &mut Db<'_>,
    workspace_id: &str,
    projected: Vec<Projected>,
    task_ids: &[String],
) -> Result<()> {
    let adds_actions = projected.iter().any(|item| match item {
        Projected::Ready { notification, .. } | Projected::Availability { notification, .. } => {
            notification.priority == Priority::Action
        }
        Projected::AgentOffline { .. } => false,
    });
    for item in projected {
        match item {
            Projected::Ready {
                member_id,
                seq,
                notification,
            } => {
                insert(db, workspace_id, &member_id, notification, Some(seq)).await?;
            }
            Projected::AgentOffline {
                member_id,
                agent_id,
                name,
                seq,
            } => {
                let Some((owner, _)) = model::agent_owner(db, &agent_id).await? else {
                    continue;
                };
                if owner != member_id {
                    continue;
                }
                // What it holds for a person to wait on; a result awaiting approval needs
                // no agent.
                let held: Vec<_> = crate::agents::model::held_steps_of(db, &agent_id)
                    .await?
                    .into_iter()
                    .filter(|step| step.status != "awaiting_approval")
                    .map(|step| (step.step_id, step.task_id, step.title))
                    .collect();
                if held.is_empty()
                    || model::has_unread(db, &member_id, AGENT_OFFLINE, &agent_id).await?
                {
                    continue;
                }
                let n_listed = held.len().min(MAX_HELD_LISTED);
                let more = if held.len() > n_listed {
                    " or more"
                } else {
                    ""
                };
                let titles: Vec<&str> = held[..n_listed]
                    .iter()
                    .map(|(_, _, title)| title.as_str())
                    .collect();
                let notification = Notification {
                    kind: AGENT_OFFLINE.into(),
                    priority: Priority::Info,
                    task_id: (held.len() == 1).then(|| held[0].1.clone()),
                    step_id: (held.len() == 1).then(|| held[0].0.clone()),
                    subject_id: Some(agent_id.clone()),
                    title: format!("{name} went offline holding work"),
                    body: format!(
                        "{n_listed}{more} step(s) wait for it to come back or for their \
                         leases to expire: {}",
                        titles.join(", ")
                    ),
                    data: json!({
                        "agent_id": agent_id,
                        "agent_name": name,
                        "steps": held[..n_listed]
                            .iter()
                            .map(|(step_id, task_id, title)| {
                                json!({"step_id": step_id, "task_id": task_id, "title": title})
                            })
                            .collect::<Vec<_>>(),
                    }),
                };
                insert(db, workspace_id, &member_id, notification, Some(seq)).await?;
            }
            Projected::Availability {
                agent_id,
                mut notification,
            } => {
                let Some((owner, name)) = model::agent_owner(db, &agent_id).await? else {
                    continue;
                };
                // A meeting's request carries its window.
                let meeting = notification
                    .data
                    .get("window")
                    .is_some_and(|window| !window.is_null());
                notification.title = if meeting {
                    format!("When is {name} free to meet?")
                } else {
                    format!("Can {name} take on work?")
                };
                if let Some(data) = notification.data.as_object_mut() {
                    data.insert("agent_name".into(), Value::from(name));
                }
                insert(db, workspace_id, &owner, notification, None).await?;
            }
        }
    }
    if adds_actions {
        settle(db, task_ids).await?;
    }
    Ok(())
}

/// Resolves the open action items of `open` whose subject no longer waits.
async fn resolve_open(db: &mut Db<'_>, open: Vec<model::OpenItem>) -> Result<()> {
    if open.is_empty() {
        return Ok(());
    }
    let ids_of = |kind: &str| -> Vec<String> {
        open.iter()
            .filter(|item| item.kind == kind)
            .filter_map(|item| item.subject_id.clone())
            .collect()
    };
    let approval_ids = ids_of(APPROVAL_REQUESTED);
    let question_ids = ids_of(INPUT_REQUESTED);
    let availability_ids = ids_of(AVAILABILITY_REQUESTED);
    // subject id → (step id, attempt, the step's status while it waits) while the
    // subject itself is still open.
    let mut waiting: HashMap<String, Option<(String, i32, &'static str)>> = HashMap::new();
    if !approval_ids.is_empty() {
        for approval in model::approvals_by_id(db, &approval_ids).await? {
            let open =
                approval
                    .open
                    .then_some((approval.step_id, approval.attempt, "awaiting_approval"));
            waiting.insert(approval.id, open);
        }
    }
    if !question_ids.is_empty() {
        for question in model::questions_by_id(db, &question_ids).await? {
            let open = question
                .open
                .then_some((question.step_id, question.attempt, "blocked"));
            waiting.insert(question.id, open);
        }
    }
    let open_availability = if availability_ids.is_empty() {
        Vec::new()
    } else {
        model::open_availability_requests(db, &availability_ids).await?
    };
    let mut step_ids: Vec<String> = waiting
        .values()
        .flatten()
        .map(|(step_id, _, _)| step_id.clone())
        .collect();
    step_ids.sort();
    step_ids.dedup();
    let steps: HashMap<String, (String, i32)> = if step_ids.is_empty() {
        HashMap::new()
    } else {
        model::step_states(db, &step_ids)
            .await?
            .into_iter()
            .map(|(id, status, attempt)| (id, (status, attempt)))
            .collect()
    };
    let still_waits = |kind: &str, subject: &str| -> bool {
        match kind {
            APPROVAL_REQUESTED | INPUT_REQUESTED => {
                let Some(Some((step_id, attempt, status))) = waiting.get(subject) else {
                    return false;
                };
                steps
                    .get(step_id)
                    .is_some_and(|(now, at)| now == status && at == attempt)
            }
            AVAILABILITY_REQUESTED => open_availability.iter().any(|id| id == subject),
            // Kinds notified by other modules are resolved by them.
            _ => true,
        }
    };
    let settled: Vec<String> = open
        .iter()
        .filter(|item| match &item.subject_id {
            Some(subject) => !still_waits(&item.kind, subject),
            None => false,
        })
        .map(|item| item.id.clone())
        .collect();
    if !settled.is_empty() {
        model::resolve(db, &settled, now_ms()).await?;
    }
    Ok(())
}

async fn insert(
    db: &mut Db<'_>,
    workspace_id: &str,
    member_id: &str,
    notification: Notification,
    event_seq: Option<i64>,
) -> Result<String> {
    let row = NotificationRow {
        id: new_id(),
        workspace_id: workspace_id.to_string(),
        member_id: member_id.to_string(),
        kind: notification.kind,
        priority: notification.priority.as_str().to_string(),
        task_id: notification.task_id,
        step_id: notification.step_id,
        subject_id: notification.subject_id,
        title: clip(&notification.title, MAX_TITLE_BYTES),
        body: clip(&notification.body, MAX_BODY_BYTES),
        data: serde_json::to_string(&notification.data)?,
        event_seq,
        created_at: now_ms(),
        read_at: None,
        resolved_at: None,
    };
    model::insert(db, &row).await?;
    Ok(row.id)
}

async fn counts(db: &mut Db<'_>, member_id: &str) -> Result<Counts> {
    let mut counts = Counts::default();
    for (priority, count) in model::unread_counts(db, member_id).await? {
        match priority.as_str() {
            "action" => counts.action = count as u64,
            "info" => counts.info = count as u64,
            _ => {}
        }
    }
    Ok(counts)
}

fn check_id(field: &str, id: &str) -> Result<()> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Error::BadRequest {
            message: format!("`{field}` must be a notification id (a UUID), not `{id}`"),
            field: Some(field.into()),
        });
    }
    Ok(())
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("notification `{id}`"))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// `text` cut to `max` bytes at a character boundary, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let (excerpt, _) = content::excerpt(text, max.saturating_sub('…'.len_utf8()));
    format!("{excerpt}…")
}
