//! `agentd tasks` and `agentd task create` (with attachments uploaded to the hub first).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::cmd::Ctx;
use crate::error::{Error, Result};
use crate::hub::{HubClient, UploadedFile};

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
    /// A file to upload to the hub and hand to every step (repeatable); the steps get
    /// the file ids in `input.attachments`
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
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
        let mut body = self.body()?;
        let hub = ctx.hub()?;
        let mut attachments = Vec::new();
        for path in &self.attach {
            attachments.push(upload(&hub, path).await?);
        }
        if !attachments.is_empty() {
            attach(&mut body, &attachments)?;
        }
        let task: Value = hub.post("v1/tasks", &body).await?;
        ctx.print(&task, || {
            let mut text = format!(
                "created task {} \"{}\"\n",
                task["id"].as_str().unwrap_or_default(),
                task["title"].as_str().unwrap_or_default()
            );
            for file in &attachments {
                text.push_str(&format!(
                    "  attached {} ({} bytes) as {}\n",
                    file.name, file.size_bytes, file.id
                ));
            }
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

/// Uploads one attachment, with a progress bar when stderr is a terminal.
async fn upload(hub: &HubClient, path: &Path) -> Result<UploadedFile> {
    let size = std::fs::metadata(path)
        .map_err(|err| Error::config(format!("cannot read {}: {err}", path.display())))?
        .len();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> "),
        );
        bar.set_message(format!("uploading {}", path.display()));
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = bar.clone();
    let uploaded = hub
        .upload(path, move |sent| progress.set_position(sent))
        .await;
    match &uploaded {
        Ok(_) => bar.finish_and_clear(),
        Err(_) => bar.abandon(),
    }
    uploaded
}

/// Adds the uploaded files' ids to `input.attachments` of every step of a task body.
pub fn attach(body: &mut Value, files: &[UploadedFile]) -> Result<()> {
    let Some(steps) = body.get_mut("steps").and_then(Value::as_array_mut) else {
        return Err(Error::config("the task has no steps to attach files to"));
    };
    for step in steps {
        let input = &mut step["input"];
        if input.is_null() {
            *input = json!({});
        }
        let Some(input) = input.as_object_mut() else {
            return Err(Error::config(
                "--attach needs each step's input to be a map (the ids go into input.attachments)",
            ));
        };
        let list = input
            .entry("attachments")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(list) = list.as_array_mut() else {
            return Err(Error::config("a step's input.attachments is not a list"));
        };
        list.extend(files.iter().map(|file| json!(file.id)));
    }
    Ok(())
}
