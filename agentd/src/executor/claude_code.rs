//! The `claude-code` executor: runs the `claude` CLI headless in the step's work dir
//! (`claude -p PROMPT --output-format stream-json --verbose`), streams what it says and
//! does as `step.log` lines, and submits its final result with the token usage. The
//! session id is kept in the work dir so that a rework resumes the same session. The
//! files its file tools (`Write`, `Edit`, `MultiEdit`, `NotebookEdit`) changed inside the
//! work dir are the step's outputs: uploaded and referenced in the submit.
//!
//! Claude Code's permission prompts come to agentd: `--permission-prompt-tool
//! mcp__agentd__approve` names the tool of an MCP server that is agentd itself
//! (`agentd mcp-permission --socket PATH`, started by Claude Code from `--mcp-config`).
//! That server hands each prompt over a Unix socket to this executor, which answers by
//! the teammate's policy (`[claude_code.tools]`: `auto`, `ask`, `deny` per tool or
//! `Tool(pattern)`); `ask` becomes a question to the agent's own member through the hub
//! (Allow / Deny), and no answer in time denies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agenthub_protocol::{LogStream, StepInfo, Usage};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::config::{ClaudeCodeConfig, ToolPolicy};
use crate::credentials::Secret;
use crate::executor::env::ChildEnv;
use crate::executor::process::Group;
use crate::executor::{Failure, Outcome, StepCtx, claude, tail};

/// The MCP server name and tool Claude Code asks for permission.
pub const PERMISSION_TOOL: &str = "mcp__agentd__approve";

/// Where the session id of a step's Claude Code session is kept, in its work dir.
const SESSION_FILE: &str = ".agentd-claude-session";

/// The prompt: the step as the `claude` executor words it.
pub fn prompt(step: &StepInfo) -> String {
    claude::prompt(step)
}

/// The policy for one permission prompt: the most specific rule that matches wins
/// (`Tool(pattern)` over `Tool` over `*`); among several matching patterns the strictest
/// (deny, then ask, then auto). Without a matching rule, `ask`.
pub fn policy(config: &ClaudeCodeConfig, tool: &str, input: &Value) -> ToolPolicy {
    let argument = main_argument(tool, input);
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    let mut with_pattern: Option<ToolPolicy> = None;
    let mut bare = None;
    let mut any = None;
    for (rule, policy) in &config.tools {
        if rule == "*" {
            any = Some(*policy);
        } else if rule == tool {
            bare = Some(*policy);
        } else if let Some(pattern) = rule
            .strip_prefix(tool)
            .and_then(|rest| rest.strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
            && glob::Pattern::new(pattern)
                .is_ok_and(|pattern| pattern.matches_with(&argument, options))
        {
            with_pattern = Some(match (with_pattern, *policy) {
                (Some(ToolPolicy::Deny), _) | (_, ToolPolicy::Deny) => ToolPolicy::Deny,
                (Some(ToolPolicy::Ask), _) | (_, ToolPolicy::Ask) => ToolPolicy::Ask,
                _ => ToolPolicy::Auto,
            });
        }
    }
    with_pattern.or(bare).or(any).unwrap_or(ToolPolicy::Ask)
}

/// What a `Tool(pattern)` rule matches: the command of `Bash`, the path of the file
/// tools, the URL of `WebFetch`, else the input as JSON.
fn main_argument(tool: &str, input: &Value) -> String {
    let field = match tool {
        "Bash" => "command",
        "Read" | "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "file_path",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Glob" | "Grep" => "pattern",
        _ => "",
    };
    input
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| input.to_string())
}

/// How a tool call is shown to the human and in the log.
fn describe(tool: &str, input: &Value) -> String {
    let argument = main_argument(tool, input);
    let argument: String = argument.chars().take(300).collect();
    format!("{tool}({argument})")
}

