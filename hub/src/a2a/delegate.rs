//! Steps delegated to outside A2A agents (`"executor": "a2a"`): the hub runs them
//! itself, one worker per hub process, woken by the bus and by a timer.
//!
//! **One hub per step.** A ready `a2a` step is never pushed to agents; a worker claims
//! it on behalf of its first assignee ([`tasks::claim_for_hub`]), so of hubs racing for
//! it exactly one wins, and records the call (`a2a_calls`, one row per attempt) before
//! anything is sent. A hub follows a call only while it holds the row (`follower`,
//! `follow_until`), taken and renewed by one conditional update; a hub that stops gives
//! it up, one that dies leaves it to expire, and the next hub goes on from what the row
//! holds: the remote task id, the open question, the last status answered.
//!
//! **Following.** The worker fetches the Agent Card, sends the step (title, description,
//! `input.text`, the rest of the input as data) with `SendMessage`, and polls `GetTask`
//! with backoff, renewing the step's lease while the remote works. `input-required` asks
//! the assignee's member the remote's question ([`approvals::ask`]); the answer goes
//! back as a follow-up message. A remote that goes on without the answer (working or
//! completed while the question waits) has its question withdrawn
//! ([`approvals::withdraw_question`]): the step runs again and the question leaves the
//! member's inbox. `completed` submits the artifacts as the step's result
//! (the approval level then applies as for any step); `failed`, `rejected`, `canceled`,
//! an unreachable card or endpoint and bad answers fail the attempt with the reason
//! (retried per `max_attempts`). A step cancelled, requeued or paused while its remote
//! task runs gets `CancelTask` sent to the remote.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::a2a::client::Caller;
use crate::a2a::model::{self, CallChange, CallRow};
use crate::a2a::{EXECUTOR, PROTOCOL_VERSION};
use crate::accounts::AgentActor;
use crate::approvals;
use crate::content::MAX_TEXT_BYTES;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::store::now_ms;
use crate::tasks::{self, StepStatus, Submitted, step_status};
use crate::worker::{self, LeasedWork};

/// Steps one hub follows at once.
const MAX_CONCURRENT: usize = 64;
/// Ready steps looked at per scan.
const SCAN: i64 = 32;
/// The summary of a result: the first bytes of the remote's words.
const SUMMARY_BYTES: usize = 500;

/// Runs the A2A worker of this hub until `shutdown`: then it stops and gives up the
/// calls it follows, so another hub goes on with them at once.
pub async fn run_worker(ctx: Ctx, shutdown: CancellationToken) {
    let steps = DelegatedSteps {
        caller: Arc::default(),
    };
    worker::run_leased(ctx, steps, shutdown).await;
}

/// The A2A worker's work: the calls of delegated steps, each followed by a [`Follower`].
struct DelegatedSteps {
    caller: Arc<Caller>,
}

impl LeasedWork for DelegatedSteps {
    type Item = (CallRow, AgentActor);
    type Key = (String, i32);
    const WHAT: &'static str = "A2A steps";
    const MAX_CONCURRENT: usize = MAX_CONCURRENT;

    fn poll_ms(ctx: &Ctx) -> u64 {
        ctx.settings.a2a.poll_ms
    }

    fn key((call, _): &(CallRow, AgentActor)) -> (String, i32) {
        (call.step_id.clone(), call.attempt)
    }

    async fn candidates(&self, ctx: &Ctx, owner: &str) -> Result<Vec<(CallRow, AgentActor)>> {
        take_calls(ctx, owner).await
    }

    fn run(
        &self,
        ctx: Ctx,
        owner: String,
        (call, agent): (CallRow, AgentActor),
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let follower = Follower {
            ctx,
            caller: Arc::clone(&self.caller),
            owner,
            call,
            agent,
        };
        follower.run(shutdown)
    }
}

