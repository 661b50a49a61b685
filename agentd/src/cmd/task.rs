//! `agentd tasks` (with each task's progress), `agentd task create` (with attachments
//! uploaded to the hub first) and `agentd task show` (steps and timeline).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cmd::Ctx;
use crate::error::{Error, Result};
use crate::hub::{HubClient, UploadedFile};
use crate::progress;

/// List the workspace's tasks, newest first
#[derive(Debug, Args)]
pub struct Tasks {
    /// Only tasks in this status (draft, active, paused, done, failed, cancelled, archived)
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
            tasks.iter().map(task_line).collect::<Vec<_>>().join("\n")
        });
        Ok(())
    }
}

/// One task of `agentd tasks`: id, status, `done/total`, title, running steps.
fn task_line(task: &Value) -> String {
    let progress = &task["progress"];
    let counts = match (progress["done"].as_u64(), progress["total"].as_u64()) {
        (Some(done), Some(total)) => format!("{done}/{total}"),
        _ => "-".to_string(),
    };
    let mut line = format!(
        "{}  {:<10} {:>5}  {}",
        task["id"].as_str().unwrap_or_default(),
        task["status"].as_str().unwrap_or_default(),
        counts,
        task["title"].as_str().unwrap_or_default()
    );
    let running: Vec<String> = progress["running"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|step| {
            let mut text = step["key"].as_str().unwrap_or_default().to_string();
            if let Some(percent) = step["percent"].as_u64() {
                text.push_str(&format!(" {percent}%"));
            }
            text
        })
        .collect();
    if !running.is_empty() {
        line.push_str(&format!("  [{}]", running.join(", ")));
    }
    line
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task from a YAML or JSON file, or a one-step task from flags
    Create(Box<Create>),
    /// Show a task: status, progress, outcome, steps and timeline
    Show(Show),
}

/// `GET /v1/tasks/{id}` and `GET /v1/tasks/{id}/timeline`; `--json` prints both
/// documents as `{"task": …, "timeline": …}`.
#[derive(Debug, Args)]
pub struct Show {
    /// The task's id (see `agentd tasks`)
    pub task_id: Uuid,
}

/// The task is read from `--file` (the body of `POST /v1/tasks`, in YAML or JSON), or
/// built from the flags as a task with one step, or planned from one sentence (`--plan`):
/// the proposal is shown and accepted, refused, or asked again with a comment.
#[derive(Debug, Args)]
pub struct Create {
    /// With `--plan`: the task in one sentence (its description, and its title cut short)
    #[arg(requires = "plan", conflicts_with_all = ["file", "title"])]
    pub sentence: Option<String>,
    /// A task file (YAML or JSON): title, description, steps[] with key, title,
    /// assignees, depends_on, approval_level, approvers, executor, input
    #[arg(long, short, conflicts_with_all = ["title", "assignee"])]
    pub file: Option<PathBuf>,
    /// The task's (and its step's) title
    #[arg(long, required_unless_present_any = ["file", "sentence"])]
    pub title: Option<String>,
    /// What to do
    #[arg(long, default_value = "")]
    pub description: String,
    /// Agent name or id to assign the step to (repeatable)
    #[arg(long, required_unless_present_any = ["file", "plan"])]
    pub assignee: Vec<String>,
    /// Let this machine's agent (or `--planner`) plan the steps; needs `agentd run`
    /// running for that agent
    #[arg(long)]
    pub plan: bool,
    /// With `--plan`: the agent of yours that plans (default: this one)
    #[arg(long, requires = "plan")]
    pub planner: Option<String>,
    /// With `--plan`: accept the proposed plan without asking
    #[arg(long, requires = "plan")]
    pub yes: bool,
    /// With `--plan`: seconds to wait for a proposal
    #[arg(long, default_value_t = 300, requires = "plan")]
    pub wait: u64,
    /// Executor of the step: claude, claude-code, shell, manual or external (a step done
    /// by an outside A2A agent, `a2a`, needs `input.agent_card_url`: use --file)
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
            Command::Create(create) => (*create).run(ctx).await,
            Command::Show(show) => show.run(ctx).await,
        }
    }
}

