//! The executors' child processes against the fake hub: the explicit environment of
//! shell commands and the `external` program, the `external` protocol (JSON on stdin and
//! stdout, a crash, a timeout, an oversized output).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agenthub_protocol::{ClientFrame, OkReply, ServerFrame};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    Agentd, FakeHub, TOKEN, claim_ok, spawn, step_ready, submit_ok, text, wait_exit,
};

/// An agentd whose environment holds the Claude key, the agent token, a variable nobody
/// named and one `pass_env` names.
fn agentd_with_secrets() -> Agentd {
    Agentd::new()
        .with_env("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
        .with_env("AGENTD_TOKEN", TOKEN)
        .with_env("UNNAMED_VAR", "unnamed-value")
        .with_env("TEAM_REGISTRY", "registry.example.com")
        .with_env("LANG", "C.UTF-8")
}

/// Runs one step with `agentd run --once` and returns the frame that ends it (a submit
/// or a fail), after acknowledging it, the step's id and its log.
async fn run_one(agentd: &Agentd, executor: &str, input: Value) -> (ClientFrame, Uuid, String) {
    let mut hub = FakeHub::start().await;
    agentd.login(&hub.url);
    let child = spawn(agentd, &["run", "--once", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(1, step_id, executor, input)).await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let (frame, logs) = conn.recv_with_logs().await;
    match &frame {
        ClientFrame::StepSubmit(submit) => conn.send(submit_ok(submit.id)).await,
        ClientFrame::StepFail(fail) => conn.send(ServerFrame::Ok(OkReply::new(fail.id))).await,
        other => panic!("expected a submit or a fail, got {other:?}"),
    }
    let out = wait_exit(child).await;
    assert!(out.status.code().is_some(), "{}", text(&out.stderr));
    (frame, step_id, logs)
}

fn env_lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_step_gets_the_basics_and_what_it_names_but_no_secret() {
    let agentd = agentd_with_secrets();
    agentd.write_config("pass_env = [\"TEAM_REGISTRY\"]\n");
    let (frame, step_id, stderr) = run_one(
        &agentd,
        "shell",
        json!({"command": "env > env.txt", "env": {"BUILD_MODE": "release"}}),
    )
    .await;
    assert!(
        matches!(frame, ClientFrame::StepSubmit(_)),
        "{frame:?} {stderr}"
    );
    let env = std::fs::read_to_string(agentd.work_dir(step_id).join("env.txt")).unwrap();
    let lines = env_lines(&env);
    assert!(lines.iter().any(|line| line.starts_with("PATH=")), "{env}");
    assert!(
        lines.contains(&format!("HOME={}", agentd.home.path().display()).as_str()),
        "{env}"
    );
    assert!(lines.contains(&"LANG=C.UTF-8"), "{env}");
    assert!(
        lines.contains(&"TEAM_REGISTRY=registry.example.com"),
        "{env}"
    );
    assert!(lines.contains(&"BUILD_MODE=release"), "{env}");
    assert!(
        lines.contains(&format!("AGENTD_STEP_ID={step_id}").as_str()),
        "{env}"
    );
    assert!(lines.contains(&"AGENTD_ATTEMPT=1"), "{env}");
    assert!(!env.contains("must-not-leak"), "{env}");
    assert!(!env.contains(TOKEN), "{env}");
    assert!(!env.contains("UNNAMED_VAR"), "{env}");
    assert!(!env.contains("XDG_CONFIG_HOME"), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_naming_a_secret_in_its_env_fails_and_runs_nothing() {
    let agentd = agentd_with_secrets();
    let (frame, step_id, _) = run_one(
        &agentd,
        "shell",
        json!({"command": "touch ran.txt", "env": {"ANTHROPIC_API_KEY": "x"}}),
    )
    .await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert_eq!(
        fail.reason,
        "`ANTHROPIC_API_KEY` holds a secret of agentd and is never passed to a program a step runs"
    );
    assert!(!fail.retryable);
    assert!(!agentd.work_dir(step_id).join("ran.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_passing_a_secret_is_refused_at_start() {
    let agentd = Agentd::new();
    agentd.write_config("pass_env = [\"PATH\", \"ANTHROPIC_API_KEY\"]\n");
    let out = agentd.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("names `ANTHROPIC_API_KEY`, a secret of agentd"),
        "{}",
        text(&out.stderr)
    );
}

/// Writes an executable script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// An agentd whose `external` program is `body` (a shell script).
fn agentd_with_external(body: &str, extra_config: &str) -> Agentd {
    let agentd = agentd_with_secrets();
    let program = script(agentd.home.path(), "external-agent", body);
    agentd.write_config(&format!(
        "pass_env = [\"TEAM_REGISTRY\"]\n{extra_config}\n[external]\nprogram = \"{}\"\nargs = [\"--mode\", \"team\"]\nenv = {{ AGENT_PROFILE = \"ci\" }}\n",
        program.display()
    ));
    agentd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_program_reads_the_step_and_answers_in_json_without_secrets() {
    let agentd = agentd_with_external(
        "env > env.txt\necho \"$@\" > args.txt\ncat > step.json\necho progress >&2\n\
         printf '{\"ok\": true, \"result\": {\"pages\": 3}, \"summary\": \"outlined\"}'\n",
        "",
    );
    let (frame, step_id, logs) = run_one(&agentd, "external", json!({"topic": "quarterly"})).await;
    let ClientFrame::StepSubmit(submit) = frame else {
        panic!("expected a submit, got {frame:?} {logs}");
    };
    assert!(logs.contains("progress"), "{logs}");
    assert_eq!(submit.result, json!({"pages": 3}));
    assert_eq!(submit.summary.as_deref(), Some("outlined"));
    let dir = agentd.work_dir(step_id);
    let step: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("step.json")).unwrap()).unwrap();
    assert_eq!(step["step"]["step_id"], json!(step_id));
    assert_eq!(step["step"]["input"], json!({"topic": "quarterly"}));
    assert_eq!(step["attempt"], 1);
    assert_eq!(step["work_dir"], json!(dir));
    assert_eq!(
        std::fs::read_to_string(dir.join("args.txt")).unwrap(),
        "--mode team\n"
    );
    let env = std::fs::read_to_string(dir.join("env.txt")).unwrap();
    let lines = env_lines(&env);
    assert!(lines.contains(&"AGENT_PROFILE=ci"), "{env}");
    assert!(
        lines.contains(&"TEAM_REGISTRY=registry.example.com"),
        "{env}"
    );
    assert!(lines.iter().any(|line| line.starts_with("PATH=")), "{env}");
    assert!(!env.contains("must-not-leak"), "{env}");
    assert!(!env.contains(TOKEN), "{env}");
    assert!(!env.contains("UNNAMED_VAR"), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_program_reporting_a_failure_fails_the_step_with_its_reason() {
    let agentd = agentd_with_external(
        "cat > /dev/null\nprintf '{\"ok\": false, \"reason\": \"the repository is locked\", \"retryable\": true}'\n",
        "",
    );
    let (frame, _, _) = run_one(&agentd, "external", json!({})).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert_eq!(fail.reason, "the repository is locked");
    assert!(fail.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_external_program_fails_the_step_and_its_stderr_is_logged() {
    let agentd = agentd_with_external(
        "cat > /dev/null\necho 'segfault in planner' >&2\nkill -SEGV $$\n",
        "",
    );
    let (frame, _, logs) = run_one(&agentd, "external", json!({})).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert!(logs.contains("segfault in planner"), "{logs}");
    assert!(
        fail.reason.contains("external-agent exited with"),
        "{}",
        fail.reason
    );
    assert!(
        fail.reason.contains("SIGSEGV") || fail.reason.contains("signal: 11"),
        "{}",
        fail.reason
    );
    assert!(!fail.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_program_printing_no_json_fails_the_step() {
    let agentd = agentd_with_external("cat > /dev/null\necho 'all done!'\n", "");
    let (frame, _, _) = run_one(&agentd, "external", json!({})).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert!(
        fail.reason
            .contains("external-agent printed no JSON result on stdout"),
        "{}",
        fail.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_program_printing_too_much_is_stopped_and_fails_the_step() {
    let agentd = agentd_with_external("cat > /dev/null\nexec yes '{\"ok\": true}'\n", "");
    let (frame, _, _) = run_one(&agentd, "external", json!({})).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert!(
        fail.reason.contains("printed more than 16 MiB on stdout"),
        "{}",
        fail.reason
    );
    assert!(!fail.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_program_running_past_the_step_budget_is_stopped() {
    let agentd = agentd_with_external(
        "cat > /dev/null\necho started > started.txt\nsleep 600\n",
        "step_timeout_secs = 2\ncancel_grace_secs = 1\n",
    );
    let (frame, step_id, _) = run_one(&agentd, "external", json!({})).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert_eq!(fail.reason, "the step exceeded its time budget of 2 s");
    assert!(agentd.work_dir(step_id).join("started.txt").exists());
}
