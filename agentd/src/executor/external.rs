//! The `external` executor: hands the step as JSON on stdin to a configured program
//! (another agent framework) and reads its JSON result from stdout.

use std::process::Stdio;

use agenthub_protocol::LogStream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::config::ExternalConfig;
use crate::executor::{Failure, Outcome, StepCtx};

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

/// Runs the configured program on the step.
pub async fn execute(ctx: &mut StepCtx, config: &ExternalConfig) -> Result<Outcome, Failure> {
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
    let mut child = Command::new(program)
        .args(&config.args)
        .current_dir(&ctx.work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env_remove("AGENTD_TOKEN")
        .spawn()
        .map_err(|err| Failure::fatal(format!("cannot start {}: {err}", program.display())))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let body = serde_json::to_vec(&input).expect("the step encodes");
    let write = async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    };
    let mut output = Vec::new();
    let read = stdout.read_to_end(&mut output);
    let logs = async {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            ctx.log(LogStream::Stderr, format!("{line}\n")).await;
        }
    };
    let ((), read, ()) = tokio::join!(write, read, logs);
    read.map_err(|err| Failure::fatal(format!("reading {} failed: {err}", program.display())))?;
    let status = child.wait().await.map_err(|err| {
        Failure::fatal(format!("waiting for {} failed: {err}", program.display()))
    })?;
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
    })
}
