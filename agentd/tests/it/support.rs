//! Test harness: `agentd` as a real child process with its own XDG directories, a fake
//! hub (REST routes and the agent WebSocket, driven frame by frame by the test, built
//! from the protocol types), and a scripted fake of the Claude Messages API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agenthub_protocol::{ClientFrame, Codec, Limits, ServerFrame, StepInfo, Welcome};
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as AxumPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The agent token the fake hub accepts.
pub const TOKEN: &str = "aha_test_token_0123456789";

/// One agentd installation: its own config, data and state directories.
pub struct Agentd {
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Default for Agentd {
    fn default() -> Self {
        Self::new()
    }
}

impl Agentd {
    pub fn new() -> Agentd {
        let home = tempfile::tempdir().expect("temp dir");
        let env = vec![
            ("HOME".into(), home.path().display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                home.path().join("config").display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                home.path().join("data").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                home.path().join("state").display().to_string(),
            ),
            ("AGENTD_CREDENTIAL_STORE".into(), "file".into()),
        ];
        Agentd { home, env }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Agentd {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentd"));
        cmd.args(args);
        for var in [
            "AGENTD_HUB",
            "AGENTD_TOKEN",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "AGENTD_LOG",
            "DBUS_SESSION_BUS_ADDRESS",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(key, value)| (key, value)));
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `agentd ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run agentd")
    }

    /// Runs `agentd ARGS` with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentd");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait for agentd")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join("config").join("agentd")
    }

    pub fn work_dir(&self, step_id: Uuid) -> PathBuf {
        self.home
            .path()
            .join("data")
            .join("agentd")
            .join("work")
            .join(step_id.to_string())
    }

    /// Writes `config.toml`.
    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.config_dir()).unwrap();
        std::fs::write(self.config_dir().join("config.toml"), text).unwrap();
    }

    /// Logs in against `hub` with the test token.
    pub fn login(&self, hub: &str) {
        self.login_with(hub, TOKEN);
    }

    /// Logs in against `hub` with `token`.
    pub fn login_with(&self, hub: &str, token: &str) {
        let out = self.run(&["login", "--hub", hub, "--token", token]);
        assert!(out.status.success(), "login failed: {}", text(&out.stderr));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A request the fake hub saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: String,
    pub body: String,
}

#[derive(Clone)]
struct HubState {
    connections: mpsc::Sender<HubConn>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    refuse_upgrade: Arc<Mutex<Option<StatusCode>>>,
}

/// A fake hub on 127.0.0.1.
pub struct FakeHub {
    pub url: String,
    connections: mpsc::Receiver<HubConn>,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    refuse_upgrade: Arc<Mutex<Option<StatusCode>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeHub {
    pub async fn start() -> FakeHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (connections_tx, connections) = mpsc::channel(8);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refuse_upgrade = Arc::new(Mutex::new(None));
        let state = HubState {
            connections: connections_tx,
            seen: seen.clone(),
            refuse_upgrade: refuse_upgrade.clone(),
        };
        let app = Router::new()
            .route("/v1/agent/connect", get(connect))
            .route("/v1/me", get(me))
            .route("/v1/me/inbox", get(inbox))
            .route("/v1/steps/{id}/approve", post(approve))
            .route("/v1/steps/{id}", get(no_step))
            .route("/v1/tasks", any(tasks))
            .route("/v1/tasks/{id}", get(task))
            .route("/v1/tasks/{id}/timeline", get(timeline))
            .route("/v1/steps/{id}/retry", post(retry))
            .route("/v1/agents/{id}", get(agent))
            .route("/v1/files", axum::routing::put(upload))
            .route("/v1/files/{id}", get(download))
            .layer(axum::middleware::from_fn_with_state(state.clone(), record))
            .with_state(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeHub {
            url,
            connections,
            seen,
            refuse_upgrade,
            _server: server,
        }
    }

    /// Answer the next upgrades with `status` instead.
    pub fn refuse_upgrades(&self, status: StatusCode) {
        *self.refuse_upgrade.lock().unwrap() = Some(status);
    }

    /// The next agent connection (hello already read).
    pub async fn accept(&mut self) -> HubConn {
        tokio::time::timeout(Duration::from_secs(20), self.connections.recv())
            .await
            .expect("agentd connects within 20 s")
            .expect("the fake hub runs")
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State(state): State<HubState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    state.seen.lock().unwrap().push(SeenRequest {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        headers: format!("{:?}", parts.headers),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(
            json!({"error": {"code": "unauthorized", "message": "missing or invalid agent token"}}),
        ),
    )
        .into_response()
}

/// `PUT /v1/files`: takes any upload and names it with a fresh id.
async fn upload(
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": Uuid::now_v7().to_string(),
            "name": query.get("name").cloned().unwrap_or_default(),
            "content_type": "application/octet-stream",
            "size_bytes": body.len(),
            "sha256": "0".repeat(64),
            "created_at": "2026-12-02T16:00:00Z",
        })),
    )
        .into_response()
}

/// The bytes every fake file has.
pub const FILE_BYTES: &[u8] = b"Q3 revenue: 42\n";

/// `GET /v1/files/{id}`: [`FILE_BYTES`] as `report.txt`, with their `Repr-Digest`; the
/// file `tampered` announces the digest of other bytes.
async fn download(headers: HeaderMap, AxumPath(id): AxumPath<String>) -> Response {
    use base64::Engine;
    use sha2::Digest;

    if !authorized(&headers) {
        return unauthorized();
    }
    let digested: &[u8] = if id == "tampered" {
        b"other bytes"
    } else {
        FILE_BYTES
    };
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(digested));
    (
        [
            (
                "content-disposition",
                "attachment; filename=\"report.txt\"".to_string(),
            ),
            ("repr-digest", format!("sha-256=:{digest}:")),
        ],
        FILE_BYTES,
    )
        .into_response()
}

async fn me(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    axum::Json(json!({
        "kind": "agent",
        "workspace_id": "01935a7e-0000-7000-8000-000000000001",
        "member_id": "01935a7e-0000-7000-8000-000000000002",
        "agent_id": "01935a7e-0000-7000-8000-0000000000a9",
        "agent_name": "min-laptop",
        "email": null
    }))
    .into_response()
}

async fn inbox(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    axum::Json(json!({
        "approvals": [{
            "approval_id": "01935a7e-0000-7000-8000-0000000000a1",
            "step_id": "01935a7e-0000-7000-8000-000000000051",
            "task_id": "01935a7e-0000-7000-8000-000000000071",
            "step_title": "Review the outline",
            "approval_level": 2,
            "attempt": 1,
            "digest": "sha256:f2bd137e23792605caf1efa20e28961330c677e5879e4e128d07a1e9c0cb0551",
            "summary": "Three-part outline",
            "result": {"ok": true},
            "requested_at": "2026-11-23T14:35:10.404Z"
        }],
        "questions": []
    }))
    .into_response()
}

/// No step is known here but those of the inbox.
async fn no_step() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"code": "not_found", "message": "step not found"}})),
    )
        .into_response()
}

async fn approve(headers: HeaderMap, AxumPath(id): AxumPath<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    if id != "01935a7e-0000-7000-8000-000000000051" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "not_found", "message": "step not found"}})),
        )
            .into_response();
    }
    axum::Json(
        json!({"approval_id": "01935a7e-0000-7000-8000-0000000000a1", "step_status": "done"}),
    )
    .into_response()
}

/// The task the fake hub knows (`GET /v1/tasks/{TASK_ID}`): "Quarterly report", failed
/// at its review step after three attempts.
pub const TASK_ID: &str = "01935a7e-0000-7000-8000-000000000071";
/// Its failed review step, which `POST /v1/steps/{id}/retry` makes ready again.
pub const FAILED_STEP_ID: &str = "01935a7e-0000-7000-8000-000000000052";
/// Its done draft step, which the fake hub refuses to retry (409).
pub const DONE_STEP_ID: &str = "01935a7e-0000-7000-8000-000000000051";
/// A step of a task created by someone else (403).
pub const FOREIGN_STEP_ID: &str = "01935a7e-0000-7000-8000-000000000053";

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn failed_task() -> Value {
    json!({
        "id": TASK_ID,
        "title": "Quarterly report",
        "description": "Break down the director's report, then review it",
        "status": "failed",
        "creator_member_id": "01935a7e-0000-7000-8000-000000000002",
        "progress": {"done": 1, "total": 2, "running": []},
        "outcome": {
            "status": "failed", "step_id": FAILED_STEP_ID, "step_key": "review",
            "reason": "`make review` exited with status 2",
            "by": {"kind": "agent", "id": "01935a7e-0000-7000-8000-0000000000b1", "name": "duan-desktop"},
            "at": "2026-12-02T16:10:04Z"
        },
        "steps": [
            {"id": DONE_STEP_ID, "key": "draft", "title": "Draft the outline", "status": "done",
             "attempt": 1, "max_attempts": 3, "status_reason": null, "progress": null,
             "assignees": [{"id": "01935a7e-0000-7000-8000-0000000000a9", "name": "min-laptop"}]},
            {"id": FAILED_STEP_ID, "key": "review", "title": "Review the outline", "status": "failed",
             "attempt": 3, "max_attempts": 3, "status_reason": "`make review` exited with status 2",
             "estimate_minutes": 90,
             "progress": {"percent": 80, "message": "checking figures"},
             "assignees": [{"id": "01935a7e-0000-7000-8000-0000000000b1", "name": "duan-desktop"}]}
        ],
        "involved_agents": []
    })
}

async fn task(headers: HeaderMap, AxumPath(id): AxumPath<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    if id != TASK_ID {
        return refusal(StatusCode::NOT_FOUND, "not_found", "task not found");
    }
    axum::Json(failed_task()).into_response()
}

async fn timeline(headers: HeaderMap, AxumPath(id): AxumPath<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    if id != TASK_ID {
        return refusal(StatusCode::NOT_FOUND, "not_found", "task not found");
    }
    let hub = json!({"kind": "hub", "id": null, "name": null});
    let duan = json!({"kind": "agent", "id": "01935a7e-0000-7000-8000-0000000000b1", "name": "duan-desktop"});
    axum::Json(json!({"timeline": [
        {"at": "2026-12-02T16:00:00Z", "step_id": null, "step_key": null, "from": null,
         "to": "active", "reason": null, "attempt": null,
         "actor": {"kind": "member", "id": "01935a7e-0000-7000-8000-000000000003", "name": "aurora@example.com"}},
        {"at": "2026-12-02T16:10:03Z", "step_id": FAILED_STEP_ID, "step_key": "review", "from": "claimed",
         "to": "running", "reason": null, "attempt": 3, "actor": duan},
        {"at": "2026-12-02T16:10:04Z", "step_id": FAILED_STEP_ID, "step_key": "review", "from": "running",
         "to": "failed", "reason": "`make review` exited with status 2", "attempt": 3, "actor": duan},
        {"at": "2026-12-02T16:10:04Z", "step_id": null, "step_key": null, "from": "active",
         "to": "failed", "reason": "step `review` failed", "attempt": null, "actor": hub}
    ]}))
    .into_response()
}

async fn retry(headers: HeaderMap, AxumPath(id): AxumPath<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    match id.as_str() {
        FAILED_STEP_ID => {
            let mut task = failed_task();
            task["status"] = json!("active");
            task["outcome"] = Value::Null;
            task["steps"][1]["status"] = json!("ready");
            task["steps"][1]["attempt"] = json!(4);
            task["steps"][1]["status_reason"] = Value::Null;
            axum::Json(task).into_response()
        }
        DONE_STEP_ID => refusal(
            StatusCode::CONFLICT,
            "conflict",
            "the step is done; only a failed or skipped step can be retried",
        ),
        FOREIGN_STEP_ID => refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the task's creator or an admin may retry its steps",
        ),
        _ => refusal(StatusCode::NOT_FOUND, "not_found", "step not found"),
    }
}

async fn agent(headers: HeaderMap, AxumPath(id): AxumPath<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    axum::Json(json!({"id": id, "name": "min-laptop", "status": "working", "online": true}))
        .into_response()
}

async fn tasks(headers: HeaderMap, method: axum::http::Method, body: String) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    if method == axum::http::Method::GET {
        let mut running = failed_task();
        running["id"] = json!("01935a7e-0000-7000-8000-000000000072");
        running["status"] = json!("active");
        running["progress"] = json!({"done": 3, "total": 5, "running": [
            {"step_id": FAILED_STEP_ID, "key": "review", "title": "Review the outline",
             "status": "running", "percent": 40, "message": "checking figures"},
            {"step_id": DONE_STEP_ID, "key": "charts", "title": "Draw the charts",
             "status": "claimed", "percent": null, "message": null}]});
        return axum::Json(json!({"tasks": [failed_task(), running], "meta": {"count": 2}}))
            .into_response();
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    axum::Json(json!({
        "id": "01935a7e-0000-7000-8000-000000000071",
        "title": request["title"],
        "status": "active",
        "steps": [{"id": "01935a7e-0000-7000-8000-000000000051", "status": "ready", "title": request["steps"][0]["title"]}],
        "tasks": []
    }))
    .into_response()
}

async fn connect(
    State(state): State<HubState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(status) = *state.refuse_upgrade.lock().unwrap() {
        return (
            status,
            axum::Json(json!({"error": {"code": "unauthorized", "message": "refused"}})),
        )
            .into_response();
    }
    if !authorized(&headers) {
        return unauthorized();
    }
    upgrade
        .protocols(["agenthub.v1.msgpack"])
        .on_upgrade(move |socket| async move {
            let mut conn = HubConn {
                socket,
                hello: None,
            };
            let hello = conn.recv().await;
            conn.hello = Some(hello);
            let _ = state.connections.send(conn).await;
        })
}

/// One agent session as the hub sees it.
pub struct HubConn {
    socket: WebSocket,
    pub hello: Option<ClientFrame>,
}

impl HubConn {
    /// The `last_seq` the agent sent in `hello`.
    pub fn hello_last_seq(&self) -> u64 {
        match &self.hello {
            Some(ClientFrame::Hello(hello)) => hello.last_seq,
            other => panic!("expected hello, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: ServerFrame) {
        let bytes = Codec::MsgPack.encode(&frame).unwrap();
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .unwrap();
    }

    /// Sends bytes as they are, as a binary message (a frame the encoder would refuse).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .unwrap();
    }

    pub async fn welcome(&mut self, last_seq: u64, lease_ms: u64) {
        self.send(ServerFrame::Welcome(Welcome {
            agent_id: Uuid::now_v7(),
            agent_name: "min-laptop".into(),
            session_id: Uuid::now_v7(),
            heartbeat_interval_ms: 15_000,
            heartbeat_timeout_ms: 45_000,
            lease_ms,
            max_frame_bytes: 1 << 20,
            max_frames_per_s: 200,
            last_seq,
            member_id: None,
        }))
        .await;
    }

    /// The next frame from the agent (10 s at most).
    pub async fn recv(&mut self) -> ClientFrame {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(15), self.socket.recv())
                .await
                .expect("a frame from agentd within 15 s")
                .expect("the socket is open")
                .expect("a readable message");
            match message {
                Message::Binary(bytes) => {
                    return Codec::MsgPack
                        .decode_client(&bytes, &Limits::default())
                        .expect("a valid client frame");
                }
                Message::Close(frame) => panic!("agentd closed the session: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame that is not a log line, progress, ack or pong (those are answered
    /// or skipped).
    pub async fn recv_significant(&mut self) -> ClientFrame {
        loop {
            let frame = self.recv().await;
            match &frame {
                ClientFrame::StepLog(log) => {
                    let id = log.id;
                    self.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(id)))
                        .await;
                }
                ClientFrame::StepProgress(progress) => {
                    let mut ok = agenthub_protocol::OkReply::new(progress.id);
                    ok.lease_ms = Some(60_000);
                    self.send(ServerFrame::Ok(ok)).await;
                }
                ClientFrame::Ack(_) | ClientFrame::Pong(_) => {}
                _ => return frame,
            }
        }
    }

    /// Collects the log text of frames until a significant frame arrives.
    pub async fn recv_with_logs(&mut self) -> (ClientFrame, String) {
        let mut logs = String::new();
        loop {
            let frame = self.recv().await;
            match &frame {
                ClientFrame::StepLog(log) => {
                    logs.push_str(&log.text);
                    let id = log.id;
                    self.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(id)))
                        .await;
                }
                ClientFrame::StepProgress(progress) => {
                    let mut ok = agenthub_protocol::OkReply::new(progress.id);
                    ok.lease_ms = Some(60_000);
                    self.send(ServerFrame::Ok(ok)).await;
                }
                ClientFrame::Ack(_) | ClientFrame::Pong(_) => {}
                _ => return (frame, logs),
            }
        }
    }

    pub async fn close(mut self, code: u16) {
        let _ = self
            .socket
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code,
                reason: "test".into(),
            })))
            .await;
    }
}

/// A `step.ready` event.
pub fn step_ready(seq: u64, step_id: Uuid, executor: &str, input: Value) -> ServerFrame {
    ServerFrame::StepReady(agenthub_protocol::StepReady {
        seq,
        step: StepInfo {
            step_id,
            task_id: Uuid::now_v7(),
            task_title: "Quarterly report".into(),
            task_description: "Break down the report".into(),
            task_description_truncated: false,
            key: "draft".into(),
            title: "Draft the outline".into(),
            description: "Write outline.md".into(),
            attempt: 1,
            executor: Some(executor.into()),
            input,
            approval_level: 0,
            required_capabilities: vec![],
            expected_outputs: Some("an outline".into()),
            inputs: vec![],
            rework_comment: None,
        },
    })
}

/// `ok` for a claim.
pub fn claim_ok(id: u64, attempt: u32) -> ServerFrame {
    let mut ok = agenthub_protocol::OkReply::new(id);
    ok.status = Some("claimed".into());
    ok.attempt = Some(attempt);
    ok.lease_ms = Some(60_000);
    ServerFrame::Ok(ok)
}

/// `ok` for a submit.
pub fn submit_ok(id: u64) -> ServerFrame {
    let mut ok = agenthub_protocol::OkReply::new(id);
    ok.status = Some("done".into());
    ServerFrame::Ok(ok)
}

/// Waits for a child to exit (20 s at most) and returns its output.
pub async fn wait_exit(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("agentd exits within 20 s")
        .expect("wait for agentd")
}

/// Spawns `agentd ARGS` as a tokio child with piped output.
pub fn spawn(agentd: &Agentd, args: &[&str]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::from(agentd.command(args));
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("spawn agentd")
}

/// Whether `path` exists within 10 s.
pub async fn eventually_exists(path: &Path) -> bool {
    for _ in 0..100 {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A TCP relay in front of a hub (agentd logs in to `url`) that holds, once, the request
/// whose bytes contain `marker`: it forwards that chunk and then nothing more of the
/// connection, so the request hangs mid-way, until agentd dies (the hub then sees the
/// connection drop) or the test calls [`Relay::cut`] (both sides see it drop).
pub struct Relay {
    pub url: String,
    state: Arc<RelayState>,
    _server: tokio::task::JoinHandle<()>,
}

struct RelayState {
    marker: Vec<u8>,
    armed: std::sync::atomic::AtomicBool,
    held: tokio::sync::Notify,
    cut: tokio::sync::Notify,
}

impl Relay {
    /// A relay to `upstream` (`http://host:port`) that holds the request containing
    /// `marker`.
    pub async fn start(upstream: &str, marker: &str) -> Relay {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// hub")
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(RelayState {
            marker: marker.as_bytes().to_vec(),
            armed: std::sync::atomic::AtomicBool::new(true),
            held: tokio::sync::Notify::new(),
            cut: tokio::sync::Notify::new(),
        });
        let relay_state = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, relay_state.clone()));
            }
        });
        Relay {
            url,
            state,
            _server: server,
        }
    }

    /// Waits (20 s at most) until the marked request is held.
    pub async fn held(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.state.held.notified())
            .await
            .expect("the marked request comes within 20 s");
    }

    /// Drops the held connection on both sides.
    pub fn cut(&self) {
        self.state.cut.notify_one();
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    state: Arc<RelayState>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let marked = chunk
            .windows(state.marker.len())
            .any(|window| window == state.marker.as_slice());
        if server_write.write_all(chunk).await.is_err() {
            break;
        }
        if marked && state.armed.swap(false, Ordering::SeqCst) {
            state.held.notify_one();
            // Hold: read and drop what the client sends until it goes away or the test
            // cuts the connection.
            loop {
                tokio::select! {
                    read = client_read.read(&mut buf) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            break;
                        }
                    }
                    () = state.cut.notified() => break,
                }
            }
            back.abort();
            return;
        }
    }
    let _ = server_write.shutdown().await;
    let _ = back.await;
}
