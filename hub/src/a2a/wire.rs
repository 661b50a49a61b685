//! The A2A 1.0 JSON shapes the bridge sends: the Agent Card, a task with its status,
//! artifacts and history, stream events and push notification configs; and the reading
//! of a message's parts. Field names are the protocol's JSON (camelCase), enums its
//! `TASK_STATE_…` / `ROLE_…` spellings.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::a2a::{Incoming, PROTOCOL_VERSION, PushConfig, Skill, Snapshot, State, Waiting};
use crate::error::{Error, Result};
use crate::tasks::StepStatus;

/// The security scheme named by the card: the workspace's API keys (and agent tokens)
/// as bearer tokens.
pub const SECURITY_SCHEME: &str = "bearer";

/// The Agent Card of a workspace. `extended` (for an authenticated caller) adds each
/// skill's examples, its agent's id and whether it is online.
pub fn card(
    workspace_name: &str,
    endpoint: &str,
    skills: &[Skill],
    online: impl Fn(&str) -> bool,
    extended: bool,
) -> Value {
    let skills: Vec<Value> = skills
        .iter()
        .map(|skill| {
            let mut tags = skill.agent.capability_list();
            if extended {
                tags.push(
                    if online(&skill.agent.id) {
                        "online"
                    } else {
                        "offline"
                    }
                    .into(),
                );
            }
            let mut value = json!({
                "id": skill.agent.name,
                "name": skill.agent.name,
                "description": if skill.row.description.is_empty() {
                    format!("Work done by {}, an agent of the team.", skill.agent.name)
                } else {
                    skill.row.description.clone()
                },
                "tags": tags,
                "examples": skill.row.example_list(),
                "inputModes": ["text/plain", "application/json"],
                "outputModes": ["text/plain", "application/json"],
            });
            if !extended {
                value["examples"] = json!(
                    skill
                        .row
                        .example_list()
                        .into_iter()
                        .take(3)
                        .collect::<Vec<_>>()
                );
            }
            value
        })
        .collect();
    json!({
        "name": workspace_name,
        "description": format!(
            "The team {workspace_name} on AgentHub: send a task to one of its agents (name the \
             skill in the message's metadata.agent); people approve results and answer the \
             agents' questions, which shows as TASK_STATE_INPUT_REQUIRED."
        ),
        "supportedInterfaces": [{
            "url": endpoint,
            "protocolBinding": "JSONRPC",
            "protocolVersion": PROTOCOL_VERSION,
        }],
        "provider": {"organization": workspace_name, "url": endpoint},
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": {
            "streaming": true,
            "pushNotifications": true,
            "extendedAgentCard": true,
        },
        "securitySchemes": {
            SECURITY_SCHEME: {"httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "an AgentHub API key (ahk_…) or agent token (aha_…) of this workspace",
            }},
        },
        "securityRequirements": [{"schemes": {SECURITY_SCHEME: {"list": []}}}],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    })
}

/// A task: its status, artifacts (the results of finished steps) and history (the
/// request, questions and answers, decisions), the last `history_length` messages of
/// it when given.
pub fn task(snap: &Snapshot, public_url: &str, history_length: Option<usize>) -> Value {
    let task = &snap.view.task;
    let mut history = history(snap);
    if let Some(keep) = history_length {
        let skip = history.len().saturating_sub(keep);
        history.drain(..skip);
    }
    let steps: Vec<Value> = snap
        .view
        .steps
        .iter()
        .map(|view| {
            json!({
                "id": view.step.id,
                "key": view.step.key,
                "title": view.step.title,
                "status": view.step.status,
                "attempt": view.step.attempt,
            })
        })
        .collect();
    json!({
        "id": task.id,
        "contextId": task.id,
        "status": status(snap),
        "artifacts": artifacts(snap, public_url),
        "history": history,
        "metadata": {"agenthub": {"taskStatus": task.status, "title": task.title, "steps": steps}},
    })
}