/// Claims the ready `a2a` steps (recording a call for each) and takes the calls nobody
/// follows; each with the assignee it runs for.
async fn take_calls(ctx: &Ctx, owner: &str) -> Result<Vec<(CallRow, AgentActor)>> {
    let mut taken = Vec::new();
    let ready = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::ready_a2a_steps(db, SCAN).await?))
        .await?;
    for step in ready {
        let Some(agent) = assignee(ctx, &step.workspace_id, &step.id).await? else {
            continue;
        };
        // A conflict: another hub claimed it first, or the step moved on.
        if tasks::claim_for_hub(ctx, &agent, &step.id, step.attempt as u32)
            .await
            .is_err()
        {
            continue;
        }
        let card_url = step_input(&step.input)
            .get("agent_card_url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let now = now_ms();
        let row = CallRow {
            step_id: step.id.clone(),
            attempt: step.attempt,
            workspace_id: step.workspace_id.clone(),
            agent_id: agent.agent_id.clone(),
            agent_card_url: card_url,
            endpoint: None,
            remote_task_id: None,
            input_request_id: None,
            answered_status: None,
            follower: Some(owner.to_string()),
            follow_until: now + follow_ms(ctx),
            created_at: now,
            finished_at: None,
        };
        ctx.store
            .transaction(async |db| Ok::<_, Error>(model::insert_call(db, &row).await?))
            .await?;
        tracing::info!(step.id = %step.id, agent.id = %agent.agent_id, "a2a step claimed");
        taken.push((row, agent));
    }
    let now = now_ms();
    let orphans = ctx
        .store
        .read(async |db| Ok::<_, Error>(model::orphaned_calls(db, now, SCAN).await?))
        .await?;
    for call in orphans {
        let until = now + follow_ms(ctx);
        let won = ctx
            .store
            .transaction(async |db| {
                Ok::<_, Error>(
                    model::follow_call(db, &call.step_id, call.attempt, owner, now, until).await?,
                )
            })
            .await?;
        if !won {
            continue;
        }
        let Some(agent) = agent_actor(ctx, &call.workspace_id, &call.agent_id).await? else {
            continue;
        };
        tracing::info!(step.id = %call.step_id, "following an A2A call another hub left");
        taken.push((call, agent));
    }
    Ok(taken)
}

/// How long a hub holds a call it follows ([`A2aClientSettings::hold_ms`]).
///
/// [`A2aClientSettings::hold_ms`]: crate::a2a::client::A2aClientSettings::hold_ms
fn follow_ms(ctx: &Ctx) -> i64 {
    ctx.settings.a2a.hold_ms() as i64
}

/// The step's first assignee as the actor the hub claims, asks and submits for.
async fn assignee(ctx: &Ctx, workspace_id: &str, step_id: &str) -> Result<Option<AgentActor>> {
    let assignees = ctx
        .store
        .read(async |db| {
            Ok::<_, Error>(
                tasks::model::assignees_of(db, std::slice::from_ref(&step_id.to_string())).await?,
            )
        })
        .await?;
    let Some((_, agent_id)) = assignees.into_iter().next() else {
        return Ok(None);
    };
    agent_actor(ctx, workspace_id, &agent_id).await
}

async fn agent_actor(ctx: &Ctx, workspace_id: &str, agent_id: &str) -> Result<Option<AgentActor>> {
    ctx.store
        .read(async |db| {
            let Some(agent) = crate::agents::model::find_agent(db, workspace_id, agent_id).await?
            else {
                return Ok::<_, Error>(None);
            };
            let member = crate::accounts::model::get_member(db, &agent.owner_member_id).await?;
            Ok(Some(AgentActor {
                workspace_id: agent.workspace_id,
                agent_id: agent.id,
                agent_name: agent.name,
                member_id: agent.owner_member_id,
                role: member.role.parse()?,
            }))
        })
        .await
}

fn step_input(input: &str) -> Map<String, Value> {
    serde_json::from_str(input).unwrap_or_default()
}

/// What one round of following found.
enum Next {
    /// Poll again after the current wait (which grows).
    Wait,
    /// Something changed: poll again soon.
    Soon,
    /// The call is over.
    Done,
}

struct Follower {
    ctx: Ctx,
    caller: Arc<Caller>,
    owner: String,
    call: CallRow,
    agent: AgentActor,
}