impl Create {
    /// The request body.
    pub fn body(&self) -> Result<Value> {
        if self.plan {
            return self.plan_body();
        }
        self.given_body()
    }

    /// The task of `--file`, or of the flags.
    fn given_body(&self) -> Result<Value> {
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

    /// The body of a task to plan: the sentence (or title and description), and any
    /// steps of `--file` or `--assignee` as where the planner starts.
    fn plan_body(&self) -> Result<Value> {
        let mut body = match &self.sentence {
            Some(sentence) => {
                json!({"title": short_title(sentence), "description": sentence, "plan": true})
            }
            None if self.file.is_some() || !self.assignee.is_empty() => {
                let mut body = self.given_body()?;
                body["plan"] = json!(true);
                body
            }
            None => {
                let title = self.title.clone().unwrap_or_default();
                json!({"title": title, "description": self.description, "plan": true})
            }
        };
        if let Some(planner) = &self.planner {
            body["planner"] = json!(planner);
        }
        Ok(body)
    }

    async fn run(self, ctx: Ctx) -> Result<()> {
        if self.plan {
            return self.run_plan(ctx).await;
        }
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

/// The first words of `sentence`, at most 120 characters, as a task's title.
pub fn short_title(sentence: &str) -> String {
    let sentence = sentence.trim();
    if sentence.chars().count() <= 120 {
        return sentence.to_string();
    }
    let cut: String = sentence.chars().take(119).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > 40 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

/// What the person says to a proposed plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Leave the task a draft in planning.
    Leave,
    /// Ask for another plan, saying what to change.
    Revise(String),
}

impl Verdict {
    /// `y`/`yes` accepts, an empty line or `n`/`no` leaves it, anything else is a comment.
    pub fn parse(line: &str) -> Verdict {
        match line.trim().to_lowercase().as_str() {
            "y" | "yes" => Verdict::Accept,
            "" | "n" | "no" => Verdict::Leave,
            _ => Verdict::Revise(line.trim().to_string()),
        }
    }
}

impl Create {
    /// Creates the task in planning, waits for each proposal, shows it and asks.
    async fn run_plan(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.hub()?;
        let body = self.body()?;
        let task: Value = hub.post("v1/tasks", &body).await?;
        let task_id = task["id"].as_str().unwrap_or_default().to_string();
        let mut round = 1;
        loop {
            if !ctx.loaded.json {
                eprintln!("waiting for a plan of task {task_id} (round {round})…");
            }
            let plan = wait_for_proposal(&hub, &task_id, round, self.wait).await?;
            let verdict = if self.yes {
                if !ctx.loaded.json {
                    println!("{}", show_plan(&plan));
                }
                Verdict::Accept
            } else {
                println!("{}", show_plan(&plan));
                eprint!("accept this plan? [y]es, [n]o (keep it a draft), or say what to change: ");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Verdict::parse(&line)
            };
            match verdict {
                Verdict::Accept => {
                    let task: Value = hub
                        .post(&format!("v1/tasks/{task_id}/plan/accept"), &json!({}))
                        .await?;
                    ctx.print(&task, || {
                        let mut text = format!(
                            "accepted; task {task_id} \"{}\" is {}\n",
                            task["title"].as_str().unwrap_or_default(),
                            task["status"].as_str().unwrap_or_default()
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
                    return Ok(());
                }
                Verdict::Leave => {
                    ctx.print(&plan, || {
                        format!(
                            "the task stays a draft in planning; accept it later with \
                             `POST /v1/tasks/{task_id}/plan/accept`"
                        )
                    });
                    return Ok(());
                }
                Verdict::Revise(comment) => {
                    let next: Value = hub
                        .post(
                            &format!("v1/tasks/{task_id}/plan/revise"),
                            &json!({"comment": comment}),
                        )
                        .await?;
                    round = next["plan"]["round"].as_u64().unwrap_or(round + 1);
                }
            }
        }
    }
}

/// Polls the task's plan until round `round` is proposed.
async fn wait_for_proposal(hub: &HubClient, task_id: &str, round: u64, wait: u64) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let plan: Value = hub.get(&format!("v1/tasks/{task_id}/plan")).await?;
        let current = &plan["plan"];
        if current["round"].as_u64() == Some(round) && current["status"] == "proposed" {
            return Ok(plan);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::other(format!(
                "no plan from `{}` within {wait} s; is `agentd run` running for it, with a \
                 Claude key (`agentd key set`)? The task stays a draft in planning: {task_id}",
                current["planner"].as_str().unwrap_or_default()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// The human view of a proposal.
pub fn show_plan(plan: &Value) -> String {
    let plan = &plan["plan"];
    let mut text = format!(
        "plan round {} by {}:\n",
        plan["round"],
        plan["planner"].as_str().unwrap_or_default()
    );
    if let Some(note) = plan["note"].as_str() {
        text.push_str(&format!("  {note}\n"));
    }
    for step in plan["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let list = |field: &str| {
            step[field]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        text.push_str(&format!(
            "  {:<12} {}  → {}",
            step["key"].as_str().unwrap_or_default(),
            step["title"].as_str().unwrap_or_default(),
            list("assignees")
        ));
        if let Some(minutes) = step["estimate_minutes"].as_u64() {
            text.push_str(&format!("  ~{minutes} min"));
        }
        let depends = list("depends_on");
        if !depends.is_empty() {
            text.push_str(&format!("  after {depends}"));
        }
        if let Some(level) = step["approval_level"].as_u64().filter(|level| *level > 0) {
            text.push_str(&format!("  approval {level} by {}", list("approvers")));
        }
        text.push('\n');
    }
    text
}

impl Show {
    async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.hub()?;
        let task: Value = hub.get(&format!("v1/tasks/{}", self.task_id)).await?;
        let timeline: Value = hub
            .get(&format!("v1/tasks/{}/timeline", self.task_id))
            .await?;
        // A draft in planning shows its plan (a task without one answers 404).
        let plan: Option<Value> = if task["status"] == "draft" {
            hub.get(&format!("v1/tasks/{}/plan", self.task_id))
                .await
                .ok()
        } else {
            None
        };
        let shown = json!({"task": task, "timeline": timeline, "plan": plan});
        ctx.print(&shown, || {
            let mut text = show_task(&task, &timeline);
            if let Some(plan) = &plan {
                text.push_str(&format!("\n{}", show_plan(plan)));
            }
            text
        });
        Ok(())
    }
}

/// The human view of `agentd task show`.
pub fn show_task(task: &Value, timeline: &Value) -> String {
    let mut text = format!(
        "{} \"{}\"\nstatus:   {}\n",
        task["id"].as_str().unwrap_or_default(),
        task["title"].as_str().unwrap_or_default(),
        task["status"].as_str().unwrap_or_default()
    );
    let progress = &task["progress"];
    if let (Some(done), Some(total)) = (progress["done"].as_u64(), progress["total"].as_u64()) {
        text.push_str(&format!("progress: {done}/{total} steps finished\n"));
    }
    for step in progress["running"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        text.push_str(&format!(
            "  {:<12} {:<17}",
            step["key"].as_str().unwrap_or_default(),
            step["status"].as_str().unwrap_or_default()
        ));
        if let Some(percent) = step["percent"].as_u64() {
            text.push_str(&format!(" {percent:>3}%"));
        }
        if let Some(message) = step["message"].as_str() {
            text.push_str(&format!(" {message}"));
        }
        text = text.trim_end().to_string();
        text.push('\n');
    }
    if task["outcome"].is_object() {
        text.push_str(&format!(
            "outcome:  {}\n",
            describe_outcome(&task["outcome"])
        ));
    }
    text.push_str("\nsteps:\n");
    for step in task["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let assignees: Vec<&str> = step["assignees"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|agent| agent["name"].as_str())
            .collect();
        text.push_str(&format!(
            "  {}  {:<12} {:<17} attempt {}  {}\n",
            step["id"].as_str().unwrap_or_default(),
            step["key"].as_str().unwrap_or_default(),
            step["status"].as_str().unwrap_or_default(),
            step["attempt"],
            assignees.join(", ")
        ));
        if let Some(minutes) = step["estimate_minutes"].as_u64() {
            text.push_str(&format!("      estimate: ~{minutes} min\n"));
        }
        if let Some(reason) = step["status_reason"].as_str() {
            text.push_str(&format!("      why: {reason}\n"));
        }
    }
    let entries = timeline["timeline"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !entries.is_empty() {
        text.push_str("\ntimeline:\n");
    }
    let column = |entry: &Value| {
        (
            entry["at"].as_str().unwrap_or_default().to_string(),
            actor_name(&entry["actor"]),
            entry["step_key"].as_str().unwrap_or("(task)").to_string(),
        )
    };
    let columns: Vec<_> = entries.iter().map(column).collect();
    let at_width = columns.iter().map(|(at, _, _)| at.chars().count()).max();
    let actor_width = columns
        .iter()
        .map(|(_, actor, _)| actor.chars().count())
        .max();
    let step_width = columns
        .iter()
        .map(|(_, _, step)| step.chars().count())
        .max();
    for (entry, (at, actor, step)) in entries.iter().zip(&columns) {
        let from = entry["from"]
            .as_str()
            .map(|from| format!("{from} → "))
            .unwrap_or_else(|| "→ ".to_string());
        let mut line = format!(
            "  {at:<at_width$}  {actor:<actor_width$}  {step:<step_width$}  {from}{}",
            entry["to"].as_str().unwrap_or_default(),
            at_width = at_width.unwrap_or_default(),
            actor_width = actor_width.unwrap_or_default(),
            step_width = step_width.unwrap_or_default(),
        );
        if let Some(attempt) = entry["attempt"].as_i64() {
            line.push_str(&format!("  attempt {attempt}"));
        }
        if let Some(reason) = entry["reason"].as_str() {
            line.push_str(&format!("  {reason}"));
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// "failed: step `draft` failed: … (min-laptop, 2026-12-02T16:00:00Z)".
fn describe_outcome(outcome: &Value) -> String {
    let status = outcome["status"].as_str().unwrap_or_default();
    let mut text = status.to_string();
    match (outcome["step_key"].as_str(), outcome["reason"].as_str()) {
        (Some(key), Some(reason)) => text.push_str(&format!(": step `{key}` {status}: {reason}")),
        (Some(key), None) => text.push_str(&format!(": step `{key}` {status}")),
        (None, Some(reason)) => text.push_str(&format!(": {reason}")),
        (None, None) => {}
    }
    let mut details = Vec::new();
    if outcome["by"].is_object() {
        details.push(format!("by {}", actor_name(&outcome["by"])));
    }
    if let Some(at) = outcome["at"].as_str() {
        details.push(at.to_string());
    }
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(", ")));
    }
    text
}

/// An actor's name, else its id, else its kind (`hub`).
fn actor_name(actor: &Value) -> String {
    actor["name"]
        .as_str()
        .or_else(|| actor["id"].as_str())
        .or_else(|| actor["kind"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Uploads one attachment, with a progress bar when stderr is a terminal.
async fn upload(hub: &HubClient, path: &Path) -> Result<UploadedFile> {
    let size = std::fs::metadata(path)
        .map_err(|err| Error::config(format!("cannot read {}: {err}", path.display())))?
        .len();
    let bar = progress::transfer(size, format!("uploading {}", path.display()));
    let sent = bar.clone();
    let uploaded = hub
        .upload(path, move |bytes| sent.set_position(bytes))
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
