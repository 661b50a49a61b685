//! Planning a task end to end: `agentd task create "sentence" --plan` against the real
//! hub, the daemon of the same agent answering `plan.requested` with the fake Claude
//! API's scripted `submit_plan` calls (an invalid plan, then a good one), the proposal
//! shown and accepted or asked again; and the tool schema checked as JSON Schema.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::claude::{Answer, agentd_with_claude, fake_claude, message};
use crate::hub::Hub;
use crate::support::{Agentd, spawn, text};

const WAIT: Duration = Duration::from_secs(30);

/// A `submit_plan` call of the model.
fn plan_answer(id: &str, steps: Value) -> Answer {
    (
        200,
        None,
        message(
            json!([{"type": "tool_use", "id": id, "name": "submit_plan",
                    "input": {"steps": steps, "note": "Min knows the report"}}]),
            "tool_use",
            200,
            80,
        ),
    )
}

fn good_steps() -> Value {
    json!([
        {"key": "outline", "title": "Break down the report", "assignees": ["min-laptop"],
         "estimate_minutes": 60, "expected_outputs": "an outline"},
        {"key": "review", "title": "Review the outline", "assignees": ["duan-desktop"],
         "depends_on": ["outline"], "approval_level": 1, "approvers": ["min@example.com"],
         "estimate_minutes": 30},
    ])
}

/// Runs `agentd ARGS` with `input` on stdin, without blocking the runtime.
async fn agentd_cli(agentd: &Agentd, args: &[&str], input: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(agentd.command(args));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn agentd");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("agentd answers within 30 s")
        .expect("run agentd")
}

