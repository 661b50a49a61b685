//! `agentd run`: the daemon. [`Core`] holds what outlives one connection (the position
//! in the event stream, the journal, the running steps); [`run`] connects, runs a
//! session, and reconnects with backoff until stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agenthub_protocol::{
    AvailabilityRequested, ClientFrame, PlanRequested, StepInfo, StepProgress,
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::connection::session::{self, SessionEnd};
use crate::connection::{self, Backoff, ConnectError};
use crate::credentials::Secret;
use crate::error::{Error, Result};
use crate::executor::files::PendingUploads;
use crate::executor::{Executors, Failure, Outbound, Reply, StepCtx};
use crate::notify::{Notifier, NotifyOptions};
use crate::state::{JournalEntry, State};
use crate::tls::HubUrls;

/// How much longer than the grace period a stopping executor may take to return.
const STOP_SLACK: Duration = Duration::from_secs(2);

/// What `agentd status` shows of a running daemon.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusSnapshot {
    pub hub: String,
    pub connected: bool,
    pub agent_name: Option<String>,
    pub last_seq: u64,
    pub steps: Vec<RunningStatus>,
    pub unacknowledged_results: usize,
    pub pid: u32,
}

/// One running step in [`StatusSnapshot`].
#[derive(Debug, Clone, Serialize)]
pub struct RunningStatus {
    pub step_id: Uuid,
    pub title: String,
    pub attempt: u32,
    pub executor: String,
    pub running_secs: u64,
}

/// A step this agent holds.
#[derive(Debug)]
pub struct Running {
    pub attempt: u32,
    pub title: String,
    pub executor: String,
    pub started: Instant,
    pub cancel: CancellationToken,
    pub answers: mpsc::Sender<String>,
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub urls: HubUrls,
    pub token: Secret,
    /// TLS settings; `None` for a plain `ws://` hub, which then costs no TLS setup.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_concurrency: u32,
    pub capabilities: Vec<String>,
    pub step_timeout: Duration,
    /// Exit after one step's result is acknowledged by the hub.
    pub once: bool,
}

/// How a `--once` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceResult {
    Submitted(String),
    Failed(String),
}

/// The daemon's state across connections.
pub struct Core {
    pub hub: String,
    pub state: State,
    pub executors: Executors,
    pub max_concurrency: u32,
    pub capabilities: Vec<String>,
    pub step_timeout: Duration,
    pub last_seq: u64,
    pub lease_ms: u64,
    pub outbound_tx: mpsc::Sender<Outbound>,
    pub outbound_rx: mpsc::Receiver<Outbound>,
    pub running: HashMap<Uuid, Running>,
    pub waiting: VecDeque<StepInfo>,
    pub claiming: HashSet<Uuid>,
    /// Each worker ends with its step and attempt.
    pub workers: JoinSet<(Uuid, u32)>,
    pub once: bool,
    pub once_result: Option<OnceResult>,
    pub status: Arc<Mutex<StatusSnapshot>>,
    pub notifier: Notifier,
}

impl Core {
    /// A core for `hub`, resuming from the stored position.
    pub fn new(
        hub: &str,
        state: State,
        executors: Executors,
        max_concurrency: u32,
        capabilities: Vec<String>,
        step_timeout: Duration,
        once: bool,
    ) -> Result<Core> {
        let last_seq = state.position(hub)?;
        let (outbound_tx, outbound_rx) = mpsc::channel(256);
        let status = StatusSnapshot {
            hub: hub.to_string(),
            last_seq,
            pid: std::process::id(),
            ..StatusSnapshot::default()
        };
        Ok(Core {
            hub: hub.to_string(),
            state,
            executors,
            max_concurrency,
            capabilities,
            step_timeout,
            last_seq,
            lease_ms: 60_000,
            outbound_tx,
            outbound_rx,
            running: HashMap::new(),
            waiting: VecDeque::new(),
            claiming: HashSet::new(),
            workers: JoinSet::new(),
            once,
            once_result: None,
            status: Arc::new(Mutex::new(status)),
            notifier: Notifier::disabled(),
        })
    }

    /// Turns desktop notifications on; clicks are sent through this core's connection.
    pub fn start_notifier(&mut self, options: NotifyOptions) {
        self.notifier = Notifier::start(options, self.outbound_tx.clone());
    }

    /// Records the processed position.
    pub fn set_last_seq(&mut self, seq: u64) -> Result<()> {
        self.last_seq = seq;
        self.state.set_position(&self.hub, seq)
    }