/// Runs Claude Code on the step.
pub async fn execute(
    ctx: &mut StepCtx,
    config: &ClaudeCodeConfig,
    mut env: ChildEnv,
    key: Option<&Secret>,
) -> Result<Outcome, Failure> {
    let program = config
        .program
        .clone()
        .unwrap_or_else(|| PathBuf::from("claude"));
    if config.pass_key
        && let Some(key) = key
    {
        env.set_secret("ANTHROPIC_API_KEY", key.expose());
    }
    let session_file = ctx.work_dir.join(SESSION_FILE);
    let resume = match &ctx.step.rework_comment {
        Some(_) => std::fs::read_to_string(&session_file)
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty()),
        None => None,
    };
    let socket_path = ctx.work_dir.join(".agentd-permission.sock");
    let _ = std::fs::remove_file(&socket_path);
    let listener = bind(&socket_path)?;
    let mcp_config = mcp_config(&socket_path)?;
    let mcp_config_path = ctx.work_dir.join(".agentd-mcp.json");
    std::fs::write(&mcp_config_path, mcp_config.to_string())
        .map_err(|err| Failure::retryable(format!("cannot write the MCP configuration: {err}")))?;

    let text = match (&resume, &ctx.step.rework_comment) {
        (Some(_), Some(comment)) => format!(
            "A reviewer rejected your result with this comment: {comment}\nRework the step accordingly."
        ),
        _ => prompt(&ctx.step),
    };
    let mut command = Command::new(&program);
    env.apply(&mut command);
    #[cfg(unix)]
    command.process_group(0);
    command
        .arg("-p")
        .arg(&text)
        .args(["--output-format", "stream-json", "--verbose"])
        .arg("--mcp-config")
        .arg(&mcp_config_path)
        .args(["--permission-prompt-tool", PERMISSION_TOOL]);
    if let Some(model) = &config.model {
        command.args(["--model", model]);
    }
    if let Some(session) = &resume {
        command.args(["--resume", session]);
    }
    command
        .args(&config.args)
        .current_dir(&ctx.work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = std::time::SystemTime::now();
    let mut child = command.spawn().map_err(|err| {
        Failure::fatal(format!(
            "cannot start {} ({err}): install Claude Code (npm install -g @anthropic-ai/claude-code) or set `program` under [claude_code] in config.toml",
            program.display()
        ))
    })?;
    let group = Group::of(&child);
    ctx.log(
        LogStream::Info,
        match &resume {
            Some(session) => format!("claude-code: resuming session {session}\n"),
            None => "claude-code: starting\n".to_string(),
        },
    )
    .await;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut errors = BufReader::new(stderr).lines();
    let mut stderr_text = String::new();
    let mut run = Run::default();
    let mut stdout_open = true;
    let mut stderr_open = true;
    let stopped = loop {
        if !stdout_open && !stderr_open {
            break false;
        }
        tokio::select! {
            line = lines.next_line(), if stdout_open => match line {
                Ok(Some(line)) => run.on_line(ctx, &line).await,
                _ => stdout_open = false,
            },
            line = errors.next_line(), if stderr_open => match line {
                Ok(Some(line)) => {
                    stderr_text.push_str(&line);
                    stderr_text.push('\n');
                    if stderr_text.len() > 16 * 1024 {
                        stderr_text = tail(&stderr_text, 4096).to_string();
                    }
                    ctx.log(LogStream::Stderr, format!("{line}\n")).await;
                }
                _ => stderr_open = false,
            },
            accepted = accept(&listener) => {
                if let Some(stream) = accepted {
                    answer_prompt(ctx, config, stream).await;
                }
            }
            () = ctx.stopped() => break true,
        }
    };
    if stopped {
        ctx.log(LogStream::Info, "stopping: SIGTERM to Claude Code\n")
            .await;
        group.stop(&mut child, ctx.grace).await;
        let _ = std::fs::remove_file(&socket_path);
        return Err(Failure::retryable("Claude Code was stopped"));
    }
    let status = child
        .wait()
        .await
        .map_err(|err| Failure::fatal(format!("waiting for Claude Code failed: {err}")))?;
    drop(group);
    let _ = std::fs::remove_file(&socket_path);
    if let Some(session) = &run.session_id {
        let _ = std::fs::write(&session_file, session);
    }
    let Some(result) = run.result else {
        let last = stderr_text
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("");
        return Err(Failure::fatal(format!(
            "Claude Code exited with {status} without a result{}",
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        )));
    };
    let subtype = result["subtype"].as_str().unwrap_or("success");
    let text = result["result"].as_str().unwrap_or_default().to_string();
    if result["is_error"].as_bool() == Some(true) || subtype != "success" {
        return Err(Failure::fatal(format!(
            "Claude Code failed ({subtype}){}",
            if text.is_empty() {
                String::new()
            } else {
                format!(": {}", claude_shorten(&text, 500))
            }
        )));
    }
    let usage = &result["usage"];
    let outputs = changed_files(ctx, &run.written, started).await;
    Ok(Outcome {
        result: json!({
            "text": text,
            "session_id": run.session_id,
            "num_turns": result.get("num_turns").cloned().unwrap_or(Value::Null),
            "total_cost_usd": result.get("total_cost_usd").cloned().unwrap_or(Value::Null),
        }),
        summary: Some(claude_shorten(text.trim(), 2000)),
        files: Vec::new(),
        usage: Some(Usage {
            model: run.model.unwrap_or_else(|| "claude-code".into()),
            input_tokens: usage["input_tokens"].as_u64().unwrap_or(0)
                + usage["cache_read_input_tokens"].as_u64().unwrap_or(0)
                + usage["cache_creation_input_tokens"].as_u64().unwrap_or(0),
            output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
        }),
        outputs,
    })
}

