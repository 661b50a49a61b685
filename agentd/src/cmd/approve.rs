//! `agentd approve`, `agentd reject` and `agentd answer`: decide approvals and answer
//! questions and meetings' availability requests. A question whose options are approve/reject (a tool call waiting for its
//! human) is answered by `approve` and `reject` too.

use clap::Args;
use serde_json::{Value, json};

use crate::cmd::Ctx;
use crate::error::{Error, Result};
use crate::hub::{HubClient, Inbox, NotificationPage};

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

/// Answer a question from a blocked step, or a meeting's availability request with the
/// times you are free
#[derive(Debug, Args)]
pub struct Answer {
    /// The question's or availability request's id (see `agentd inbox`)
    pub id: String,
    /// The answer to a question
    #[arg(
        required_unless_present_any = ["free", "not_free"],
        conflicts_with_all = ["free", "not_free"]
    )]
    pub text: Option<String>,
    /// For an availability request: a time you are free, FROM/TO in RFC 3339 with
    /// offsets (2026-12-07T09:00:00+09:00/2026-12-07T12:00:00+09:00); repeat it for more
    #[arg(long, value_name = "FROM/TO")]
    pub free: Vec<String>,
    /// For an availability request: you are not free at all in its window
    #[arg(long, conflicts_with = "free")]
    pub not_free: bool,
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
        let Some(text) = &self.text else {
            return self.answer_availability(ctx).await;
        };
        let answer: Value = ctx
            .hub()?
            .post(
                &format!("v1/input-requests/{}/answer", self.id),
                &json!({"answer": text}),
            )
            .await?;
        ctx.print(&answer, || "answered; the step continues".to_string());
        Ok(())
    }

    /// Answers the meeting's availability request `id` (from the inbox: asked of one of
    /// the member's agents, or of the member for themselves or a guest of their task)
    /// with `POST /v1/steps/{id}/meeting/availability`.
    async fn answer_availability(self, ctx: Ctx) -> Result<()> {
        let intervals = self
            .free
            .iter()
            .map(|text| interval(text))
            .collect::<Result<Vec<Value>>>()?;
        let hub = ctx.hub()?;
        let page: NotificationPage = hub
            .get(&format!(
                "v1/me/notifications?priority=action&limit={INBOX_PAGE}"
            ))
            .await?;
        let asked = page
            .notifications
            .into_iter()
            .find(|item| {
                item.subject_id.as_deref() == Some(self.id.as_str())
                    && matches!(
                        item.kind.as_str(),
                        "availability.requested" | "meeting.availability"
                    )
            })
            .ok_or_else(|| {
                Error::config(format!(
                    "no availability request `{}` is in your inbox; see `agentd inbox`",
                    self.id
                ))
            })?;
        let Some(step_id) = asked
            .step_id
            .clone()
            .filter(|_| asked.data["window"].is_object())
        else {
            return Err(Error::config(format!(
                "`{}` asks whether an agent can take on work, not when you are free; \
                 answer it in the dashboard",
                self.id
            )));
        };
        let participant = match asked.data["participant"].as_str() {
            Some(email) => email.to_string(),
            // Asked through an agent of the member: the participant that agent answers for.
            None => {
                let step: Value = hub.get(&format!("v1/steps/{step_id}")).await?;
                let agent = asked.data["agent_name"].as_str().unwrap_or_default();
                step["meeting"]["participants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|participant| participant["agent"] == agent)
                    .and_then(|participant| participant["email"].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::other(format!("the meeting no longer asks agent `{agent}`"))
                    })?
            }
        };
        let answer: Value = hub
            .post(
                &format!("v1/steps/{step_id}/meeting/availability"),
                &json!({"participant": participant, "intervals": intervals}),
            )
            .await?;
        ctx.print(&answer, || {
            let meeting = &answer["meeting"];
            match meeting["status"].as_str().unwrap_or_default() {
                "proposed" => format!(
                    "answered for {participant}; everyone answered: proposed {} to {}",
                    meeting["slot"]["from"].as_str().unwrap_or_default(),
                    meeting["slot"]["to"].as_str().unwrap_or_default()
                ),
                "no_fit" => {
                    format!("answered for {participant}; no time suits everyone in the window")
                }
                _ => format!("answered for {participant}; waiting for the others"),
            }
        });
        Ok(())
    }
}

/// Action items read to find an availability request (the hub's largest page).
const INBOX_PAGE: u32 = 200;

/// `FROM/TO` as `{"from", "to"}`; the hub checks the times.
fn interval(text: &str) -> Result<Value> {
    let (from, to) = text
        .split_once('/')
        .filter(|(from, to)| !from.trim().is_empty() && !to.trim().is_empty())
        .ok_or_else(|| {
            Error::config(format!(
                "`{text}` is not FROM/TO; write --free 2026-12-07T09:00:00+09:00/2026-12-07T12:00:00+09:00"
            ))
        })?;
    Ok(json!({"from": from.trim(), "to": to.trim()}))
}
