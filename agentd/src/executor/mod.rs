//! Executors: how a claimed step is carried out on this machine. The step names one
//! (`claude`, `claude-code`, `shell`, `manual`, `external`); the configuration gives the default.

pub mod claude;
pub mod claude_code;
pub mod env;
pub mod external;
pub mod files;
pub mod full_text;
pub mod manual;
pub mod process;
pub mod shell;
pub mod tools;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agenthub_protocol::{
    ClientFrame, InputAnswer, LogStream, OkReply, SelfCheck, StepBlock, StepInfo, StepLog, Usage,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::credentials::{Credentials, Secret, SecretName};
use crate::executor::env::ChildEnv;
use crate::hub::HubClient;

/// What a step produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: Value,
    pub summary: Option<String>,
    /// Ids of uploaded files referenced by the submit.
    pub files: Vec<String>,
    pub usage: Option<Usage>,
    /// Files in the work dir the executor produced (the claude tools' written files),
    /// uploaded before the submit and added to `files`.
    pub outputs: Vec<PathBuf>,
}

/// Why a step could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl Failure {
    /// A failure another attempt will not fix.
    pub fn fatal(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retryable: false,
        }
    }

    /// A failure another attempt may fix.
    pub fn retryable(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retryable: true,
        }
    }
}

/// The answer to a request a worker sent through the session.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(OkReply),
    Error { code: String, message: String },
}

/// What workers hand to the connection.
#[derive(Debug)]
pub enum Outbound {
    /// A request frame (its `id` is set by the session). The reply goes to `reply`; the
    /// sender is dropped when the session ends first.
    Request {
        frame: ClientFrame,
        reply: Option<oneshot::Sender<Reply>>,
    },
    /// A result was written to the journal: send it.
    Journaled,
}

/// A step's link to the connection and its human.
#[derive(Debug)]
pub struct StepCtx {
    pub step: StepInfo,
    pub attempt: u32,
    pub work_dir: PathBuf,
    outbound: mpsc::Sender<Outbound>,
    answers: mpsc::Receiver<String>,
    blocked: Arc<AtomicBool>,
    stop: CancellationToken,
    /// How long a stopped step's processes get between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The executor's check of its result, sent with the submit.
    check: Arc<Mutex<Option<SelfCheck>>>,
}

impl StepCtx {
    /// A context for one claimed attempt.
    pub fn new(
        step: StepInfo,
        attempt: u32,
        work_dir: PathBuf,
        outbound: mpsc::Sender<Outbound>,
        answers: mpsc::Receiver<String>,
        blocked: Arc<AtomicBool>,
    ) -> StepCtx {
        StepCtx {
            step,
            attempt,
            work_dir,
            outbound,
            answers,
            blocked,
            stop: CancellationToken::new(),
            grace: Duration::from_secs(10),
            check: Arc::default(),
        }
    }

    /// Records the check of the result, sent with the submit.
    pub fn set_check(&self, check: SelfCheck) {
        *self.check.lock().expect("check lock") = Some(check);
    }

    /// Where [`StepCtx::set_check`] puts the check, read after the executor ends.
    pub fn check_slot(&self) -> Arc<Mutex<Option<SelfCheck>>> {
        self.check.clone()
    }

    /// Stops the step when `stop` is cancelled, giving its processes `grace` between
    /// SIGTERM and SIGKILL.
    pub fn with_stop(mut self, stop: CancellationToken, grace: Duration) -> StepCtx {
        self.stop = stop;
        self.grace = grace;
        self
    }

    /// Resolves when the step is to stop (revoked, cancelled, out of time): the executor
    /// then stops its processes (see [`process::Group::stop`]) and returns.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// Whether the step is to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The step's id.
    pub fn step_id(&self) -> Uuid {
        self.step.step_id
    }

    /// Sends a log line to the hub (best effort: dropped when disconnected for long).
    pub async fn log(&self, stream: LogStream, text: impl Into<String>) {
        let frame = ClientFrame::StepLog(StepLog {
            id: 0,
            step_id: self.step.step_id,
            attempt: self.attempt,
            stream,
            text: text.into(),
        });
        if self
            .outbound
            .try_send(Outbound::Request { frame, reply: None })
            .is_err()
        {
            tracing::debug!(step.id = %self.step.step_id, "log line dropped: the send queue is full");
        }
    }

