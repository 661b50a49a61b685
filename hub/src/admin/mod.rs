//! `agenthub admin …`: workspaces, members, API keys, agents and tasks from the command
//! line. Works on a fresh data dir or database (it applies pending migrations first) and
//! while a hub is serving from the same database.

mod agent;
mod apikey;
mod member;
mod task;
mod workspace;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::accounts;
use crate::config::DbArgs;
use crate::ctx::{Ctx, Settings};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Print machine-readable JSON (a created secret is the field `token`).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create and list workspaces.
    #[command(subcommand)]
    Workspace(workspace::Command),
    /// Add, list and remove members of a workspace.
    #[command(subcommand)]
    Member(member::Command),
    /// Create, list and revoke members' API keys.
    #[command(subcommand)]
    Apikey(apikey::Command),
    /// Register agents, list them, show one, revoke their tokens.
    #[command(subcommand)]
    Agent(agent::Command),
    /// List tasks and show one.
    #[command(subcommand)]
    Task(task::Command),
}

/// What every admin command gets.
pub struct AdminCtx {
    pub ctx: Ctx,
    pub json: bool,
}

impl AdminCtx {
    /// Prints `value` as JSON, or `human` otherwise.
    pub fn print<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            println!("{}", human());
        }
        Ok(())
    }

    /// Resolves a workspace name or id.
    pub async fn workspace_id(&self, workspace: &str) -> anyhow::Result<String> {
        Ok(accounts::find_workspace(&self.ctx.store, workspace)
            .await?
            .id)
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let store = args.db.open_store()?;
    store.migrate().await?;
    let settings = Settings {
        data_dir: args.db.data_dir()?,
        ..Settings::default()
    };
    let admin = AdminCtx {
        ctx: Ctx::new(store, settings),
        json: args.json,
    };
    match args.command {
        AdminCommand::Workspace(command) => command.run(&admin).await,
        AdminCommand::Member(command) => command.run(&admin).await,
        AdminCommand::Apikey(command) => command.run(&admin).await,
        AdminCommand::Agent(command) => command.run(&admin).await,
        AdminCommand::Task(command) => command.run(&admin).await,
    }
}

/// Formats rows as an aligned table.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in &rows {
        for (idx, cell) in row.iter().enumerate() {
            widths[idx] = widths[idx].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(idx, cell)| format!("{cell:<width$}", width = widths[idx]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(
        headers.iter().map(|header| header.to_uppercase()).collect(),
    )];
    if rows.is_empty() {
        out.push("(none)".into());
    }
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// The line printed under every secret.
pub const SHOWN_ONCE: &str = "Store it now: it will not be shown again.";
