//! `agenthub admin task list | show`.

use clap::Subcommand;

use crate::accounts::{self, Actor, MemberActor, Role};
use crate::admin::{AdminCtx, table};
use crate::api::views::{TaskResponse, TaskSummary};
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
    /// Show a task with its steps.
    Show {
        #[arg(long)]
        workspace: String,
        id: String,
    },
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
    }))
}

impl Command {
    pub async fn run(self, admin: &AdminCtx) -> anyhow::Result<()> {
        match self {
            Command::List { workspace, limit } => {
                let actor = admin_actor(admin, &workspace).await?;
                let rows: Vec<TaskSummary> = tasks::list_tasks(&admin.ctx, &actor, None, limit)
                    .await?
                    .into_iter()
                    .map(TaskSummary::from)
                    .collect();
                admin.print(&rows, || {
                    table(
                        &["id", "status", "title", "created"],
                        rows.iter()
                            .map(|row| {
                                vec![
                                    row.id.clone(),
                                    row.status.clone(),
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
                admin.print(&task, || {
                    let steps = table(
                        &["key", "status", "attempt", "assignees", "title"],
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
                                ]
                            })
                            .collect(),
                    );
                    format!("{} [{}] {}\n\n{steps}", task.id, task.status, task.title)
                })
            }
        }
    }
}
