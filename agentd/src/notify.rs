//! Desktop notifications (the notifier component): a step this agent took, an approval
//! asked of its human, a question from a blocked step, the end (done, failed,
//! cancelled) of a task its human created (`task.creator_member_id` equal to the
//! `welcome.member_id`; involved agents hear of the end too). Approvals and tool-call questions carry Approve /
//! Reject actions; choosing one sends
//! `approval.decide` or `input.answer` through the connection. Best effort: without a
//! notification service (no session bus) agentd logs that once and goes on, and
//! `agentd inbox` / `approve` / `reject` always work.
//!
//! On every (re)connection the notifier also reads the member's unread action
//! notifications from the hub (`GET /v1/me/notifications`) and shows those it has not
//! shown yet: what arrived while agentd was offline, including requests its own events
//! do not carry (an availability request to another agent of the member). Acting on
//! one of those marks it read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agenthub_protocol::{
    ApprovalDecide, ApprovalRequested, ClientFrame, Decision, InputAnswer, InputRequested,
    ServerFrame, StepInfo, TaskUpdated,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::executor::full_text::HubAccess;
use crate::executor::{Outbound, Reply};
use crate::hub::{Notification, NotificationPage};

/// The action keys of an actionable notification.
pub const APPROVE: &str = "approve";
/// See [`APPROVE`].
pub const REJECT: &str = "reject";

/// The comment sent with a rejection chosen on a notification (the hub requires one).
const REJECT_COMMENT: &str = "rejected from a desktop notification";
/// Notifications waiting for a click at once; older ones stop waiting first.
const MAX_WAITING: usize = 32;
/// Unread action notifications read from the hub on a (re)connection.
const CATCH_UP: &str = "v1/me/notifications?unread=true&priority=action&limit=50";

/// One notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub body: String,
    /// What choosing Approve / Reject does; `None` for a notification without actions.
    pub decision: Option<DecisionTarget>,
    /// The hub's notification shown, marked read once the user acted on it.
    pub notification_id: Option<String>,
}

/// What an Approve / Reject click decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionTarget {
    /// A step result waiting for this teammate's approval, with the digest of the result
    /// shown, so that a click decides on exactly that result.
    Approval { approval_id: Uuid, digest: String },
    /// A tool call the model wants to make (a question with options approve / reject).
    ToolCall(Uuid),
}

/// A task that ended, as a `task.updated` frame tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    pub task_id: Uuid,
    pub title: String,
    /// `done`, `failed` or `cancelled`.
    pub status: String,
    /// The step that failed (or was being worked on when the task was cancelled).
    pub step_key: Option<String>,
    pub reason: Option<String>,
    /// Who ended it: an agent's or member's name.
    pub by: Option<String>,
}

/// Handle to the notifier; cheap to clone. A disabled notifier ignores everything.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Notice>>,
    /// The member this agent is bound to, from the hub's `welcome`: the end of a task
    /// is shown when that member created it.
    member_id: Arc<OnceLock<Uuid>>,
    /// Approvals and questions (and other notifications) shown already, by id.
    shown: Arc<Mutex<HashSet<Uuid>>>,
    /// The hub's REST API, for the unread notifications.
    hub: Option<HubAccess>,
}

/// Settings of [`Notifier::start`].
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// How long an actionable notification waits for a click.
    pub action_timeout: Duration,
    /// The hub's REST API: unread notifications are read from it on every connection
    /// and marked read when acted on. `None`: only events are shown.
    pub hub: Option<HubAccess>,
}

impl Notifier {
    /// A notifier that shows nothing (`--no-notify`, `notify = false`).
    pub fn disabled() -> Notifier {
        Notifier {
            queue: None,
            member_id: Arc::default(),
            shown: Arc::default(),
            hub: None,
        }
    }

    /// Starts the notifier task. Decisions go to `outbound`, the connection's queue.
    pub fn start(options: NotifyOptions, outbound: mpsc::Sender<Outbound>) -> Notifier {
        let (queue, notices) = mpsc::channel(64);
        let hub = options.hub.clone();
        tokio::spawn(run(options, notices, outbound));
        Notifier {
            queue: Some(queue),
            member_id: Arc::default(),
            shown: Arc::default(),
            hub,
        }
    }

    /// Records the member this agent is bound to (`welcome.member_id`).
    pub fn bound_to(&self, member_id: Option<Uuid>) {
        if let Some(member_id) = member_id {
            // The same member on every welcome: a token belongs to one agent.
            let _ = self.member_id.set(member_id);
        }
    }

