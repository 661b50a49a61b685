//! `agentd tasks` and `agentd task create`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cmd::Ctx;
use crate::error::{Error, Result};

/// List the workspace's tasks, newest first
#[derive(Debug, Args)]
pub struct Tasks {
    /// Only tasks in this status (draft, active, paused, done, cancelled, archived)
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

impl Tasks {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let mut path = format!("v1/tasks?limit={}", self.limit);
        if let Some(status) = &self.status {
            path.push_str(&format!("&status={status}"));
        }
        let list: Value = ctx.hub()?.get(&path).await?;
        ctx.print(&list, || {
            let tasks = list["tasks"].as_array().cloned().unwrap_or_default();
            if tasks.is_empty() {
                return "no tasks".to_string();
            }
            tasks
                .iter()
                .map(|task| {
                    format!(
                        "{}  {:<10} {}",
                        task["id"].as_str().unwrap_or_default(),
                        task["status"].as_str().unwrap_or_default(),
                        task["title"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task from a YAML or JSON file, or a one-step task from flags
    Create(Create),
}

/// The task is read from `--file` (the body of `POST /v1/tasks`, in YAML or JSON), or
/// built from the flags as a task with one step.
#[derive(Debug, Args)]
pub struct Create {
    /// A task file (YAML or JSON): title, description, steps[] with key, title,
    /// assignees, depends_on, approval_level, approvers, executor, input
    #[arg(long, short, conflicts_with_all = ["title", "assignee"])]
    pub file: Option<PathBuf>,
    /// The task's (and its step's) title
    #[arg(long, required_unless_present = "file")]
    pub title: Option<String>,
    /// What to do
    #[arg(long, default_value = "")]
    pub description: String,
    /// Agent name or id to assign the step to (repeatable)
    #[arg(long, required_unless_present = "file")]
    pub assignee: Vec<String>,
    /// Executor of the step: claude, shell, manual, external
    #[arg(long)]
    pub executor: Option<String>,
    /// Shell command of the step (sets input.command)
    #[arg(long)]
    pub command: Option<String>,
    /// 0 none, 1 confirm, 2 review, 3 every approver
    #[arg(long, default_value_t = 0)]
    pub approval_level: u8,
    /// Member email or id that approves (repeatable)
    #[arg(long)]
    pub approver: Vec<String>,
}

impl Command {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        match self {
            Command::Create(create) => create.run(ctx).await,
        }
    }
}

impl Create {
    /// The request body.
    pub fn body(&self) -> Result<Value> {
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file)
                .map_err(|err| Error::config(format!("cannot read {}: {err}", file.display())))?;
            let is_json = file.extension().is_some_and(|ext| ext == "json");
            let body: Value = if is_json {
                serde_json::from_str(&text).map_err(|err| {
                    Error::config(format!("{} is not valid JSON: {err}", file.display()))
                })?
            } else {
                serde_norway::from_str(&text).map_err(|err| {
                    Error::config(format!("{} is not valid YAML: {err}", file.display()))
                })?
            };
            if !body.is_object() {
                return Err(Error::config(format!(
                    "{} must hold a task (a map with title and steps)",
                    file.display()
                )));
            }
            return Ok(body);
        }
        let title = self.title.clone().unwrap_or_default();
        let mut step = json!({
            "key": "main",
            "title": title,
            "description": self.description,
            "assignees": self.assignee,
            "approval_level": self.approval_level,
            "approvers": self.approver,
        });
        if let Some(executor) = &self.executor {
            step["executor"] = json!(executor);
        }
        if let Some(command) = &self.command {
            step["input"] = json!({"command": command});
        }
        Ok(json!({"title": title, "description": self.description, "steps": [step]}))
    }

    async fn run(self, ctx: Ctx) -> Result<()> {
        let body = self.body()?;
        let task: Value = ctx.hub()?.post("v1/tasks", &body).await?;
        ctx.print(&task, || {
            let mut text = format!(
                "created task {} \"{}\"\n",
                task["id"].as_str().unwrap_or_default(),
                task["title"].as_str().unwrap_or_default()
            );
            for step in task["steps"].as_array().cloned().unwrap_or_default() {
                text.push_str(&format!(
                    "  {}  {:<8} {}\n",
                    step["id"].as_str().unwrap_or_default(),
                    step["status"].as_str().unwrap_or_default(),
                    step["title"].as_str().unwrap_or_default()
                ));
            }
            text
        });
        Ok(())
    }
}
