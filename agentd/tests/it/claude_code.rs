//! The `claude-code` executor against the fake hub, with a stand-in `claude` program that
//! speaks Claude Code's stream-JSON and asks agentd's MCP permission tool (the real
//! `agentd mcp-permission` it starts from `--mcp-config`): a tool call allowed or denied
//! by policy, allowed or denied by the human through the hub's question, denied when
//! nobody answers in time; a rework resuming the session; a failure. Against the real
//! hub: a tool call the teammate allows at the hub runs, a cancelled task leaves no
//! process of Claude Code running, and the files Claude Code wrote reach the next step.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use agenthub_protocol::{ClientFrame, InputAnswered, OkReply, ServerFrame, StepBlock};
use serde_json::{Value, json};
use uuid::Uuid;

use std::time::Duration;

use reqwest::Method;

use crate::hub::Hub;
use crate::support::{Agentd, FakeHub, HubConn, claim_ok, spawn, step_ready, submit_ok};

/// The stand-in: prints `system/init`, an assistant turn with a tool call, asks the
/// permission tool over MCP, and ends with a `result` holding what it was told.
const STAND_IN: &str = r#"#!/usr/bin/python3
import json, os, subprocess, sys, time, uuid

args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None

plan = json.load(open(os.environ["FAKE_CLAUDE_PLAN"]))
session = opt("--resume") or str(uuid.uuid4())
def out(message):
    message["session_id"] = session
    print(json.dumps(message), flush=True)

out({"type": "system", "subtype": "init", "model": "claude-stand-in", "tools": ["Bash"]})
if plan.get("hang"):
    worker = subprocess.Popen(["sleep", "300"])
    open(plan["hang"], "w").write("%d\n%d\n" % (os.getpid(), worker.pid))
    time.sleep(300)
if plan.get("fail"):
    print("stand-in: giving up", file=sys.stderr, flush=True)
    out({"type": "result", "subtype": "error_during_execution", "is_error": True,
         "result": "the model API is overloaded"})
    sys.exit(1)

server = json.load(open(opt("--mcp-config")))["mcpServers"]["agentd"]
mcp = subprocess.Popen([server["command"]] + server["args"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
def rpc(id, method, params):
    mcp.stdin.write(json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}) + "\n")
    mcp.stdin.flush()
    return json.loads(mcp.stdout.readline())

init = rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "stand-in", "version": "1"}})
mcp.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
tools = rpc(2, "tools/list", {})["result"]["tools"]
assert opt("--permission-prompt-tool") == "mcp__agentd__" + tools[0]["name"], tools
call = plan["call"]
out({"type": "assistant", "message": {"content": [
    {"type": "text", "text": "I will run it."},
    {"type": "tool_use", "id": "toolu_1", "name": call["tool_name"], "input": call["input"]}]}})
answer = rpc(3, "tools/call", {"name": "approve", "arguments": call})
decision = json.loads(answer["result"]["content"][0]["text"])
for n, write in enumerate(plan.get("writes", [])):
    out({"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": "toolu_w%d" % n, "name": write.get("tool", "Write"),
         "input": {"file_path": write["path"], "content": write["content"]}}]}})
    if decision["behavior"] == "allow":
        os.makedirs(os.path.dirname(os.path.abspath(write["path"])), exist_ok=True)
        open(write["path"], "w").write(write["content"])
mcp.stdin.close()
mcp.wait()
out({"type": "assistant", "message": {"content": [
    {"type": "text", "text": "permission: " + decision["behavior"]}]}})
out({"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
     "result": json.dumps({"decision": decision, "resumed": opt("--resume"), "prompt": opt("-p"),
                           "key": os.environ.get("ANTHROPIC_API_KEY")}),
     "usage": {"input_tokens": 120, "output_tokens": 30}})
"#;

/// An agentd whose `claude-code` executor is the stand-in following `plan`, with
/// `config` added to its configuration.
fn agentd_with_stand_in(plan: Value, config: &str) -> Agentd {
    let agentd = Agentd::new();
    let program = agentd.home.path().join("claude");
    std::fs::write(&program, STAND_IN).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan_file: PathBuf = agentd.home.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    agentd.write_config(&format!(
        "pass_env = [\"FAKE_CLAUDE_PLAN\"]\n\n[claude_code]\nprogram = \"{}\"\n{config}\n",
        program.display()
    ));
    agentd.with_env("FAKE_CLAUDE_PLAN", &plan_file.display().to_string())
}

fn bash(command: &str) -> Value {
    json!({"call": {"tool_name": "Bash", "input": {"command": command}}})
}