fn claude_shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}

/// What the stream said so far.
#[derive(Debug, Default)]
struct Run {
    session_id: Option<String>,
    model: Option<String>,
    result: Option<Value>,
    /// The paths its file tools (`Write`, `Edit`, `MultiEdit`, `NotebookEdit`) named,
    /// as given, in order.
    written: Vec<String>,
}

/// The file a file-changing tool call names, if `tool` is one.
fn written_path<'a>(tool: &str, input: &'a Value) -> Option<&'a str> {
    let field = match tool {
        "Write" | "Edit" | "MultiEdit" => "file_path",
        "NotebookEdit" => "notebook_path",
        _ => return None,
    };
    input.get(field).and_then(Value::as_str)
}

/// The files Claude Code changed that are to be uploaded: those its file tools named
/// that exist in the work dir and were modified since `started` (a denied call changes
/// nothing), without agentd's own files; each once, in the order first named. Paths
/// outside the work dir are left out with a log line.
async fn changed_files(
    ctx: &StepCtx,
    written: &[String],
    started: std::time::SystemTime,
) -> Vec<PathBuf> {
    let Ok(root) = ctx.work_dir.canonicalize() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for named in written {
        let path = ctx.work_dir.join(named);
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        let Ok(relative) = real.strip_prefix(&root) else {
            ctx.log(
                LogStream::Info,
                format!("not uploaded: {named} is outside the step's work dir\n"),
            )
            .await;
            continue;
        };
        let own = relative
            .components()
            .next()
            .is_some_and(|first| first.as_os_str().to_string_lossy().starts_with(".agentd-"));
        let changed = std::fs::metadata(&real)
            .ok()
            .filter(|meta| meta.is_file())
            .and_then(|meta| meta.modified().ok())
            .is_some_and(|modified| modified >= started);
        let file = ctx.work_dir.join(relative);
        if !own && changed && !files.contains(&file) {
            files.push(file);
        }
    }
    files
}

impl Run {
    async fn on_line(&mut self, ctx: &StepCtx, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            if !line.trim().is_empty() {
                ctx.log(LogStream::Stdout, format!("{line}\n")).await;
            }
            return;
        };
        if let Some(session) = message["session_id"].as_str() {
            self.session_id = Some(session.to_string());
        }
        match message["type"].as_str() {
            Some("system") => {
                if let Some(model) = message["model"].as_str() {
                    self.model = Some(model.to_string());
                }
            }
            Some("assistant") => {
                for block in message["message"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    match block["type"].as_str() {
                        Some("text") => {
                            let text = block["text"].as_str().unwrap_or_default();
                            ctx.log(LogStream::Info, format!("{text}\n")).await;
                        }
                        Some("tool_use") => {
                            let name = block["name"].as_str().unwrap_or("?");
                            if let Some(path) = written_path(name, &block["input"]) {
                                self.written.push(path.to_string());
                            }
                            ctx.log(
                                LogStream::Info,
                                format!("tool: {}\n", describe(name, &block["input"])),
                            )
                            .await;
                        }
                        _ => {}
                    }
                }
            }
            Some("result") => self.result = Some(message),
            _ => {}
        }
    }
}

