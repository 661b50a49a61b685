//! Files in and out of steps against the real hub: a shell step's declared outputs are
//! uploaded and attached to its result; the next step finds them in `inputs/`, checked
//! against their size, and a step whose inputs exceed `max_input_bytes` fails.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::hub::Hub;
use crate::support::{Agentd, spawn};

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
