//! The `claude` executor: the agent loop over the Anthropic Messages API
//! (`POST {base}/v1/messages`), with the tools of [`crate::executor::tools`]. The key
//! is sent only to that endpoint, in `x-api-key`, and never logged.

use std::path::PathBuf;
use std::time::Duration;

use agenthub_protocol::{LogStream, StepInfo, Usage};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ClaudeConfig, ToolPolicy};
use crate::credentials::Secret;
use crate::executor::env::ChildEnv;
use crate::executor::tools::{self, ToolLimits, ToolOutput};
use crate::executor::{Failure, Outcome, StepCtx};

const SYSTEM_PROMPT: &str = "You carry out one step of a team's task on a teammate's machine. \
Work only through the tools; every path is relative to the step's working directory. \
When the step is done, answer with a short summary of what you did and what the result is.";

/// A Messages API response.
#[derive(Debug, Deserialize)]
pub struct MessageResponse {
    pub content: Vec<Value>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: ApiUsage,
}

/// Token counts of one response.
#[derive(Debug, Default, Deserialize)]
pub struct ApiUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// A client of the Messages API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    max_retries: u32,
}

impl Client {
    /// A client for `config`, honouring `ANTHROPIC_BASE_URL`.
    pub fn new(config: &ClaudeConfig, key: &Secret) -> Result<Client, Failure> {
        let base = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|base| !base.trim().is_empty())
            .unwrap_or_else(|| config.base_url.clone());
        let mut headers = HeaderMap::new();
        let mut key_header = HeaderValue::from_str(key.expose())
            .map_err(|_| Failure::fatal("the Claude API key contains invalid characters"))?;
        key_header.set_sensitive(true);
        headers.insert("x-api-key", key_header);
        headers.insert(
            "anthropic-version",
            HeaderValue::from_str(&config.api_version)
                .map_err(|_| Failure::fatal("invalid anthropic api_version in config.toml"))?,
        );
        let http = reqwest::Client::builder()
            .user_agent(crate::AGENT_VERSION)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|err| Failure::fatal(format!("cannot build the HTTP client: {err}")))?;
        Ok(Client {
            http,
            url: format!("{}/v1/messages", base.trim_end_matches('/')),
            max_retries: config.max_retries,
        })
    }

    /// This client, answering the first failure without retrying.
    pub fn without_retries(&self) -> Client {
        Client {
            max_retries: 0,
            ..self.clone()
        }
    }

    /// Sends one request, retrying 429, 529 and 5xx answers (honouring `retry-after`).
    pub async fn create(&self, body: &Value) -> Result<MessageResponse, Failure> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let response = match self.http.post(&self.url).json(body).send().await {
                Ok(response) => response,
                Err(err) if attempt <= self.max_retries => {
                    let delay = backoff(attempt);
                    tracing::warn!(error = %err, delay_ms = delay.as_millis() as u64, "Claude API unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(err) => {
                    return Err(Failure::retryable(format!(
                        "the Claude API at {} is unreachable: {err}",
                        self.url
                    )));
                }
            };
            let status = response.status();
            if status.is_success() {
                return response.json::<MessageResponse>().await.map_err(|err| {
                    Failure::retryable(format!("unreadable answer from the Claude API: {err}"))
                });
            }
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map(|secs| Duration::from_secs_f64(secs.clamp(0.0, 300.0)));
            let text = response.text().await.unwrap_or_default();
            let (kind, message) = match serde_json::from_str::<ApiErrorBody>(&text) {
                Ok(body) => (body.error.kind, body.error.message),
                Err(_) => ("unknown".into(), text.chars().take(300).collect()),
            };
            let transient = status == StatusCode::TOO_MANY_REQUESTS
                || status.as_u16() == 529
                || status.is_server_error();
            if transient && attempt <= self.max_retries {
                let delay = retry_after.unwrap_or_else(|| backoff(attempt));
                tracing::warn!(
                    status = status.as_u16(),
                    kind,
                    delay_ms = delay.as_millis() as u64,
                    "Claude API busy; retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            let reason = match status {
                StatusCode::UNAUTHORIZED => format!(
                    "the Claude API rejected the API key ({kind}: {message}); its human should run `agentd key set`"
                ),
                _ => format!(
                    "the Claude API refused the request (HTTP {}, {kind}: {message})",
                    status.as_u16()
                ),
            };
            return Err(Failure {
                reason,
                retryable: transient,
            });
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(30))
}