/// The `--mcp-config` naming agentd as the permission server.
fn mcp_config(socket: &Path) -> Result<Value, Failure> {
    let exe = std::env::current_exe()
        .map_err(|err| Failure::fatal(format!("cannot find agentd's own program: {err}")))?;
    Ok(json!({
        "mcpServers": {
            "agentd": {
                "type": "stdio",
                "command": exe,
                "args": ["mcp-permission", "--socket", socket],
                "env": {},
            }
        }
    }))
}

#[cfg(unix)]
type Listener = tokio::net::UnixListener;
#[cfg(unix)]
type Stream = tokio::net::UnixStream;

#[cfg(unix)]
fn bind(path: &Path) -> Result<Listener, Failure> {
    Listener::bind(path).map_err(|err| {
        Failure::retryable(format!(
            "cannot listen for Claude Code's permission prompts on {}: {err}",
            path.display()
        ))
    })
}

#[cfg(unix)]
async fn accept(listener: &Listener) -> Option<Stream> {
    listener.accept().await.ok().map(|(stream, _)| stream)
}

#[cfg(not(unix))]
type Listener = ();
#[cfg(not(unix))]
type Stream = tokio::io::DuplexStream;

#[cfg(not(unix))]
fn bind(_path: &Path) -> Result<Listener, Failure> {
    Err(Failure::fatal(
        "the claude-code executor needs Unix sockets for its permission prompts",
    ))
}

#[cfg(not(unix))]
async fn accept(_listener: &Listener) -> Option<Stream> {
    std::future::pending().await
}

/// Reads one permission prompt (`{"tool_name", "input"}`) and writes the answer
/// (`{"behavior": "allow", "updatedInput"}` or `{"behavior": "deny", "message"}`).
async fn answer_prompt(ctx: &mut StepCtx, config: &ClaudeCodeConfig, stream: Stream) {
    let (read, mut write) = tokio::io::split(stream);
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let Ok(prompt) = serde_json::from_str::<Value>(&line) else {
        return;
    };
    let tool = prompt["tool_name"].as_str().unwrap_or("?").to_string();
    let input = prompt.get("input").cloned().unwrap_or(json!({}));
    let answer = decide(ctx, config, &tool, &input).await;
    let mut text = answer.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn decide(ctx: &mut StepCtx, config: &ClaudeCodeConfig, tool: &str, input: &Value) -> Value {
    let shown = describe(tool, input);
    let allow = || json!({"behavior": "allow", "updatedInput": input});
    let deny = |message: String| json!({"behavior": "deny", "message": message});
    match policy(config, tool, input) {
        ToolPolicy::Auto => {
            ctx.log(LogStream::Info, format!("allowed by policy: {shown}\n"))
                .await;
            allow()
        }
        ToolPolicy::Deny => {
            ctx.log(LogStream::Info, format!("denied by policy: {shown}\n"))
                .await;
            deny(format!("{tool} is denied by this agent's policy"))
        }
        ToolPolicy::Ask => {
            ctx.log(LogStream::Info, format!("asking the human: {shown}\n"))
                .await;
            let timeout = Duration::from_secs(config.ask_timeout_secs);
            let answer = ctx
                .ask(
                    &format!("Claude Code wants to use {shown}. Allow it?"),
                    &["Allow", "Deny"],
                    timeout,
                    &format!("Deny (no answer within {} s)", config.ask_timeout_secs),
                )
                .await;
            match answer {
                Ok(Some(answer)) if answer.trim().eq_ignore_ascii_case("allow") => {
                    ctx.log(LogStream::Info, format!("allowed by the human: {shown}\n"))
                        .await;
                    allow()
                }
                Ok(Some(answer)) => {
                    ctx.log(LogStream::Info, format!("denied by the human: {shown}\n"))
                        .await;
                    deny(format!(
                        "the human denied this tool call (answer: {answer})"
                    ))
                }
                Ok(None) => {
                    ctx.log(
                        LogStream::Info,
                        format!("no answer in time, denied: {shown}\n"),
                    )
                    .await;
                    deny(format!(
                        "nobody allowed this tool call within {} s, so it was denied",
                        config.ask_timeout_secs
                    ))
                }
                Err(failure) => deny(format!("the human could not be asked: {}", failure.reason)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
