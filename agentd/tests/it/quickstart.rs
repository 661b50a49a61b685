//! The README's quick start, end to end: workspace acme with aurora (owner), min and
//! duan; agents min-laptop and duan-desktop, each a real `agentd run` with the default
//! configuration and a Claude key (stored with `agentd key set`) pointing at the local
//! Messages API stand-in; the two-step "Quarterly report" created over REST with the
//! README's body (no executor named on the steps); aurora approves the review over REST;
//! the task ends `done`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::claude::{KEY, fake_claude, message};
use crate::ends::agentd_cmd;
use crate::hub::Hub;
use crate::support::{Agentd, spawn, text};

const WAIT: Duration = Duration::from_secs(30);

/// The body of the README's `curl -X POST /v1/tasks`.
fn quarterly_report() -> Value {
    json!({"title": "Quarterly report", "description": "Break down the director's report, then review it",
     "steps": [
       {"key": "draft", "title": "Draft the outline", "assignees": ["min-laptop"]},
       {"key": "review", "title": "Review the outline", "assignees": ["duan-desktop"],
        "depends_on": ["draft"], "approval_level": 2, "approvers": ["aurora@example.com"]}]})
}

/// A teammate's agentd: logged in with the agent's token, the Claude key stored with
/// `agentd key set`, the Messages API at `claude_url`, no `config.toml` of its own.
fn teammate(hub_url: &str, token: &str, claude_url: &str) -> Agentd {
    let agentd = Agentd::new().with_env("ANTHROPIC_BASE_URL", claude_url);
    agentd.login_with(hub_url, token);
    let out = agentd.run_with_stdin(&["key", "set"], &format!("{KEY}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    agentd
}

/// Polls `GET /v1/tasks/{id}` until `done(task)` holds.
async fn wait_task(hub: &Hub, task_id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, task) = hub
            .rest
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}"),
                &hub.team.owner_key,
                None,
            )
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

fn step<'a>(task: &'a Value, key: &str) -> &'a Value {
    task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["key"] == key)
        .unwrap_or_else(|| panic!("no step {key}: {task:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_ends_done() {
    let (claude_url, script) = fake_claude(vec![
        (
            200,
            None,
            message(
                json!([{"type": "text", "text": "Outline: revenue, costs, outlook."}]),
                "end_turn",
                40,
                12,
            ),
        ),
        (
            200,
            None,
            message(
                json!([{"type": "text", "text": "Reviewed: the outline covers the report."}]),
                "end_turn",
                60,
                15,
            ),
        ),
    ])
    .await;
    let hub = Hub::start().await;
    let min = teammate(&hub.url, &hub.team.min_token, &claude_url);
    let duan = teammate(&hub.url, &hub.team.duan_token, &claude_url);
    let min_daemon = spawn(&min, &["run"]);
    let duan_daemon = spawn(&duan, &["run"]);

    let (status, created) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.owner_key,
            Some(quarterly_report()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(step(&created, "draft")["status"], "ready", "{created:#}");
    assert_eq!(step(&created, "review")["status"], "pending", "{created:#}");
    let task_id = created["id"].as_str().unwrap().to_string();

    let waiting = wait_task(&hub, &task_id, "waiting for aurora's approval", |task| {
        step(task, "review")["status"] == "awaiting_approval"
    })
    .await;
    let draft = step(&waiting, "draft");
    assert_eq!(draft["status"], "done", "{waiting:#}");
    assert_eq!(draft["summary"], "Outline: revenue, costs, outlook.");
    assert_eq!(draft["executor"], Value::Null, "the step names no executor");
    let review = step(&waiting, "review");
    let review_id = review["id"].as_str().unwrap().to_string();
    let seen = json!({"attempt": review["attempt"], "digest": review["digest"]});
    assert!(
        seen["digest"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:")),
        "{waiting:#}"
    );
    let (status, decided) = hub
        .rest
        .call(
            Method::POST,
            &format!("/v1/steps/{review_id}/approve"),
            &hub.team.owner_key,
            Some(seen),
        )
        .await;
    assert_eq!(status, 200, "{decided}");

    let done = wait_task(&hub, &task_id, "done", |task| task["status"] == "done").await;
    let review = step(&done, "review");
    assert_eq!(review["status"], "done", "{done:#}");
    assert_eq!(
        review["summary"],
        "Reviewed: the outline covers the report."
    );
    assert_eq!(done["outcome"]["status"], "done", "{done:#}");
    assert_eq!(done["progress"]["done"], 2, "{done:#}");
    for teammate in [&min, &duan] {
        let out = agentd_cmd(teammate, &["task", "show", &task_id]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(shown.contains("status:   done\n"), "{shown}");
        assert!(shown.contains("progress: 2/2 steps finished\n"), "{shown}");
        assert!(
            shown.contains("  aurora@example.com  review  awaiting_approval → done"),
            "{shown}"
        );
    }

    // Both steps ran with `claude` (the default with a key), min's then duan's, and the
    // review saw the draft's output.
    let calls = script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for call in &calls {
        assert_eq!(call.headers["x-api-key"], KEY);
    }
    let first_prompt = calls[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(first_prompt.contains("Draft the outline"), "{first_prompt}");
    let second_prompt = calls[1].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        second_prompt.contains("Review the outline"),
        "{second_prompt}"
    );
    assert!(
        second_prompt.contains("Outline: revenue, costs, outlook."),
        "{second_prompt}"
    );
    drop(min_daemon);
    drop(duan_daemon);
}