    /// Asks this agent's human a question through the hub (the step is `blocked`
    /// meanwhile) and waits up to `timeout` for the answer. On timeout the question is
    /// answered with `timeout_answer` so the step runs again, and `None` is returned.
    pub async fn ask(
        &mut self,
        question: &str,
        options: &[&str],
        timeout: Duration,
        timeout_answer: &str,
    ) -> Result<Option<String>, Failure> {
        while self.answers.try_recv().is_ok() {}
        let frame = ClientFrame::StepBlock(StepBlock {
            id: 0,
            step_id: self.step.step_id,
            attempt: self.attempt,
            question: question.to_string(),
            options: options.iter().map(|option| option.to_string()).collect(),
        });
        self.blocked.store(true, Ordering::SeqCst);
        let created = match self.request(frame).await {
            Some(Reply::Ok(ok)) => ok.created_id,
            Some(Reply::Error { code, message }) => {
                self.blocked.store(false, Ordering::SeqCst);
                return Err(Failure::retryable(format!(
                    "the hub refused to record the question ({code}: {message})"
                )));
            }
            None => {
                self.blocked.store(false, Ordering::SeqCst);
                return Err(Failure::retryable(
                    "the connection to the hub ended while asking the human",
                ));
            }
        };
        let answer = tokio::time::timeout(timeout, self.answers.recv()).await;
        let answer = match answer {
            Ok(Some(answer)) => Some(answer),
            Ok(None) => None,
            Err(_) => {
                if let Some(input_request_id) = created {
                    let frame = ClientFrame::InputAnswer(InputAnswer {
                        id: 0,
                        input_request_id,
                        answer: timeout_answer.to_string(),
                    });
                    let _answered = self.request(frame).await;
                    // The hub sends `input.answered` for our own answer too.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), self.answers.recv()).await;
                }
                None
            }
        };
        self.blocked.store(false, Ordering::SeqCst);
        Ok(answer)
    }

    async fn request(&self, frame: ClientFrame) -> Option<Reply> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.outbound
            .send(Outbound::Request {
                frame,
                reply: Some(reply_tx),
            })
            .await
            .ok()?;
        reply_rx.await.ok()
    }
}

/// A result handed in by `agentd done`.
#[derive(Debug, Clone)]
pub struct ManualResult {
    pub result: Value,
    pub summary: Option<String>,
}

/// The executors agentd has, by the name a step or `default_executor` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Claude,
    ClaudeCode,
    Shell,
    Manual,
    External,
}

impl Kind {
    /// The names agentd knows, for messages.
    pub const NAMES: &'static str = "claude, claude-code, shell, manual or external";

    /// The executor called `name`, if agentd has it.
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "claude" => Some(Kind::Claude),
            "claude-code" => Some(Kind::ClaudeCode),
            "shell" => Some(Kind::Shell),
            "manual" => Some(Kind::Manual),
            "external" => Some(Kind::External),
            _ => None,
        }
    }

    /// The executor's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Claude => "claude",
            Kind::ClaudeCode => "claude-code",
            Kind::Shell => "shell",
            Kind::Manual => "manual",
            Kind::External => "external",
        }
    }
}

/// Why a step runs with the executor it runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The step names it.
    Step,
    /// The step names none and a Claude key is available.
    ClaudeKey,
    /// The step names none, no Claude key is available, and `default_executor` is set.
    Config,
    /// The step names none, no Claude key is available, nothing is configured.
    Fallback,
}

/// The executor chosen for a step: its name (as the step or the configuration spells
/// it) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<'a> {
    pub name: &'a str,
    pub source: Source,
}

/// The Claude key: the one found at start, or one stored later (`agentd key set` while
/// the daemon runs), looked for again before each step while none is known.
#[derive(Debug, Clone, Default)]
pub struct ClaudeKey {
    known: Arc<Mutex<Option<Secret>>>,
    stores: Option<Credentials>,
}

impl ClaudeKey {
    /// `known` (found at start); `stores` are searched again while it is `None`.
    pub fn new(known: Option<Secret>, stores: Option<Credentials>) -> ClaudeKey {
        ClaudeKey {
            known: Arc::new(Mutex::new(known)),
            stores,
        }
    }