impl Follower {
    async fn run(mut self, shutdown: CancellationToken) {
        let settings = self.ctx.settings.a2a.clone();
        let mut wait = settings.poll_ms;
        let mut n_errors = 0;
        loop {
            let next = match self.round(&mut n_errors).await {
                Ok(next) => next,
                Err(err) => {
                    tracing::warn!(step.id = %self.call.step_id, error = %err,
                        "an A2A step could not be followed; retrying");
                    Next::Wait
                }
            };
            wait = match next {
                Next::Done => break,
                Next::Soon => settings.poll_ms,
                Next::Wait => (wait * 2).min(settings.max_poll_ms.max(settings.poll_ms)),
            };
            tokio::select! {
                () = shutdown.cancelled() => {
                    let (step_id, attempt, owner) =
                        (&self.call.step_id, self.call.attempt, &self.owner);
                    let released = self
                        .ctx
                        .store
                        .transaction(async |db| {
                            Ok::<_, Error>(model::release_call(db, step_id, attempt, owner).await?)
                        })
                        .await;
                    if let Err(err) = released {
                        tracing::warn!(step.id = %step_id, error = %err,
                            "cannot give an A2A call up; it expires");
                    }
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
    }

    /// One round: hold the call, read the step, take the next step of the exchange.
    async fn round(&mut self, n_errors: &mut u32) -> Result<Next> {
        let now = now_ms();
        let until = now + follow_ms(&self.ctx);
        let (step_id, attempt, owner) = (&self.call.step_id, self.call.attempt, &self.owner);
        let workspace_id = &self.call.workspace_id;
        let (held, step) = self
            .ctx
            .store
            .transaction(async |db| {
                let held = model::follow_call(db, step_id, attempt, owner, now, until).await?;
                let step = tasks::model::find_step(db, workspace_id, step_id).await?;
                Ok::<_, Error>((held, step))
            })
            .await?;
        if !held {
            return Ok(Next::Done);
        }
        let Some(step) = step else {
            self.finish().await?;
            return Ok(Next::Done);
        };
        let status = step_status(&step);
        if step.attempt != self.call.attempt || !(status.is_held() || status == StepStatus::Blocked)
        {
            self.abandon(status).await?;
            return Ok(Next::Done);
        }
        let settings = self.ctx.settings.a2a.clone();
        let endpoint = match self.call.endpoint.clone() {
            Some(endpoint) => endpoint,
            None => match self
                .caller
                .endpoint(&settings, &self.call.agent_card_url)
                .await
            {
                Ok(endpoint) => {
                    self.record(CallChange {
                        endpoint: Some(Some(endpoint.clone())),
                        ..CallChange::default()
                    })
                    .await?;
                    self.call.endpoint = Some(endpoint.clone());
                    endpoint
                }
                Err(reason) => return self.fail(&reason, true).await,
            },
        };
        let task = match self.call.remote_task_id.clone() {
            None => {
                let params = json!({
                    "message": first_message(&step, &self.call),
                    "configuration": {"returnImmediately": true},
                });
                let result = match self
                    .caller
                    .call(&settings, &endpoint, "SendMessage", params)
                    .await
                {
                    Ok(result) => result,
                    Err(reason) => return self.fail(&reason, true).await,
                };
                if let Some(message) = result.get("message") {
                    // A direct answer, with no task: the step's result.
                    let text = texts(message.get("parts"));
                    let result = json!({"text": text, "message": message,
                        "agent_card_url": self.call.agent_card_url});
                    return self.submit(result, &text).await;
                }
                let Some(task) = result.get("task").filter(|task| task_id(task).is_some()) else {
                    return self
                        .fail(
                            &format!(
                                "SendMessage to {endpoint} answered neither a task with an id \
                                 nor a message"
                            ),
                            true,
                        )
                        .await;
                };
                let remote_id = task_id(task).unwrap_or_default().to_string();
                self.record(CallChange {
                    remote_task_id: Some(Some(remote_id.clone())),
                    ..CallChange::default()
                })
                .await?;
                self.call.remote_task_id = Some(remote_id.clone());
                tracing::info!(step.id = %step.id, remote_task.id = %remote_id,
                    "a2a step sent");
                task.clone()
            }
            Some(remote_id) => {
                match self
                    .caller
                    .call(&settings, &endpoint, "GetTask", json!({"id": remote_id}))
                    .await
                {
                    Ok(task) => {
                        *n_errors = 0;
                        task
                    }
                    Err(reason) => {
                        *n_errors += 1;
                        if *n_errors >= settings.max_errors {
                            self.cancel_remote().await;
                            let reason = format!(
                                "lost the A2A task {remote_id} after {n_errors} failed polls: \
                                 {reason}"
                            );
                            return self.fail(&reason, true).await;
                        }
                        return Ok(Next::Wait);
                    }
                }
            }
        };
        self.on_task(&step, &endpoint, &task).await
    }

    /// Acts on the remote task's state.
    async fn on_task(&mut self, step: &tasks::Step, endpoint: &str, task: &Value) -> Result<Next> {
        let status = task.get("status").cloned().unwrap_or_default();
        let state = status
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let remote_words = texts(
            status
                .get("message")
                .and_then(|message| message.get("parts")),
        );
        let remote_id = self.call.remote_task_id.clone().unwrap_or_default();
        if matches!(
            state,
            "TASK_STATE_COMPLETED" | "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING"
        ) && !self.withdraw_question().await?
        {
            return Ok(Next::Soon);
        }
        match state {
            "TASK_STATE_COMPLETED" => {
                let artifacts = task.get("artifacts").cloned().unwrap_or(json!([]));
                let mut text: Vec<String> = artifacts
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|artifact| texts(artifact.get("parts")))
                    .filter(|text| !text.is_empty())
                    .collect();
                if text.is_empty() && !remote_words.is_empty() {
                    text.push(remote_words.clone());
                }
                let text = text.join("\n\n");
                let result = json!({
                    "text": text,
                    "artifacts": artifacts,
                    "a2a_task_id": remote_id,
                    "agent_card_url": self.call.agent_card_url,
                });
                let summary = if remote_words.is_empty() {
                    text.clone()
                } else {
                    remote_words
                };
                self.submit(result, &summary).await
            }
            "TASK_STATE_FAILED" | "TASK_STATE_REJECTED" | "TASK_STATE_CANCELED" => {
                let verb = match state {
                    "TASK_STATE_FAILED" => "failed",
                    "TASK_STATE_REJECTED" => "rejected",
                    _ => "canceled",
                };
                let reason = if remote_words.is_empty() {
                    format!("the A2A agent {verb} the task {remote_id}")
                } else {
                    format!("the A2A agent {verb} the task {remote_id}: {remote_words}")
                };
                self.fail(&reason, true).await
            }
            "TASK_STATE_AUTH_REQUIRED" => {
                self.cancel_remote().await;
                let reason = format!(
                    "the A2A agent asks for authentication on task {remote_id}, which the hub \
                     cannot give"
                );
                self.fail(&reason, false).await
            }
            "TASK_STATE_INPUT_REQUIRED" => {
                let key = status
                    .get("message")
                    .and_then(|message| message.get("messageId"))
                    .or_else(|| status.get("timestamp"))
                    .and_then(Value::as_str)
                    .unwrap_or("input-required")
                    .to_string();
                self.on_input_required(step, endpoint, task, &key, &remote_words)
                    .await
            }
            "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING" => {
                self.keep_lease(step, &remote_words).await?;
                Ok(Next::Wait)
            }
            other => {
                self.cancel_remote().await;
                let reason = format!(
                    "the A2A agent answered task {remote_id} with the unknown state `{other}`"
                );
                self.fail(&reason, true).await
            }
        }
    }

    /// The remote waits for input: ask the assignee's member once per status, and send
    /// the answer back when it comes.
    async fn on_input_required(
        &mut self,
        step: &tasks::Step,
        endpoint: &str,
        task: &Value,
        key: &str,
        question: &str,
    ) -> Result<Next> {
        if self.call.answered_status.as_deref() == Some(key) {
            // Answered; the remote has not moved on yet.
            self.keep_lease(step, "").await?;
            return Ok(Next::Wait);
        }
        let Some(request_id) = self.call.input_request_id.clone() else {
            let question = if question.is_empty() {
                "The outside A2A agent needs more input to go on."
            } else {
                question
            };
            let asked = approvals::ask(
                &self.ctx,
                &self.agent,
                &step.id,
                step.attempt as u32,
                question,
                &[],
            )
            .await;
            let request_id = match asked {
                Ok(request_id) => request_id,
                // The step moved on (cancelled meanwhile): the next round sees it.
                Err(Error::Conflict(_)) => return Ok(Next::Soon),
                Err(err) => return Err(err),
            };
            self.record(CallChange {
                input_request_id: Some(Some(request_id.clone())),
                ..CallChange::default()
            })
            .await?;
            self.call.input_request_id = Some(request_id);
            return Ok(Next::Wait);
        };
        let workspace_id = &self.call.workspace_id;
        let request = self
            .ctx
            .store
            .read(async |db| {
                Ok::<_, Error>(
                    approvals::model::find_input_request(db, workspace_id, &request_id).await?,
                )
            })
            .await?;
        let Some(answer) = request.and_then(|request| request.answer) else {
            return Ok(Next::Wait);
        };
        let remote_id = self.call.remote_task_id.clone().unwrap_or_default();
        let mut message = json!({
            "messageId": format!("{request_id}:answer"),
            "role": "ROLE_USER",
            "taskId": remote_id,
            "parts": [{"text": answer}],
        });
        if let Some(context_id) = task.get("contextId") {
            message["contextId"] = context_id.clone();
        }
        let params = json!({"message": message, "configuration": {"returnImmediately": true}});
        let settings = self.ctx.settings.a2a.clone();
        if let Err(reason) = self
            .caller
            .call(&settings, endpoint, "SendMessage", params)
            .await
        {
            return self
                .fail(&format!("cannot send the answer: {reason}"), true)
                .await;
        }
        self.record(CallChange {
            input_request_id: Some(None),
            answered_status: Some(Some(key.to_string())),
            ..CallChange::default()
        })
        .await?;
        self.call.input_request_id = None;
        self.call.answered_status = Some(key.to_string());
        Ok(Next::Soon)
    }

    /// The remote went on without the answer to its question (it works or finished): the
    /// question is withdrawn, so it leaves the member's inbox and the step runs again
    /// for the result. False when an answer or a deadline got there first: the next
    /// round sees how the step moved.
    async fn withdraw_question(&mut self) -> Result<bool> {
        let Some(request_id) = self.call.input_request_id.clone() else {
            return Ok(true);
        };
        let reason = "the A2A agent went on without an answer";
        match approvals::withdraw_question(&self.ctx, &self.agent, &request_id, reason).await {
            Ok(withdrawn) => {
                if withdrawn {
                    tracing::info!(step.id = %self.call.step_id, input_request.id = %request_id,
                        "the A2A agent went on without an answer; its question was withdrawn");
                }
            }
            Err(Error::Conflict(_)) => return Ok(false),
            Err(err) => return Err(err),
        }
        self.record(CallChange {
            input_request_id: Some(None),
            ..CallChange::default()
        })
        .await?;
        self.call.input_request_id = None;
        Ok(true)
    }

    /// Renews the step's lease (a claimed step becomes running), with the remote's last
    /// words as the progress message, once less than its floor is left (a hold and two
    /// rounds, [`A2aClientSettings::lease_floor_ms`]): the lease always outlasts this
    /// hub's hold on the call.
    ///
    /// [`A2aClientSettings::lease_floor_ms`]: crate::a2a::client::A2aClientSettings::lease_floor_ms
    async fn keep_lease(&self, step: &tasks::Step, words: &str) -> Result<()> {
        let status = step_status(step);
        let floor_ms = self.ctx.settings.a2a.lease_floor_ms() as i64;
        let renew = status == StepStatus::Claimed
            || step
                .lease_until
                .is_some_and(|until| until - now_ms() < floor_ms);
        if !status.is_held() || !renew {
            return Ok(());
        }
        let message = if words.is_empty() {
            format!(
                "the A2A agent works on task {}",
                self.call.remote_task_id.as_deref().unwrap_or_default()
            )
        } else {
            words.to_string()
        };
        match tasks::progress_step(
            &self.ctx,
            &self.agent,
            &step.id,
            step.attempt as u32,
            None,
            Some(&message),
        )
        .await
        {
            Ok(_) | Err(Error::Conflict(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn submit(&self, result: Value, summary: &str) -> Result<Next> {
        let (summary, _) = crate::content::excerpt(summary, SUMMARY_BYTES);
        let submitted = Submitted {
            step_id: self.call.step_id.clone(),
            attempt: self.call.attempt as u32,
            result,
            summary: (!summary.is_empty()).then(|| summary.to_string()),
            self_check: None,
            check: None,
            files: Vec::new(),
            usage: None,
        };
        match tasks::submit_step(&self.ctx, &self.agent, submitted).await {
            Ok(_) => {
                self.finish().await?;
                Ok(Next::Done)
            }
            Err(Error::Conflict(_)) => Ok(Next::Soon),
            Err(err @ (Error::Invalid { .. } | Error::BadRequest { .. } | Error::TooLarge(_))) => {
                self.fail(&format!("the A2A agent's result was refused: {err}"), false)
                    .await
            }
            Err(err) => Err(err),
        }
    }

    /// Fails the attempt with `reason` (another attempt follows when `retryable` and
    /// attempts are left) and ends the call.
    async fn fail(&self, reason: &str, retryable: bool) -> Result<Next> {
        let (reason, _) = crate::content::excerpt(reason, MAX_TEXT_BYTES);
        tracing::info!(step.id = %self.call.step_id, reason, "a2a step failed");
        match tasks::fail_step(
            &self.ctx,
            &self.agent,
            &self.call.step_id,
            self.call.attempt as u32,
            reason,
            retryable,
        )
        .await
        {
            Ok(_) => {
                self.finish().await?;
                Ok(Next::Done)
            }
            // The step moved on meanwhile: the next round sees how.
            Err(Error::Conflict(_)) => Ok(Next::Soon),
            Err(err) => Err(err),
        }
    }

    /// The step left this attempt without the remote's outcome (cancelled, requeued,
    /// paused): the remote task is cancelled.
    async fn abandon(&self, status: StepStatus) -> Result<()> {
        tracing::info!(step.id = %self.call.step_id, step.status = %status,
            "a2a step left its attempt; cancelling the remote task");
        self.cancel_remote().await;
        self.finish().await
    }

    /// Sends `CancelTask` for the remote task, if there is one; a failure is logged.
    async fn cancel_remote(&self) {
        let (Some(endpoint), Some(remote_id)) = (&self.call.endpoint, &self.call.remote_task_id)
        else {
            return;
        };
        let settings = self.ctx.settings.a2a.clone();
        if let Err(reason) = self
            .caller
            .call(&settings, endpoint, "CancelTask", json!({"id": remote_id}))
            .await
        {
            tracing::info!(step.id = %self.call.step_id, reason,
                "the remote A2A task could not be cancelled");
        }
    }

    async fn record(&self, change: CallChange) -> Result<()> {
        let (step_id, attempt, owner) = (&self.call.step_id, self.call.attempt, &self.owner);
        let recorded = self
            .ctx
            .store
            .transaction(async |db| {
                Ok::<_, Error>(model::update_call(db, step_id, attempt, owner, &change).await?)
            })
            .await?;
        if !recorded {
            return Err(Error::conflict("another hub follows this A2A call"));
        }
        Ok(())
    }

    async fn finish(&self) -> Result<()> {
        self.record(CallChange {
            finished_at: Some(Some(now_ms())),
            ..CallChange::default()
        })
        .await
    }
}

/// The step as the first message: title, description and `input.text` as text; the
/// rest of the input (but the card's URL) as data. Its id is the attempt's, so a
/// message sent again after a restart carries the same id.
fn first_message(step: &tasks::Step, call: &CallRow) -> Value {
    let mut input = step_input(&step.input);
    input.remove("agent_card_url");
    let mut text = step.title.clone();
    if !step.description.trim().is_empty() {
        text.push_str("\n\n");
        text.push_str(&step.description);
    }
    if let Some(Value::String(input_text)) = input.remove("text") {
        text.push_str("\n\n");
        text.push_str(&input_text);
    }
    let mut parts = vec![json!({"text": text})];
    if !input.is_empty() {
        parts.push(json!({"data": input, "mediaType": "application/json"}));
    }
    json!({
        "messageId": format!("{}:{}", call.step_id, call.attempt),
        "role": "ROLE_USER",
        "parts": parts,
        "metadata": {"agenthub": {"stepId": step.id, "taskId": step.task_id,
            "attempt": step.attempt, "executor": EXECUTOR, "a2aVersion": PROTOCOL_VERSION}},
    })
}

fn task_id(task: &Value) -> Option<&str> {
    task.get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
}

/// The text parts of a part list, joined by blank lines.
fn texts(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n\n")
}