/// The first user message: the step, its task, its inputs.
pub fn prompt(step: &StepInfo) -> String {
    let mut text = format!("Task: {}\n", step.task_title);
    if !step.task_description.is_empty() {
        text.push_str(&format!("Task description: {}\n", step.task_description));
    }
    text.push_str(&format!("\nYour step: {}\n", step.title));
    if !step.description.is_empty() {
        text.push_str(&format!("What to do: {}\n", step.description));
    }
    if let Some(expected) = &step.expected_outputs {
        text.push_str(&format!("Expected output: {expected}\n"));
    }
    if !step.input.is_null() {
        text.push_str(&format!("Step input (JSON): {}\n", step.input));
    }
    if let Some(comment) = &step.rework_comment {
        text.push_str(&format!(
            "\nA reviewer rejected the previous attempt with this comment: {comment}\n"
        ));
    }
    for input in &step.inputs {
        text.push_str(&format!(
            "\nOutput of the earlier step \"{}\":\n",
            input.title
        ));
        if let Some(summary) = &input.summary {
            text.push_str(&format!("Summary: {summary}\n"));
        }
        if !input.result.is_null() {
            text.push_str(&format!("Result (JSON): {}\n", input.result));
        }
    }
    text
}

/// Runs the agent loop until the model ends its turn.
pub async fn execute(
    ctx: &mut StepCtx,
    config: &ClaudeConfig,
    key: &Secret,
    env: &ChildEnv,
) -> Result<Outcome, Failure> {
    let client = Client::new(config, key)?;
    let limits = ToolLimits {
        shell_timeout: Duration::from_secs(config.shell_timeout_secs),
        max_output_bytes: config.max_tool_output_bytes,
    };
    let mut messages =
        vec![json!({"role": "user", "content": [{"type": "text", "text": prompt(&ctx.step)}]})];
    let mut input_tokens = 0u64;
    let mut output_tokens = 0u64;
    let mut model = config.model.clone();
    // The files the write and edit tools changed, uploaded with the result.
    let mut written: Vec<PathBuf> = Vec::new();
    for _turn in 0..config.max_turns {
        if ctx.is_stopped() {
            return Err(Failure::retryable("the step was stopped"));
        }
        let body = json!({
            "model": config.model,
            "max_tokens": config.max_tokens,
            "system": SYSTEM_PROMPT,
            "tools": tools::definitions(),
            "messages": messages,
        });
        let response = tokio::select! {
            response = client.create(&body) => response?,
            () = ctx.stopped() => return Err(Failure::retryable("the step was stopped")),
        };
        input_tokens += response.usage.input_tokens;
        output_tokens += response.usage.output_tokens;
        if let Some(answered_model) = &response.model {
            model = answered_model.clone();
        }
        let text: String = response
            .content
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if !text.is_empty() {
            ctx.log(LogStream::Info, format!("{text}\n")).await;
        }
        let tool_uses: Vec<Value> = response
            .content
            .iter()
            .filter(|block| block["type"] == "tool_use")
            .cloned()
            .collect();
        messages.push(json!({"role": "assistant", "content": response.content}));
        let stop_reason = response.stop_reason.as_deref().unwrap_or("end_turn");
        if tool_uses.is_empty() {
            if stop_reason == "max_tokens" {
                messages.push(json!({"role": "user", "content": [{"type": "text", "text": "Your answer was cut off by the token limit. Continue."}]}));
                continue;
            }
            let summary = text.trim().to_string();
            // A step that says what it must produce gets its result checked (one request,
            // not retried: without an answer the result goes without a check).
            if ctx.step.expected_outputs.is_some()
                && let Some(check) = crate::intel::check_result(
                    &client.without_retries(),
                    config,
                    &ctx.step,
                    &summary,
                )
                .await
            {
                ctx.set_check(check);
            }
            return Ok(Outcome {
                result: json!({"text": summary}),
                summary: Some(shorten(&summary, 2000)),
                files: Vec::new(),
                usage: Some(Usage {
                    model,
                    input_tokens,
                    output_tokens,
                }),
                outputs: written,
            });
        }
        let mut results = Vec::new();
        for tool_use in tool_uses {
            if ctx.is_stopped() {
                return Err(Failure::retryable("the step was stopped"));
            }
            let id = tool_use["id"].as_str().unwrap_or_default().to_string();
            let name = tool_use["name"].as_str().unwrap_or_default().to_string();
            let input = tool_use.get("input").cloned().unwrap_or(Value::Null);
            let output = call_tool(ctx, config, limits, env, &name, &input).await?;
            if !output.is_error
                && matches!(name.as_str(), "write_file" | "edit_file")
                && let Some(path) = input["path"].as_str()
            {
                let path = ctx.work_dir.join(path);
                if !written.contains(&path) {
                    written.push(path);
                }
            }
            let mut block =
                json!({"type": "tool_result", "tool_use_id": id, "content": output.content});
            if output.is_error {
                block["is_error"] = json!(true);
            }
            results.push(block);
        }
        messages.push(json!({"role": "user", "content": results}));
    }
    Err(Failure::fatal(format!(
        "the model did not finish within {} turns",
        config.max_turns
    )))
}