    /// The key, if one is known.
    pub fn get(&self) -> Option<Secret> {
        self.known.lock().expect("claude key lock").clone()
    }

    /// Looks in the secret stores again when no key is known yet.
    pub async fn refresh(&self) {
        if self.get().is_some() {
            return;
        }
        let Some(stores) = self.stores.clone() else {
            return;
        };
        let found = tokio::task::spawn_blocking(move || stores.get(SecretName::ClaudeKey)).await;
        match found {
            Ok(Ok(Some((key, location)))) => {
                tracing::info!(%location, "a Claude API key is now available");
                *self.known.lock().expect("claude key lock") = Some(key);
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "cannot look for a Claude API key"),
            Err(err) => tracing::debug!(error = %err, "the Claude API key lookup stopped"),
        }
    }
}

/// The executors with their settings.
#[derive(Debug, Clone)]
pub struct Executors {
    pub config: Arc<Config>,
    /// The configuration file, named in messages that say what to set.
    pub config_file: PathBuf,
    pub claude_key: ClaudeKey,
    pub manual: manual::Waiters,
    /// The hub's REST API, to fetch what a `step.ready` carries cut short.
    pub hub: Option<full_text::HubAccess>,
}

impl Executors {
    /// Which executor runs `step`: the one it names; else `claude` when a Claude key is
    /// available; else `default_executor` from the configuration; else `claude` (which
    /// then fails, saying how to set a key).
    pub fn choose<'a>(&'a self, step: &'a StepInfo) -> Choice<'a> {
        match step.executor.as_deref() {
            Some(name) => Choice {
                name,
                source: Source::Step,
            },
            None => self.for_unnamed(),
        }
    }