/// How the fake hub's person answers a question.
#[derive(Clone, Copy)]
enum Person {
    Answers(&'static str),
    Silent,
}

/// Serves the step until its submit or fail (answered ok); returns it, the log, and the
/// questions asked.
async fn until_result(
    conn: &mut HubConn,
    step_id: Uuid,
    person: Person,
    mut seq: u64,
) -> (ClientFrame, String, Vec<StepBlock>) {
    let mut logs = String::new();
    let mut questions = Vec::new();
    loop {
        let frame = conn.recv().await;
        match frame {
            ClientFrame::StepLog(log) => {
                logs.push_str(&log.text);
                conn.send(ServerFrame::Ok(OkReply::new(log.id))).await;
            }
            ClientFrame::StepProgress(progress) => {
                conn.send(ServerFrame::Ok(OkReply::new(progress.id))).await;
            }
            ClientFrame::StepBlock(block) => {
                let input_request_id = Uuid::now_v7();
                let mut ok = OkReply::new(block.id);
                ok.created_id = Some(input_request_id);
                conn.send(ServerFrame::Ok(ok)).await;
                questions.push(block);
                if let Person::Answers(answer) = person {
                    seq += 1;
                    conn.send(ServerFrame::InputAnswered(InputAnswered {
                        seq,
                        input_request_id,
                        step_id,
                        answer: answer.into(),
                        answered_by: "min@example.com".into(),
                    }))
                    .await;
                }
            }
            ClientFrame::InputAnswer(answer) => {
                // agentd answers its own question when nobody did in time.
                conn.send(ServerFrame::Ok(OkReply::new(answer.id))).await;
                seq += 1;
                conn.send(ServerFrame::InputAnswered(InputAnswered {
                    seq,
                    input_request_id: answer.input_request_id,
                    step_id,
                    answer: answer.answer.clone(),
                    answered_by: "min-laptop".into(),
                }))
                .await;
            }
            ClientFrame::Ack(_) | ClientFrame::Pong(_) => {}
            ClientFrame::StepSubmit(ref submit) => {
                conn.send(submit_ok(submit.id)).await;
                return (frame, logs, questions);
            }
            ClientFrame::StepFail(ref fail) => {
                conn.send(ServerFrame::Ok(OkReply::new(fail.id))).await;
                return (frame, logs, questions);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Runs one claude-code step; returns its end, log and questions.
async fn run_step(agentd: &Agentd, person: Person) -> (ClientFrame, String, Vec<StepBlock>) {
    let mut hub = FakeHub::start().await;
    agentd.login(&hub.url);
    let _child = spawn(agentd, &["run", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "claude-code",
        json!({"repo": "reports"}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    until_result(&mut conn, step_id, person, 1).await
}

/// The stand-in's report of what it was told.
fn told(frame: &ClientFrame) -> Value {
    let ClientFrame::StepSubmit(submit) = frame else {
        panic!("expected a submit, got {frame:?}");
    };
    serde_json::from_str(submit.result["text"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_the_policy_allows_runs_without_asking() {
    let agentd = agentd_with_stand_in(
        bash("git status"),
        "[claude_code.tools]\n\"Bash(git *)\" = \"auto\"\n",
    );
    let (frame, logs, questions) = run_step(&agentd, Person::Silent).await;
    let told = told(&frame);
    assert_eq!(told["decision"]["behavior"], "allow", "{told}");
    assert_eq!(
        told["decision"]["updatedInput"],
        json!({"command": "git status"})
    );
    assert!(
        told["prompt"]
            .as_str()
            .unwrap()
            .contains("Your step: Draft the outline")
    );
    assert!(questions.is_empty());
    assert!(logs.contains("tool: Bash(git status)"), "{logs}");
    assert!(
        logs.contains("allowed by policy: Bash(git status)"),
        "{logs}"
    );
    assert!(logs.contains("permission: allow"), "{logs}");
    let ClientFrame::StepSubmit(submit) = frame else {
        unreachable!()
    };
    let usage = submit.usage.unwrap();
    assert_eq!(
        (
            usage.model.as_str(),
            usage.input_tokens,
            usage.output_tokens
        ),
        ("claude-stand-in", 120, 30)
    );
    assert!(submit.result["session_id"].is_string());
    assert_eq!(
        told["key"],
        Value::Null,
        "no key on this machine, none passed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_the_policy_denies_is_refused_with_the_reason() {
    let agentd = agentd_with_stand_in(
        bash("rm -rf /"),
        "[claude_code.tools]\n\"Bash(rm *)\" = \"deny\"\n\"*\" = \"auto\"\n",
    );
    let (frame, logs, questions) = run_step(&agentd, Person::Silent).await;
    let told = told(&frame);
    assert_eq!(told["decision"]["behavior"], "deny", "{told}");
    assert_eq!(
        told["decision"]["message"],
        "Bash is denied by this agent's policy"
    );
    assert!(questions.is_empty());
    assert!(logs.contains("denied by policy: Bash(rm -rf /)"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_rule_asks_the_human_and_their_allow_lets_the_call_run() {
    let agentd = agentd_with_stand_in(bash("make deploy"), "")
        .with_env("ANTHROPIC_API_KEY", "sk-ant-for-claude-code");
    let (frame, logs, questions) = run_step(&agentd, Person::Answers("Allow")).await;
    assert_eq!(questions.len(), 1);
    assert_eq!(
        questions[0].question,
        "Claude Code wants to use Bash(make deploy). Allow it?"
    );
    assert_eq!(questions[0].options, ["Allow", "Deny"]);
    let told = told(&frame);
    assert_eq!(told["decision"]["behavior"], "allow", "{told}");
    assert!(
        logs.contains("allowed by the human: Bash(make deploy)"),
        "{logs}"
    );
    assert_eq!(
        told["key"], "sk-ant-for-claude-code",
        "pass_key gives Claude Code agentd's key, and only it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_humans_deny_refuses_the_call() {
    let agentd = agentd_with_stand_in(bash("make deploy"), "");
    let (frame, _, questions) = run_step(&agentd, Person::Answers("Deny")).await;
    assert_eq!(questions.len(), 1);
    let told = told(&frame);
    assert_eq!(told["decision"]["behavior"], "deny", "{told}");
    assert_eq!(
        told["decision"]["message"],
        "the human denied this tool call (answer: Deny)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_nobody_answers_in_time_denies_the_call() {
    let agentd = agentd_with_stand_in(bash("make deploy"), "ask_timeout_secs = 1\n");
    let (frame, logs, questions) = run_step(&agentd, Person::Silent).await;
    assert_eq!(questions.len(), 1);
    let told = told(&frame);
    assert_eq!(told["decision"]["behavior"], "deny", "{told}");
    assert_eq!(
        told["decision"]["message"],
        "nobody allowed this tool call within 1 s, so it was denied"
    );
    assert!(logs.contains("no answer in time, denied"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rework_resumes_the_same_session_with_the_reviewers_comment() {
    let agentd = agentd_with_stand_in(
        bash("git diff"),
        "[claude_code.tools]\n\"Bash(git *)\" = \"auto\"\n",
    );
    let mut hub = FakeHub::start().await;
    agentd.login(&hub.url);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(1, step_id, "claude-code", json!({})))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let (first, _, _) = until_result(&mut conn, step_id, Person::Silent, 1).await;
    let ClientFrame::StepSubmit(submit) = &first else {
        panic!("expected a submit, got {first:?}");
    };
    let session = submit.result["session_id"].as_str().unwrap().to_string();
    assert_eq!(told(&first)["resumed"], Value::Null);

    let mut rework = step_ready(2, step_id, "claude-code", json!({}));
    if let ServerFrame::StepReady(ready) = &mut rework {
        ready.step.attempt = 2;
        ready.step.rework_comment = Some("Add the regional totals".into());
    }
    conn.send(rework).await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim of the rework");
    };
    assert_eq!(claim.attempt, Some(2));
    conn.send(claim_ok(claim.id, 2)).await;
    let (second, logs, _) = until_result(&mut conn, step_id, Person::Silent, 2).await;
    let told = told(&second);
    assert_eq!(told["resumed"], session.as_str(), "{told}");
    assert!(
        told["prompt"]
            .as_str()
            .unwrap()
            .contains("Add the regional totals"),
        "{told}"
    );
    assert!(
        logs.contains(&format!("resuming session {session}")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_failure_fails_the_step_with_its_reason() {
    let agentd = agentd_with_stand_in(json!({"fail": true}), "");
    let (frame, logs, _) = run_step(&agentd, Person::Silent).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert_eq!(
        fail.reason,
        "Claude Code failed (error_during_execution): the model API is overloaded"
    );
    assert!(!fail.retryable);
    assert!(logs.contains("stand-in: giving up"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_claude_program_says_how_to_install_it() {
    let agentd = Agentd::new();
    agentd.write_config("[claude_code]\nprogram = \"/nonexistent/claude\"\n");
    let (frame, _, _) = run_step(&agentd, Person::Silent).await;
    let ClientFrame::StepFail(fail) = frame else {
        panic!("expected a fail, got {frame:?}");
    };
    assert!(
        fail.reason.starts_with("cannot start /nonexistent/claude"),
        "{}",
        fail.reason
    );
    assert!(
        fail.reason
            .contains("npm install -g @anthropic-ai/claude-code"),
        "{}",
        fail.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_claude_code_writes_reach_the_next_step() {
    let hub = Hub::start().await;
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("elsewhere.txt");
    let mut plan = bash("ls");
    plan["writes"] = json!([
        {"path": "report.md", "content": "# Q3\nrevenue 42\n"},
        {"path": "notes/summary.txt", "content": "short\n", "tool": "Edit"},
        {"path": outside_file, "content": "not a step file\n"},
    ]);
    let agentd = agentd_with_stand_in(plan, "[claude_code.tools]\n\"*\" = \"auto\"\n");
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.owner_key,
            Some(json!({"title": "Quarterly report", "steps": [
                {"key": "write", "title": "Write the report", "assignees": ["min-laptop"],
                 "executor": "claude-code"},
                {"key": "read", "title": "Read the report", "assignees": ["min-laptop"],
                 "executor": "shell", "depends_on": ["write"],
                 "input": {"command": "cat inputs/report.md inputs/summary.txt > seen.txt"}},
            ]})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let write = task["steps"][0]["id"].as_str().unwrap().to_string();
    let read = task["steps"][1]["id"].as_str().unwrap().to_string();
    let ended = |step: &Value| matches!(step["status"].as_str(), Some("done" | "failed"));
    let wait = Duration::from_secs(30);
    let written = hub
        .rest
        .wait_step(&hub.team.owner_key, &write, wait, "done", ended)
        .await;
    assert_eq!(written["status"], "done", "{written:#}");
    assert_eq!(
        written["files"].as_array().unwrap().len(),
        2,
        "the two files in the work dir, not the one outside: {written:#}"
    );
    let used = hub
        .rest
        .wait_step(&hub.team.owner_key, &read, wait, "done", ended)
        .await;
    assert_eq!(used["status"], "done", "{used:#}");
    let seen = std::fs::read_to_string(
        agentd
            .work_dir(Uuid::parse_str(&read).unwrap())
            .join("seen.txt"),
    )
    .unwrap();
    assert_eq!(seen, "# Q3\nrevenue 42\nshort\n");
    let (_, logs) = hub
        .rest
        .call(
            Method::GET,
            &format!("/v1/steps/{write}/logs"),
            &hub.team.owner_key,
            None,
        )
        .await;
    let logs = logs.to_string();
    assert!(logs.contains("uploaded report.md as file"), "{logs}");
    assert!(
        logs.contains("uploaded notes/summary.txt as file"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "not uploaded: {} is outside the step's work dir",
            outside_file.display()
        )),
        "{logs}"
    );
}

/// Whether process `pid` still runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?");
        state != "Z" && state != "X"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_the_teammate_allows_at_the_hub_runs_on_their_machine() {
    let hub = Hub::start().await;
    let agentd = agentd_with_stand_in(bash("make deploy"), "");
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Deploy", "assignees": ["min-laptop"], "executor": "claude-code"}),
        )
        .await;
    // The question waits in min's inbox (the dashboard and the notification read it too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let question = loop {
        let (_, inbox) = hub
            .rest
            .call(Method::GET, "/v1/me/inbox", &hub.team.min_key, None)
            .await;
        if let Some(question) = inbox["questions"]
            .as_array()
            .and_then(|questions| questions.iter().find(|q| q["step_id"] == step_id.as_str()))
        {
            break question.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no question: {inbox:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        question["question"],
        "Claude Code wants to use Bash(make deploy). Allow it?"
    );
    assert_eq!(question["options"], json!(["Allow", "Deny"]));
    let (status, answered) = hub
        .rest
        .call(
            Method::POST,
            &format!(
                "/v1/input-requests/{}/answer",
                question["id"].as_str().unwrap()
            ),
            &hub.team.min_key,
            Some(json!({"answer": "Allow"})),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    let ended = |step: &Value| matches!(step["status"].as_str(), Some("done" | "failed"));
    let step = hub
        .rest
        .wait_step(
            &hub.team.owner_key,
            &step_id,
            Duration::from_secs(30),
            "done",
            ended,
        )
        .await;
    assert_eq!(step["status"], "done", "{step:#}");
    let told: Value = serde_json::from_str(step["result"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(told["decision"]["behavior"], "allow", "{told}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_leaves_no_process_of_claude_code_running() {
    let hub = Hub::start().await;
    let pids_file = tempfile::NamedTempFile::new().unwrap();
    let agentd = agentd_with_stand_in(json!({"hang": pids_file.path()}), "");
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.owner_key,
            Some(json!({"title": "Long work", "steps": [
                {"key": "work", "title": "Work long", "assignees": ["min-laptop"],
                 "executor": "claude-code"},
            ]})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pids: Vec<u32> = loop {
        let pids: Vec<u32> = std::fs::read_to_string(pids_file.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Claude Code did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(pids.iter().all(|pid| running(*pid)));
    let (status, cancelled) = hub
        .rest
        .call(
            Method::PATCH,
            &format!("/v1/tasks/{}", task["id"].as_str().unwrap()),
            &hub.team.owner_key,
            Some(json!({"action": "cancel"})),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|pid| running(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running after the cancel: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
