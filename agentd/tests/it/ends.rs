//! Every task reaches an end, seen from agentd against the real hub: a step that cannot
//! run on this machine fails its task with a message saying what to set, `agentd retry`
//! runs it again once that is set, `task show` / `tasks` / `status` show where things
//! stand, and pausing a task stops its running attempt until it is resumed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::claude::{KEY, fake_claude, message};
use crate::hub::Hub;
use crate::support::{Agentd, spawn, text};

const WAIT: Duration = Duration::from_secs(30);

/// Runs `agentd ARGS` to completion without blocking the runtime.
pub async fn agentd_cmd(agentd: &Agentd, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(agentd.command(args));
    cmd.kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("agentd answers in time")
        .expect("run agentd")
}

/// Polls `GET /v1/tasks/{id}` with `key` until `done(task)` holds.
pub async fn wait_task(
    hub: &Hub,
    key: &str,
    task_id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, task) = hub
            .rest
            .call(Method::GET, &format!("/v1/tasks/{task_id}"), key, None)
            .await;
        assert_eq!(status, 200, "{task}");
        if done(&task) {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task did not become {what} within {WAIT:?}: {task:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a task with `key`; returns it.
pub async fn create_task(hub: &Hub, key: &str, body: Value) -> Value {
    let (status, task) = hub
        .rest
        .call(Method::POST, "/v1/tasks", key, Some(body))
        .await;
    assert_eq!(status, 201, "{task}");
    task
}

/// What agentd says of a step naming no executor on a machine without a Claude key.
pub fn no_key_reason(agentd: &Agentd) -> String {
    format!(
        "this step names no executor, so it runs with the `claude` executor, which needs a \
         Claude API key: run `agentd key set` or set ANTHROPIC_API_KEY (or set \
         default_executor in {})",
        agentd.config_dir().join("config.toml").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_cannot_run_here_fails_its_task_and_a_retry_after_key_set_finishes_it() {
    let (claude_url, script) = fake_claude(vec![(
        200,
        None,
        message(
            json!([{"type": "text", "text": "Outline: revenue, costs, outlook."}]),
            "end_turn",
            40,
            12,
        ),
    )])
    .await;
    let hub = Hub::start().await;
    let min = Agentd::new().with_env("ANTHROPIC_BASE_URL", &claude_url);
    min.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&min, &["run", "--no-notify"]);
    let created = create_task(
        &hub,
        &hub.team.min_key,
        json!({"title": "Quarterly report", "steps": [
            {"key": "draft", "title": "Draft the outline", "assignees": ["min-laptop"]}]}),
    )
    .await;
    let task_id = created["id"].as_str().unwrap().to_string();
    let step_id = created["steps"][0]["id"].as_str().unwrap().to_string();

    // No key: the step fails at once, not retried, and the task ends `failed`.
    let failed = wait_task(&hub, &hub.team.min_key, &task_id, "failed", |task| {
        task["status"] == "failed"
    })
    .await;
    let reason = no_key_reason(&min);
    let step = &failed["steps"][0];
    assert_eq!(step["status"], "failed", "{failed:#}");
    assert_eq!(
        step["attempt"], 1,
        "not retried on this machine: {failed:#}"
    );
    assert_eq!(step["status_reason"], reason.as_str(), "{failed:#}");
    let outcome = &failed["outcome"];
    assert_eq!(outcome["status"], "failed", "{failed:#}");
    assert_eq!(outcome["step_key"], "draft", "{failed:#}");
    assert_eq!(outcome["reason"], reason.as_str(), "{failed:#}");
    assert_eq!(script.calls.lock().unwrap().len(), 0);

    let out = agentd_cmd(&min, &["task", "show", &task_id]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("status:   failed\n"), "{shown}");
    assert!(shown.contains("progress: 1/1 steps finished\n"), "{shown}");
    assert!(
        shown.contains(&format!("outcome:  failed: step `draft` failed: {reason}")),
        "{shown}"
    );
    assert!(shown.contains(&format!("      why: {reason}\n")), "{shown}");
    // claimed → failed, or claimed → running → failed when a lease renewal came first.
    assert!(
        shown
            .lines()
            .any(|line| line.contains("  draft  ") && line.contains(" → failed  attempt 1  ")),
        "{shown}"
    );
    assert!(shown.contains("  (task)  active → failed  "), "{shown}");
    let out = agentd_cmd(&min, &["--json", "task", "show", &task_id]).await;
    let raw: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(raw["task"]["id"], task_id.as_str());
    assert!(raw["timeline"]["timeline"].is_array(), "{raw:#}");

    // min stores a key; the running daemon finds it, and the retry finishes the task.
    let out = min.run_with_stdin(&["key", "set"], &format!("{KEY}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agentd_cmd(&min, &["retry", &step_id, "--reason", "key set"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert_eq!(
        said,
        "step `draft` is ready again (attempt 2); task \"Quarterly report\" is active\n"
    );
    let done = wait_task(&hub, &hub.team.min_key, &task_id, "done", |task| {
        task["status"] == "done"
    })
    .await;
    assert_eq!(
        done["steps"][0]["summary"], "Outline: revenue, costs, outlook.",
        "{done:#}"
    );
    assert_eq!(done["outcome"]["status"], "done", "{done:#}");
    let calls = script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers["x-api-key"], KEY);

    // Retrying a done step is refused with the hub's words, as are other callers.
    let out = agentd_cmd(&min, &["retry", &step_id]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let refused = text(&out.stderr);
    assert!(
        refused.starts_with("agentd: the hub refused: ")
            && refused.contains("(conflict, HTTP 409)"),
        "{refused}"
    );
    let duan = Agentd::new();
    duan.login_with(&hub.url, &hub.team.duan_token);
    let out = agentd_cmd(&duan, &["retry", &step_id]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(forbidden, HTTP 403)"),
        "{}",
        text(&out.stderr)
    );
    let out = agentd_cmd(&min, &["retry", "01935a7e-0000-7000-8000-00000000ffff"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(not_found, HTTP 404)"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_status_show_progress_and_the_agents_state_while_a_step_runs() {
    let hub = Hub::start().await;
    let min = Agentd::new();
    min.login_with(&hub.url, &hub.team.min_token);
    let out = agentd_cmd(&min, &["status"]).await;
    assert!(
        text(&out.stdout).contains("state:     offline (at the hub)\n"),
        "{}",
        text(&out.stdout)
    );
    let _daemon = spawn(&min, &["run", "--no-notify"]);
    let created = create_task(
        &hub,
        &hub.team.min_key,
        json!({"title": "Monthly close", "steps": [
            {"key": "books", "title": "Close the books", "assignees": ["min-laptop"],
             "executor": "shell", "input": {"command": "true"}},
            {"key": "report", "title": "Write the report", "assignees": ["min-laptop"],
             "executor": "shell", "input": {"command": "sleep 30"}, "depends_on": ["books"]}]}),
    )
    .await;
    let task_id = created["id"].as_str().unwrap().to_string();
    wait_task(
        &hub,
        &hub.team.min_key,
        &task_id,
        "running its report",
        |task| {
            task["progress"]["running"]
                .as_array()
                .is_some_and(|running| running.iter().any(|step| step["status"] == "running"))
        },
    )
    .await;

    let out = agentd_cmd(&min, &["tasks"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&task_id))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains(" active "), "{line}");
    assert!(line.contains("1/2  Monthly close  [report"), "{line}");

    let out = agentd_cmd(&min, &["status"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("agentd is running"), "{shown}");
    assert!(
        shown.contains("state:     working (at the hub)\n"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_task_stops_its_running_attempt_and_resuming_runs_it_again() {
    let hub = Hub::start().await;
    let min = Agentd::new();
    min.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&min, &["run", "--no-notify"]);
    // The first attempt writes after 3 s unless stopped; the second (same work dir)
    // writes at once.
    let command = "if [ -e started ]; then echo second >> log.txt; else touch started; sleep 3; echo first >> log.txt; fi";
    let created = create_task(
        &hub,
        &hub.team.min_key,
        json!({"title": "Slow render", "steps": [
            {"key": "render", "title": "Render", "assignees": ["min-laptop"],
             "executor": "shell", "input": {"command": command}}]}),
    )
    .await;
    let task_id = created["id"].as_str().unwrap().to_string();
    let step_id = created["steps"][0]["id"].as_str().unwrap().to_string();
    let work_dir = min.work_dir(uuid::Uuid::parse_str(&step_id).unwrap());
    assert!(
        crate::support::eventually_exists(&work_dir.join("started")).await,
        "the first attempt starts"
    );

    let (status, paused) = hub
        .rest
        .call(
            Method::PATCH,
            &format!("/v1/tasks/{task_id}"),
            &hub.team.min_key,
            Some(json!({"action": "pause"})),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    let held = wait_task(
        &hub,
        &hub.team.min_key,
        &task_id,
        "paused with its step ready",
        |task| task["status"] == "paused" && task["steps"][0]["status"] == "ready",
    )
    .await;
    assert_eq!(held["steps"][0]["attempt"], 2, "{held:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = agentd_cmd(&min, &["--json", "status"]).await;
    let status_doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status_doc["daemon"]["steps"],
        json!([]),
        "agentd stopped the revoked attempt: {status_doc:#}"
    );

    let (status, resumed) = hub
        .rest
        .call(
            Method::PATCH,
            &format!("/v1/tasks/{task_id}"),
            &hub.team.min_key,
            Some(json!({"action": "resume"})),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    let done = wait_task(&hub, &hub.team.min_key, &task_id, "done", |task| {
        task["status"] == "done"
    })
    .await;
    assert_eq!(done["steps"][0]["attempt"], 2, "{done:#}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        std::fs::read_to_string(work_dir.join("log.txt")).unwrap(),
        "second\n",
        "the first attempt was stopped, not left running"
    );
}
