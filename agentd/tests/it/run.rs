//! `agentd run` against the fake hub: handshake, claim, shell execution, submit,
//! dedupe by seq, resume after a dropped connection, the journal, and refusals.

use std::process::Output;
use std::time::Duration;

use agenthub_protocol::{ClientFrame, ErrorReply, Ping, ServerFrame, StepFail, StepRevoked};
use axum::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Agentd, FakeHub, claim_ok, spawn, step_ready, submit_ok, text, wait_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_step_is_claimed_executed_streamed_and_submitted() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    assert_eq!(conn.hello_last_seq(), 0);
    conn.welcome(0, 60_000).await;
    conn.send(ServerFrame::Ping(Ping { nonce: 7 })).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "echo outline > outline.md; echo building; echo careful >&2"}),
    ))
    .await;
    let mut saw_pong = false;
    let claim = loop {
        match conn.recv().await {
            ClientFrame::Pong(pong) => {
                assert_eq!(pong.nonce, 7);
                saw_pong = true;
            }
            ClientFrame::StepClaim(claim) => break claim,
            ClientFrame::Ack(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(saw_pong, "ping is answered before the claim");
    assert_eq!(claim.step_id, step_id);
    conn.send(claim_ok(claim.id, 1)).await;
    let (frame, logs) = conn.recv_with_logs().await;
    let ClientFrame::StepSubmit(submit) = frame else {
        panic!("expected a submit, got {frame:?}");
    };
    assert_eq!(submit.step_id, step_id);
    assert_eq!(submit.attempt, 1);
    assert_eq!(submit.result["exit_code"], 0);
    assert!(logs.contains("building"), "{logs}");
    assert!(logs.contains("careful"), "{logs}");
    conn.send(submit_ok(submit.id)).await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(agentd.work_dir(step_id).join("outline.md")).unwrap(),
        "outline\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_fails_the_step_with_its_reason() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "echo no such file >&2; exit 3"}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let ClientFrame::StepFail(fail) = conn.recv_significant().await else {
        panic!("expected a fail");
    };
    assert!(
        fail.reason.contains("exited with status 3"),
        "{}",
        fail.reason
    );
    assert!(fail.reason.contains("no such file"), "{}", fail.reason);
    assert!(!fail.retryable);
    conn.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(fail.id)))
        .await;
    let out = wait_exit(child).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("exited with status 3"));
}