    /// Shows the member's unread action notifications that were not shown yet (read
    /// from the hub in the background): call it when a session opens.
    pub fn catch_up(&self) {
        let (Some(queue), Some(hub)) = (self.queue.clone(), self.hub.clone()) else {
            return;
        };
        let shown = Arc::clone(&self.shown);
        tokio::spawn(async move {
            let page: NotificationPage = match hub.client().await {
                Ok(client) => match client.get(CATCH_UP).await {
                    Ok(page) => page,
                    Err(err) => {
                        tracing::debug!(error = %err, "cannot read the unread notifications");
                        return;
                    }
                },
                Err(err) => {
                    tracing::debug!(error = %err, "cannot reach the hub for notifications");
                    return;
                }
            };
            // Oldest first, as they arrived.
            for notification in page.notifications.iter().rev() {
                let Some((seen_id, notice)) = notification_notice(notification) else {
                    continue;
                };
                if first_sight(&shown, seen_id) && queue.try_send(notice).is_err() {
                    tracing::debug!("notification dropped: too many at once");
                }
            }
        });
    }

    /// Whether notifications are on.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// A step this agent claimed and now executes.
    pub fn step_taken(&self, step: &StepInfo) {
        let mut body = format!("Task: {}", step.task_title);
        if !step.description.is_empty() {
            body.push('\n');
            body.push_str(&shorten(&step.description, 300));
        }
        self.show(Notice {
            title: format!("Step for you: {}", step.title),
            body,
            decision: None,
            notification_id: None,
        });
    }

    /// Shows what an event from the hub asks of this agent's human, if anything.
    pub fn handle_event(&self, frame: &ServerFrame) {
        if !self.enabled() {
            return;
        }
        let notice = match frame {
            ServerFrame::ApprovalRequested(requested) => {
                if !first_sight(&self.shown, requested.approval_id) {
                    return;
                }
                approval_notice(requested)
            }
            ServerFrame::InputRequested(requested) => {
                if !first_sight(&self.shown, requested.input_request_id) {
                    return;
                }
                question_notice(requested)
            }
            ServerFrame::TaskUpdated(updated) => {
                let ours = updated.task.creator_member_id.is_some()
                    && updated.task.creator_member_id.as_ref() == self.member_id.get();
                match task_end(updated) {
                    Some(end) if ours => task_end_notice(&end),
                    _ => return,
                }
            }
            _ => return,
        };
        self.show(notice);
    }

    fn show(&self, notice: Notice) {
        if let Some(queue) = &self.queue
            && queue.try_send(notice).is_err()
        {
            tracing::debug!("notification dropped: too many at once");
        }
    }
}

/// Records that `id` is shown; false when it was already.
fn first_sight(shown: &Mutex<HashSet<Uuid>>, id: Uuid) -> bool {
    shown
        .lock()
        .map(|mut shown| shown.insert(id))
        .unwrap_or(true)
}