    /// Starts a worker for a claimed attempt.
    pub fn start_step(&mut self, step: StepInfo, attempt: u32) {
        self.start_worker(step, attempt, None);
    }

    /// Resumes the uploads a crash interrupted (records left in the work dirs): each
    /// becomes a worker holding its attempt again, which finishes the uploads and
    /// submits, or stops when the hub says the step is no longer this agent's. A record
    /// whose result is already journaled is removed.
    pub fn resume_uploads(&mut self) {
        let journaled: HashSet<(Uuid, u32)> = self
            .state
            .journal()
            .unwrap_or_default()
            .iter()
            .map(|entry| (entry.step_id(), entry.attempt()))
            .collect();
        for pending in PendingUploads::left_in(self.state.work_root()) {
            let step_id = pending.step.step_id;
            if journaled.contains(&(step_id, pending.attempt)) {
                if let Ok(dir) = self.state.work_dir(step_id) {
                    PendingUploads::remove(&dir, pending.attempt);
                }
                continue;
            }
            tracing::info!(step.id = %step_id, attempt = pending.attempt, "resuming the uploads of a step's outputs");
            self.start_worker(pending.step.clone(), pending.attempt, Some(pending));
        }
    }

    fn start_worker(&mut self, step: StepInfo, attempt: u32, resume: Option<PendingUploads>) {
        let step_id = step.step_id;
        let work_dir = match self.state.work_dir(step_id) {
            Ok(dir) => dir,
            Err(err) => {
                tracing::error!(step.id = %step_id, error = %err, "cannot create the step's work dir");
                let entry = JournalEntry::Fail {
                    step_id,
                    attempt,
                    reason: format!("agentd cannot create the work dir: {err}"),
                    retryable: true,
                };
                let _ = self.state.journal_add(&entry);
                let _ = self.outbound_tx.try_send(Outbound::Journaled);
                return;
            }
        };
        let (answers_tx, answers_rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let blocked = Arc::new(AtomicBool::new(false));
        let executor = self.executors.choose(&step).name.to_string();
        tracing::info!(step.id = %step_id, attempt, executor, title = %step.title, "step claimed; executing");
        self.notifier.step_taken(&step);
        self.running.insert(
            step_id,
            Running {
                attempt,
                title: step.title.clone(),
                executor,
                started: Instant::now(),
                cancel: cancel.clone(),
                answers: answers_tx,
            },
        );
        let stop = cancel.child_token();
        let ctx = StepCtx::new(
            step,
            attempt,
            work_dir,
            self.outbound_tx.clone(),
            answers_rx,
            blocked.clone(),
        )
        .with_stop(
            stop.clone(),
            Duration::from_secs(self.executors.config.cancel_grace_secs),
        );
        let worker = Worker {
            executors: self.executors.clone(),
            state: self.state.clone(),
            outbound: self.outbound_tx.clone(),
            cancel,
            stop,
            blocked,
            lease_ms: self.lease_ms,
            timeout: self.step_timeout,
        };
        self.workers.spawn(async move {
            worker.run(ctx, resume).await;
            (step_id, attempt)
        });
        self.publish_status();
    }

    /// Plans a task its creator asked this agent to plan, with this machine's Claude key,
    /// in a worker of its own (it ends as `(plan id, 0)`).
    pub fn start_planner(&mut self, request: PlanRequested) {
        let plan_id = request.plan_id;
        let executors = self.executors.clone();
        let outbound = self.outbound_tx.clone();
        tracing::info!(plan.id = %plan_id, round = request.round, task = %request.task.title, "asked to plan a task");
        self.workers.spawn(async move {
            executors.claude_key.refresh().await;
            let Some(key) = executors.claude_key.get() else {
                tracing::error!(plan.id = %plan_id, "cannot plan the task: no Claude API key; run `agentd key set`, then ask for the plan again");
                return (plan_id, 0);
            };
            let planned = crate::intel::plan(
                request,
                &executors.config.claude,
                &key,
                executors.hub.as_ref(),
                &outbound,
            )
            .await;
            match planned {
                crate::intel::Planned::Proposed { submits } => {
                    tracing::info!(plan.id = %plan_id, submits, "plan proposed; it waits for the task's creator");
                }
                crate::intel::Planned::GaveUp(reason) => {
                    tracing::error!(plan.id = %plan_id, reason, "no plan proposed");
                }
            }
            (plan_id, 0)
        });
    }

    /// A meeting asks when this agent's person is free: with `[calendar]` configured the
    /// answer is read from it, in a worker of its own (it ends as `(request id, 0)`);
    /// otherwise the person answers in the hub's inbox.
    pub fn answer_availability(&mut self, request: AvailabilityRequested) {
        let request_id = request.request_id;
        let calendar = self.executors.config.calendar.clone();
        match (&request.window, calendar) {
            (Some(_), Some(calendar)) => {
                let outbound = self.outbound_tx.clone();
                self.workers.spawn(async move {
                    crate::calendar::answer(calendar, request, outbound).await;
                    (request_id, 0)
                });
            }
            _ => {
                tracing::info!(
                    %request_id,
                    "asked: {}; answer in the hub's inbox (no [calendar] configured)",
                    request.question
                );
            }
        }
    }

    /// Updates what `agentd status` shows.
    pub fn publish_status(&self) {
        let journal = self
            .state
            .journal()
            .map(|entries| entries.len())
            .unwrap_or(0);
        let mut status = self.status.lock().expect("status lock");
        status.last_seq = self.last_seq;
        status.unacknowledged_results = journal;
        status.steps = self
            .running
            .iter()
            .map(|(step_id, running)| RunningStatus {
                step_id: *step_id,
                title: running.title.clone(),
                attempt: running.attempt,
                executor: running.executor.clone(),
                running_secs: running.started.elapsed().as_secs(),
            })
            .collect();
    }

    /// Marks the connection up or down.
    pub fn set_connected(&self, connected: bool, agent_name: Option<&str>) {
        let mut status = self.status.lock().expect("status lock");
        status.connected = connected;
        if let Some(name) = agent_name {
            status.agent_name = Some(name.to_string());
        }
    }
}

/// One attempt being executed, with its lease renewal.
struct Worker {
    executors: Executors,
    state: State,
    outbound: mpsc::Sender<Outbound>,
    /// Revoked: the step is stopped and nothing is reported.
    cancel: CancellationToken,
    /// Stops the executor (a child of `cancel`; also cancelled when out of time).
    stop: CancellationToken,
    blocked: Arc<AtomicBool>,
    lease_ms: u64,
    timeout: Duration,
}

impl Worker {
    /// Executes the step, or with `resume` only finishes its uploads.
    async fn run(self, mut ctx: StepCtx, resume: Option<PendingUploads>) {
        let step_id = ctx.step_id();
        let attempt = ctx.attempt;
        let work_dir = ctx.work_dir.clone();
        self.run_attempt(&mut ctx, resume).await;
        // The result is journaled, or the attempt is over: nothing is left to resume.
        PendingUploads::remove(&work_dir, attempt);
        tracing::debug!(step.id = %step_id, attempt, "worker done");
    }

