//! The `claude-code` executor with the real Claude Code CLI (npm
//! `@anthropic-ai/claude-code`, found through `AGENTD_TEST_CLAUDE`, which `.ci/run` sets)
//! against a local stand-in of the Messages API: Claude Code asks to run a command,
//! agentd's MCP permission tool answers by policy, and the answer reaches the model.
//! Where Claude Code is not installed the test says it was skipped.

use std::process::Stdio;
use std::time::Duration;

use agenthub_protocol::ClientFrame;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Agentd, FakeHub, claim_ok, spawn, step_ready, submit_ok, text};

/// The Messages API stand-in: streams a `Bash` tool call first, then, once the request
/// carries its tool result, a text quoting that result.
const MESSAGES_API: &str = r#"#!/usr/bin/python3
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

def tool_results(body):
    found = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_result":
                    inner = block.get("content")
                    if isinstance(inner, list):
                        inner = " ".join(part.get("text", "") for part in inner)
                    found.append(str(inner))
    return found

class Api(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_HEAD(self):
        self.send_response(200)
        self.end_headers()
    def do_GET(self):
        self.send_response(404)
        self.end_headers()
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if "count_tokens" in self.path:
            out = json.dumps({"input_tokens": 10}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        results = tool_results(body)
        has_bash = any(tool.get("name") == "Bash" for tool in body.get("tools", []))
        if results or not has_bash:
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": "Tool said: " + " | ".join(results)}
            stop = "end_turn"
        else:
            block = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
            delta = {"type": "input_json_delta",
                     "partial_json": json.dumps({"command": "echo from-claude-code > made.txt",
                                                 "description": "Write a file"})}
            stop = "tool_use"
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 50, "output_tokens": 1}}
        events = [
            ("message_start", {"type": "message_start", "message": message}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 9}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for name, data in events:
            self.wfile.write(("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode())
            self.wfile.flush()

HTTPServer(("127.0.0.1", int(sys.argv[1])), Api).serve_forever()
"#;

/// Runs one claude-code step with the real CLI and `policy` for `Bash`; returns the
/// result text and the log, or `None` when Claude Code is not installed.
async fn run_real(policy: &str) -> Option<(String, String, Uuid, Agentd)> {
    let Some(claude) =
        std::env::var_os("AGENTD_TEST_CLAUDE").filter(|path| std::path::Path::new(path).exists())
    else {
        eprintln!(
            "skipped: claude_code_real (Claude Code is not installed; .ci/run installs it and sets AGENTD_TEST_CLAUDE)"
        );
        return None;
    };
    let agentd = Agentd::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api_script = agentd.home.path().join("messages_api.py");
    std::fs::write(&api_script, MESSAGES_API).unwrap();
    let _api = tokio::process::Command::new("/usr/bin/python3")
        .arg(&api_script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agentd.write_config(&format!(
        "pass_env = [\"ANTHROPIC_BASE_URL\"]\n\n[claude_code]\nprogram = \"{}\"\n\n[claude_code.tools]\n\"Bash(echo *)\" = \"{policy}\"\n",
        std::path::Path::new(&claude).display()
    ));
    let agentd = agentd
        .with_env("ANTHROPIC_BASE_URL", &format!("http://127.0.0.1:{port}"))
        .with_env("ANTHROPIC_API_KEY", "sk-ant-stand-in");
    let mut hub = FakeHub::start().await;
    agentd.login(&hub.url);
    let child = spawn(&agentd, &["run", "--once", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    conn.send(step_ready(1, step_id, "claude-code", json!({})))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let mut logs = String::new();
    let frame = loop {
        let Ok(frame) = tokio::time::timeout(Duration::from_secs(60), conn.recv()).await else {
            let mut child = child;
            let _ = child.start_kill();
            let out = child.wait_with_output().await.unwrap();
            panic!("no frame within 60 s\n{logs}\n{}", text(&out.stderr));
        };
        match frame {
            ClientFrame::StepLog(log) => {
                logs.push_str(&log.text);
                conn.send(agenthub_protocol::ServerFrame::Ok(
                    agenthub_protocol::OkReply::new(log.id),
                ))
                .await;
            }
            ClientFrame::StepProgress(progress) => {
                conn.send(agenthub_protocol::ServerFrame::Ok(
                    agenthub_protocol::OkReply::new(progress.id),
                ))
                .await;
            }
            ClientFrame::Ack(_) | ClientFrame::Pong(_) => {}
            other => break other,
        }
    };
    let ClientFrame::StepSubmit(submit) = frame else {
        let out = crate::support::wait_exit(child).await;
        panic!(
            "expected a submit, got {frame:?}\n{logs}\n{}",
            text(&out.stderr)
        );
    };
    conn.send(submit_ok(submit.id)).await;
    let result = submit.result["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Some((result, logs, step_id, agentd))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_runs_a_command_its_policy_allows() {
    let Some((result, logs, step_id, agentd)) = run_real("auto").await else {
        return;
    };
    assert!(
        logs.contains("allowed by policy: Bash(echo from-claude-code > made.txt)"),
        "{logs}"
    );
    assert!(result.starts_with("Tool said:"), "{result}");
    assert_eq!(
        std::fs::read_to_string(agentd.work_dir(step_id).join("made.txt")).unwrap(),
        "from-claude-code\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_is_refused_a_command_its_policy_denies() {
    let Some((result, logs, step_id, agentd)) = run_real("deny").await else {
        return;
    };
    assert!(
        logs.contains("denied by policy: Bash(echo from-claude-code > made.txt)"),
        "{logs}"
    );
    assert!(result.contains("denied by this agent's policy"), "{result}");
    assert!(!agentd.work_dir(step_id).join("made.txt").exists());
}
