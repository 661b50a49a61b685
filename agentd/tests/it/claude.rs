//! The `claude` executor against a scripted fake of the Messages API: retries, the
//! tool loop, tool approval through the hub, API errors, and the key staying local.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use agenthub_protocol::{ClientFrame, InputAnswered, ServerFrame};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Agentd, FakeHub, claim_ok, spawn, step_ready, submit_ok, text, wait_exit};

pub const KEY: &str = "sk-ant-test-KEY-must-stay-local-9f8e7d";

/// A request the fake Claude API received.
#[derive(Debug, Clone)]
pub struct SeenCall {
    pub headers: HeaderMap,
    pub body: Value,
}

/// A scripted answer: HTTP status, `retry-after`, body.
pub type Answer = (u16, Option<&'static str>, Value);

#[derive(Clone, Default)]
pub struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    pub calls: Arc<Mutex<Vec<SeenCall>>>,
}

async fn messages(State(script): State<Script>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    script
        .calls
        .lock()
        .unwrap()
        .push(SeenCall { headers, body });
    let Some((status, retry_after, answer)) = script.answers.lock().unwrap().pop_front() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response();
    if let Some(retry_after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().unwrap());
    }
    response
}

/// A scripted fake of `POST /v1/messages` on 127.0.0.1; returns its base URL.
pub async fn fake_claude(answers: Vec<Answer>) -> (String, Script) {
    let script = Script::default();
    script.answers.lock().unwrap().extend(answers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(script.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, script)
}

/// A Messages API response.
pub fn message(content: Value, stop_reason: &str, input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "id": format!("msg_{}", Uuid::now_v7().simple()),
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
    })
}