/// The desktop notification for one of the hub's notifications, with the id it is
/// known by (its approval or question, else its own id).
pub fn notification_notice(notification: &Notification) -> Option<(Uuid, Notice)> {
    let own_id = Uuid::parse_str(&notification.id).ok()?;
    let subject = notification
        .subject_id
        .as_deref()
        .and_then(|id| Uuid::parse_str(id).ok());
    let notification_id = Some(notification.id.clone());
    let notice = match (notification.kind.as_str(), subject) {
        ("approval.requested", Some(approval_id)) => Notice {
            title: notification.title.clone(),
            body: notification.body.clone(),
            decision: Some(DecisionTarget::Approval {
                approval_id,
                digest: notification.data["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            }),
            notification_id,
        },
        ("input.requested", Some(input_request_id)) => {
            let mut notice = question_notice(&InputRequested {
                seq: 0,
                input_request_id,
                step_id: Uuid::nil(),
                task_id: Uuid::nil(),
                question: notification.data["question"]
                    .as_str()
                    .unwrap_or(&notification.body)
                    .to_string(),
                options: notification.data["options"]
                    .as_array()
                    .map(|options| {
                        options
                            .iter()
                            .filter_map(|option| option.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            notice.notification_id = notification_id;
            notice
        }
        _ => Notice {
            title: notification.title.clone(),
            body: notification.body.clone(),
            decision: None,
            notification_id,
        },
    };
    Some((subject.unwrap_or(own_id), notice))
}

/// The end of a task, if `updated` tells one.
pub fn task_end(updated: &TaskUpdated) -> Option<TaskEnd> {
    let task = &updated.task;
    if !matches!(task.status.as_str(), "done" | "failed" | "cancelled") {
        return None;
    }
    let outcome = task.outcome.as_ref();
    Some(TaskEnd {
        task_id: task.task_id,
        title: task.title.clone(),
        status: task.status.clone(),
        step_key: outcome.and_then(|outcome| outcome.step_key.clone()),
        reason: outcome.and_then(|outcome| outcome.reason.clone()),
        by: outcome
            .and_then(|outcome| outcome.by.as_ref())
            .map(|by| match (&by.name, by.id) {
                (Some(name), _) => name.clone(),
                (None, Some(id)) => id.to_string(),
                (None, None) => by.kind.clone(),
            }),
    })
}

/// The notification for the end of a task: "Task finished: …", or "Task failed: …"
/// with the step that failed, why and who.
pub fn task_end_notice(end: &TaskEnd) -> Notice {
    let title = match end.status.as_str() {
        "done" => format!("Task finished: {}", end.title),
        "failed" => format!("Task failed: {}", end.title),
        _ => format!("Task cancelled: {}", end.title),
    };
    let reason = end.reason.as_deref().map(|reason| shorten(reason, 400));
    let mut body = match (&end.step_key, reason) {
        (Some(key), Some(reason)) => format!("step `{key}` {}: {reason}", end.status),
        (Some(key), None) => format!("step `{key}` {}", end.status),
        (None, Some(reason)) => reason,
        (None, None) => String::new(),
    };
    if let Some(by) = &end.by
        && end.status != "done"
    {
        if !body.is_empty() {
            body.push(' ');
        }
        body.push_str(&format!("(by {by})"));
    }
    Notice {
        title,
        body,
        decision: None,
        notification_id: None,
    }
}

/// The notification for an approval asked of this teammate: the step and its result.
pub fn approval_notice(requested: &ApprovalRequested) -> Notice {
    let mut body = format!("Task: {}", requested.task_title);
    if let Some(summary) = &requested.summary {
        body.push_str(&format!("\nSummary: {}", shorten(summary, 300)));
    }
    if !requested.result.is_null() {
        body.push_str(&format!(
            "\nResult: {}",
            shorten(&requested.result.to_string(), 300)
        ));
    }
    if requested.fits == Some(false) {
        body.push_str("\nIts agent says the result does not fit the task.");
    }
    Notice {
        title: format!("Approve \"{}\"?", requested.step_title),
        body,
        decision: Some(DecisionTarget::Approval {
            approval_id: requested.approval_id,
            digest: requested.digest.clone(),
        }),
        notification_id: None,
    }
}

/// The notification for a question from a blocked step. A tool call waiting for its
/// human (options approve / reject) shows the exact call and gets actions.
pub fn question_notice(requested: &InputRequested) -> Notice {
    let is_tool_call = requested.options.len() == 2
        && requested.options.iter().any(|option| option == APPROVE)
        && requested.options.iter().any(|option| option == REJECT);
    if is_tool_call {
        return Notice {
            title: "Tool call wants approval".into(),
            body: requested.question.clone(),
            decision: Some(DecisionTarget::ToolCall(requested.input_request_id)),
            notification_id: None,
        };
    }
    let mut body = requested.question.clone();
    if !requested.options.is_empty() {
        body.push_str(&format!(" [{}]", requested.options.join(" / ")));
    }
    body.push_str(&format!(
        "\nAnswer with: agentd answer {} TEXT",
        requested.input_request_id
    ));
    Notice {
        title: "A step has a question for you".into(),
        body,
        decision: None,
        notification_id: None,
    }
}

/// The frame a click sends.
pub fn decision_frame(target: DecisionTarget, action: &str) -> Option<ClientFrame> {
    let approve = match action {
        APPROVE => true,
        REJECT => false,
        _ => return None,
    };
    Some(match target {
        DecisionTarget::Approval {
            approval_id,
            digest,
        } => ClientFrame::ApprovalDecide(ApprovalDecide {
            id: 0,
            approval_id,
            decision: if approve {
                Decision::Approve
            } else {
                Decision::Reject
            },
            comment: (!approve).then(|| REJECT_COMMENT.to_string()),
            digest: (!digest.is_empty()).then_some(digest),
        }),
        DecisionTarget::ToolCall(input_request_id) => ClientFrame::InputAnswer(InputAnswer {
            id: 0,
            input_request_id,
            answer: if approve {
                APPROVE.to_string()
            } else {
                format!("{REJECT}: {REJECT_COMMENT}")
            },
        }),
    })
}

async fn run(
    options: NotifyOptions,
    mut notices: mpsc::Receiver<Notice>,
    outbound: mpsc::Sender<Outbound>,
) {
    let unavailable_reported = Arc::new(AtomicBool::new(false));
    let mut waiting = JoinSet::new();
    while let Some(notice) = notices.recv().await {
        while waiting.try_join_next().is_some() {}
        if waiting.len() >= MAX_WAITING {
            // Dropping the oldest is not possible with a JoinSet; stop them all instead.
            waiting.abort_all();
        }
        let handle = match show(&notice).await {
            Ok(handle) => handle,
            Err(err) => {
                if !unavailable_reported.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        error = %err,
                        "desktop notifications are unavailable; use `agentd inbox` to see what waits for you"
                    );
                }
                continue;
            }
        };
        let Some(target) = notice.decision else {
            continue;
        };
        let outbound = outbound.clone();
        let timeout = options.action_timeout;
        let read_on_decision = notice.notification_id.zip(options.hub.clone());
        waiting.spawn(async move {
            let clicked = tokio::time::timeout(timeout, wait_for_click(&handle)).await;
            let Ok(Some(action)) = clicked else {
                return;
            };
            let Some(frame) = decision_frame(target, &action) else {
                return;
            };
            if send_decision(&outbound, frame, &action).await
                && let Some((notification_id, hub)) = read_on_decision
            {
                mark_read(&hub, &notification_id).await;
            }
        });
    }
    waiting.abort_all();
}

#[cfg(all(unix, not(target_os = "macos")))]
type Handle = notify_rust::NotificationHandle;

#[cfg(all(unix, not(target_os = "macos")))]
async fn show(notice: &Notice) -> Result<Handle, String> {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("agentd")
        .summary(&notice.title)
        .body(&notice.body);
    if notice.decision.is_some() {
        notification
            .action(APPROVE, "Approve")
            .action(REJECT, "Reject");
    }
    notification
        .show_async()
        .await
        .map_err(|err| err.to_string())
}

#[cfg(all(unix, not(target_os = "macos")))]
async fn wait_for_click(handle: &Handle) -> Option<String> {
    let mut action = None;
    handle
        .wait_for_action_async(|response| {
            if let notify_rust::NotificationResponse::Action(key) = response {
                action = Some(key.clone());
            }
        })
        .await;
    action
}

/// Elsewhere notifications are shown without waiting for a click.
#[cfg(not(all(unix, not(target_os = "macos"))))]
type Handle = ();

#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn show(notice: &Notice) -> Result<Handle, String> {
    notify_rust::Notification::new()
        .appname("agentd")
        .summary(&notice.title)
        .body(&notice.body)
        .show()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn wait_for_click(_handle: &Handle) -> Option<String> {
    None
}

/// Sends a decision and waits for the hub's answer; whether it was accepted.
async fn send_decision(
    outbound: &mpsc::Sender<Outbound>,
    frame: ClientFrame,
    action: &str,
) -> bool {
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = Outbound::Request {
        frame,
        reply: Some(reply_tx),
    };
    if outbound.send(request).await.is_err() {
        return false;
    }
    match reply_rx.await {
        Ok(Reply::Ok(_)) => {
            tracing::info!(action, "decision from the desktop notification sent");
            true
        }
        Ok(Reply::Error { code, message }) => {
            tracing::warn!(action, code, message, "the hub refused the decision");
            false
        }
        Err(_) => {
            tracing::warn!(
                action,
                "the connection ended before the hub answered the decision; check `agentd inbox`"
            );
            false
        }
    }
}

/// Marks the hub's notification read (best effort: the decision resolved it anyway).
async fn mark_read(hub: &HubAccess, notification_id: &str) {
    let path = format!("v1/me/notifications/{notification_id}/read");
    let marked: crate::error::Result<serde_json::Value> = match hub.client().await {
        Ok(client) => client.post(&path, &serde_json::json!({})).await,
        Err(err) => Err(err),
    };
    if let Err(err) = marked {
        tracing::debug!(error = %err, "cannot mark the notification read");
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests;
