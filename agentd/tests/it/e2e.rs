//! End to end against the real hub: `agentd run` child processes, the hub in this
//! process or as a child process that is killed and restarted, and the fake Claude API.
//! The hub's REST API (with the members' keys) is the observer.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::claude::{KEY, agentd_with_claude, fake_claude, message};
use crate::hub::{Hub, HubProcess, Rest};
use crate::support::{Agentd, spawn, text, wait_exit};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `agentd ARGS` to completion without blocking the runtime.
async fn agentd_cmd(agentd: &Agentd, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(agentd.command(args));
    cmd.kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("agentd answers within 20 s")
        .expect("run agentd")
}

/// Waits until the member's inbox holds a question about `step_id` that is not in
/// `seen`; returns it.
async fn next_question(rest: &Rest, key: &str, step_id: &str, seen: &[String]) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, inbox) = rest.call(Method::GET, "/v1/me/inbox", key, None).await;
        assert_eq!(status, 200, "{inbox}");
        let question = inbox["questions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|question| {
                question["step_id"] == step_id
                    && !seen.contains(&question["id"].as_str().unwrap().to_string())
            })
            .cloned();
        if let Some(question) = question {
            return question;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new question about {step_id} within 20 s: {inbox:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count_events(events: &[Value], event_type: &str, step_id: &str) -> usize {
    events
        .iter()
        .filter(|event| event["type"] == event_type && event["event"]["step_id"] == step_id)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_step_ends_done_at_the_real_hub_with_summary_file_and_usage() {
    let (claude_url, script) = fake_claude(vec![
        (
            200,
            None,
            message(
                json!([
                    {"type": "text", "text": "I will write the outline."},
                    {"type": "tool_use", "id": "toolu_1", "name": "write_file",
                     "input": {"path": "outline.md", "content": "# Outline\n- Revenue\n"}}
                ]),
                "tool_use",
                100,
                20,
            ),
        ),
        (
            200,
            None,
            message(
                json!([{"type": "text", "text": "Wrote outline.md with one section."}]),
                "end_turn",
                150,
                30,
            ),
        ),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&agentd, &["run", "--once", "--no-notify"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Draft the outline", "description": "Write outline.md",
                   "assignees": ["min-laptop"], "executor": "claude"}),
        )
        .await;

    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["summary"], "Wrote outline.md with one section.");
    assert_eq!(step["attempt"], 1);
    assert_eq!(
        step["usage"],
        json!({"input_tokens": 250, "output_tokens": 50})
    );
    let work_dir = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    assert_eq!(
        std::fs::read_to_string(work_dir.join("outline.md")).unwrap(),
        "# Outline\n- Revenue\n"
    );

    let calls = script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(call.headers["x-api-key"], KEY);
        assert_eq!(call.headers["anthropic-version"], "2023-06-01");
        assert_eq!(call.headers["content-type"], "application/json");
    }
    let prompt = calls[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(prompt.contains("Draft the outline"), "{prompt}");
    assert!(prompt.contains("Write outline.md"), "{prompt}");
    let tool_result = &calls[1].body["messages"][2];
    assert_eq!(tool_result["role"], "user");
    assert_eq!(tool_result["content"][0]["type"], "tool_result");
    assert_eq!(tool_result["content"][0]["tool_use_id"], "toolu_1");
    assert!(tool_result["content"][0].get("is_error").is_none());
    let logs = text(&out.stderr);
    assert!(!logs.contains(KEY), "the key is in a log line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_with_policy_ask_waits_at_the_hub_until_approved_or_rejected() {
    let (claude_url, script) = fake_claude(vec![
        (
            200,
            None,
            message(
                json!([{"type": "tool_use", "id": "toolu_a", "name": "run_shell",
                        "input": {"command": "echo approved-run > proof.txt"}}]),
                "tool_use",
                10,
                5,
            ),
        ),
        (
            200,
            None,
            message(
                json!([{"type": "tool_use", "id": "toolu_b", "name": "run_shell",
                        "input": {"command": "rm -rf notes"}}]),
                "tool_use",
                10,
                5,
            ),
        ),
        (
            200,
            None,
            message(
                json!([{"type": "text", "text": "Done."}]),
                "end_turn",
                10,
                5,
            ),
        ),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&agentd, &["run", "--once", "--no-notify"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Tidy the notes", "assignees": ["min-laptop"], "executor": "claude"}),
        )
        .await;

    // The first tool call waits: blocked at the hub, in min's inbox and in `agentd inbox`.
    let first = next_question(&hub.rest, &hub.team.min_key, &step_id, &[]).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    assert!(
        first["question"]
            .as_str()
            .unwrap()
            .contains("run_shell `echo approved-run > proof.txt`"),
        "{first:#}"
    );
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "blocked", "{step:#}");
    let inbox = agentd_cmd(&agentd, &["inbox"]).await;
    assert!(inbox.status.success(), "{}", text(&inbox.stderr));
    let shown = text(&inbox.stdout);
    assert!(shown.contains(&first_id), "{shown}");
    assert!(shown.contains("echo approved-run > proof.txt"), "{shown}");
    let approve = agentd_cmd(&agentd, &["approve", &first_id]).await;
    assert!(approve.status.success(), "{}", text(&approve.stderr));

    // The second one is rejected: the model sees an error result.
    let second = next_question(&hub.rest, &hub.team.min_key, &step_id, &[first_id]).await;
    let second_id = second["id"].as_str().unwrap().to_string();
    assert!(
        second["question"]
            .as_str()
            .unwrap()
            .contains("rm -rf notes"),
        "{second:#}"
    );
    let reject = agentd_cmd(&agentd, &["reject", &second_id, "--comment", "not that"]).await;
    assert!(reject.status.success(), "{}", text(&reject.stderr));

    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["summary"], "Done.");
    let work_dir = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    assert_eq!(
        std::fs::read_to_string(work_dir.join("proof.txt")).unwrap(),
        "approved-run\n"
    );
    let calls = script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    let approved = &calls[1].body["messages"][2]["content"][0];
    assert_eq!(approved["tool_use_id"], "toolu_a");
    assert!(approved.get("is_error").is_none(), "{approved}");
    let rejected = &calls[2].body["messages"][4]["content"][0];
    assert_eq!(rejected["tool_use_id"], "toolu_b");
    assert_eq!(rejected["is_error"], true);
    let said = rejected["content"].as_str().unwrap();
    assert!(
        said.contains("rejected") && said.contains("not that"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_finished_while_the_hub_is_down_arrives_exactly_once_after_its_restart() {
    let mut hub = HubProcess::start(&[]).await;
    let agentd = Agentd::new();
    agentd.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&agentd, &["run", "--once", "--no-notify"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Slow build", "assignees": ["min-laptop"], "executor": "shell",
                   "input": {"command": "sleep 2; echo built > result.txt"}}),
        )
        .await;
    hub.rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "claimed", |step| {
            matches!(step["status"].as_str(), Some("claimed" | "running"))
        })
        .await;

    hub.kill();
    let work_dir = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    assert!(
        crate::support::eventually_exists(&work_dir.join("result.txt")).await,
        "the step finishes while the hub is down"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.restart().await;

    let out = wait_exit(child).await;
    assert!(
        out.status.success(),
        "{}\nhub:\n{}",
        text(&out.stderr),
        hub.logs()
    );
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["attempt"], 1);
    assert_eq!(step["result"]["exit_code"], 0, "{step:#}");
    let events = hub.rest.events(&hub.team.min_token).await;
    assert_eq!(
        count_events(&events, "step.completed", &step_id),
        1,
        "{events:#?}"
    );
    assert_eq!(
        text(&out.stderr).matches("result delivered").count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

/// The PIDs of `pid`'s descendants, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = vec![pid];
    let mut found = Vec::new();
    while let Some(parent) = parents.pop() {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: comm may hold spaces, so split after its `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if ppid == Some(parent) {
                found.push(child);
                parents.push(child);
            }
        }
    }
    found
}

fn sigkill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agentd_loses_its_lease_and_the_step_goes_to_another_agent_as_attempt_2() {
    let hub = HubProcess::start(&["--lease-ms", "1500", "--sweep-interval-ms", "100"]).await;
    let first = Agentd::new()
        .with_env("STEP_SLEEP", "60")
        .with_env("STEP_WHO", "min");
    // The step's command reads these: agentd passes them on only when named.
    let pass = "pass_env = [\"STEP_SLEEP\", \"STEP_WHO\"]\n";
    first.write_config(pass);
    first.login_with(&hub.url, &hub.team.min_token);
    let second = Agentd::new()
        .with_env("STEP_SLEEP", "0")
        .with_env("STEP_WHO", "duan");
    second.write_config(pass);
    second.login_with(&hub.url, &hub.team.duan_token);
    let (_, min_me) = hub
        .rest
        .call(Method::GET, "/v1/me", &hub.team.min_token, None)
        .await;
    let (_, duan_me) = hub
        .rest
        .call(Method::GET, "/v1/me", &hub.team.duan_token, None)
        .await;

    let mut killed = spawn(&first, &["run", "--no-notify"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Render", "assignees": ["min-laptop", "duan-desktop"],
                   "executor": "shell",
                   "input": {"command": "sleep \"$STEP_SLEEP\"; echo \"$STEP_WHO\" > who.txt"}}),
        )
        .await;
    let claimed = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "claimed", |step| {
            step["claimed_by"].is_string()
        })
        .await;
    assert_eq!(claimed["claimed_by"], min_me["agent_id"], "{claimed:#}");
    assert_eq!(claimed["attempt"], 1);
    // The other agent connects while min's agentd holds the step.
    let survivor = spawn(&second, &["run", "--once", "--no-notify"]);

    let pid = killed.id().expect("agentd runs");
    let orphans = descendants(pid);
    sigkill(pid);
    let _ = killed.wait().await;
    for orphan in orphans {
        sigkill(orphan);
    }

    let out = wait_exit(survivor).await;
    assert!(
        out.status.success(),
        "{}\nhub:\n{}",
        text(&out.stderr),
        hub.logs()
    );
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "done", "{step:#}");
    assert_eq!(step["attempt"], 2, "{step:#}");
    assert_eq!(step["claimed_by"], duan_me["agent_id"], "{step:#}");
    let step_uuid = Uuid::parse_str(&step_id).unwrap();
    assert_eq!(
        std::fs::read_to_string(second.work_dir(step_uuid).join("who.txt")).unwrap(),
        "duan\n"
    );
    assert!(!first.work_dir(step_uuid).join("who.txt").exists());
    let events = hub.rest.events(&hub.team.duan_token).await;
    let pushed_again = events.iter().any(|event| {
        event["type"] == "step.ready"
            && event["event"]["step"]["step_id"] == step_id.as_str()
            && event["event"]["step"]["attempt"] == 2
    });
    assert!(pushed_again, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_create_uploads_attachments_and_hands_their_ids_to_the_step() {
    let hub = Hub::start().await;
    let agentd = Agentd::new();
    agentd.login_with(&hub.url, &hub.team.min_token);
    let notes = agentd.home.path().join("notes.txt");
    std::fs::write(&notes, "revenue grew\n").unwrap();
    let data = agentd.home.path().join("figures.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
    std::fs::write(&data, &bytes).unwrap();

    let out = agentd_cmd(
        &agentd,
        &[
            "task",
            "create",
            "--title",
            "Summarise the figures",
            "--assignee",
            "min-laptop",
            "--attach",
            notes.to_str().unwrap(),
            "--attach",
            data.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "no progress bar without a terminal");
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    let step_id = task["steps"][0]["id"].as_str().unwrap();
    let step = hub.rest.step(&hub.team.owner_key, step_id).await;
    let ids: Vec<String> = step["input"]["attachments"]
        .as_array()
        .unwrap_or_else(|| panic!("{step:#}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{step:#}");
    let http = reqwest::Client::new();
    for (id, expected) in ids.iter().zip([b"revenue grew\n".to_vec(), bytes]) {
        let response = http
            .get(format!("{}/v1/files/{id}", hub.url))
            .bearer_auth(&hub.team.owner_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.bytes().await.unwrap().to_vec(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentd_dashboard_gives_a_one_time_link_that_signs_the_member_in() {
    let hub = Hub::start().await;
    // No `xdg-open` (or `open`) on the PATH: the link is printed instead.
    let empty_path = tempfile::tempdir().unwrap();
    let agentd = Agentd::new().with_env("PATH", &empty_path.path().display().to_string());
    agentd.login_with(&hub.url, &hub.team.min_token);
    let out = agentd_cmd(&agentd, &["dashboard"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("sign in as min@example.com"), "{shown}");
    let url = shown
        .split_whitespace()
        .find(|word| word.contains("/login/ahl_"))
        .unwrap_or_else(|| panic!("no link in {shown}"))
        .to_string();
    assert!(url.starts_with(&hub.url), "{url} is not at {}", hub.url);

    let json = agentd_cmd(&agentd, &["--json", "dashboard", "--print"]).await;
    assert!(json.status.success(), "{}", text(&json.stderr));
    let link: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(link["email"], "min@example.com");
    assert_ne!(
        link["url"].as_str().unwrap(),
        url,
        "each call makes a new link"
    );

    // The printed link signs the browser in once.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 303);
    assert!(first.headers().contains_key("set-cookie"));
    let again = http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 401);
}