/// An agentd whose Claude key and API base URL point at the fake.
pub fn agentd_with_claude(claude_url: &str) -> Agentd {
    Agentd::new()
        .with_env("ANTHROPIC_API_KEY", KEY)
        .with_env("ANTHROPIC_BASE_URL", claude_url)
        .with_env("AGENTD_LOG", "debug")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_loop_writes_a_file_and_reports_summary_and_usage() {
    let (claude_url, script) = fake_claude(vec![
        (
            429,
            Some("1"),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        ),
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
    let mut hub = FakeHub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(
        1,
        step_id,
        "claude",
        json!({"files": ["report.pdf"]}),
    ))
    .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let started = std::time::Instant::now();
    let (frame, logs) = conn.recv_with_logs().await;
    let ClientFrame::StepSubmit(submit) = frame.clone() else {
        panic!("expected a submit, got {frame:?}");
    };
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "retry-after was honoured"
    );
    assert_eq!(
        submit.summary.as_deref(),
        Some("Wrote outline.md with one section.")
    );
    let usage = submit.usage.clone().expect("usage is reported");
    assert_eq!((usage.input_tokens, usage.output_tokens), (250, 50));
    assert_eq!(usage.model, "claude-sonnet-4-5");
    assert!(logs.contains("write_file outline.md"), "{logs}");
    // The written file was uploaded and is referenced by the result.
    assert_eq!(submit.files.len(), 1, "{submit:?}");
    let upload = hub
        .requests()
        .into_iter()
        .find(|seen| seen.method == "PUT")
        .expect("the written file is uploaded");
    assert_eq!(upload.path, "/v1/files?name=outline.md");
    assert_eq!(upload.body, "# Outline\n- Revenue\n");
    assert!(logs.contains("uploaded outline.md as file"), "{logs}");
    conn.send(submit_ok(submit.id)).await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(agentd.work_dir(step_id).join("outline.md")).unwrap(),
        "# Outline\n- Revenue\n"
    );

    let calls = script.calls.lock().unwrap().clone();
    // The last is the check of the result, unanswered by this script.
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[3].body["tools"][0]["name"], "report_check");
    for call in &calls[..3] {
        assert_eq!(call.headers["x-api-key"], KEY);
        assert_eq!(call.headers["anthropic-version"], "2023-06-01");
        assert_eq!(call.body["tools"].as_array().unwrap().len(), 5);
    }
    let first_prompt = calls[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(first_prompt.contains("Draft the outline"), "{first_prompt}");
    assert!(first_prompt.contains("report.pdf"), "{first_prompt}");
    let last = &calls[2].body["messages"];
    assert_eq!(last[1]["role"], "assistant");
    assert_eq!(last[1]["content"][1]["type"], "tool_use");
    let tool_result = &last[2]["content"][0];
    assert_eq!(tool_result["type"], "tool_result");
    assert_eq!(tool_result["tool_use_id"], "toolu_1");
    assert!(
        tool_result["content"].as_str().unwrap().contains("wrote"),
        "{tool_result}"
    );
    assert!(tool_result.get("is_error").is_none());

    // The key went to the Claude API only: not to the hub, not into a frame, not into a log.
    for request in hub.requests() {
        assert!(!request.headers.contains(KEY) && !request.body.contains(KEY));
    }
    assert!(!format!("{frame:?}").contains(KEY));
    assert!(!logs.contains(KEY));
    assert!(!text(&out.stderr).contains(KEY), "the key is in a log line");
    assert!(text(&out.stderr).contains("DEBUG"), "debug logging was on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_with_policy_ask_waits_for_the_human_through_the_hub() {
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
    let mut hub = FakeHub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(1, step_id, "claude", Value::Null))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    for (seq, answer) in (2..).zip(["approve", "reject: not that"]) {
        let ClientFrame::StepBlock(block) = conn.recv_significant().await else {
            panic!("expected the step to block on the tool call");
        };
        assert!(block.question.contains("run_shell"), "{}", block.question);
        assert_eq!(block.options, vec!["approve", "reject"]);
        let request_id = Uuid::now_v7();
        let mut ok = agenthub_protocol::OkReply::new(block.id);
        ok.status = Some("blocked".into());
        ok.created_id = Some(request_id);
        conn.send(ServerFrame::Ok(ok)).await;
        conn.send(ServerFrame::InputAnswered(InputAnswered {
            seq,
            input_request_id: request_id,
            step_id,
            answer: answer.into(),
            answered_by: "min@example.com".into(),
        }))
        .await;
    }
    let ClientFrame::StepSubmit(submit) = conn.recv_significant().await else {
        panic!("expected a submit");
    };
    assert_eq!(submit.summary.as_deref(), Some("Done."));
    conn.send(submit_ok(submit.id)).await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(agentd.work_dir(step_id).join("proof.txt")).unwrap(),
        "approved-run\n"
    );
    let calls = script.calls.lock().unwrap().clone();
    let approved = &calls[1].body["messages"][2]["content"][0];
    assert_eq!(approved["tool_use_id"], "toolu_a");
    assert!(
        approved["content"]
            .as_str()
            .unwrap()
            .contains("exit code: 0"),
        "{approved}"
    );
    let rejected = &calls[2].body["messages"][4]["content"][0];
    assert_eq!(rejected["tool_use_id"], "toolu_b");
    assert_eq!(rejected["is_error"], true);
    assert!(
        rejected["content"].as_str().unwrap().contains("rejected"),
        "{rejected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_fails_the_step_with_a_clear_reason() {
    let (claude_url, _script) = fake_claude(vec![(
        400,
        None,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
    )])
    .await;
    let mut hub = FakeHub::start().await;
    let agentd = agentd_with_claude(&claude_url);
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    conn.send(step_ready(1, Uuid::now_v7(), "claude", Value::Null))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let ClientFrame::StepFail(fail) = conn.recv_significant().await else {
        panic!("expected a fail");
    };
    assert!(fail.reason.contains("HTTP 400"), "{}", fail.reason);
    assert!(
        fail.reason.contains("max_tokens: too large"),
        "{}",
        fail.reason
    );
    assert!(!fail.retryable);
    conn.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(fail.id)))
        .await;
    let out = wait_exit(child).await;
    assert_eq!(out.status.code(), Some(7));
}