async fn call_tool(
    ctx: &mut StepCtx,
    config: &ClaudeConfig,
    limits: ToolLimits,
    env: &ChildEnv,
    name: &str,
    input: &Value,
) -> Result<ToolOutput, Failure> {
    let shown = describe_call(name, input);
    match config.policy(name) {
        ToolPolicy::Deny => {
            ctx.log(LogStream::Info, format!("denied by policy: {shown}\n"))
                .await;
            return Ok(ToolOutput::error(format!(
                "the tool `{name}` is denied by this agent's policy"
            )));
        }
        ToolPolicy::Ask => {
            ctx.log(LogStream::Info, format!("asking the human: {shown}\n"))
                .await;
            let timeout = Duration::from_secs(config.ask_timeout_secs);
            let timeout_answer = format!("reject (no answer within {} s)", config.ask_timeout_secs);
            let answer = ctx
                .ask(
                    &format!("Allow {shown}?"),
                    &["approve", "reject"],
                    timeout,
                    &timeout_answer,
                )
                .await?;
            match answer {
                Some(answer) if answer.trim().eq_ignore_ascii_case("approve") => {}
                Some(answer) => {
                    return Ok(ToolOutput::error(format!(
                        "the human rejected this tool call (answer: {answer})"
                    )));
                }
                None => {
                    return Ok(ToolOutput::error(format!(
                        "nobody approved this tool call within {} s, so it was denied",
                        config.ask_timeout_secs
                    )));
                }
            }
        }
        ToolPolicy::Auto => {}
    }
    ctx.log(LogStream::Info, format!("{shown}\n")).await;
    Ok(tools::run(name, input, &ctx.work_dir, limits, env).await)
}

fn describe_call(name: &str, input: &Value) -> String {
    match name {
        "run_shell" => format!(
            "run_shell `{}`",
            input["command"].as_str().unwrap_or_default()
        ),
        "read_file" | "write_file" | "edit_file" => {
            format!("{name} {}", input["path"].as_str().unwrap_or_default())
        }
        "list_files" => format!("list_files {}", input["path"].as_str().unwrap_or(".")),
        other => format!("{other} {input}"),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}
