//! Files in and out of steps against the real hub: a shell step's declared outputs are
//! uploaded and attached to its result; the next step finds them in `inputs/`, checked
//! against their size and digest, and a step whose inputs exceed `max_input_bytes` fails.
//! An upload cut off is sent again; agentd killed mid-upload resumes the uploads after
//! its restart without running the step again, and the submit names only complete files.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::hub::Hub;
use agenthub_protocol::ClientFrame;

use crate::support::{Agentd, FILE_BYTES, FakeHub, Relay, claim_ok, spawn, step_ready};

const WAIT: Duration = Duration::from_secs(30);

/// Creates a task `build` → `use` assigned to min's laptop; returns the two step ids.
async fn two_steps(hub: &Hub, build: Value, then: Value) -> (String, String) {
    let mut build = build;
    build["key"] = json!("build");
    build["title"] = json!("Build the report");
    build["assignees"] = json!(["min-laptop"]);
    build["executor"] = json!("shell");
    let mut then = then;
    then["key"] = json!("use");
    then["title"] = json!("Use the report");
    then["assignees"] = json!(["min-laptop"]);
    then["executor"] = json!("shell");
    then["depends_on"] = json!(["build"]);
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.owner_key,
            Some(json!({"title": "Quarterly report", "steps": [build, then]})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    (
        task["steps"][0]["id"].as_str().unwrap().to_string(),
        task["steps"][1]["id"].as_str().unwrap().to_string(),
    )
}

fn ended(step: &Value) -> bool {
    matches!(step["status"].as_str(), Some("done" | "failed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_outputs_reach_the_next_step_as_files_in_its_work_dir() {
    let hub = Hub::start().await;
    let agentd = Agentd::new();
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let (build, then) = two_steps(
        &hub,
        json!({"input": {
            "command": "mkdir -p dist && printf 'Q3 revenue: 42\\n' > dist/report.txt && printf 'draft\\n' > notes.md && printf 'x' > scratch.tmp",
            "outputs": ["dist/*.txt", "notes.md"],
        }}),
        json!({"input": {"command": "cat inputs/report.txt inputs/notes.md > seen.txt"}}),
    )
    .await;
    let built = hub
        .rest
        .wait_step(&hub.team.owner_key, &build, WAIT, "done", ended)
        .await;
    assert_eq!(built["status"], "done", "{built:#}");
    let files = built["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{built:#}");
    let (status, report) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/files/{}", files[0].as_str().unwrap()),
            &hub.team.owner_key,
            None,
        )
        .await;
    // The download is not JSON: the call answers null for its body, 200 for its status.
    assert_eq!(status, 200, "{report}");
    let used = hub
        .rest
        .wait_step(&hub.team.owner_key, &then, WAIT, "done", ended)
        .await;
    assert_eq!(used["status"], "done", "{used:#}");
    let seen = std::fs::read_to_string(
        agentd
            .work_dir(Uuid::parse_str(&then).unwrap())
            .join("seen.txt"),
    )
    .unwrap();
    assert_eq!(seen, "Q3 revenue: 42\ndraft\n");
    let (_, logs) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/steps/{then}/logs"),
            &hub.team.owner_key,
            None,
        )
        .await;
    let logs = logs.to_string();
    assert!(logs.contains("downloaded inputs/report.txt"), "{logs}");
    assert!(logs.contains("sha-256"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_output_that_is_missing_fails_the_step_and_references_nothing() {
    let hub = Hub::start().await;
    let agentd = Agentd::new();
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let (build, _) = two_steps(
        &hub,
        json!({"input": {"command": "printf 'a' > a.txt", "outputs": ["a.txt", "dist/*.tar.gz"]}}),
        json!({"input": {"command": "true"}}),
    )
    .await;
    let built = hub
        .rest
        .wait_step(&hub.team.owner_key, &build, WAIT, "failed", ended)
        .await;
    assert_eq!(built["status"], "failed", "{built:#}");
    assert_eq!(
        built["status_reason"],
        "the step declares the output `dist/*.tar.gz` but no file matches it"
    );
    assert_eq!(built["files"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_larger_than_the_budget_fail_the_step_saying_which_setting() {
    let hub = Hub::start().await;
    let agentd = Agentd::new();
    agentd.write_config("max_input_bytes = 1000\n");
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let (build, then) = two_steps(
        &hub,
        json!({"input": {"command": "head -c 4000 /dev/zero > big.bin", "outputs": ["big.bin"]}}),
        json!({"input": {"command": "touch ran.txt"}}),
    )
    .await;
    let built = hub
        .rest
        .wait_step(&hub.team.owner_key, &build, WAIT, "done", ended)
        .await;
    assert_eq!(built["status"], "done", "{built:#}");
    let used = hub
        .rest
        .wait_step(&hub.team.owner_key, &then, WAIT, "failed", ended)
        .await;
    assert_eq!(used["status"], "failed", "{used:#}");
    let reason = used["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("4000 bytes, more than the 1000 bytes left"),
        "{reason}"
    );
    assert!(
        reason.contains("max_input_bytes in config.toml is 1000"),
        "{reason}"
    );
    let work = agentd.work_dir(Uuid::parse_str(&then).unwrap());
    assert!(!work.join("ran.txt").exists());
    assert!(!work.join("inputs/big.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_attachments_are_in_its_work_dir_before_it_runs() {
    let hub = Hub::start().await;
    let uploaded: Value = reqwest::Client::new()
        .put(format!("{}/v1/files?name=brief.txt", hub.url))
        .bearer_auth(&hub.team.owner_key)
        .body("Focus on EMEA.\n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_id = uploaded["id"].as_str().unwrap().to_string();
    let agentd = Agentd::new();
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Read the brief", "assignees": ["min-laptop"], "executor": "shell",
                   "input": {"command": "cat inputs/brief.txt > seen.txt", "attachments": [file_id]}}),
        )
        .await;
    let step = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "done", ended)
        .await;
    assert_eq!(step["status"], "done", "{step:#}");
    let seen = std::fs::read_to_string(
        agentd
            .work_dir(Uuid::parse_str(&step_id).unwrap())
            .join("seen.txt"),
    )
    .unwrap();
    assert_eq!(seen, "Focus on EMEA.\n");
}

/// A step whose two outputs upload through `relay`; returns the step id.
async fn step_with_two_outputs(hub: &Hub) -> String {
    hub.rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Build twice", "assignees": ["min-laptop"], "executor": "shell",
                   "input": {
                       "command": "echo ran >> runs.log && printf 'first\\n' > first.txt && head -c 300000 /dev/urandom > second.bin",
                       "outputs": ["first.txt", "second.bin"],
                   }}),
        )
        .await
}

/// The bytes of file `file_id`, downloaded with `key`.
async fn file_bytes(hub: &Hub, key: &str, file_id: &str) -> Vec<u8> {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/files/{file_id}", hub.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentd_killed_mid_upload_resumes_the_uploads_without_running_the_step_again() {
    let hub = Hub::start().await;
    let relay = Relay::start(&hub.url, "name=second.bin").await;
    let agentd = Agentd::new();
    agentd.login_with(&relay.url, &hub.team.min_token);
    let mut first_run = spawn(&agentd, &["run", "--no-notify"]);
    let step_id = step_with_two_outputs(&hub).await;
    let work = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    // The first output is uploaded, the second one hangs mid-way: agentd dies there.
    relay.held().await;
    let record: Value =
        serde_json::from_slice(&std::fs::read(work.join(".agentd-uploads.json")).unwrap()).unwrap();
    let first_id = record["uploads"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(record["uploads"][1]["file_id"], Value::Null, "{record:#}");
    first_run.start_kill().unwrap();
    first_run.wait().await.unwrap();
    let held = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(
        held["files"],
        json!([]),
        "nothing is referenced yet: {held:#}"
    );

    let _second_run = spawn(&agentd, &["run", "--no-notify"]);
    let step = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "done", ended)
        .await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["attempt"], 1, "the same attempt: {step:#}");
    let files = step["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{step:#}");
    assert_eq!(files[0], first_id.as_str(), "the finished upload is kept");
    assert_eq!(
        file_bytes(&hub, &hub.team.owner_key, &first_id).await,
        b"first\n"
    );
    let second = file_bytes(&hub, &hub.team.owner_key, files[1].as_str().unwrap()).await;
    assert_eq!(second, std::fs::read(work.join("second.bin")).unwrap());
    assert_eq!(
        std::fs::read_to_string(work.join("runs.log")).unwrap(),
        "ran\n",
        "the step ran once"
    );
    assert!(!work.join(".agentd-uploads.json").exists());
    let (_, logs) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/steps/{step_id}/logs"),
            &hub.team.owner_key,
            None,
        )
        .await;
    let logs = logs.to_string();
    assert!(
        logs.contains("resuming the uploads of its outputs (1 of 2 left)"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_is_sent_again_from_its_start() {
    let hub = Hub::start().await;
    let relay = Relay::start(&hub.url, "name=second.bin").await;
    let agentd = Agentd::new();
    agentd.login_with(&relay.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let step_id = step_with_two_outputs(&hub).await;
    relay.held().await;
    relay.cut();
    let step = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "done", ended)
        .await;
    assert_eq!(step["status"], "done", "{step:#}");
    let files = step["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{step:#}");
    let work = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    let second = file_bytes(&hub, &hub.team.owner_key, files[1].as_str().unwrap()).await;
    assert_eq!(second, std::fs::read(work.join("second.bin")).unwrap());
    let (_, logs) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/steps/{step_id}/logs"),
            &hub.team.owner_key,
            None,
        )
        .await;
    let logs = logs.to_string();
    assert!(
        logs.contains("cannot upload the output second.bin"),
        "{logs}"
    );
    assert!(
        logs.contains("sending it again from its start in 1 s (try 2 of 4)"),
        "{logs}"
    );
}

/// Runs a shell step with `attachments` against the fake hub; returns its end and log.
async fn run_with_attachments(attachments: Value) -> (Agentd, Uuid, ClientFrame, String) {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let mut child = spawn(&agentd, &["run", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "shell",
        json!({"command": "cat inputs/report.txt > seen.txt", "attachments": attachments}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let (frame, logs) = conn.recv_with_logs().await;
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Not a terminal: no progress bar.
    assert!(!stderr.contains("downloading"), "{stderr}");
    (agentd, step_id, frame, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_matching_the_hubs_digest_is_in_the_work_dir() {
    let (agentd, step_id, frame, logs) = run_with_attachments(json!(["report"])).await;
    assert!(
        matches!(frame, ClientFrame::StepSubmit(_)),
        "expected a submit, got {frame:?}"
    );
    assert_eq!(
        std::fs::read(agentd.work_dir(step_id).join("seen.txt")).unwrap(),
        FILE_BYTES
    );
    assert!(logs.contains("downloaded inputs/report.txt"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_whose_bytes_do_not_match_the_hubs_digest_fails_the_step_before_it_runs() {
    let (agentd, step_id, frame, _) = run_with_attachments(json!(["tampered"])).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert!(
        fail.reason
            .starts_with("cannot download file tampered of the step's attachments: file tampered does not match its digest"),
        "{}",
        fail.reason
    );
    assert!(fail.retryable, "another download may be whole");
    let work = agentd.work_dir(step_id);
    assert!(!work.join("seen.txt").exists(), "the step did not run");
    let inputs: Vec<_> = std::fs::read_dir(work.join("inputs"))
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    assert!(
        inputs.is_empty(),
        "nothing of the download stays: {inputs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_lost_while_agentd_was_down_runs_again_and_names_only_its_new_files() {
    let hub = Hub::start_with_lease(2_000).await;
    let relay = Relay::start(&hub.url, "name=second.bin").await;
    let agentd = Agentd::new();
    agentd.login_with(&relay.url, &hub.team.min_token);
    let mut first_run = spawn(&agentd, &["run", "--no-notify"]);
    let step_id = step_with_two_outputs(&hub).await;
    let work = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    relay.held().await;
    let record: Value =
        serde_json::from_slice(&std::fs::read(work.join(".agentd-uploads.json")).unwrap()).unwrap();
    let first_id = record["uploads"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    first_run.start_kill().unwrap();
    first_run.wait().await.unwrap();
    // The lease runs out while agentd is down: the step goes back to ready.
    hub.rest
        .wait_step(
            &hub.team.owner_key,
            &step_id,
            WAIT,
            "at attempt 2",
            |step| step["attempt"] == 2,
        )
        .await;

    let _second_run = spawn(&agentd, &["run", "--no-notify"]);
    let step = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "done", ended)
        .await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["attempt"], 2, "{step:#}");
    let files = step["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{step:#}");
    assert!(
        !files.contains(&json!(first_id)),
        "the lost attempt's upload is not named: {step:#}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("runs.log")).unwrap(),
        "ran\nran\n",
        "the new attempt ran the step again"
    );
    let second = file_bytes(&hub, &hub.team.owner_key, files[1].as_str().unwrap()).await;
    assert_eq!(second, std::fs::read(work.join("second.bin")).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_agentd_run_shows_the_download_progress() {
    // `script` (util-linux) runs agentd on a pseudo-terminal and records what it draws.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped: on_a_terminal_agentd_run_shows_the_download_progress (no `script` program)"
        );
        return;
    }
    let hub = Hub::start().await;
    let uploaded: Value = reqwest::Client::new()
        .put(format!("{}/v1/files?name=brief.txt", hub.url))
        .bearer_auth(&hub.team.owner_key)
        .body(vec![b'x'; 200_000])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_id = uploaded["id"].as_str().unwrap().to_string();
    let agentd = Agentd::new();
    agentd.login_with(&hub.url, &hub.team.min_token);
    hub.rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Read the brief", "assignees": ["min-laptop"], "executor": "shell",
                   "input": {"command": "wc -c inputs/brief.txt", "attachments": [file_id]}}),
        )
        .await;
    let agentd_command = agentd.command(&["run", "--once", "--no-notify"]);
    let mut command = tokio::process::Command::new("script");
    command
        .args(["--quiet", "--return", "--command"])
        .arg(format!(
            "{} run --once --no-notify",
            agentd_command.get_program().to_string_lossy()
        ))
        .arg("/dev/null")
        .env_clear()
        .envs(
            agentd_command
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("agentd run --once ends")
        .unwrap();
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{drawn}");
    assert!(
        drawn.contains(&format!("downloading {file_id} (the step's attachments)")),
        "{drawn}"
    );
}
