//! `agenthub admin workspace create | list`.

use clap::Subcommand;
use serde::Serialize;

use crate::accounts;
use crate::admin::{AdminCtx, table};
use crate::api::views::timestamp;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a workspace.
    Create { name: String },
    /// List workspaces.
    List,
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