/// A task's status: its state, and for `input-required` what it waits for as an agent
/// message (the question and its options, or the result to approve).
pub fn status(snap: &Snapshot) -> Value {
    let (state, waiting) = snap.state();
    let mut status = json!({
        "state": state.as_str(),
        "timestamp": timestamp(snap.view.task.updated_at),
    });
    let task_id = &snap.view.task.id;
    let message = match waiting {
        Some(Waiting::Question(question)) => {
            let options: Vec<String> = serde_json::from_str(&question.options).unwrap_or_default();
            let mut text = question.question.clone();
            if !options.is_empty() {
                text.push_str(&format!(" (options: {})", options.join(", ")));
            }
            Some(json!({
                "messageId": format!("{}:question", question.id),
                "taskId": task_id,
                "contextId": task_id,
                "role": "ROLE_AGENT",
                "parts": [
                    {"text": text},
                    {"data": {"kind": "question", "inputRequestId": question.id,
                        "stepId": question.step_id, "question": question.question,
                        "options": options}, "mediaType": "application/json"},
                ],
            }))
        }
        Some(Waiting::Approval(step)) => {
            let result: Value = step
                .result
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            Some(json!({
                "messageId": format!("{}:{}:approval", step.id, step.attempt),
                "taskId": task_id,
                "contextId": task_id,
                "role": "ROLE_AGENT",
                "parts": [
                    {"text": format!(
                        "The result of “{}” waits for approval: reply `approve`, or say what \
                         to change to reject it.{}",
                        step.title,
                        step.summary.as_deref().map(|summary| format!(" Summary: {summary}")).unwrap_or_default()
                    )},
                    {"data": {"kind": "approval", "stepId": step.id, "attempt": step.attempt,
                        "digest": step.result_digest, "summary": step.summary,
                        "result": result, "options": ["approve", "reject"]},
                        "mediaType": "application/json"},
                ],
            }))
        }
        None => snap.view.task.outcome.as_deref().and_then(|outcome| {
            (state == State::Failed || state == State::Canceled).then(|| {
                json!({
                    "messageId": format!("{task_id}:outcome"),
                    "taskId": task_id,
                    "contextId": task_id,
                    "role": "ROLE_AGENT",
                    "parts": [{"data": serde_json::from_str::<Value>(outcome).unwrap_or_default(),
                        "mediaType": "application/json"}],
                })
            })
        }),
    };
    if let Some(message) = message {
        status["message"] = message;
    }
    status
}

/// The results of the task's done steps, one artifact each (id: the step's id): the
/// summary as text, the result as data, each file as a URL of the files API.
pub fn artifacts(snap: &Snapshot, public_url: &str) -> Vec<Value> {
    snap.view
        .steps
        .iter()
        .filter(|view| view.step.status == StepStatus::Done.as_str())
        .map(|view| artifact(&view.step, public_url))
        .collect()
}

pub fn artifact(step: &crate::tasks::Step, public_url: &str) -> Value {
    let mut parts = Vec::new();
    if let Some(summary) = &step.summary {
        parts.push(json!({"text": summary}));
    }
    if let Some(result) = step
        .result
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    {
        parts.push(json!({"data": result, "mediaType": "application/json"}));
    }
    let files: Vec<String> = serde_json::from_str(&step.files).unwrap_or_default();
    for file_id in files {
        parts.push(
            json!({"url": format!("{}/v1/files/{file_id}", public_url.trim_end_matches('/'))}),
        );
    }
    json!({
        "artifactId": step.id,
        "name": step.title,
        "parts": parts,
        "metadata": {"agenthub": {"stepKey": step.key, "attempt": step.attempt}},
    })
}

/// The request, then each question and answer and each decision, in time order.
fn history(snap: &Snapshot) -> Vec<Value> {
    let task = &snap.view.task;
    let message = |id: String, role: &str, text: String, data: Value| {
        json!({
            "messageId": id,
            "taskId": task.id,
            "contextId": task.id,
            "role": role,
            "parts": [{"text": text}, {"data": data, "mediaType": "application/json"}],
        })
    };
    let mut entries: Vec<(i64, Value)> = vec![(
        task.created_at,
        json!({
            "messageId": format!("{}:request", task.id),
            "taskId": task.id,
            "contextId": task.id,
            "role": "ROLE_USER",
            "parts": [{"text": if task.description.is_empty() { &task.title } else { &task.description }}],
        }),
    )];
    for question in &snap.questions {
        entries.push((
            question.created_at,
            message(
                format!("{}:question", question.id),
                "ROLE_AGENT",
                question.question.clone(),
                json!({"kind": "question", "inputRequestId": question.id, "stepId": question.step_id}),
            ),
        ));
        if let (Some(answer), Some(answered_at)) = (&question.answer, question.answered_at) {
            entries.push((
                answered_at,
                message(
                    format!("{}:answer", question.id),
                    "ROLE_USER",
                    answer.clone(),
                    json!({"kind": "answer", "inputRequestId": question.id,
                        "answeredBy": question.answered_by}),
                ),
            ));
        }
    }
    for approval in &snap.approvals {
        let (Some(decision), Some(decided_at)) = (&approval.decision, approval.decided_at) else {
            continue;
        };
        let text = match &approval.comment {
            Some(comment) => format!("{decision}: {comment}"),
            None => decision.clone(),
        };
        entries.push((
            decided_at,
            message(
                approval.id.clone(),
                "ROLE_USER",
                text,
                json!({"kind": "decision", "decision": decision, "stepId": approval.step_id,
                    "attempt": approval.attempt, "comment": approval.comment}),
            ),
        ));
    }
    entries.sort_by_key(|(at, _)| *at);
    entries.into_iter().map(|(_, message)| message).collect()
}

