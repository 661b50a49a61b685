//! The `external` executor: hands the step as JSON on stdin to a configured program
//! (another agent framework) and reads its JSON result from stdout.

use std::process::Stdio;

use agenthub_protocol::LogStream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::config::ExternalConfig;
use crate::executor::env::ChildEnv;
use crate::executor::process::Group;
use crate::executor::{Failure, Outcome, StepCtx};

/// The most the program may print on stdout.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// How reading the program's output ended.
enum Ended {
    Output(std::io::Result<Vec<u8>>),
    TooMuch,
    Stopped,
}

/// What the program prints on stdout.
#[derive(Debug, Deserialize)]
struct ExternalResult {
    #[serde(default = "yes")]
    ok: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retryable: bool,
}

fn yes() -> bool {
    true
}

/// Runs the configured program on the step, with `env` and the variables `[external]
/// env` sets.
pub async fn execute(
    ctx: &mut StepCtx,
    config: &ExternalConfig,
    mut env: ChildEnv,
) -> Result<Outcome, Failure> {
    let Some(program) = &config.program else {
        return Err(Failure::fatal(
            "this agent has no external program configured ([external] program in config.toml)",
        ));
    };
    let input = json!({
        "step": ctx.step,
        "attempt": ctx.attempt,
        "work_dir": ctx.work_dir,
    });
    for (name, value) in &config.env {
        env.set(name, value)
            .map_err(|err| Failure::fatal(format!("[external] env: {err}")))?;
    }
    let mut command = Command::new(program);
    env.apply(&mut command);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .args(&config.args)
        .current_dir(&ctx.work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| Failure::fatal(format!("cannot start {}: {err}", program.display())))?;
    let group = Group::of(&child);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let body = serde_json::to_vec(&input).expect("the step encodes");
    let write = async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    };
    let mut limited = stdout.take(MAX_OUTPUT_BYTES as u64 + 1);
    let read = async move {
        let mut output = Vec::new();
        limited.read_to_end(&mut output).await.map(|_| output)
    };
    let logs = async {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            ctx.log(LogStream::Stderr, format!("{line}\n")).await;
        }
    };
    let ended = {
        let run = async { tokio::join!(write, read) };
        tokio::pin!(run);
        tokio::pin!(logs);
        let mut logs_done = false;
        let ended = loop {
            tokio::select! {
                ((), read) = &mut run => break Ended::Output(read),
                () = ctx.stopped() => break Ended::Stopped,
                () = &mut logs, if !logs_done => logs_done = true,
            }
        };
        let rest_of_logs = async {
            if !logs_done {
                logs.await;
            }
        };
        match ended {
            Ended::Output(Ok(output)) if output.len() > MAX_OUTPUT_BYTES => {
                group.kill();
                Ended::TooMuch
            }
            Ended::Output(read) => {
                // The program closed stdout; its last stderr lines are still sent.
                let _ = tokio::time::timeout(ctx.grace, rest_of_logs).await;
                Ended::Output(read)
            }
            Ended::Stopped => {
                ctx.log(LogStream::Info, "stopping: SIGTERM to the program\n")
                    .await;
                tokio::join!(group.stop(&mut child, ctx.grace), rest_of_logs);
                Ended::Stopped
            }
            Ended::TooMuch => Ended::TooMuch,
        }
    };
    let output = match ended {
        Ended::Stopped => {
            return Err(Failure::retryable(format!(
                "{} was stopped",
                program.display()
            )));
        }
        Ended::TooMuch => {
            return Err(Failure::fatal(format!(
                "{} printed more than {} MiB on stdout and was stopped",
                program.display(),
                MAX_OUTPUT_BYTES >> 20
            )));
        }
        Ended::Output(read) => read.map_err(|err| {
            Failure::fatal(format!("reading {} failed: {err}", program.display()))
        })?,
    };
    let status = child.wait().await.map_err(|err| {
        Failure::fatal(format!("waiting for {} failed: {err}", program.display()))
    })?;
    drop(group);
    if !status.success() {
        return Err(Failure::fatal(format!(
            "{} exited with {status}",
            program.display()
        )));
    }
    let parsed: ExternalResult = serde_json::from_slice(&output).map_err(|err| {
        Failure::fatal(format!(
            "{} printed no JSON result on stdout ({err})",
            program.display()
        ))
    })?;
    if !parsed.ok {
        return Err(Failure {
            reason: parsed
                .reason
                .unwrap_or_else(|| format!("{} reported a failure", program.display())),
            retryable: parsed.retryable,
        });
    }
    Ok(Outcome {
        result: parsed.result,
        summary: parsed.summary,
        files: Vec::new(),
        usage: None,
        outputs: Vec::new(),
    })
}