/// The one task of the workspace.
async fn only_task(hub: &Hub) -> Value {
    let (status, list) = hub
        .rest
        .call(Method::GET, "/v1/tasks", &hub.team.owner_key, None)
        .await;
    assert_eq!(status, 200, "{list}");
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{list:#}");
    let id = tasks[0]["id"].as_str().unwrap();
    let (_, task) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/tasks/{id}"),
            &hub.team.owner_key,
            None,
        )
        .await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentence_becomes_a_running_task_after_one_acceptance() {
    let (claude_url, script) = fake_claude(vec![
        // The first plan names someone who is not in the team.
        plan_answer(
            "toolu_1",
            json!([{"key": "outline", "title": "Break down the report", "assignees": ["ghost"]}]),
        ),
        plan_answer("toolu_2", good_steps()),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&agentd, &["run", "--no-notify"]);

    let sentence = "Min breaks down the director's report, then Duan reviews the outline";
    let out = agentd_cli(
        &agentd,
        &["task", "create", sentence, "--plan", "--yes"],
        "",
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("plan round 1 by min-laptop:"), "{stdout}");
    assert!(stdout.contains("Min knows the report"), "{stdout}");
    assert!(
        stdout.contains("review       Review the outline  → duan-desktop  ~30 min  after outline  approval 1 by min@example.com"),
        "{stdout}"
    );
    assert!(stdout.contains("accepted; task "), "{stdout}");

    let task = only_task(&hub).await;
    assert_eq!(task["status"], "active", "{task:#}");
    assert_eq!(task["description"], sentence);
    assert_eq!(task["steps"][0]["key"], "outline");
    // The outline is ready (min-laptop may have claimed it already); the review waits.
    assert_ne!(task["steps"][0]["status"], "pending", "{task:#}");
    assert_eq!(task["steps"][1]["status"], "pending");

    // The model saw the team and the task, answered through the one tool, and was told
    // the hub's errors before its second plan.
    let calls = script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let first = &calls[0].body;
    assert_eq!(first["tools"][0]["name"], "submit_plan");
    assert_eq!(first["tool_choice"]["name"], "submit_plan");
    let prompt = first["messages"][0]["content"][0]["text"].as_str().unwrap();
    assert!(prompt.contains(sentence), "{prompt}");
    assert!(
        prompt.contains("- duan-desktop (duan@example.com)"),
        "{prompt}"
    );
    assert!(prompt.contains("- min@example.com (member)"), "{prompt}");
    let retry = &calls[1].body["messages"][2]["content"][0];
    assert_eq!(retry["type"], "tool_result");
    assert_eq!(retry["tool_use_id"], "toolu_1");
    assert_eq!(retry["is_error"], true);
    assert!(
        retry["content"]
            .as_str()
            .unwrap()
            .contains("assignee `ghost` is not an agent of this workspace"),
        "{retry}"
    );

    // Duan's agent was told which step is its own and what it waits for.
    let events = hub.rest.events(&hub.team.duan_token).await;
    let created = events
        .iter()
        .find(|event| event["type"] == "task.created")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(
        created["event"]["your_steps"][0]["waiting_for"],
        json!(["Break down the report"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asked_again_the_planner_gets_the_comment_and_a_refused_plan_stays_a_draft() {
    let (claude_url, script) = fake_claude(vec![
        plan_answer("toolu_1", good_steps()),
        plan_answer(
            "toolu_2",
            json!([{"key": "all", "title": "Do it all", "assignees": ["min-laptop"]}]),
        ),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&agentd, &["run", "--no-notify"]);

    // A comment asks again; "n" then leaves the second plan waiting.
    let out = agentd_cli(
        &agentd,
        &["task", "create", "Report, review, meeting", "--plan"],
        "one step is enough\nn\n",
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("plan round 2 by min-laptop:"), "{stdout}");
    assert!(stdout.contains("stays a draft in planning"), "{stdout}");
    let task = only_task(&hub).await;
    assert_eq!(task["status"], "draft");
    assert_eq!(task["steps"], json!([]));
    let calls = script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let prompt = calls[1].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        prompt.contains(
            "plan round 2; the task's creator asked for another plan: one step is enough"
        ),
        "{prompt}"
    );
    assert!(prompt.contains("\"key\": \"review\""), "{prompt}");

    // `agentd task show` shows the waiting plan.
    let id = task["id"].as_str().unwrap();
    let out = agentd_cli(&agentd, &["task", "show", id], "").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("plan round 2 by min-laptop:"), "{stdout}");
    assert!(stdout.contains("Do it all"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_gives_up_after_two_more_tries_and_the_task_waits() {
    let bad = json!([{"key": "x", "title": "X", "assignees": ["ghost"]}]);
    let (claude_url, script) = fake_claude(vec![
        plan_answer("toolu_1", bad.clone()),
        plan_answer("toolu_2", bad.clone()),
        plan_answer("toolu_3", bad.clone()),
        plan_answer("toolu_4", good_steps()),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let daemon = spawn(&agentd, &["run", "--no-notify"]);
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.min_key,
            Some(json!({"title": "Quarterly report", "plan": true})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while script.calls.lock().unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the model was not asked 3 times"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(script.calls.lock().unwrap().len(), 3);
    let (_, plan) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/tasks/{id}/plan"),
            &hub.team.min_key,
            None,
        )
        .await;
    assert_eq!(plan["plan"]["status"], "requested", "{plan:#}");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_result_is_checked_and_its_suggestion_waits_for_the_creator() {
    let (claude_url, script) = fake_claude(vec![
        (
            200,
            None,
            message(
                json!([{"type": "text", "text": "Outline written."}]),
                "end_turn",
                50,
                10,
            ),
        ),
        (
            200,
            None,
            message(
                json!([{"type": "tool_use", "id": "toolu_c", "name": "report_check", "input": {
                    "fits": false,
                    "reasons": ["the outline misses the costs"],
                    "suggestions": [
                        {"op": "skip", "step": "appendix", "reason": "nothing for an appendix"},
                        {"op": "reassign", "reason": "names no step"}
                    ]
                }}]),
                "tool_use",
                30,
                10,
            ),
        ),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&agentd, &["run", "--once", "--no-notify"]);
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.min_key,
            Some(json!({"title": "Quarterly report", "steps": [
                {"key": "draft", "title": "Draft the outline", "assignees": ["min-laptop"],
                 "executor": "claude", "expected_outputs": "an outline with revenue and costs"},
                {"key": "appendix", "title": "Write an appendix", "assignees": ["duan-desktop"],
                 "depends_on": ["draft"]},
            ]})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let out = crate::support::wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let task_id = task["id"].as_str().unwrap();
    let draft = task["steps"][0]["id"].as_str().unwrap();
    let step = hub.rest.step(&hub.team.min_key, draft).await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["check"]["fits"], false, "{step:#}");
    assert_eq!(
        step["check"]["reasons"],
        json!(["the outline misses the costs"])
    );
    let (_, list) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/tasks/{task_id}/workflow-approvals"),
            &hub.team.min_key,
            None,
        )
        .await;
    // The suggestion without its step was left out.
    let rows = list["workflow_approvals"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list:#}");
    assert_eq!(rows[0]["suggestion"]["op"], "skip");
    assert_eq!(rows[0]["status"], "pending");
    let calls = script.calls.lock().unwrap().clone();
    let prompt = calls[1].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        prompt.contains("Expected output: an outline with revenue and costs"),
        "{prompt}"
    );
    assert!(prompt.contains("Outline written."), "{prompt}");
}

/// The tools' input schemas are valid JSON Schema (2020-12) and scripted answers fit them;
/// checked with Python's `jsonschema` (the interpreter named by `AGENTHUB_TEST_PYTHON`).
#[test]
fn the_tool_schemas_are_valid_json_schema() {
    let tool = agentd::intel::plan_tool();
    let schema = &tool["input_schema"];
    let check_schema = agentd::intel::check_tool()["input_schema"].clone();
    let Some(python) = std::env::var_os("AGENTHUB_TEST_PYTHON") else {
        eprintln!(
            "skipped: AGENTHUB_TEST_PYTHON not set (plans::the_tool_schemas_are_valid_json_schema)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), schema.to_string()).unwrap();
    let plans = json!([
        {"steps": good_steps(), "note": "Min knows the report"},
        {"steps": [{"key": "x", "title": "X", "assignees": ["ghost"]}]},
    ]);
    std::fs::write(dir.path().join("plans.json"), plans.to_string()).unwrap();
    std::fs::write(dir.path().join("check.json"), check_schema.to_string()).unwrap();
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 jsonschema.Draft202012Validator.check_schema(schema)\n\
                 for plan in json.load(open(sys.argv[2])):\n    \
                     jsonschema.Draft202012Validator(schema).validate(plan)\n\
                 check = json.load(open(sys.argv[3]))\n\
                 jsonschema.Draft202012Validator.check_schema(check)\n\
                 jsonschema.Draft202012Validator(check).validate({'fits': True, 'reasons': [], 'suggestions': [{'op': 'skip', 'step': 'a', 'reason': 'r'}]})\n\
                 try:\n    \
                     jsonschema.Draft202012Validator(schema).validate({'steps': []})\n\
                 except jsonschema.ValidationError:\n    \
                     print('empty plan refused')\n";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(check)
        .arg(dir.path().join("schema.json"))
        .arg(dir.path().join("plans.json"))
        .arg(dir.path().join("check.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "empty plan refused");
}
