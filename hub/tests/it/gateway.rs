//! The agent WebSocket gateway against a real hub on 127.0.0.1 with real WebSocket
//! clients, in both codecs and on both backends: upgrade checks, the full step
//! lifecycle with a review, claim races, lease expiry, resume without gaps or
//! duplicates, limits and hostile input, heartbeats, revocation, backpressure.

use std::time::Duration;

use agenthub_protocol::{
    Ack, ApprovalDecide, ClientFrame, Codec, Decision, Hello, Limits, Pong, ServerFrame, StepClaim,
    StepProgress, StepSubmit, close_code, error_code,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::api;
use agenthub::ctx::{Ctx, Settings};

use crate::support::TestDb;

const WAIT: Duration = Duration::from_secs(10);

/// A hub serving on an ephemeral port with its lease sweeper, stopped on drop.
pub struct Hub {
    pub base: String,
    pub ws_url: String,
    pub ctx: Ctx,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    sweeper: tokio::task::JoinHandle<()>,
    _db: TestDb,
    _data_dir: tempfile::TempDir,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Hub {
    pub async fn start(db: TestDb, settings: Settings) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Hub::start_on(listener, db, settings).await
    }

    /// [`Hub::start`] with `public_url` set to the address it serves on (links it gives
    /// out, such as its A2A card's endpoint, work).
    pub async fn start_public(db: TestDb, settings: Settings) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        Hub::start_on(
            listener,
            db,
            Settings {
                public_url,
                ..settings
            },
        )
        .await
    }

    async fn start_on(listener: TcpListener, db: TestDb, settings: Settings) -> Hub {
        let data_dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(
            db.store(),
            Settings {
                data_dir: data_dir.path().to_path_buf(),
                ..settings
            },
        );
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(api::serve_with_listener(
            listener,
            ctx.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let sweeper = tokio::spawn(api::run_sweeper(ctx.clone(), Duration::from_millis(50)));
        Hub {
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/agent/connect"),
            ctx,
            http: reqwest::Client::new(),
            stop: Some(stop),
            sweeper,
            _db: db,
            _data_dir: data_dir,
        }
    }

    /// One hub per backend (SQLite, and PostgreSQL when configured).
    pub async fn all(test_name: &str, settings: Settings) -> Vec<Hub> {
        let mut hubs = Vec::new();
        for db in TestDb::all(test_name).await {
            hubs.push(Hub::start(db, settings.clone()).await);
        }
        hubs
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates a task over REST and returns the ids of its steps by key.
    pub async fn create_task(&self, key: &str, body: Value) -> Vec<(String, String)> {
        self.create_task_ids(key, body).await.1
    }

    /// Creates a task over REST: its id, and the ids of its steps by key.
    pub async fn create_task_ids(&self, key: &str, body: Value) -> (String, Vec<(String, String)>) {
        let (status, task) = self
            .call(reqwest::Method::POST, "/v1/tasks", key, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let steps = task["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                (
                    step["key"].as_str().unwrap().to_string(),
                    step["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (task["id"].as_str().unwrap().to_string(), steps)
    }

    pub async fn step(&self, key: &str, step_id: &str) -> Value {
        let (status, step) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/steps/{step_id}"),
                key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{step}");
        step
    }
}

/// A workspace `acme`: aurora (owner, `key`), min and duan (members, `min_key`), agents
/// `min-laptop` (min's), `duan-desktop` (duan's) and `spare` (aurora's).
pub struct Team {
    pub key: String,
    pub min_key: String,
    pub min: String,
    pub duan: String,
    pub spare: String,
}

pub async fn team(ctx: &Ctx) -> Team {
    team_named(ctx, "acme").await
}

/// [`team`] in a workspace named `workspace`.
pub async fn team_named(ctx: &Ctx, workspace: &str) -> Team {
    let store = &ctx.store;
    let ws = accounts::create_workspace(store, workspace).await.unwrap();
    for (email, role) in [
        ("aurora@example.com", Role::Owner),
        ("min@example.com", Role::Member),
        ("duan@example.com", Role::Member),
    ] {
        accounts::add_member(store, &ws.id, email, None, role)
            .await
            .unwrap();
    }
    let key = accounts::create_api_key(store, &ws.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret;
    let min_key = accounts::create_api_key(store, &ws.id, "min@example.com", None)
        .await
        .unwrap()
        .secret;
    let mut tokens = Vec::new();
    for (name, owner) in [
        ("min-laptop", "min@example.com"),
        ("duan-desktop", "duan@example.com"),
        ("spare", "aurora@example.com"),
    ] {
        let created = agents::create_agent(
            store,
            NewAgent {
                workspace_id: &ws.id,
                name,
                owner,
                capabilities: &[],
                max_concurrency: 64,
            },
        )
        .await
        .unwrap();
        tokens.push(created.token);
    }
    let spare = tokens.pop().unwrap();
    let duan = tokens.pop().unwrap();
    let min = tokens.pop().unwrap();
    Team {
        key,
        min_key,
        min,
        duan,
        spare,
    }
}

pub fn one_step(title: &str, assignees: &[&str]) -> Value {
    json!({"title": title, "steps": [{"key": "only", "title": title, "assignees": assignees}]})
}

/// A WebSocket agent client speaking one codec.
pub struct Agent {
    pub codec: Codec,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events received but not yet taken by a test.
    pub events: Vec<ServerFrame>,
    pub welcome: Option<agenthub_protocol::Welcome>,
    pub last_seq: u64,
}

/// What the server closed a session with.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed(pub u16);

pub async fn upgrade(
    url: &str,
    token: Option<&str>,
    protocols: Option<&str>,
) -> Result<(WebSocketStream<MaybeTlsStream<TcpStream>>, Option<String>), (u16, Value)> {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(protocols) = protocols {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|value| value.to_str().unwrap().to_string());
            Ok((socket, protocol))
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|bytes| serde_json::from_slice(bytes).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(err) => panic!("upgrade failed: {err}"),
    }
}

impl Agent {
    /// Connects and completes the handshake with `last_seq`.
    pub async fn connect(hub: &Hub, token: &str, codec: Codec, last_seq: u64) -> Agent {
        let mut agent = Agent::open(hub, token, codec).await;
        agent.hello(last_seq).await;
        agent
    }

    /// Upgrades without sending `hello`.
    pub async fn open(hub: &Hub, token: &str, codec: Codec) -> Agent {
        Agent::open_url(&hub.ws_url, token, codec).await
    }

    /// Upgrades at `ws_url` without sending `hello`.
    pub async fn open_url(ws_url: &str, token: &str, codec: Codec) -> Agent {
        let (socket, protocol) = upgrade(ws_url, Some(token), Some(codec.subprotocol()))
            .await
            .unwrap_or_else(|(status, body)| panic!("upgrade refused: {status} {body}"));
        assert_eq!(protocol.as_deref(), Some(codec.subprotocol()));
        Agent {
            codec,
            socket,
            next_id: 0,
            events: Vec::new(),
            welcome: None,
            last_seq: 0,
        }
    }

    pub async fn hello(&mut self, last_seq: u64) {
        self.last_seq = last_seq;
        self.send(&ClientFrame::Hello(Hello {
            agent_version: "test/1".into(),
            capabilities: vec![],
            max_concurrency: 4,
            last_seq,
        }))
        .await;
        match self.recv().await {
            Ok(ServerFrame::Welcome(welcome)) => self.welcome = Some(welcome),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        let bytes = self.codec.encode(frame).unwrap();
        self.send_raw(bytes).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        let message = match self.codec {
            Codec::MsgPack => Message::Binary(bytes.into()),
            Codec::Json => Message::Text(String::from_utf8(bytes).unwrap().into()),
        };
        self.socket.send(message).await.unwrap();
    }

    /// The next frame, answering pings; `Err` when the hub closed the session.
    pub async fn recv(&mut self) -> Result<ServerFrame, Closed> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a frame from the hub in time");
            let bytes = match message {
                Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                Some(Ok(Message::Close(frame))) => {
                    return Err(Closed(frame.map_or(1005, |frame| u16::from(frame.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Closed(1006)),
            };
            let frame = self
                .codec
                .decode_server(
                    &bytes,
                    &Limits {
                        max_frame_bytes: 64 << 20,
                        ..Limits::default()
                    },
                )
                .unwrap();
            if let ServerFrame::Ping(ping) = &frame {
                let nonce = ping.nonce;
                let pong = self
                    .codec
                    .encode(&ClientFrame::Pong(Pong { nonce }))
                    .unwrap();
                let message = match self.codec {
                    Codec::MsgPack => Message::Binary(pong.into()),
                    Codec::Json => Message::Text(String::from_utf8(pong).unwrap().into()),
                };
                // A failed pong shows up as the close on the next read.
                let _ = self.socket.send(message).await;
                continue;
            }
            if let Some(seq) = frame.seq() {
                assert_eq!(seq, self.last_seq + 1, "events arrive gap-free, in order");
                self.last_seq = seq;
            }
            return Ok(frame);
        }
    }

    /// Waits for the close of the session, skipping frames; returns its code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            if let Err(Closed(code)) = self.recv().await {
                return code;
            }
        }
    }

    /// Sends a request and waits for its reply, keeping events that arrive meanwhile.
    pub async fn request(&mut self, build: impl FnOnce(u64) -> ClientFrame) -> ServerFrame {
        self.try_request(build).await.expect("session open")
    }

    /// [`Agent::request`], or the close code when the session ends first.
    pub async fn try_request(
        &mut self,
        build: impl FnOnce(u64) -> ClientFrame,
    ) -> Result<ServerFrame, Closed> {
        self.next_id += 1;
        let id = self.next_id;
        let frame = build(id);
        let bytes = self.codec.encode(&frame).unwrap();
        let message = match self.codec {
            Codec::MsgPack => Message::Binary(bytes.into()),
            Codec::Json => Message::Text(String::from_utf8(bytes).unwrap().into()),
        };
        if self.socket.send(message).await.is_err() {
            return Err(Closed(1006));
        }
        loop {
            let frame = self.recv().await?;
            match &frame {
                ServerFrame::Ok(ok) if ok.id == id => return Ok(frame),
                ServerFrame::Error(err) if err.id == Some(id) => return Ok(frame),
                _ if frame.seq().is_some() => self.events.push(frame),
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next event matching `pick`, from those kept or arriving.
    pub async fn event<T>(&mut self, mut pick: impl FnMut(&ServerFrame) -> Option<T>) -> T {
        if let Some(idx) = self.events.iter().position(|frame| pick(frame).is_some()) {
            let frame = self.events.remove(idx);
            return pick(&frame).unwrap();
        }
        loop {
            let frame = self.recv().await.expect("session open");
            if let Some(found) = pick(&frame) {
                return found;
            }
            self.events.push(frame);
        }
    }

    /// The next `step.ready` for `step_id`: its attempt and rework comment.
    pub async fn ready(&mut self, step_id: &str) -> (u32, Option<String>) {
        let step_id = Uuid::parse_str(step_id).unwrap();
        self.event(|frame| match frame {
            ServerFrame::StepReady(ready) if ready.step.step_id == step_id => {
                Some((ready.step.attempt, ready.step.rework_comment.clone()))
            }
            _ => None,
        })
        .await
    }

    pub async fn claim(&mut self, step_id: &str) -> ServerFrame {
        self.claim_attempt(step_id, None).await
    }

    /// A claim answering the push of `attempt`.
    pub async fn claim_attempt(&mut self, step_id: &str, attempt: Option<u32>) -> ServerFrame {
        let step_id = Uuid::parse_str(step_id).unwrap();
        self.request(|id| {
            ClientFrame::StepClaim(StepClaim {
                id,
                step_id,
                attempt,
            })
        })
        .await
    }

    pub async fn progress(&mut self, step_id: &str, attempt: u32) -> ServerFrame {
        let step_id = Uuid::parse_str(step_id).unwrap();
        self.request(|id| {
            ClientFrame::StepProgress(StepProgress {
                id,
                step_id,
                attempt,
                message: Some("working".into()),
                percent: Some(50),
            })
        })
        .await
    }

    pub async fn submit(&mut self, step_id: &str, attempt: u32, result: Value) -> ServerFrame {
        let step_id = Uuid::parse_str(step_id).unwrap();
        self.request(|id| {
            ClientFrame::StepSubmit(StepSubmit {
                id,
                step_id,
                attempt,
                result,
                summary: Some("done".into()),
                self_check: None,
                check: None,
                files: vec![],
                usage: None,
            })
        })
        .await
    }

    /// The next `approval.requested` for `step_id`: its approval id.
    pub async fn approval_requested(&mut self, step_id: Uuid) -> Uuid {
        self.event(|frame| match frame {
            ServerFrame::ApprovalRequested(asked) if asked.step_id == step_id => {
                Some(asked.approval_id)
            }
            _ => None,
        })
        .await
    }

    pub async fn decide(
        &mut self,
        approval_id: Uuid,
        decision: Decision,
        comment: Option<&str>,
    ) -> ServerFrame {
        self.decide_on(approval_id, decision, comment, None).await
    }

    /// `approval.decide` naming the digest of the result seen.
    pub async fn decide_on(
        &mut self,
        approval_id: Uuid,
        decision: Decision,
        comment: Option<&str>,
        digest: Option<&str>,
    ) -> ServerFrame {
        self.request(|id| {
            ClientFrame::ApprovalDecide(ApprovalDecide {
                id,
                approval_id,
                decision,
                comment: comment.map(str::to_string),
                digest: digest.map(str::to_string),
            })
        })
        .await
    }

    pub async fn ack(&mut self) {
        let seq = self.last_seq;
        self.send(&ClientFrame::Ack(Ack { seq })).await;
    }
}

/// `ok` with this status, or panic with what came instead.
#[track_caller]
pub fn expect_ok(frame: &ServerFrame, status: Option<&str>) -> agenthub_protocol::OkReply {
    match frame {
        ServerFrame::Ok(ok) => {
            assert_eq!(ok.status.as_deref(), status, "{ok:?}");
            ok.clone()
        }
        other => panic!("expected ok, got {other:?}"),
    }
}

#[track_caller]
pub fn expect_error(frame: &ServerFrame, code: &str, message_part: &str) {
    match frame {
        ServerFrame::Error(err) => {
            assert_eq!(err.code, code, "{err:?}");
            assert!(err.message.contains(message_part), "{err:?}");
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];

// ---------------------------------------------------------------- upgrade

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_checks_the_token_then_the_sub_protocol() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let url = &hub.ws_url;
    let msgpack = Some("agenthub.v1.msgpack");

    let (status, body) = upgrade(url, None, msgpack).await.unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = upgrade(url, Some("aha_not-a-real-token"), msgpack)
        .await
        .unwrap_err();
    assert_eq!(status, 401);
    let (status, _) = upgrade(url, Some(&team.key), msgpack).await.unwrap_err();
    assert_eq!(status, 401, "an API key is not an agent token");

    let (status, body) = upgrade(url, Some(&team.min), None).await.unwrap_err();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "unsupported");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("agenthub.v1.msgpack") && message.contains("agenthub.v1.json"),
        "{message}"
    );
    let (status, _) = upgrade(url, Some(&team.min), Some("agenthub.v2.msgpack"))
        .await
        .unwrap_err();
    assert_eq!(status, 400);

    // The client's first known offer wins.
    let (_, protocol) = upgrade(
        url,
        Some(&team.min),
        Some("chat, agenthub.v1.json, agenthub.v1.msgpack"),
    )
    .await
    .unwrap();
    assert_eq!(protocol.as_deref(), Some("agenthub.v1.json"));

    // A revoked token is refused before the upgrade.
    let workspace = accounts::find_workspace(&hub.ctx.store, "acme")
        .await
        .unwrap();
    agents::revoke_tokens(&hub.ctx.store, &workspace.id, "min-laptop", false)
        .await
        .unwrap();
    let (status, _) = upgrade(url, Some(&team.min), msgpack).await.unwrap_err();
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_through_push_claim_submit_review_rework_and_approval() {
    for hub in Hub::all(
        "gateway::a_task_runs_through_push_claim_submit_review_rework_and_approval",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_in(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let mut duan = Agent::connect(&hub, &team.duan, codec, 0).await;
            // duan-desktop drafts, min's human reviews (level 2) through min-laptop.
            let steps = hub
                .create_task(
                    &team.key,
                    json!({"title": "Quarterly report", "steps": [
                        {"key": "draft", "title": "Draft the outline", "assignees": ["duan-desktop"]},
                        {"key": "review", "title": "Review the outline", "assignees": ["duan-desktop"],
                         "depends_on": ["draft"], "approval_level": 2, "approvers": ["min@example.com"]}]}),
                )
                .await;
            let draft = &steps[0].1;
            let review = &steps[1].1;

            let (attempt, _) = duan.ready(draft).await;
            assert_eq!(attempt, 1);
            let ok = expect_ok(&duan.claim(draft).await, Some("claimed"));
            assert_eq!(ok.attempt, Some(1));
            assert!(ok.lease_ms.unwrap() > 0);
            let ok = expect_ok(&duan.progress(draft, 1).await, None);
            assert!(ok.lease_ms.is_some());
            let done = duan.submit(draft, 1, json!({"outline": ["a", "b"]})).await;
            expect_ok(&done, Some("done"));
            // The submit is idempotent per attempt.
            expect_ok(
                &duan.submit(draft, 1, json!({"outline": "second"})).await,
                Some("done"),
            );
            assert_eq!(
                hub.step(&team.key, draft).await["result"],
                json!({"outline": ["a", "b"]})
            );

            // The next step is pushed with the draft's output as its input.
            let review_id = Uuid::parse_str(review).unwrap();
            let inputs = duan
                .event(|frame| match frame {
                    ServerFrame::StepReady(ready) if ready.step.step_id == review_id => {
                        Some(ready.step.inputs.clone())
                    }
                    _ => None,
                })
                .await;
            assert_eq!(inputs.len(), 1);
            assert_eq!(inputs[0].result, json!({"outline": ["a", "b"]}));
            expect_ok(&duan.claim(review).await, Some("claimed"));
            expect_ok(
                &duan
                    .submit(review, 1, json!({"verdict": "looks fine"}))
                    .await,
                Some("awaiting_approval"),
            );

            // The approver's agent is asked, and rejects with a comment.
            let approval_id = min.approval_requested(review_id).await;
            let rejected = min
                .decide(
                    approval_id,
                    Decision::Reject,
                    Some("add the budget section"),
                )
                .await;
            expect_ok(&rejected, None);
            let (attempt, comment) = duan.ready(review).await;
            assert_eq!(attempt, 2);
            assert_eq!(comment.as_deref(), Some("add the budget section"));
            // A resend of the first attempt's submit gets its first answer and changes
            // nothing: the step waits for its second attempt.
            expect_ok(
                &duan.submit(review, 1, json!({"late": true})).await,
                Some("awaiting_approval"),
            );
            let stored = hub.step(&team.key, review).await;
            assert_eq!(stored["status"], "ready", "{stored}");
            assert_eq!(stored["attempt"], 2);
            let ok = expect_ok(&duan.claim(review).await, Some("claimed"));
            assert_eq!(ok.attempt, Some(2));
            expect_ok(
                &duan
                    .submit(review, 2, json!({"verdict": "with budget"}))
                    .await,
                Some("awaiting_approval"),
            );
            let approval_id = min.approval_requested(review_id).await;
            // Only a listed approver decides: duan's agent is not one.
            let refused = duan.decide(approval_id, Decision::Approve, None).await;
            expect_error(&refused, error_code::FORBIDDEN, "");
            let approved = min.decide(approval_id, Decision::Approve, None).await;
            expect_ok(&approved, None);
            duan.event(|frame| match frame {
                ServerFrame::StepCompleted(completed) if completed.step_id == review_id => Some(()),
                _ => None,
            })
            .await;
            let step = hub.step(&team.key, review).await;
            assert_eq!(step["status"], "done", "{step}");
            assert_eq!(step["result"], json!({"verdict": "with budget"}));
            min.ack().await;
            duan.ack().await;
        }
    }
}

/// A fresh team in its own workspace, named after the codec, on a shared hub.
async fn team_in(hub: &Hub, codec: Codec) -> Team {
    let name = match codec {
        Codec::MsgPack => "acme",
        Codec::Json => "acme-json",
    };
    team_named(&hub.ctx, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_agents_racing_for_a_step_exactly_one_wins() {
    for hub in Hub::all(
        "gateway::of_two_agents_racing_for_a_step_exactly_one_wins",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        let mut duan = Agent::connect(&hub, &team.duan, Codec::Json, 0).await;
        for round in 0..25 {
            let steps = hub
                .create_task(
                    &team.key,
                    one_step(&format!("race {round}"), &["min-laptop", "duan-desktop"]),
                )
                .await;
            let step = &steps[0].1;
            min.ready(step).await;
            duan.ready(step).await;
            let (left, right) = tokio::join!(min.claim(step), duan.claim(step));
            let winners = [&left, &right]
                .iter()
                .filter(|frame| matches!(frame, ServerFrame::Ok(_)))
                .count();
            assert_eq!(winners, 1, "round {round}: {left:?} / {right:?}");
            let loser = if matches!(left, ServerFrame::Ok(_)) {
                &right
            } else {
                &left
            };
            expect_error(loser, error_code::CONFLICT, "claimed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_agent_vanished_is_pushed_again_after_the_lease() {
    let settings = Settings {
        lease_ms: 1000,
        ..Settings::default()
    };
    for hub in Hub::all(
        "gateway::a_step_whose_agent_vanished_is_pushed_again_after_the_lease",
        settings,
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        let mut duan = Agent::connect(&hub, &team.duan, Codec::MsgPack, 0).await;
        let steps = hub
            .create_task(
                &team.key,
                one_step("translate", &["min-laptop", "duan-desktop"]),
            )
            .await;
        let step = &steps[0].1;
        min.ready(step).await;
        expect_ok(&min.claim(step).await, Some("claimed"));
        expect_ok(&min.progress(step, 1).await, None);
        let min_seq = min.last_seq;
        drop(min); // gone mid-step, without a close frame

        let (attempt, _) = duan.ready(step).await;
        assert_eq!(attempt, 1, "the first push");
        let (attempt, _) = duan.ready(step).await;
        assert_eq!(attempt, 2, "pushed again after the lease expired");
        let ok = expect_ok(&duan.claim(step).await, Some("claimed"));
        assert_eq!(ok.attempt, Some(2));

        // The first agent comes back and learns it lost the step.
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, min_seq).await;
        let step_uuid = Uuid::parse_str(step).unwrap();
        let revoked_attempt = min
            .event(|frame| match frame {
                ServerFrame::StepRevoked(revoked) if revoked.step_id == step_uuid => {
                    Some(revoked.attempt)
                }
                _ => None,
            })
            .await;
        assert_eq!(revoked_attempt, 1);
        // The replayed push of attempt 1 is stale: its claim is refused.
        expect_error(
            &min.claim_attempt(step, Some(1)).await,
            error_code::CONFLICT,
            "stale",
        );
        expect_error(
            &min.submit(step, 1, json!({"late": true})).await,
            error_code::CONFLICT,
            "attempt",
        );
        expect_ok(&duan.progress(step, 2).await, None);
        expect_ok(
            &duan.submit(step, 2, json!({"ok": true})).await,
            Some("done"),
        );
        let stored = hub.step(&team.key, step).await;
        assert_eq!(stored["result"], json!({"ok": true}));
        assert_eq!(stored["attempt"], 2);
    }
}

// ---------------------------------------------------------------- resume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_agent_gets_every_missed_event_exactly_once_in_order() {
    for hub in Hub::all(
        "gateway::a_reconnecting_agent_gets_every_missed_event_exactly_once_in_order",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        hub.create_task(&team.key, one_step("first", &["min-laptop"]))
            .await;
        min.event(|frame| matches!(frame, ServerFrame::StepReady(_)).then_some(()))
            .await;
        let processed = min.last_seq;
        min.ack().await;
        drop(min);

        // While the agent is away: 600 events (more than one replay page).
        for n in 0..300 {
            hub.create_task(
                &team.key,
                one_step(&format!("offline {n}"), &["min-laptop"]),
            )
            .await;
        }
        let mut min = Agent::open(&hub, &team.min, Codec::Json).await;
        // More events commit while the replay runs.
        let creator = {
            let base = hub.base.clone();
            let key = team.key.clone();
            let http = hub.http.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    let resp = http
                        .post(format!("{base}/v1/tasks"))
                        .bearer_auth(&key)
                        .json(&one_step(&format!("during replay {n}"), &["min-laptop"]))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), StatusCode::CREATED);
                }
            })
        };
        min.hello(processed).await;
        let welcome_last = min.welcome.as_ref().unwrap().last_seq;
        assert!(welcome_last >= processed + 600, "{welcome_last}");
        creator.await.unwrap();
        // Every event arrives once: `recv` asserts seq = previous + 1.
        let expected = processed + 700;
        while min.last_seq < expected {
            min.recv().await.expect("session open");
        }
        assert_eq!(
            agenthub::events::last_seq(&hub.ctx.store, &min_agent_id(&hub, &team).await)
                .await
                .unwrap(),
            expected,
            "nothing beyond what was received was committed"
        );
    }
}

async fn min_agent_id(hub: &Hub, team: &Team) -> String {
    agents::authenticate_token(&hub.ctx.store, &team.min)
        .await
        .unwrap()
        .agent_id
}

// ---------------------------------------------------------------- limits and abuse

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_repeated_abuse_closes_only_that_session() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    for codec in CODECS {
        let mut agent = Agent::connect(&hub, &team.spare, codec, 0).await;
        // An unknown type is `unsupported`, naming the request id.
        let unknown = match codec {
            Codec::Json => br#"{"type":"step.teleport","id":7}"#.to_vec(),
            Codec::MsgPack => codec
                .encode(&json!({"type": "step.teleport", "id": 7}))
                .unwrap(),
        };
        agent.send_raw(unknown).await;
        match agent.recv().await.unwrap() {
            ServerFrame::Error(err) => {
                assert_eq!(err.code, error_code::UNSUPPORTED);
                assert_eq!(err.id, Some(7));
            }
            other => panic!("{other:?}"),
        }
        // A missing field is `bad_frame` with the id when readable.
        let missing = codec
            .encode(&json!({"type": "step.claim", "id": 8}))
            .unwrap();
        agent.send_raw(missing).await;
        match agent.recv().await.unwrap() {
            ServerFrame::Error(err) => {
                assert_eq!(err.code, error_code::BAD_FRAME);
                assert_eq!(err.id, Some(8));
                assert!(err.message.contains("step_id"), "{err:?}");
            }
            other => panic!("{other:?}"),
        }
        // An ack of an event that was never sent.
        agent.send(&ClientFrame::Ack(Ack { seq: 9_999 })).await;
        match agent.recv().await.unwrap() {
            ServerFrame::Error(err) => {
                assert_eq!(err.code, error_code::BAD_FRAME);
                assert_eq!(err.id, None);
                assert!(err.message.contains("9999"), "{err:?}");
            }
            other => panic!("{other:?}"),
        }
        // A claim of a step that does not exist.
        let frame = agent.claim(&Uuid::now_v7().to_string()).await;
        expect_error(&frame, error_code::NOT_FOUND, "step");
        // Garbage, repeatedly: the session is closed with 1008.
        let garbage = match codec {
            Codec::MsgPack => b"\xc1\xc1 not a frame".to_vec(),
            Codec::Json => b"{not a frame".to_vec(),
        };
        for _ in 0..19 {
            agent.send_raw(garbage.clone()).await;
        }
        assert_eq!(agent.closed().await, close_code::POLICY_VIOLATION);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_without_being_read() {
    let settings = Settings {
        max_frame_bytes: 4096,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let mut agent = Agent::connect(&hub, &team.spare, Codec::Json, 0).await;
    assert_eq!(agent.welcome.as_ref().unwrap().max_frame_bytes, 4096);
    let huge = json!({"type": "step.log", "id": 1, "step_id": Uuid::now_v7(), "attempt": 1,
                      "stream": "stdout", "text": "x".repeat(10_000)});
    agent.send_raw(serde_json::to_vec(&huge).unwrap()).await;
    let mut saw_too_large = false;
    let code = loop {
        match agent.recv().await {
            Ok(ServerFrame::Error(err)) => {
                assert_eq!(err.code, error_code::TOO_LARGE);
                saw_too_large = true;
            }
            Ok(other) => panic!("{other:?}"),
            Err(Closed(code)) => break code,
        }
    };
    assert!(saw_too_large);
    assert_eq!(code, close_code::TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_frames_leave_the_hub_and_other_agents_working() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let hostile_token = team.spare.clone();
    let ws_url = hub.ws_url.clone();
    let hostile = tokio::spawn(async move {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut sent = 0;
        let mut n_errors = 0;
        let mut n_closes = 0;
        while sent < 10_000 {
            let codec = if rng.random_bool(0.5) {
                Codec::MsgPack
            } else {
                Codec::Json
            };
            let Ok((mut socket, _)) =
                upgrade(&ws_url, Some(&hostile_token), Some(codec.subprotocol())).await
            else {
                panic!("the hub stopped accepting upgrades");
            };
            let hello = codec
                .encode(&ClientFrame::Hello(Hello {
                    agent_version: "hostile".into(),
                    capabilities: vec![],
                    max_concurrency: 1,
                    last_seq: 0,
                }))
                .unwrap();
            let wrap = |bytes: Vec<u8>, binary: bool| {
                if binary {
                    Message::Binary(bytes.into())
                } else {
                    Message::Text(String::from_utf8_lossy(&bytes).into_owned().into())
                }
            };
            if socket
                .send(wrap(hello, codec == Codec::MsgPack))
                .await
                .is_err()
            {
                continue;
            }
            // Send a burst, then read what came back until the close.
            for _ in 0..500 {
                let len = rng.random_range(0..200);
                let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                if rng.random_bool(0.3) {
                    // Near-miss frames: valid shape, wrong fields or types.
                    let frame = match rng.random_range(0..4) {
                        0 => json!({"type": "step.claim", "id": "seven", "step_id": 3}),
                        1 => json!({"type": "step.submit", "id": 1}),
                        2 => json!({"type": 12}),
                        _ => json!([1, 2, 3]),
                    };
                    bytes = codec.encode(&frame).unwrap();
                }
                sent += 1;
                if socket
                    .send(wrap(
                        bytes,
                        rng.random_bool(0.8) == (codec == Codec::MsgPack),
                    ))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_secs(5), socket.next()).await
            {
                match message {
                    Message::Close(frame) => {
                        let code = frame.map(|frame| frame.code);
                        assert!(
                            matches!(
                                code,
                                Some(
                                    CloseCode::Policy | CloseCode::Size | CloseCode::Library(4004)
                                )
                            ),
                            "{code:?}"
                        );
                        n_closes += 1;
                        break;
                    }
                    Message::Binary(_) | Message::Text(_) => n_errors += 1,
                    _ => {}
                }
            }
        }
        (n_errors, n_closes)
    });

    // Meanwhile a well-behaved agent completes its steps.
    let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
    for n in 0..20 {
        let steps = hub
            .create_task(&team.key, one_step(&format!("calm {n}"), &["min-laptop"]))
            .await;
        let step = &steps[0].1;
        min.ready(step).await;
        expect_ok(&min.claim(step).await, Some("claimed"));
        expect_ok(&min.submit(step, 1, json!({"n": n})).await, Some("done"));
    }
    let (n_errors, n_closes) = hostile.await.unwrap();
    assert!(
        n_errors > 0 && n_closes > 0,
        "{n_errors} errors, {n_closes} closes"
    );
    let (status, _) = hub
        .call(reqwest::Method::GET, "/v1/agents", &team.key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "the hub still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_frame_that_is_not_hello_fails_the_handshake() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let mut agent = Agent::open(&hub, &team.spare, Codec::Json).await;
    agent.send(&ClientFrame::Ack(Ack { seq: 1 })).await;
    let code = loop {
        match agent.recv().await {
            Ok(ServerFrame::Error(err)) => assert_eq!(err.code, error_code::BAD_FRAME),
            Ok(other) => panic!("{other:?}"),
            Err(Closed(code)) => break code,
        }
    };
    assert_eq!(code, close_code::HANDSHAKE_FAILED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_drops_frames_beyond_the_burst() {
    let settings = Settings {
        max_frames_per_s: 5,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let mut agent = Agent::connect(&hub, &team.spare, Codec::MsgPack, 0).await;
    // hello took one token of the burst of 10; the next 9 pass, then frames are dropped.
    let mut limited = 0;
    for _ in 0..12 {
        let frame = agent.claim(&Uuid::now_v7().to_string()).await;
        match &frame {
            ServerFrame::Error(err) if err.code == error_code::RATE_LIMITED => limited += 1,
            ServerFrame::Error(err) => assert_eq!(err.code, error_code::NOT_FOUND),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(limited, 3);
}

// ---------------------------------------------------------------- liveness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_session_and_silence_ends_it_and_marks_the_agent_offline() {
    let settings = Settings {
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 400,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
    // Answering pings (inside `recv`) keeps the session open well past the timeout.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        let _ = tokio::time::timeout(Duration::from_millis(100), min.recv()).await;
    }
    let (_, agents) = hub
        .call(
            reqwest::Method::GET,
            "/v1/agents/min-laptop",
            &team.key,
            None,
        )
        .await;
    assert_eq!(agents["online"], true, "{agents}");

    // A silent session is closed with 4003.
    let silent_since = std::time::Instant::now();
    let code = loop {
        match min.socket.next().await {
            Some(Ok(Message::Close(frame))) => break frame.map(|frame| u16::from(frame.code)),
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(code, Some(close_code::HEARTBEAT_TIMEOUT));
    assert!(silent_since.elapsed() < Duration::from_secs(3));
    let mut online = true;
    for _ in 0..50 {
        let (_, agent) = hub
            .call(
                reqwest::Method::GET,
                "/v1/agents/min-laptop",
                &team.key,
                None,
            )
            .await;
        online = agent["online"] == true;
        if !online {
            assert!(agent["last_seen_at"].is_string(), "{agent}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!online, "the agent is marked offline");

    // min's owner saw it come and go.
    let (_, events) = hub
        .call(
            reqwest::Method::GET,
            "/v1/events?after=0",
            &team.min_key,
            None,
        )
        .await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["agent.online", "agent.offline"], "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_connected_closes_the_session() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let mut min = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
    let workspace = accounts::find_workspace(&hub.ctx.store, "acme")
        .await
        .unwrap();
    agents::revoke_tokens(&hub.ctx.store, &workspace.id, "min-laptop", false)
        .await
        .unwrap();
    let mut saw_unauthorized = false;
    let code = loop {
        match min.recv().await {
            Ok(ServerFrame::Error(err)) => {
                saw_unauthorized = err.code == error_code::UNAUTHORIZED;
            }
            Ok(_) => {}
            Err(Closed(code)) => break code,
        }
    };
    assert!(saw_unauthorized);
    assert_eq!(code, close_code::TOKEN_REVOKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_session_of_the_same_agent_supersedes_the_older() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let mut first = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
    let mut second = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
    assert_eq!(first.closed().await, close_code::SUPERSEDED);
    let steps = hub
        .create_task(&team.key, one_step("after the switch", &["min-laptop"]))
        .await;
    second.ready(&steps[0].1).await;
    let (_, agent) = hub
        .call(
            reqwest::Method::GET,
            "/v1/agents/min-laptop",
            &team.key,
            None,
        )
        .await;
    assert_eq!(
        agent["online"], true,
        "the older session's end keeps it online"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_too_slow_is_disconnected_and_resumes_without_loss() {
    let settings = Settings {
        session_queue: 16,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let mut slow = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
    let mut other = Agent::connect(&hub, &team.duan, Codec::MsgPack, 0).await;
    // ~200 KiB per event: the socket buffers fill and then the queue overflows.
    let big = "x".repeat(200 * 1024);
    let mut n_tasks: u64 = 0;
    for n in 0..150 {
        let body = json!({"title": format!("bulk {n}"), "steps": [{"key": "only", "title": "bulk",
                          "assignees": ["min-laptop"], "input": {"blob": big}}]});
        hub.create_task(&team.key, body).await;
        n_tasks += 1;
        if n % 10 == 9 && !hub.ctx.presence.is_online(&min_agent_id(&hub, &team).await) {
            break;
        }
    }
    // The other agent is served meanwhile.
    let steps = hub
        .create_task(&team.key, one_step("not delayed", &["duan-desktop"]))
        .await;
    other.ready(&steps[0].1).await;
    assert_eq!(slow.closed().await, close_code::TOO_SLOW);
    // Resume from what was processed: every event arrives (recv checks the order).
    let processed = slow.last_seq;
    let mut slow = Agent::connect(&hub, &team.min, Codec::MsgPack, processed).await;
    let committed = slow.welcome.as_ref().unwrap().last_seq;
    assert_eq!(
        committed,
        2 * n_tasks,
        "task.created and step.ready per task"
    );
    assert!(
        processed < committed,
        "the slow session ended before the end"
    );
    while slow.last_seq < committed {
        slow.recv().await.unwrap();
    }
}
