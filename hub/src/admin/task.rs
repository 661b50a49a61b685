//! `agenthub admin task list | show | retry`.

use clap::Subcommand;

use crate::accounts::authority::Scopes;
use crate::accounts::{self, Actor, MemberActor, Role};
use crate::admin::{AdminCtx, table};
use crate::api::views::{TaskResponse, TaskSummary, TimelineEntryResponse};
use crate::tasks;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the newest tasks of a workspace.
    List {
        #[arg(long)]
        workspace: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a task with its progress, outcome, steps and timeline.
    Show {
        #[arg(long)]
        workspace: String,
        id: String,
    },
    /// Retry a failed or skipped step (re-opens a failed task).
    Retry {
        #[arg(long)]
        workspace: String,
        /// The step's id.
        step: String,
        /// Why, for the history and the timeline.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// A task with its timeline, as `show` prints it.
#[derive(serde::Serialize)]
struct TaskWithTimeline {
    #[serde(flatten)]
    task: TaskResponse,
    timeline: Vec<TimelineEntryResponse>,
}

/// The admin reads as the workspace's first owner would.
async fn admin_actor(admin: &AdminCtx, workspace: &str) -> anyhow::Result<Actor> {
    let workspace_id = admin.workspace_id(workspace).await?;
    let members = accounts::list_members(&admin.ctx.store, &workspace_id).await?;
    let owner = members.into_iter().next();
    Ok(Actor::Member(MemberActor {
        workspace_id,
        member_id: owner
            .as_ref()
            .map(|member| member.id.clone())
            .unwrap_or_default(),
        email: owner
            .map(|member| member.email)
            .unwrap_or_else(|| "admin".into()),
        role: Role::Owner,
        scopes: Scopes::ALL,
    }))
}

impl Command {
    pub async fn run(self, admin: &AdminCtx) -> anyhow::Result<()> {
        match self {
            Command::List { workspace, limit } => {
                let actor = admin_actor(admin, &workspace).await?;
                let rows: Vec<TaskSummary> =
                    tasks::list_tasks(&admin.ctx, &actor, &tasks::TaskFilter::newest(limit))
                        .await?
                        .into_iter()
                        .map(TaskSummary::from)
                        .collect();
                admin.print(&rows, || {
                    table(
                        &["id", "status", "progress", "title", "created"],
                        rows.iter()
                            .map(|row| {
                                vec![
                                    row.id.clone(),
                                    row.status.clone(),
                                    format!("{}/{}", row.progress.done, row.progress.total),
                                    row.title.clone(),
                                    row.created_at.clone(),
                                ]
                            })
                            .collect(),
                    )
                })
            }
            Command::Show { workspace, id } => {
                let actor = admin_actor(admin, &workspace).await?;
                let task = TaskResponse::from(tasks::get_task(&admin.ctx, &actor, &id).await?);
                let timeline = tasks::timeline(&admin.ctx, &actor, &id)
                    .await?
                    .into_iter()
                    .map(TimelineEntryResponse::from)
                    .collect();
                let shown = TaskWithTimeline { task, timeline };
                admin.print(&shown, || render_task(&shown))
            }
            Command::Retry {
                workspace,
                step,
                reason,
            } => {
                let actor = admin_actor(admin, &workspace).await?;
                let task = TaskResponse::from(
                    tasks::retry_step(&admin.ctx, &actor, &step, reason.as_deref()).await?,
                );
                admin.print(&task, || {
                    let retried = task.steps.iter().find(|candidate| candidate.id == step);
                    match retried {
                        Some(retried) => format!(
                            "step {} is {} (attempt {}); task {} is {}",
                            retried.key, retried.status, retried.attempt, task.id, task.status
                        ),
                        None => format!("task {} is {}", task.id, task.status),
                    }
                })
            }
        }
    }
}

/// The task, its steps and its timeline as text.
fn render_task(shown: &TaskWithTimeline) -> String {
    let task = &shown.task;
    let mut text = format!(
        "{} [{}] {}\nprogress: {}/{} steps finished",
        task.id, task.status, task.title, task.progress.done, task.progress.total
    );
    for running in &task.progress.running {
        let percent = running
            .percent
            .map(|percent| format!(" {percent}%"))
            .unwrap_or_default();
        let message = running.message.as_deref().unwrap_or_default();
        text.push_str(&format!(
            "\n  {} {}{percent} {message}",
            running.key, running.status
        ));
    }
    if let Some(outcome) = &task.outcome {
        text.push_str(&format!("\noutcome: {}", outcome.status));
        if let Some(key) = &outcome.step_key {
            text.push_str(&format!(", step {key}"));
        }
        if let Some(reason) = &outcome.reason {
            text.push_str(&format!(": {reason}"));
        }
        if let Some(by) = &outcome.by {
            text.push_str(&format!(
                " (by {} {})",
                by.kind,
                by.name.as_deref().unwrap_or("")
            ));
        }
    }
    let steps = table(
        &["key", "status", "attempt", "assignees", "title", "reason"],
        task.steps
            .iter()
            .map(|step| {
                vec![
                    step.key.clone(),
                    step.status.clone(),
                    step.attempt.to_string(),
                    step.assignees
                        .iter()
                        .map(|agent| agent.name.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                    step.title.clone(),
                    step.status_reason.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    let timeline = table(
        &["at", "actor", "step", "change", "attempt", "reason"],
        shown
            .timeline
            .iter()
            .map(|entry| {
                vec![
                    entry.at.clone(),
                    format!(
                        "{} {}",
                        entry.actor.kind,
                        entry.actor.name.as_deref().unwrap_or("")
                    )
                    .trim()
                    .to_string(),
                    entry.step_key.clone().unwrap_or_else(|| "(task)".into()),
                    format!(
                        "{} -> {}",
                        entry.from.as_deref().unwrap_or("(new)"),
                        entry.to
                    ),
                    entry
                        .attempt
                        .map(|attempt| attempt.to_string())
                        .unwrap_or_default(),
                    entry.reason.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    format!("{text}\n\n{steps}\n\ntimeline:\n{timeline}")
}
