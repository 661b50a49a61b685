//! `agentd tasks`, `task show`, `retry` and `status` against the fake hub, which answers
//! with the documents of the hub's REST API.

use serde_json::Value;

use crate::support::{
    Agentd, DONE_STEP_ID, FAILED_STEP_ID, FOREIGN_STEP_ID, FakeHub, TASK_ID, text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_show_prints_status_progress_outcome_steps_and_timeline() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let out = agentd.run(&["task", "show", TASK_ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{TASK_ID} \"Quarterly report\"
status:   failed
progress: 1/2 steps finished
outcome:  failed: step `review` failed: `make review` exited with status 2 (by duan-desktop, 2026-12-02T16:10:04Z)

steps:
  {DONE_STEP_ID}  draft        done              attempt 1  min-laptop
  {FAILED_STEP_ID}  review       failed            attempt 3  duan-desktop
      estimate: ~90 min
      why: `make review` exited with status 2

timeline:
  2026-12-02T16:00:00Z  aurora@example.com  (task)  → active
  2026-12-02T16:10:03Z  duan-desktop        review  claimed → running  attempt 3
  2026-12-02T16:10:04Z  duan-desktop        review  running → failed  attempt 3  `make review` exited with status 2
  2026-12-02T16:10:04Z  hub                 (task)  active → failed  step `review` failed
"
        )
    );

    let out = agentd.run(&["--json", "task", "show", TASK_ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["task"]["outcome"]["step_key"], "review");
    assert_eq!(shown["timeline"]["timeline"].as_array().unwrap().len(), 4);

    let out = agentd.run(&["task", "show", "01935a7e-0000-7000-8000-00000000ffff"]);
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(
        text(&out.stderr).trim(),
        "agentd: the hub refused: task not found (not_found, HTTP 404)"
    );
    let out = agentd.run(&["task", "show", "quarterly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value 'quarterly' for '<TASK_ID>'"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_shows_each_tasks_progress_and_running_steps() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let out = agentd.run(&["tasks"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{TASK_ID}  failed       1/2  Quarterly report
01935a7e-0000-7000-8000-000000000072  active       3/5  Quarterly report  [review 40%, charts]
"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_prints_the_steps_new_state_and_the_hubs_refusals() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let out = agentd.run(&["retry", FAILED_STEP_ID, "--reason", "fixed the figures"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "step `review` is ready again (attempt 4); task \"Quarterly report\" is active\n"
    );
    let posted = hub
        .requests()
        .into_iter()
        .find(|request| request.path == format!("/v1/steps/{FAILED_STEP_ID}/retry"))
        .expect("the retry route was called");
    assert_eq!(posted.method, "POST");
    let body: Value = serde_json::from_str(&posted.body).unwrap();
    assert_eq!(body, serde_json::json!({"reason": "fixed the figures"}));

    for (step_id, message) in [
        (
            DONE_STEP_ID,
            "agentd: the hub refused: the step is done; only a failed or skipped step can be retried (conflict, HTTP 409)",
        ),
        (
            FOREIGN_STEP_ID,
            "agentd: the hub refused: only the task's creator or an admin may retry its steps (forbidden, HTTP 403)",
        ),
        (
            "01935a7e-0000-7000-8000-00000000ffff",
            "agentd: the hub refused: step not found (not_found, HTTP 404)",
        ),
    ] {
        let out = agentd.run(&["retry", step_id]);
        assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr).trim(), message);
    }
    let out = agentd.run(&["retry", "review"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_agents_state_at_the_hub() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let out = agentd.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("state:     working (at the hub)\n"),
        "{shown}"
    );
    let out = agentd.run(&["--json", "status"]);
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["agent"]["status"], "working");
    assert_eq!(value["agent"]["name"], "min-laptop");

    // A hub that cannot be reached leaves the state unknown, and says why.
    drop(hub);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let out = agentd.run(&["--hub", &gone, "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("state:     unknown: cannot reach the hub"),
        "{shown}"
    );
}
