//! Intelligence that runs with this machine's Claude key: planning a task for its creator
//! (`plan.requested` → `plan.submit`) and checking a finished step's result (the submit's
//! `check`). The prompts and tool schemas are data
//! (`intel/*.json`); the model answers through one tool whose input is the plan, and the
//! hub checks what it proposes like any request.

use std::fmt::Write as _;

use agenthub_protocol::{
    ClientFrame, PlanRequested, PlanStep, PlanSubmit, SelfCheck, StepInfo, SuggestionOp,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClaudeConfig;
use crate::credentials::Secret;
use crate::executor::claude::Client;
use crate::executor::full_text::HubAccess;
use crate::executor::{Failure, Outbound, Reply};

/// The tool through which the model answers with a plan.
pub const PLAN_TOOL: &str = include_str!("intel/plan_tool.json");

/// Plans submitted after the first when the hub finds errors in one.
pub const PLAN_RETRIES: usize = 2;

const PLAN_SYSTEM: &str = "You plan a team's task. Break it into a few concrete steps, \
each owned by one teammate's agent who fits it (capabilities, online, current load), with \
dependencies where one step needs another's output, a rough estimate in minutes, and an \
approval level where a person should confirm or review the result. Use only the agent \
names and member emails you are given. Answer only by calling the submit_plan tool.";

/// The tool through which the model reports its check of a step's result.
pub const CHECK_TOOL: &str = include_str!("intel/check_tool.json");

const CHECK_SYSTEM: &str = "You check one step of a team's task after it was done: does \
its result do what the step asks and serve the task? Should later steps change: a step \
inserted, a step skipped, or a step given to someone else? Suggest changes only when they \
clearly help. Answer only by calling the report_check tool.";

/// The parsed tool definition of [`CHECK_TOOL`].
pub fn check_tool() -> Value {
    serde_json::from_str(CHECK_TOOL).expect("intel/check_tool.json is JSON")
}

/// The check request's user message: the step, its task, and what the step produced.
pub fn check_prompt(step: &StepInfo, summary: &str) -> String {
    let mut text = format!("Task: {}\n", step.task_title);
    if !step.task_description.trim().is_empty() {
        let _ = writeln!(text, "{}", step.task_description);
    }
    let _ = writeln!(text, "\nStep `{}`: {}", step.key, step.title);
    if !step.description.trim().is_empty() {
        let _ = writeln!(text, "{}", step.description);
    }
    if let Some(expected) = &step.expected_outputs {
        let _ = writeln!(text, "Expected output: {expected}");
    }
    let _ = writeln!(text, "\nThe step's result:\n{summary}");
    text
}

/// Asks the model whether a finished step's result fits (one request, the
/// `report_check` tool). Suggestions missing what their `op` needs are left out; any
/// failure is `None` (the result goes without a check).
pub async fn check_result(
    client: &Client,
    config: &ClaudeConfig,
    step: &StepInfo,
    summary: &str,
) -> Option<SelfCheck> {
    let body = json!({
        "model": config.model,
        "max_tokens": config.max_tokens,
        "system": CHECK_SYSTEM,
        "tools": [check_tool()],
        "tool_choice": {"type": "tool", "name": "report_check"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": check_prompt(step, summary)}]}],
    });
    let (_, input) = match ask_tool(client, &body, "report_check").await {
        Ok(answer) => answer,
        Err(failure) => {
            tracing::warn!(step.id = %step.step_id, reason = failure.reason, "no check of the result");
            return None;
        }
    };
    let mut check: SelfCheck = match serde_json::from_value(input) {
        Ok(check) => check,
        Err(err) => {
            tracing::warn!(step.id = %step.step_id, error = %err, "the model's check does not fit its schema; none sent");
            return None;
        }
    };
    check.reasons.truncate(20);
    check.suggestions.retain(|suggestion| match suggestion.op {
        SuggestionOp::Insert => suggestion.new_step.is_some(),
        SuggestionOp::Skip => suggestion.step.is_some(),
        SuggestionOp::Reassign => suggestion.step.is_some() && !suggestion.assignees.is_empty(),
    } && !suggestion.reason.trim().is_empty());
    check.suggestions.truncate(20);
    Some(check)
}

/// The parsed tool definition of [`PLAN_TOOL`].
pub fn plan_tool() -> Value {
    serde_json::from_str(PLAN_TOOL).expect("intel/plan_tool.json is JSON")
}

/// What the model hands to `submit_plan`.
#[derive(Debug, Deserialize)]
struct PlanInput {
    steps: Vec<PlanStep>,
    #[serde(default)]
    note: Option<String>,
}

/// How planning ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Planned {
    /// The hub took the plan (after this many submits).
    Proposed { submits: usize },
    /// The hub refused every plan, or planning could not run; the reason.
    GaveUp(String),
}

/// The first user message: the task, the team, where to start, what the creator said.
pub fn plan_prompt(request: &PlanRequested, description: &str) -> String {
    let mut text = format!("Task: {}\n", request.task.title);
    if !description.trim().is_empty() {
        let _ = writeln!(text, "\nDescription:\n{description}");
    }
    text.push_str("\nAgents (name, person, capabilities, online, steps held now):\n");
    for agent in &request.agents {
        let _ = writeln!(
            text,
            "- {} ({}) capabilities [{}], {}, load {}",
            agent.name,
            agent.member,
            agent.capabilities.join(", "),
            if agent.online { "online" } else { "offline" },
            agent.load
        );
    }
    text.push_str("\nMembers (email, role):\n");
    for member in &request.members {
        let _ = writeln!(text, "- {} ({})", member.email, member.role);
    }
    if !request.steps.is_empty() {
        let steps = serde_json::to_string_pretty(&request.steps).unwrap_or_default();
        let _ = writeln!(text, "\nStart from these steps:\n{steps}");
    }
    if let Some(comment) = &request.comment {
        let _ = writeln!(
            text,
            "\nThis is plan round {}; the task's creator asked for another plan: {comment}",
            request.round
        );
    }
    text
}

/// Plans the task of `request` and submits the plan through `outbound`; when the hub
/// lists errors, asks the model again with them, at most [`PLAN_RETRIES`] times.
pub async fn plan(
    request: PlanRequested,
    config: &ClaudeConfig,
    key: &Secret,
    hub: Option<&HubAccess>,
    outbound: &mpsc::Sender<Outbound>,
) -> Planned {
    let client = match Client::new(config, key) {
        Ok(client) => client,
        Err(failure) => return Planned::GaveUp(failure.reason),
    };
    let description = full_description(&request, hub).await;
    let tool = plan_tool();
    let mut messages = vec![json!({
        "role": "user",
        "content": [{"type": "text", "text": plan_prompt(&request, &description)}],
    })];
    let mut submits = 0;
    let mut calls = 0;
    loop {
        calls += 1;
        let body = json!({
            "model": config.model,
            "max_tokens": config.max_tokens,
            "system": PLAN_SYSTEM,
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": "submit_plan"},
            "messages": messages,
        });
        let (tool_use_id, input) = match ask_tool(&client, &body, "submit_plan").await {
            Ok(answer) => answer,
            Err(failure) => return Planned::GaveUp(failure.reason),
        };
        messages.push(json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": tool_use_id, "name": "submit_plan", "input": input}
        ]}));
        let problem = match serde_json::from_value::<PlanInput>(input) {
            Err(err) => format!("the plan does not fit the tool's schema: {err}"),
            Ok(plan) => {
                submits += 1;
                let frame = ClientFrame::PlanSubmit(PlanSubmit {
                    id: 0,
                    plan_id: request.plan_id,
                    steps: plan.steps,
                    note: plan.note,
                });
                match request_reply(outbound, frame).await {
                    Some(Reply::Ok(_)) => return Planned::Proposed { submits },
                    Some(Reply::Error { code, message }) if code == "invalid" => message,
                    Some(Reply::Error { code, message }) => {
                        return Planned::GaveUp(format!(
                            "the hub refused the plan ({code}: {message})"
                        ));
                    }
                    None => {
                        return Planned::GaveUp(
                            "the connection to the hub ended while submitting the plan".into(),
                        );
                    }
                }
            }
        };
        if calls > PLAN_RETRIES {
            return Planned::GaveUp(format!(
                "no acceptable plan after {calls} answers of the model; last: {problem}"
            ));
        }
        tracing::info!(plan.id = %request.plan_id, problem, "plan refused; asking the model again");
        messages.push(json!({"role": "user", "content": [{
            "type": "tool_result",
            "tool_use_id": tool_use_id,
            "is_error": true,
            "content": format!("The plan was not accepted. Fix every error and call submit_plan again.\n{problem}"),
        }]}));
    }
}

