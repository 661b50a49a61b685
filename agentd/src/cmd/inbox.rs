//! `agentd inbox`: the teammate's notifications — what waits on them first, then what
//! they should know — and `agentd inbox read` to mark them read.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cmd::Ctx;
use crate::error::{Error, Result};
use crate::hub::{Notification, NotificationPage, ReadAll, ReadOne, UnreadCounts};

/// Unread notifications shown at once (the hub's largest page).
const PAGE: u32 = 200;
/// Notifications `--all` shows.
const ALL_PAGE: u32 = 50;

/// Show what waits for you (approvals, questions, availability requests), then what you
/// should know (tasks of yours that ended, agents of yours offline with work)
#[derive(Debug, Args)]
pub struct Inbox {
    #[command(subcommand)]
    pub command: Option<InboxCommand>,
    /// Show the latest notifications, read and resolved ones too
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Mark a notification read (`agentd inbox read ID`), or all of them (`--all`)
    Read(Read),
}

/// Mark notifications read
#[derive(Debug, Args)]
pub struct Read {
    /// The notification's id (shown by `agentd inbox`)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Mark every notification read
    #[arg(long)]
    pub all: bool,
}

impl Inbox {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        match self.command {
            Some(InboxCommand::Read(read)) => read.run(ctx).await,
            None => {
                let path = if self.all {
                    format!("v1/me/notifications?limit={ALL_PAGE}")
                } else {
                    format!("v1/me/notifications?unread=true&limit={PAGE}")
                };
                let page: NotificationPage = ctx.hub()?.get(&path).await?;
                ctx.print(&page, || human(&page, self.all));
                Ok(())
            }
        }
    }
}

impl Read {
    async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.hub()?;
        match self.id {
            Some(id) => {
                if id.is_empty() || id.contains(['/', '?', '#']) {
                    return Err(Error::config(format!("`{id}` is not a notification id")));
                }
                let read: ReadOne = hub
                    .post(&format!("v1/me/notifications/{id}/read"), &json!({}))
                    .await?;
                ctx.print(&read, || {
                    format!(
                        "marked read: {}\n{}",
                        read.notification.title,
                        counts_line(read.unread)
                    )
                });
            }
            None => {
                let read: ReadAll = hub.post("v1/me/notifications/read", &json!({})).await?;
                ctx.print(&read, || {
                    format!(
                        "marked {} notification(s) read\n{}",
                        read.marked,
                        counts_line(read.unread)
                    )
                });
            }
        }
        Ok(())
    }
}

fn counts_line(unread: UnreadCounts) -> String {
    format!(
        "unread: {} waiting on you, {} to know",
        unread.action, unread.info
    )
}

fn human(page: &NotificationPage, all: bool) -> String {
    let mut text = counts_line(page.meta.unread);
    text.push('\n');
    if page.notifications.is_empty() {
        text.push_str("nothing is waiting for you\n");
        return text;
    }
    let (action, info): (Vec<&Notification>, Vec<&Notification>) = page
        .notifications
        .iter()
        .partition(|notification| notification.priority == "action");
    if !action.is_empty() {
        text.push_str("Waiting on you:\n");
        for notification in action {
            item(&mut text, notification, all);
        }
    }
    if !info.is_empty() {
        text.push_str("For your information:\n");
        for notification in info {
            item(&mut text, notification, all);
        }
    }
    if page.meta.has_more {
        text.push_str("(more: see GET /v1/me/notifications)\n");
    }
    text.push_str("Mark read: agentd inbox read ID | agentd inbox read --all\n");
    text
}

fn item(text: &mut String, notification: &Notification, all: bool) {
    let state = match (&notification.resolved_at, &notification.read_at) {
        _ if !all => "",
        (Some(_), _) => " (resolved)",
        (None, Some(_)) => " (read)",
        (None, None) => " (unread)",
    };
    text.push_str(&format!(
        "  {}  {}{state}\n",
        notification.id, notification.title
    ));
    let subject = notification.subject_id.as_deref().unwrap_or_default();
    match notification.kind.as_str() {
        "approval.requested" => {
            indent(text, &notification.body);
            if let Some(step_id) = &notification.step_id {
                text.push_str(&format!(
                    "      agentd approve {step_id} / agentd reject {step_id} --comment …\n"
                ));
            }
        }
        "input.requested" => {
            let question = notification.data["question"]
                .as_str()
                .unwrap_or(&notification.body);
            indent(text, question);
            let options: Vec<&str> = notification.data["options"]
                .as_array()
                .map(|options| {
                    options
                        .iter()
                        .filter_map(|option| option.as_str())
                        .collect()
                })
                .unwrap_or_default();
            if !options.is_empty() {
                text.push_str(&format!("      options: {}\n", options.join(" / ")));
            }
            text.push_str(&format!("      agentd answer {subject} TEXT"));
            if options.len() == 2 && options.contains(&"approve") && options.contains(&"reject") {
                text.push_str(&format!(
                    " (or agentd approve {subject} / agentd reject {subject} --comment …)"
                ));
            }
            text.push('\n');
        }
        _ => indent(text, &notification.body),
    }
}

fn indent(text: &mut String, body: &str) {
    for line in body.lines().filter(|line| !line.trim().is_empty()) {
        text.push_str(&format!("      {line}\n"));
    }
}