/// A status change as a stream event.
pub fn status_update(snap: &Snapshot) -> Value {
    json!({"statusUpdate": {
        "taskId": snap.view.task.id,
        "contextId": snap.view.task.id,
        "status": status(snap),
    }})
}

/// A finished step's result as a stream event.
pub fn artifact_update(snap: &Snapshot, step: &crate::tasks::Step, public_url: &str) -> Value {
    json!({"artifactUpdate": {
        "taskId": snap.view.task.id,
        "contextId": snap.view.task.id,
        "artifact": artifact(step, public_url),
        "lastChunk": true,
    }})
}

/// A push notification config as A2A shows it (`TaskPushNotificationConfig`).
pub fn push_config(config: &PushConfig) -> Value {
    json!({
        "id": config.webhook.id,
        "taskId": config.webhook.task_id,
        "url": config.webhook.url,
        "token": config.webhook.a2a_token,
    })
}

/// Reads a `Message`: its text, data and url parts, its task id, and the bridge's
/// metadata (`agent`, `approvers`, `approvalLevel`, `decision`), from the message's
/// metadata or else the request's.
pub fn incoming(message: &Value, request_metadata: &Value) -> Result<Incoming> {
    let Some(object) = message.as_object() else {
        return Err(Error::invalid_field(
            "message",
            "`message` must be an object",
        ));
    };
    let parts = object
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid_field("message.parts", "a message needs `parts`, a list"))?;
    let mut incoming = Incoming::default();
    let mut texts = Vec::new();
    for (part_idx, part) in parts.iter().enumerate() {
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            texts.push(text.to_string());
        } else if let Some(data) = part.get("data") {
            incoming.data.push(data.clone());
        } else if let Some(url) = part.get("url").and_then(Value::as_str) {
            incoming.urls.push(url.to_string());
        } else if part.get("raw").is_some() {
            return Err(Error::invalid_field(
                format!("message.parts[{part_idx}]"),
                "raw (inline bytes) parts are not taken; upload the file with PUT /v1/files \
                 and send its URL",
            ));
        } else {
            return Err(Error::invalid_field(
                format!("message.parts[{part_idx}]"),
                "a part has one of `text`, `data` or `url`",
            ));
        }
    }
    incoming.text = texts.join("\n\n");
    incoming.task_id = object
        .get("taskId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let empty = Map::new();
    let message_metadata = object
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let request_metadata = request_metadata.as_object().unwrap_or(&empty);
    let field = |name: &str| {
        message_metadata
            .get(name)
            .or_else(|| request_metadata.get(name))
    };
    incoming.agent = match field("agent") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => {
            return Err(Error::invalid_field(
                "message.metadata.agent",
                "`agent` is the name of a skill (a string)",
            ));
        }
    };
    incoming.approvers = match field("approvers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::invalid_field(
                    "message.metadata.approvers",
                    "`approvers` is a list of emails",
                )
            })?,
        Some(_) => {
            return Err(Error::invalid_field(
                "message.metadata.approvers",
                "`approvers` is a list of emails",
            ));
        }
    };
    incoming.approval_level = match field("approvalLevel") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().filter(|level| *level <= 3).ok_or_else(|| {
            Error::invalid_field("message.metadata.approvalLevel", "`approvalLevel` is 0-3")
        })? as u8),
    };
    incoming.decision = field("decision")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(incoming)
}

/// RFC 3339 with milliseconds and `Z`.
pub fn timestamp(unix_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}