/// The task's whole description: the event's, or the hub's when the event cut it.
async fn full_description(request: &PlanRequested, hub: Option<&HubAccess>) -> String {
    if !request.task.description_truncated {
        return request.task.description.clone();
    }
    let Some(hub) = hub else {
        return request.task.description.clone();
    };
    let path = format!("/v1/tasks/{}", request.task.task_id);
    match hub.client().await {
        Ok(client) => match client.get::<Value>(&path).await {
            Ok(task) => task["description"]
                .as_str()
                .map_or_else(|| request.task.description.clone(), str::to_string),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the task's whole description; planning from its excerpt");
                request.task.description.clone()
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "cannot reach the hub's REST API; planning from the excerpt");
            request.task.description.clone()
        }
    }
}

/// One request whose answer must call `tool`: its `tool_use` id and input.
pub async fn ask_tool(
    client: &Client,
    body: &Value,
    tool: &str,
) -> Result<(String, Value), Failure> {
    let response = client.create(body).await?;
    response
        .content
        .iter()
        .find(|block| block["type"] == "tool_use" && block["name"] == tool)
        .map(|block| {
            (
                block["id"].as_str().unwrap_or_default().to_string(),
                block["input"].clone(),
            )
        })
        .ok_or_else(|| Failure::fatal(format!("the model did not call `{tool}`")))
}

async fn request_reply(outbound: &mpsc::Sender<Outbound>, frame: ClientFrame) -> Option<Reply> {
    let (reply_tx, reply_rx) = oneshot::channel();
    outbound
        .send(Outbound::Request {
            frame,
            reply: Some(reply_tx),
        })
        .await
        .ok()?;
    reply_rx.await.ok()
}

#[cfg(test)]
mod tests;
