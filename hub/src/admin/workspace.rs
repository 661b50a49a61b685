//! `agenthub admin workspace create | list | set`.

use clap::Subcommand;
use serde::Serialize;

use crate::accounts;
use crate::admin::{AdminCtx, table};
use crate::api::views::timestamp;
use crate::approvals;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a workspace.
    Create { name: String },
    /// List workspaces.
    List,
    /// Change a workspace's settings.
    Set {
        /// The workspace's name or id.
        workspace: String,
        /// How long approvals and questions of new steps wait when a step names no
        /// deadline: `none`, seconds, or a duration like `24h` or `1h30m`.
        #[arg(long)]
        decision_timeout: String,
    },
}

#[derive(Serialize)]
struct WorkspaceSettingsOut {
    id: String,
    name: String,
    /// Seconds; null for no deadline.
    decision_timeout_s: Option<i64>,
}

#[derive(Serialize)]
struct WorkspaceOut {
    id: String,
    name: String,
    created_at: String,
}

impl From<accounts::Workspace> for WorkspaceOut {
    fn from(row: accounts::Workspace) -> Self {
        WorkspaceOut {
            id: row.id,
            name: row.name,
            created_at: timestamp(row.created_at),
        }
    }
}

impl Command {
    pub async fn run(self, admin: &AdminCtx) -> anyhow::Result<()> {
        match self {
            Command::Create { name } => {
                let workspace =
                    WorkspaceOut::from(accounts::create_workspace(&admin.ctx.store, &name).await?);
                admin.print(&workspace, || {
                    format!("created workspace {} ({})", workspace.name, workspace.id)
                })
            }
            Command::Set {
                workspace,
                decision_timeout,
            } => {
                let timeout = approvals::DecisionTimeout::parse(&decision_timeout)?.resolve(None);
                let workspace =
                    accounts::set_decision_timeout(&admin.ctx.store, &workspace, timeout).await?;
                let out = WorkspaceSettingsOut {
                    id: workspace.id,
                    name: workspace.name,
                    decision_timeout_s: timeout.map(|ms| ms / 1000),
                };
                admin.print(&out, || match timeout {
                    Some(ms) => format!(
                        "approvals and questions of new steps in {} wait {} by default",
                        out.name,
                        approvals::format_timeout(ms)
                    ),
                    None => format!(
                        "approvals and questions of new steps in {} wait without a deadline by default",
                        out.name
                    ),
                })
            }
            Command::List => {
                let rows: Vec<WorkspaceOut> = accounts::list_workspaces(&admin.ctx.store)
                    .await?
                    .into_iter()
                    .map(WorkspaceOut::from)
                    .collect();
                admin.print(&rows, || {
                    table(
                        &["name", "id", "created"],
                        rows.iter()
                            .map(|row| {
                                vec![row.name.clone(), row.id.clone(), row.created_at.clone()]
                            })
                            .collect(),
                    )
                })
            }
        }
    }
}