    async fn run_attempt(&self, ctx: &mut StepCtx, resume: Option<PendingUploads>) {
        let step_id = ctx.step_id();
        let attempt = ctx.attempt;
        let renew_every = Duration::from_millis((self.lease_ms / 3).max(100));
        let mut ticker = tokio::time::interval(renew_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress_reply: Option<oneshot::Receiver<Reply>> = None;
        let timeout = self.timeout;
        let grace = ctx.grace;
        let executors = self.executors.clone();
        let check = ctx.check_slot();
        let execution: std::pin::Pin<
            Box<dyn std::future::Future<Output = std::result::Result<_, Failure>> + Send + '_>,
        > = match resume {
            Some(pending) => Box::pin(executors.resume_uploads(ctx, pending)),
            None => Box::pin(executors.execute(ctx)),
        };
        tokio::pin!(execution);
        let out_of_time = tokio::time::sleep(timeout);
        tokio::pin!(out_of_time);
        let outcome = loop {
            tokio::select! {
                outcome = &mut execution => break Ok(outcome),
                () = self.cancel.cancelled() => {
                    tracing::info!(step.id = %step_id, attempt, grace_ms = grace.as_millis() as u64, "step revoked; stopping it");
                    // The executor stops its processes (SIGTERM, SIGKILL after the grace
                    // period) and sends what they still print; dropping it kills what is left.
                    let _ = tokio::time::timeout(grace + STOP_SLACK, &mut execution).await;
                    tracing::info!(step.id = %step_id, attempt, "step stopped");
                    return;
                }
                () = &mut out_of_time => {
                    tracing::warn!(step.id = %step_id, attempt, "step out of time; stopping it");
                    self.stop.cancel();
                    let _ = tokio::time::timeout(grace + STOP_SLACK, &mut execution).await;
                    break Err(());
                }
                _ = ticker.tick() => {
                    if self.blocked.load(Ordering::SeqCst) || progress_reply.is_some() {
                        continue;
                    }
                    let (reply_tx, reply_rx) = oneshot::channel();
                    let frame = ClientFrame::StepProgress(StepProgress {
                        id: 0,
                        step_id,
                        attempt,
                        message: None,
                        percent: None,
                    });
                    if self.outbound.try_send(Outbound::Request { frame, reply: Some(reply_tx) }).is_ok() {
                        progress_reply = Some(reply_rx);
                    }
                }
                reply = async { progress_reply.as_mut().expect("guarded").await }, if progress_reply.is_some() => {
                    progress_reply = None;
                    if let Ok(Reply::Error { code, message }) = reply
                        && matches!(code.as_str(), "conflict" | "not_found" | "forbidden")
                        && !self.blocked.load(Ordering::SeqCst)
                    {
                        tracing::warn!(step.id = %step_id, attempt, code, message, "the hub no longer gives this step to us; stopped");
                        return;
                    }
                }
            }
        };
        let entry = match outcome {
            Ok(Ok(outcome)) => {
                tracing::info!(step.id = %step_id, attempt, "step finished; submitting");
                JournalEntry::Submit {
                    step_id,
                    attempt,
                    result: outcome.result,
                    summary: outcome.summary,
                    files: outcome.files,
                    usage: outcome.usage,
                    check: check.lock().expect("check lock").take(),
                }
            }
            Ok(Err(Failure { reason, retryable })) => {
                tracing::warn!(step.id = %step_id, attempt, reason, "step failed");
                JournalEntry::Fail {
                    step_id,
                    attempt,
                    reason,
                    retryable,
                }
            }
            Err(_) => {
                let reason = format!(
                    "the step exceeded its time budget of {} s",
                    timeout.as_secs()
                );
                tracing::warn!(step.id = %step_id, attempt, reason, "step failed");
                JournalEntry::Fail {
                    step_id,
                    attempt,
                    reason,
                    retryable: false,
                }
            }
        };
        if self.cancel.is_cancelled() {
            return;
        }
        if let Err(err) = self.state.journal_add(&entry) {
            tracing::error!(step.id = %step_id, error = %err, "cannot journal the step's result");
        }
        if self.outbound.send(Outbound::Journaled).await.is_err() {
            tracing::debug!(step.id = %step_id, "the daemon stopped before the result was sent");
        }
    }
}

/// Runs the daemon until `shutdown`, a fatal error, or (with `once`) one result.
pub async fn run(
    options: RunOptions,
    mut core: Core,
    shutdown: CancellationToken,
) -> Result<Option<OnceResult>> {
    let mut backoff = Backoff::default();
    let hub = options.urls.display();
    loop {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let started = Instant::now();
        let delay = match connection::connect(&options.urls, &options.token, options.tls.clone())
            .await
        {
            Ok((socket, codec)) => {
                tracing::info!(hub = %hub, "connected");
                let (mut sink, mut stream) = socket.split();
                let end =
                    session::run_session(&mut sink, &mut stream, codec, &mut core, &shutdown).await;
                core.set_connected(false, None);
                if started.elapsed() >= Duration::from_secs(60) {
                    backoff.reset();
                }
                match end {
                    SessionEnd::Shutdown => return Ok(None),
                    SessionEnd::Once => return Ok(core.once_result.take()),
                    SessionEnd::Unauthorized(detail) => {
                        return Err(Error::Unauthorized { hub, detail });
                    }
                    SessionEnd::Superseded => return Err(Error::Superseded),
                    SessionEnd::Reconnect { reason, soon } => {
                        let delay = if soon {
                            connection::random_up_to(Duration::from_secs(5))
                        } else {
                            backoff.next_delay()
                        };
                        tracing::warn!(
                            reason,
                            delay_ms = delay.as_millis() as u64,
                            "disconnected from the hub; reconnecting"
                        );
                        delay
                    }
                }
            }
            Err(ConnectError::Unauthorized(detail)) => {
                return Err(Error::Unauthorized { hub, detail });
            }
            Err(ConnectError::Refused(detail)) => {
                return Err(Error::other(format!(
                    "the hub at {hub} refused the connection ({detail}); is this an AgentHub hub of a compatible version?"
                )));
            }
            Err(ConnectError::Transient(detail)) => {
                let delay = backoff.next_delay();
                tracing::warn!(hub = %hub, error = %detail, delay_ms = delay.as_millis() as u64, "cannot reach the hub; retrying");
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}
