//! `agentd approve`, `agentd reject` and `agentd answer`: decide approvals and answer
//! questions. A question whose options are approve/reject (a tool call waiting for its
//! human) is answered by `approve` and `reject` too.

use clap::Args;
use serde_json::{Value, json};

use crate::cmd::Ctx;
use crate::error::Result;
use crate::hub::{HubClient, Inbox};

/// Approve a step's result (by step or approval id), or allow a waiting tool call
#[derive(Debug, Args)]
pub struct Approve {
    /// Step id, approval id, or the id of a tool-call question
    pub id: String,
    /// A comment for the record
    #[arg(long)]
    pub comment: Option<String>,
}

/// Reject a step's result (it goes back for rework with your comment), or refuse a
/// waiting tool call
#[derive(Debug, Args)]
pub struct Reject {
    /// Step id, approval id, or the id of a tool-call question
    pub id: String,
    /// What should change
    #[arg(long)]
    pub comment: String,
}

/// Answer a question from a blocked step
#[derive(Debug, Args)]
pub struct Answer {
    /// The question's id (see `agentd inbox`)
    pub id: String,
    /// The answer
    pub text: String,
}

/// What `approve`/`reject` resolved an id to.
enum Target {
    /// A step's result as the inbox shows it: step id and the decision's body (the
    /// attempt and digest shown).
    Step(String, Value),
    Question(String),
}

async fn resolve(hub: &HubClient, id: &str) -> Result<Target> {
    let inbox: Inbox = hub.get("v1/me/inbox").await?;
    if let Some(question) = inbox.questions.iter().find(|question| question.id == id) {
        return Ok(Target::Question(question.id.clone()));
    }
    if let Some(approval) = inbox
        .approvals
        .iter()
        .find(|approval| approval.approval_id == id || approval.step_id == id)
    {
        let mut body = json!({"attempt": approval.attempt});
        if !approval.digest.is_empty() {
            body["digest"] = json!(approval.digest);
        }
        return Ok(Target::Step(approval.step_id.clone(), body));
    }
    // Not waiting for this teammate: the hub says why, for the step's current attempt.
    let step: Value = hub.get(&format!("v1/steps/{id}")).await?;
    let attempt = step.get("attempt").and_then(Value::as_u64).unwrap_or(1);
    Ok(Target::Step(id.to_string(), json!({"attempt": attempt})))
}

impl Approve {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.hub()?;
        let answer: Value = match resolve(&hub, &self.id).await? {
            Target::Question(question) => {
                hub.post(
                    &format!("v1/input-requests/{question}/answer"),
                    &json!({"answer": "approve"}),
                )
                .await?
            }
            Target::Step(step, mut body) => {
                if let Some(comment) = &self.comment {
                    body["comment"] = json!(comment);
                }
                hub.post(&format!("v1/steps/{step}/approve"), &body).await?
            }
        };
        ctx.print(&answer, || {
            match answer.get("step_status").and_then(Value::as_str) {
                Some(status) => format!("approved; the step is now {status}"),
                None => "approved".to_string(),
            }
        });
        Ok(())
    }
}

impl Reject {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.hub()?;
        let answer: Value = match resolve(&hub, &self.id).await? {
            Target::Question(question) => {
                hub.post(
                    &format!("v1/input-requests/{question}/answer"),
                    &json!({"answer": format!("reject: {}", self.comment)}),
                )
                .await?
            }
            Target::Step(step, mut body) => {
                body["comment"] = json!(self.comment);
                hub.post(&format!("v1/steps/{step}/reject"), &body).await?
            }
        };
        ctx.print(&answer, || {
            match answer.get("step_status").and_then(Value::as_str) {
                Some(status) => format!("rejected; the step is now {status}"),
                None => "rejected".to_string(),
            }
        });
        Ok(())
    }
}

impl Answer {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let answer: Value = ctx
            .hub()?
            .post(
                &format!("v1/input-requests/{}/answer", self.id),
                &json!({"answer": self.text}),
            )
            .await?;
        ctx.print(&answer, || "answered; the step continues".to_string());
        Ok(())
    }
}
