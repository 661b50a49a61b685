//! The `shell` executor: runs `step.input.command` in the step's work dir, streams
//! stdout and stderr as `step.log`, and lets the exit code decide.

use std::path::Path;
use std::process::Stdio;

use agenthub_protocol::{LogStream, StepInfo};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::executor::env::ChildEnv;
use crate::executor::process::Group;
use crate::executor::{Failure, Outcome, StepCtx, tail};

const OUTPUT_TAIL_BYTES: usize = 4096;

/// A command run by the platform shell in `dir` with exactly the environment `env`, in
/// its own process group, killed when dropped.
pub fn shell_command(command: &str, dir: &Path, env: &ChildEnv) -> Command {
    #[cfg(unix)]
    let mut cmd = {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command);
        cmd.process_group(0);
        cmd
    };
    #[cfg(not(unix))]
    let mut cmd = {
        let mut cmd = Command::new("cmd");
        cmd.arg("/C").arg(command);
        cmd
    };
    env.apply(&mut cmd);
    cmd.current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// The step's command: `input.command`, a string.
pub fn command_of(step: &StepInfo) -> Option<&str> {
    step.input.get("command").and_then(|value| value.as_str())
}

/// Runs the step's command with `env` and the step's `input.env`.
pub async fn execute(ctx: &mut StepCtx, mut env: ChildEnv) -> Result<Outcome, Failure> {
    let Some(command) = command_of(&ctx.step) else {
        return Err(Failure::fatal(
            "a shell step needs `input.command` (a string), e.g. {\"command\": \"make test\"}",
        ));
    };
    let command = command.to_string();
    if let Some(step_env) = ctx.step.input.get("env") {
        env.set_json(step_env, "input.env")
            .map_err(Failure::fatal)?;
    }
    ctx.log(LogStream::Info, format!("$ {command}\n")).await;
    let mut child = shell_command(&command, &ctx.work_dir, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| Failure::fatal(format!("cannot start the shell: {err}")))?;
    let (lines_tx, mut lines_rx) = mpsc::channel::<(LogStream, String)>(64);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = async {
        tokio::join!(
            forward_lines(stdout, LogStream::Stdout, lines_tx.clone()),
            forward_lines(stderr, LogStream::Stderr, lines_tx),
        )
    };
    let group = Group::of(&child);
    let mut stdout_text = String::new();
    let mut stderr_text = String::new();
    let forward = async {
        while let Some((stream, line)) = lines_rx.recv().await {
            let buffer = match stream {
                LogStream::Stderr => &mut stderr_text,
                _ => &mut stdout_text,
            };
            buffer.push_str(&line);
            if buffer.len() > 4 * OUTPUT_TAIL_BYTES {
                *buffer = tail(buffer, OUTPUT_TAIL_BYTES).to_string();
            }
            ctx.log(stream, line).await;
        }
    };
    let stopped = {
        let output = async { tokio::join!(readers, forward) };
        tokio::pin!(output);
        let stopped = tokio::select! {
            _ = &mut output => false,
            () = ctx.stopped() => true,
        };
        if stopped {
            // What the processes print while they stop is still sent.
            ctx.log(
                LogStream::Info,
                "stopping: SIGTERM to the step's processes\n",
            )
            .await;
            tokio::join!(group.stop(&mut child, ctx.grace), &mut output);
        }
        stopped
    };
    if stopped {
        return Err(Failure::retryable(format!("`{command}` was stopped")));
    }
    let status = child
        .wait()
        .await
        .map_err(|err| Failure::fatal(format!("waiting for the command failed: {err}")))?;
    drop(group);
    let stdout_tail = tail(&stdout_text, OUTPUT_TAIL_BYTES).to_string();
    let stderr_tail = tail(&stderr_text, OUTPUT_TAIL_BYTES).to_string();
    match status.code() {
        Some(0) => Ok(Outcome {
            result: json!({"exit_code": 0, "stdout": stdout_tail, "stderr": stderr_tail}),
            summary: Some(format!("`{command}` succeeded")),
            files: Vec::new(),
            usage: None,
            outputs: Vec::new(),
        }),
        Some(code) => Err(Failure::fatal(format!(
            "`{command}` exited with status {code}{}",
            last_line(&stderr_tail)
                .map(|line| format!(": {line}"))
                .unwrap_or_default()
        ))),
        None => Err(Failure::fatal(format!(
            "`{command}` was killed by a signal"
        ))),
    }
}

async fn forward_lines(
    reader: impl AsyncRead + Unpin,
    stream: LogStream,
    lines: mpsc::Sender<(LogStream, String)>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).into_owned();
                if lines.send((stream, line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().find(|line| !line.trim().is_empty())
}