/// Runs `agentd run --once` on one `step.ready` of a step naming no executor; returns the
/// `step.fail` it sends and the process output.
async fn fail_unnamed_step(agentd: &Agentd, input: serde_json::Value) -> (StepFail, Output) {
    let mut hub = FakeHub::start().await;
    agentd.login(&hub.url);
    let child = spawn(agentd, &["run", "--once", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let mut ready = step_ready(1, Uuid::now_v7(), "shell", input);
    if let ServerFrame::StepReady(ready) = &mut ready {
        ready.step.executor = None;
    }
    conn.send(ready).await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let ClientFrame::StepFail(fail) = conn.recv_significant().await else {
        panic!("expected a fail");
    };
    conn.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(fail.id)))
        .await;
    let out = wait_exit(child).await;
    (fail, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_configuration_and_no_key_a_step_fails_saying_how_to_set_a_key() {
    let agentd = Agentd::new();
    let (fail, out) = fail_unnamed_step(&agentd, json!({})).await;
    let config = agentd.config_dir().join("config.toml");
    assert_eq!(
        fail.reason,
        format!(
            "this step names no executor, so it runs with the `claude` executor, which needs \
             a Claude API key: run `agentd key set` or set ANTHROPIC_API_KEY (or set \
             default_executor in {})",
            config.display()
        )
    );
    assert!(!fail.retryable, "another attempt here cannot succeed");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        !saved.contains("default_executor"),
        "login does not pin a default executor: {saved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_shell_default_without_a_command_says_what_to_set() {
    let agentd = Agentd::new();
    agentd.write_config("default_executor = \"shell\"\n");
    let (fail, out) = fail_unnamed_step(&agentd, json!({})).await;
    assert!(
        fail.reason.starts_with(&format!(
            "this step names no executor, so it runs with the `shell` executor \
             (default_executor in {}), which needs `input.command`",
            agentd.config_dir().join("config.toml").display()
        )),
        "{}",
        fail.reason
    );
    assert!(fail.reason.contains("`agentd key set`"), "{}", fail.reason);
    assert!(!fail.retryable);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_default_executor_is_refused_at_start() {
    let agentd = Agentd::new();
    agentd.write_config("default_executor = \"bash\"\n");
    let out = agentd.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("is `bash`; expected claude, claude-code, shell, manual or external"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_finished_while_offline_is_journaled_and_sent_after_reconnecting() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "sleep 1; echo done > result.txt"}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    // The hub goes away while the step runs (a restart: close 1001).
    conn.close(1001).await;
    let result_file = agentd.work_dir(step_id).join("result.txt");
    assert!(crate::support::eventually_exists(&result_file).await);

    let mut conn = hub.accept().await;
    assert_eq!(
        conn.hello_last_seq(),
        1,
        "resumes after the processed event"
    );
    conn.welcome(1, 60_000).await;
    // A duplicate of the processed event is ignored (no second claim).
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "exit 1"}),
    ))
    .await;
    let frame = conn.recv_significant().await;
    let ClientFrame::StepSubmit(submit) = frame else {
        panic!("expected the journaled submit, got {frame:?}");
    };
    assert_eq!(submit.step_id, step_id);
    assert_eq!(submit.attempt, 1);
    conn.send(submit_ok(submit.id)).await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let journal = agentd.home.path().join("state/agentd/journal");
    assert_eq!(
        std::fs::read_dir(journal).unwrap().count(),
        0,
        "the journal is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_step_is_stopped_and_never_submitted() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let mut child = spawn(&agentd, &["run"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "sleep 2; touch finished"}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    conn.send(ServerFrame::StepRevoked(StepRevoked {
        seq: 2,
        step_id,
        task_id: Uuid::now_v7(),
        attempt: 1,
        reason: "lease expired".into(),
    }))
    .await;
    // A claim refused with conflict is normal and not retried.
    let other = Uuid::now_v7();
    conn.send(step_ready(3, other, "shell", json!({"command": "true"})))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    assert_eq!(claim.step_id, other);
    conn.send(ServerFrame::Error(ErrorReply {
        id: Some(claim.id),
        code: "conflict".into(),
        message: "step is claimed, not ready".into(),
    }))
    .await;
    // Wait past the revoked command's end: nothing is submitted.
    let quiet =
        tokio::time::timeout(std::time::Duration::from_secs(4), conn.recv_significant()).await;
    if let Ok(frame) = quiet {
        panic!("nothing more was expected, got {frame:?}");
    }
    assert!(!agentd.work_dir(step_id).join("finished").exists());
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_on_the_upgrade_stops_run_with_exit_code_4() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    hub.refuse_upgrades(StatusCode::UNAUTHORIZED);
    let out = wait_exit(spawn(&agentd, &["run"])).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("rejected the agent token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_session_is_not_reconnected() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    conn.close(4005).await;
    let out = wait_exit(child).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("another agentd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_done_reach_the_running_daemon() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(1, step_id, "manual", serde_json::Value::Null))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    // Give the worker a moment to start, then look at it.
    let mut shown = String::new();
    for _ in 0..50 {
        let out = agentd.run(&["status"]);
        shown = text(&out.stdout);
        if shown.contains(&step_id.to_string()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(shown.contains("agentd is running"), "{shown}");
    assert!(shown.contains("connected: yes"), "{shown}");
    assert!(shown.contains("Draft the outline"), "{shown}");

    let wrong = agentd.run(&["done", &Uuid::now_v7().to_string(), "--result", "x"]);
    assert_eq!(wrong.status.code(), Some(6));
    let done = agentd.run(&["done", &step_id.to_string(), "--result", "booked room 4"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let ClientFrame::StepSubmit(submit) = conn.recv_significant().await else {
        panic!("expected a submit");
    };
    assert_eq!(submit.result["text"], "booked room 4");
    assert_eq!(submit.summary.as_deref(), Some("booked room 4"));
    conn.send(submit_ok(submit.id)).await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_hub_refuses_as_invalid_fails_the_step_instead_of_vanishing() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "echo done"}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let ClientFrame::StepSubmit(submit) = conn.recv_significant().await else {
        panic!("expected a submit");
    };
    conn.send(ServerFrame::Error(ErrorReply {
        id: Some(submit.id),
        code: "invalid".into(),
        message: "a result references at most 100 files (field `files`)".into(),
    }))
    .await;
    // The step fails for good with the hub's reason, so its task ends and can be retried.
    let ClientFrame::StepFail(fail) = conn.recv_significant().await else {
        panic!("expected the step to be failed");
    };
    assert_eq!(
        (fail.step_id, fail.attempt, fail.retryable),
        (step_id, 1, false)
    );
    assert_eq!(
        fail.reason,
        "the hub refused the result: a result references at most 100 files (field `files`)"
    );
    let out = wait_exit(child).await;
    assert!(!out.status.success(), "{}", text(&out.stderr));
}

/// A MessagePack string.
fn msgpack_str(text: &str) -> Vec<u8> {
    assert!(text.len() < 256);
    let mut bytes = vec![0xd9, text.len() as u8];
    bytes.extend(text.as_bytes());
    bytes
}

/// A MessagePack map of keys and values already encoded.
fn msgpack_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = vec![0x80 | entries.len() as u8];
    for (key, value) in entries {
        bytes.extend(msgpack_str(key));
        bytes.extend(value);
    }
    bytes
}

/// `{"a": {"a": … 1 …}}` nested `depth` deep.
fn msgpack_nested(depth: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..depth {
        bytes.extend([0x81, 0xa1, b'a']);
    }
    bytes.push(0x01);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_step_is_acknowledged_and_failed_instead_of_asked_for_again() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    // A step whose input is nested 100 deep: more than agentd decodes (64).
    let too_deep = msgpack_map(&[
        ("type", msgpack_str("step.ready")),
        ("seq", vec![1]),
        (
            "step",
            msgpack_map(&[
                ("step_id", msgpack_str(&step_id.to_string())),
                ("task_id", msgpack_str(&Uuid::now_v7().to_string())),
                ("task_title", msgpack_str("Quarterly report")),
                ("key", msgpack_str("draft")),
                ("title", msgpack_str("Draft the outline")),
                ("attempt", vec![2]),
                ("executor", msgpack_str("shell")),
                ("input", msgpack_nested(100)),
                ("approval_level", vec![0]),
            ]),
        ),
    ]);
    conn.send_raw(too_deep).await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim of the undecodable step");
    };
    assert_eq!((claim.step_id, claim.attempt), (step_id, Some(2)));
    conn.send(claim_ok(claim.id, 2)).await;
    let ClientFrame::StepFail(fail) = conn.recv_significant().await else {
        panic!("expected the undecodable step to fail");
    };
    assert_eq!((fail.step_id, fail.attempt), (step_id, 2));
    assert!(
        fail.reason
            .starts_with("agentd cannot read this step as the hub sent it (malformed frame:"),
        "{}",
        fail.reason
    );
    assert!(!fail.retryable);
    conn.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(fail.id)))
        .await;
    // Another event agentd cannot read, which names no step: skipped too.
    conn.send_raw(msgpack_map(&[
        ("type", msgpack_str("task.updated")),
        ("seq", vec![2]),
        ("task", msgpack_nested(100)),
    ]))
    .await;
    // The session goes on in order: the next event is processed, not taken for a gap.
    let next = Uuid::now_v7();
    conn.send(step_ready(3, next, "shell", json!({"command": "true"})))
        .await;
    let mut acked = 0;
    let claim = loop {
        match conn.recv().await {
            ClientFrame::StepClaim(claim) => break claim,
            ClientFrame::Ack(ack) => acked = ack.seq,
            ClientFrame::StepLog(_) | ClientFrame::StepProgress(_) | ClientFrame::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(claim.step_id, next);
    conn.send(claim_ok(claim.id, 1)).await;
    while acked < 3 {
        if let ClientFrame::Ack(ack) = conn.recv().await {
            acked = ack.seq;
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(1), hub.accept())
            .await
            .is_err(),
        "agentd did not reconnect"
    );
}

/// Runs one `true` shell step with `agentd ARGS run --once`; returns agentd's stderr.
async fn stderr_of_one_step(args: &[&str]) -> String {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let mut all = args.to_vec();
    all.extend(["run", "--once", "--no-notify"]);
    let child = spawn(&agentd, &all);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    conn.send(step_ready(
        1,
        Uuid::now_v7(),
        "shell",
        json!({"command": "true"}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let ClientFrame::StepSubmit(submit) = conn.recv_significant().await else {
        panic!("expected a submit");
    };
    conn.send(submit_ok(submit.id)).await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_file_or_pipe_carry_no_colour_codes() {
    let stderr = stderr_of_one_step(&[]).await;
    assert!(stderr.contains("session open"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_a_line() {
    let stderr = stderr_of_one_step(&["--log-format", "json"]).await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let open = lines
        .iter()
        .find(|line| line["fields"]["message"] == "session open")
        .unwrap_or_else(|| panic!("no `session open` line in {stderr}"));
    assert_eq!(open["level"], "INFO");
    assert_eq!(open["fields"]["agent.name"], "min-laptop");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