    /// The executor of a step that names none.
    pub fn for_unnamed(&self) -> Choice<'_> {
        if self.claude_key.get().is_some() {
            return Choice {
                name: Kind::Claude.name(),
                source: Source::ClaudeKey,
            };
        }
        match self.config.default_executor.as_deref() {
            Some(name) => Choice {
                name,
                source: Source::Config,
            },
            None => Choice {
                name: Kind::Claude.name(),
                source: Source::Fallback,
            },
        }
    }

    /// Whether `step` can run on this machine: its executor exists and has what it
    /// needs. The failure says exactly what to set, and is not retryable here.
    pub fn check(&self, step: &StepInfo) -> Result<Kind, Failure> {
        let choice = self.choose(step);
        let Some(kind) = Kind::parse(choice.name) else {
            return Err(Failure::fatal(format!(
                "this step names the executor `{}`, which agentd does not have; name one of {}",
                choice.name,
                Kind::NAMES
            )));
        };
        let runs_with = self.runs_with(kind, choice.source);
        match kind {
            Kind::Claude if self.claude_key.get().is_none() => Err(Failure::fatal(format!(
                "{runs_with}, which needs a Claude API key: run `agentd key set` or set ANTHROPIC_API_KEY{}",
                match choice.source {
                    Source::Fallback => format!(
                        " (or set default_executor in {})",
                        self.config_file.display()
                    ),
                    _ => String::new(),
                }
            ))),
            Kind::Shell if shell::command_of(step).is_none() => Err(Failure::fatal(format!(
                "{runs_with}, which needs `input.command` (a string, e.g. {{\"command\": \"make test\"}}){}",
                match choice.source {
                    Source::Step => String::new(),
                    _ => " or name another executor on the step, or run `agentd key set` (or set ANTHROPIC_API_KEY) so that steps naming no executor run with claude".to_string(),
                }
            ))),
            Kind::External if self.config.external.program.is_none() => {
                Err(Failure::fatal(format!(
                    "{runs_with}, which needs a program: set `program` under [external] in {}",
                    self.config_file.display()
                )))
            }
            _ => Ok(kind),
        }
    }

    /// "this step runs with the `x` executor", and why when the step does not name it.
    fn runs_with(&self, kind: Kind, source: Source) -> String {
        let name = kind.name();
        match source {
            Source::Step | Source::ClaudeKey => {
                format!("this step runs with the `{name}` executor")
            }
            Source::Config => format!(
                "this step names no executor, so it runs with the `{name}` executor (default_executor in {})",
                self.config_file.display()
            ),
            Source::Fallback => {
                format!("this step names no executor, so it runs with the `{name}` executor")
            }
        }
    }

    /// Carries out one step.
    pub async fn execute(&self, ctx: &mut StepCtx) -> Result<Outcome, Failure> {
        self.claude_key.refresh().await;
        let kind = self.check(&ctx.step)?;
        let outputs = match kind {
            Kind::Shell | Kind::ClaudeCode => files::declared_outputs(&ctx.step)?,
            _ => Vec::new(),
        };
        self.complete(&mut ctx.step).await?;
        if files::has_inputs(&ctx.step) {
            let hub = self.rest().await?;
            files::download_inputs(ctx, hub, self.config.max_input_bytes).await?;
        }
        let env = self.child_env(ctx)?;
        let mut outcome = match kind {
            Kind::Shell => shell::execute(ctx, env).await,
            Kind::Claude => {
                let key = self.claude_key.get().expect("checked: a key is known");
                claude::execute(ctx, &self.config.claude, &key, &env).await
            }
            Kind::ClaudeCode => {
                let key = self.claude_key.get();
                claude_code::execute(ctx, &self.config.claude_code, env, key.as_ref()).await
            }
            Kind::Manual => manual::execute(ctx, &self.manual).await,
            Kind::External => external::execute(ctx, &self.config.external, env).await,
        }?;
        let mut produced = std::mem::take(&mut outcome.outputs);
        if !outputs.is_empty() {
            produced.extend(files::matching_files(&ctx.work_dir, &outputs)?);
        }
        let mut seen = std::collections::HashSet::new();
        produced.retain(|path| seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone())));
        if produced.is_empty() {
            return Ok(outcome);
        }
        let hub = self.rest().await?;
        let pending = files::PendingUploads::new(ctx, outcome, produced);
        files::upload(ctx, hub, pending).await
    }

    /// Finishes the uploads of a run that a crash interrupted (see
    /// [`files::PendingUploads`]); the step is not run again.
    pub async fn resume_uploads(
        &self,
        ctx: &mut StepCtx,
        pending: files::PendingUploads,
    ) -> Result<Outcome, Failure> {
        let left = pending
            .uploads
            .iter()
            .filter(|upload| upload.file_id.is_none())
            .count();
        ctx.log(
            LogStream::Info,
            format!(
                "agentd restarted mid-upload: resuming the uploads of its outputs ({left} of {} left)\n",
                pending.uploads.len()
            ),
        )
        .await;
        let hub = self.rest().await?;
        files::upload(ctx, hub, pending).await
    }

    /// The hub's REST API.
    async fn rest(&self) -> Result<&HubClient, Failure> {
        let Some(hub) = &self.hub else {
            return Err(Failure::retryable(
                "this step needs the hub's REST API, which agentd cannot reach here",
            ));
        };
        hub.client()
            .await
            .map_err(|err| Failure::retryable(format!("cannot reach the hub's REST API: {err}")))
    }

    /// Fetches the full text of what the hub cut short in `step`.
    async fn complete(&self, step: &mut StepInfo) -> Result<(), Failure> {
        let truncated = full_text::Truncated::of(step);
        if !truncated.any() {
            return Ok(());
        }
        let client = self.rest().await?;
        full_text::complete(step, &truncated, client).await
    }

    /// The environment of the programs the step runs: the basics, `pass_env`, and the
    /// step's identity (`AGENTD_STEP_ID`, `AGENTD_TASK_ID`, `AGENTD_ATTEMPT`).
    pub fn child_env(&self, ctx: &StepCtx) -> Result<ChildEnv, Failure> {
        let mut env = ChildEnv::inherit(&self.config.pass_env);
        for (name, value) in [
            ("AGENTD_STEP_ID", ctx.step.step_id.to_string()),
            ("AGENTD_TASK_ID", ctx.step.task_id.to_string()),
            ("AGENTD_ATTEMPT", ctx.attempt.to_string()),
        ] {
            env.set(name, &value).map_err(Failure::fatal)?;
        }
        Ok(env)
    }
}

/// Keeps the last `max` bytes of a text, on a character boundary.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests;
