//! Event streams (server-sent events) with a real HTTP client against real hubs: the
//! caller's stream and a task's stream replay after `Last-Event-ID` and go on live
//! without loss or duplicate, a task's stream carries progress and live log lines, the
//! limits answer `429`, a slow reader is cut and resumes, several hub processes on
//! PostgreSQL and Redis serve one stream, and a hub killed or shut down loses nothing.

use std::pin::Pin;
use std::time::{Duration, Instant};

use agenthub_protocol::{ClientFrame, Codec, LogStream, StepLog};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::ctx::Settings;
use agenthub::events::stream::StreamLimits;

use crate::cluster::HubProcess;
use crate::gateway::{Agent, Hub, expect_ok, one_step, team};
use crate::support::TestDb;

const WAIT: Duration = Duration::from_secs(10);
const REDIS_URL_VAR: &str = "AGENTHUB_TEST_REDIS_URL";

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: String,
    event: String,
    data: Value,
}

/// A server-sent events client over a reqwest body.
struct SseClient {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
    /// The last `retry:` received, in milliseconds.
    retry: Option<u64>,
    /// Comment lines received (keep-alives and the greeting).
    comments: Vec<String>,
}

impl SseClient {
    /// Opens `path` with `key`, optionally resuming after `last_event_id`; panics unless
    /// the answer is a `200 text/event-stream`.
    async fn open(base: &str, path: &str, key: &str, last_event_id: Option<&str>) -> SseClient {
        let resp = request(base, path, key, last_event_id).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(content_type, "text/event-stream");
        SseClient {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
            retry: None,
            comments: Vec::new(),
        }
    }

    /// The next event; `None` when the server ended the stream (or the connection broke).
    async fn try_next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
                continue;
            }
            match tokio::time::timeout(WAIT, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("no event within {WAIT:?}; buffered: {:?}", self.buffer),
            }
        }
    }

    async fn next(&mut self) -> SseEvent {
        self.try_next().await.expect("the stream ended")
    }

    /// The next `n` events.
    async fn take(&mut self, n_events: usize) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for _ in 0..n_events {
            events.push(self.next().await);
        }
        events
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, None, Vec::new());
        for line in block.lines().filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                self.comments.push(comment.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.to_string()),
                "event" => event = Some(value.to_string()),
                "data" => data.push(value.to_string()),
                "retry" => self.retry = Some(value.parse().unwrap()),
                other => panic!("unknown SSE field {other:?} in {block:?}"),
            }
        }
        if data.is_empty() {
            return None;
        }
        Some(SseEvent {
            id: id.expect("every event has an id"),
            event: event.expect("every event has a type"),
            data: serde_json::from_str(&data.join("\n")).unwrap(),
        })
    }
}

async fn request(
    base: &str,
    path: &str,
    key: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

fn ids(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|event| event.id.clone()).collect()
}

fn types(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|event| event.event.as_str()).collect()
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|seq| seq.to_string()).collect()
}

/// The caller's events as `GET /v1/events` lists them.
async fn listed_events(hub: &Hub, key: &str) -> Vec<Value> {
    let (status, page) = hub
        .call(reqwest::Method::GET, "/v1/events?limit=1000", key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

async fn create_tasks(hub: &Hub, key: &str, titles: std::ops::Range<usize>) {
    for idx in titles {
        hub.create_task(key, one_step(&format!("report {idx}"), &["spare"]))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_way_resumes_after_its_last_id_without_loss_or_duplicate() {
    for hub in Hub::all(
        "streams::a_stream_cut_mid_way_resumes_after_its_last_id_without_loss_or_duplicate",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut stream = SseClient::open(&hub.base, "/v1/events/stream", &team.key, None).await;
        create_tasks(&hub, &team.key, 0..3).await;
        let mut received = stream.take(3).await;
        assert_eq!(stream.retry, Some(3_000), "retry: is sent first");
        assert_eq!(ids(&received), numbered(1..=3));
        assert_eq!(types(&received), ["task.created"; 3]);
        // The client goes away; events go on being written meanwhile.
        drop(stream);
        create_tasks(&hub, &team.key, 3..6).await;

        let mut stream =
            SseClient::open(&hub.base, "/v1/events/stream", &team.key, Some("3")).await;
        received.extend(stream.take(3).await);
        // Replayed, then live, with no seam.
        create_tasks(&hub, &team.key, 6..8).await;
        received.extend(stream.take(2).await);
        assert_eq!(ids(&received), numbered(1..=8));
        // `data:` is exactly an item of `GET /v1/events`.
        let datas: Vec<Value> = received.iter().map(|event| event.data.clone()).collect();
        assert_eq!(datas, listed_events(&hub, &team.key).await);
        let titles: Vec<&str> = datas
            .iter()
            .map(|data| data["event"]["task"]["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            (0..8)
                .map(|idx| format!("report {idx}"))
                .collect::<Vec<_>>()
        );

        // `?after=` starts a first connection anywhere; `Last-Event-ID` wins over it.
        let mut from_six =
            SseClient::open(&hub.base, "/v1/events/stream?after=6", &team.key, None).await;
        assert_eq!(ids(&from_six.take(2).await), numbered(7..=8));
        let mut header_wins =
            SseClient::open(&hub.base, "/v1/events/stream?after=1", &team.key, Some("7")).await;
        assert_eq!(header_wins.next().await.id, "8");

        // Another member's stream has only their own events.
        let mut min_stream =
            SseClient::open(&hub.base, "/v1/events/stream", &team.min_key, None).await;
        hub.create_task(&team.min_key, one_step("min's", &["spare"]))
            .await;
        let event = min_stream.next().await;
        assert_eq!(
            (event.id.as_str(), event.event.as_str()),
            ("1", "task.created")
        );
        assert_eq!(event.data["event"]["task"]["title"], "min's");

        // A malformed Last-Event-ID is refused in the error envelope, nothing opened.
        let resp = request(&hub.base, "/v1/events/stream", &team.key, Some("seven")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!(body["error"]["field"], "Last-Event-ID");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("seven"),
            "{body}"
        );
        let resp = request(&hub.base, "/v1/events/stream?after=-1", &team.key, None).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let resp = request(&hub.base, "/v1/events/stream", "ahk_unknown", None).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_token_streams_the_agents_events() {
    for hub in Hub::all(
        "streams::an_agent_token_streams_the_agents_events",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut stream = SseClient::open(&hub.base, "/v1/events/stream", &team.min, None).await;
        let steps = hub
            .create_task(&team.key, one_step("for min", &["min-laptop"]))
            .await;
        let received = stream.take(2).await;
        assert_eq!(types(&received), ["task.created", "step.ready"]);
        assert_eq!(ids(&received), numbered(1..=2));
        assert_eq!(received[1].data["event"]["step"]["step_id"], steps[0].1);
    }
}

/// Sends a log line of a held step over the agent's WebSocket.
async fn log_line(agent: &mut Agent, step_id: &str, attempt: u32, text: &str) {
    let step_id = Uuid::parse_str(step_id).unwrap();
    let reply = agent
        .request(|id| {
            ClientFrame::StepLog(StepLog {
                id,
                step_id,
                attempt,
                stream: LogStream::Stdout,
                text: text.to_string(),
            })
        })
        .await;
    expect_ok(&reply, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stream_carries_progress_and_live_log_lines_and_resumes_by_its_own_ids() {
    for hub in Hub::all(
        "streams::a_task_stream_carries_progress_and_live_log_lines_and_resumes_by_its_own_ids",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let steps = hub
            .create_task(&team.key, one_step("build", &["min-laptop"]))
            .await;
        let step_id = steps[0].1.clone();
        let (status, task) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/steps/{step_id}"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{task}");
        let task_id = task["task_id"].as_str().unwrap().to_string();
        // Another task's events are not in this task's stream.
        hub.create_task(&team.key, one_step("other", &["min-laptop"]))
            .await;
        let path = format!("/v1/tasks/{task_id}/stream");
        // Any member of the workspace may follow the task, not only its creator.
        let mut stream = SseClient::open(&hub.base, &path, &team.min_key, None).await;
        let received = stream.take(2).await;
        assert_eq!(types(&received), ["task.created", "step.ready"]);
        assert_eq!(ids(&received), numbered(1..=2));

        let mut agent = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
        agent.ready(&step_id).await;
        expect_ok(&agent.claim(&step_id).await, Some("claimed"));
        expect_ok(&agent.progress(&step_id, 1).await, None);
        let progress = stream.next().await;
        assert_eq!(progress.id, "3");
        assert_eq!(progress.event, "step.progress");
        let body = &progress.data["event"];
        assert_eq!(
            (
                &body["step_id"],
                &body["percent"],
                &body["message"],
                &body["status"]
            ),
            (
                &json!(step_id),
                &json!(50),
                &json!("working"),
                &json!("running")
            )
        );
        // Log lines arrive while the step runs, each with the stored log row.
        log_line(&mut agent, &step_id, 1, "compiling").await;
        let line = stream.next().await;
        assert_eq!((line.id.as_str(), line.event.as_str()), ("4", "step.log"));
        assert_eq!(line.data["event"]["log"]["text"], "compiling");
        assert_eq!(line.data["event"]["log"]["stream"], "stdout");
        assert_eq!(line.data["event"]["log"]["attempt"], 1);
        assert_eq!(line.data["event"]["step_id"], step_id);
        log_line(&mut agent, &step_id, 1, "linking").await;
        assert_eq!(stream.next().await.data["event"]["log"]["text"], "linking");
        // The stream is cut; the step goes on; the resume misses nothing.
        drop(stream);
        log_line(&mut agent, &step_id, 1, "tests passed").await;
        expect_ok(
            &agent.submit(&step_id, 1, json!({"ok": true})).await,
            Some("done"),
        );
        let mut stream = SseClient::open(&hub.base, &path, &team.min_key, Some("5")).await;
        let rest = stream.take(3).await;
        assert_eq!(ids(&rest), numbered(6..=8));
        assert_eq!(types(&rest), ["step.log", "step.completed", "task.updated"]);
        assert_eq!(rest[0].data["event"]["log"]["text"], "tests passed");
        assert_eq!(rest[2].data["event"]["task"]["status"], "done");
        // The log rows are the ones `GET /v1/steps/{id}/logs` lists.
        let (_, logs) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/steps/{step_id}/logs"),
                &team.key,
                None,
            )
            .await;
        let texts: Vec<&str> = logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|log| log["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["compiling", "linking", "tests passed"]);
        assert_eq!(
            rest[0].data["event"]["log"]["created_at"],
            logs["logs"][2]["created_at"]
        );

        // A task of another workspace, or none, is not found.
        let other_ws = accounts::create_workspace(&hub.ctx.store, "elsewhere")
            .await
            .unwrap();
        accounts::add_member(
            &hub.ctx.store,
            &other_ws.id,
            "eve@example.com",
            None,
            Role::Owner,
        )
        .await
        .unwrap();
        let eve = accounts::create_api_key(&hub.ctx.store, &other_ws.id, "eve@example.com", None)
            .await
            .unwrap()
            .secret;
        for (key, path) in [
            (&eve, path.clone()),
            (&team.key, format!("/v1/tasks/{}/stream", Uuid::now_v7())),
        ] {
            let resp = request(&hub.base, &path, key, None).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limits_are_refused_with_429_until_one_closes() {
    let settings = Settings {
        streams: StreamLimits {
            max_per_key: 2,
            max_per_hub: 3,
            keep_alive_ms: 100,
            ..StreamLimits::default()
        },
        ..Settings::default()
    };
    for hub in Hub::all(
        "streams::streams_past_the_limits_are_refused_with_429_until_one_closes",
        settings,
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let first = SseClient::open(&hub.base, "/v1/events/stream", &team.key, None).await;
        let mut second = SseClient::open(&hub.base, "/v1/events/stream", &team.key, None).await;
        let resp = request(&hub.base, "/v1/events/stream", &team.key, None).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 2 event streams"),
            "{body}"
        );
        // Another key still gets one, up to the hub's limit.
        let _min = SseClient::open(&hub.base, "/v1/events/stream", &team.min_key, None).await;
        let resp = request(&hub.base, "/v1/events/stream", &team.duan, None).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 3 event streams"),
            "{body}"
        );
        // The refused requests did not disturb the open streams.
        hub.create_task(&team.key, one_step("still live", &["spare"]))
            .await;
        assert_eq!(second.next().await.id, "1");
        // Once a stream closes, its place is free again.
        drop(first);
        let deadline = Instant::now() + WAIT;
        loop {
            let resp = request(&hub.base, "/v1/events/stream", &team.key, Some("1")).await;
            if resp.status() == StatusCode::OK {
                break;
            }
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(
                Instant::now() < deadline,
                "the closed stream's place was not freed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Keep-alive comments flow on an idle stream.
        let deadline = Instant::now() + WAIT;
        while !second
            .comments
            .iter()
            .any(|comment| comment == "keep-alive")
        {
            assert!(Instant::now() < deadline, "no keep-alive comment");
            let chunk = tokio::time::timeout(WAIT, second.body.next())
                .await
                .unwrap();
            second
                .buffer
                .push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
            while let Some(end) = second.buffer.find("\n\n") {
                let block: String = second.buffer.drain(..end + 2).collect();
                assert!(second.parse(&block).is_none(), "no event was written");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_too_slow_is_cut_and_resumes_from_its_last_id() {
    let settings = Settings {
        streams: StreamLimits {
            queue: 4,
            slow_reader_ms: 200,
            ..StreamLimits::default()
        },
        ..Settings::default()
    };
    const N_LINES: usize = 96;
    for hub in Hub::all(
        "streams::a_reader_too_slow_is_cut_and_resumes_from_its_last_id",
        settings,
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let steps = hub
            .create_task(&team.key, one_step("noisy", &["min-laptop"]))
            .await;
        let step_id = steps[0].1.clone();
        let (_, step) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/steps/{step_id}"),
                &team.key,
                None,
            )
            .await;
        let path = format!("/v1/tasks/{}/stream", step["task_id"].as_str().unwrap());
        let mut agent = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
        agent.ready(&step_id).await;
        expect_ok(&agent.claim(&step_id).await, Some("claimed"));
        // Log lines far beyond what the socket buffers and the queue hold.
        let line = "x".repeat(250 * 1024);
        for idx in 0..N_LINES {
            log_line(&mut agent, &step_id, 1, &format!("{idx} {line}")).await;
        }
        let mut stream = SseClient::open(&hub.base, &path, &team.key, None).await;
        // The reader does not read until the hub has given up on it.
        let deadline = Instant::now() + WAIT;
        while !hub.ctx.streams.is_empty() {
            assert!(Instant::now() < deadline, "the slow reader was not cut");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut received = Vec::new();
        while let Some(event) = stream.try_next().await {
            received.push(event);
        }
        assert!(
            received.len() < N_LINES + 2,
            "the stream was cut before its end"
        );
        assert_eq!(ids(&received), numbered(1..=received.len() as u64));
        // Resuming from the last id received (again whenever cut) gets the rest, without
        // loss or duplicate.
        while received.len() < N_LINES + 2 {
            let last = received.last().map(|event| event.id.clone());
            let mut stream = SseClient::open(&hub.base, &path, &team.key, last.as_deref()).await;
            while received.len() < N_LINES + 2 {
                let Some(event) = stream.try_next().await else {
                    break;
                };
                received.push(event);
            }
        }
        assert_eq!(ids(&received), numbered(1..=N_LINES as u64 + 2));
        let texts: Vec<String> = received[2..]
            .iter()
            .map(|event| {
                let text = event.data["event"]["log"]["text"].as_str().unwrap();
                text.split(' ').next().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            texts,
            (0..N_LINES).map(|idx| idx.to_string()).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Several hub processes on PostgreSQL and Redis
// ---------------------------------------------------------------------------------------

/// A hub process whose idle streams send keep-alive comments often.
async fn streaming_hub(database_url: &str, redis_url: &str) -> HubProcess {
    HubProcess::start_with(database_url, redis_url, &["--stream-keepalive-ms", "200"]).await
}

impl HubProcess {
    async fn create_task(&self, key: &str, title: &str) {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/tasks", self.base))
            .bearer_auth(key)
            .json(&one_step(title, &["spare"]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
}

/// PostgreSQL and Redis, or `None` (printing the skip).
async fn cluster_backends(test_name: &str) -> Option<(TestDb, String)> {
    let (Ok(redis_url), Some(db)) = (std::env::var(REDIS_URL_VAR), TestDb::postgres().await) else {
        eprintln!(
            "skipped: {REDIS_URL_VAR} and AGENTHUB_TEST_DATABASE_URL are both needed ({test_name})"
        );
        return None;
    };
    Some((db, redis_url))
}

/// A workspace with an owner's API key, made through the library on the shared database.
async fn owner_key(db: &TestDb) -> String {
    let store = db.store();
    store.migrate().await.unwrap();
    let workspace = accounts::create_workspace(&store, "acme").await.unwrap();
    accounts::add_member(
        &store,
        &workspace.id,
        "aurora@example.com",
        None,
        Role::Owner,
    )
    .await
    .unwrap();
    agents::create_agent(
        &store,
        NewAgent {
            workspace_id: &workspace.id,
            name: "spare",
            owner: "aurora@example.com",
            capabilities: &[],
            max_concurrency: 1,
        },
    )
    .await
    .unwrap();
    accounts::create_api_key(&store, &workspace.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_hub_b_sees_events_of_hub_a_live_and_resumes_across_a_kill() {
    let Some((db, redis_url)) = cluster_backends(
        "streams::a_stream_on_hub_b_sees_events_of_hub_a_live_and_resumes_across_a_kill",
    )
    .await
    else {
        return;
    };
    let hub_a = streaming_hub(db.url(), &redis_url).await;
    let mut hub_b = streaming_hub(db.url(), &redis_url).await;
    let key = owner_key(&db).await;
    let mut stream = SseClient::open(&hub_b.base, "/v1/events/stream", &key, None).await;
    // Committed through hub A, seen live on hub B (woken through Redis).
    hub_a.create_task(&key, "via a 0").await;
    let mut received = vec![stream.next().await];
    hub_a.create_task(&key, "via a 1").await;
    hub_b.create_task(&key, "via b 2").await;
    received.extend(stream.take(2).await);
    assert_eq!(ids(&received), numbered(1..=3));

    // Hub B dies without a word; its client notices the broken stream.
    hub_b.signal("-KILL");
    assert!(hub_b.wait_exit(WAIT), "hub B did not die");
    assert!(
        stream.try_next().await.is_none(),
        "the stream of a dead hub ended"
    );
    hub_a.create_task(&key, "while b is down 3").await;
    // Hub B comes back; the client resumes there from its last id.
    let hub_b = streaming_hub(db.url(), &redis_url).await;
    let last = received.last().unwrap().id.clone();
    let mut stream = SseClient::open(&hub_b.base, "/v1/events/stream", &key, Some(&last)).await;
    received.push(stream.next().await);
    hub_a.create_task(&key, "after b is back 4").await;
    received.push(stream.next().await);
    assert_eq!(ids(&received), numbered(1..=5));
    let titles: Vec<&str> = received
        .iter()
        .map(|event| event.data["event"]["task"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "via a 0",
            "via a 1",
            "via b 2",
            "while b is down 3",
            "after b is back 4"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_shutting_down_ends_its_streams_and_clients_resume_on_another_hub() {
    let Some((db, redis_url)) = cluster_backends(
        "streams::a_hub_shutting_down_ends_its_streams_and_clients_resume_on_another_hub",
    )
    .await
    else {
        return;
    };
    let hub_a = streaming_hub(db.url(), &redis_url).await;
    let mut hub_b = streaming_hub(db.url(), &redis_url).await;
    let key = owner_key(&db).await;
    let mut stream = SseClient::open(&hub_b.base, "/v1/events/stream", &key, None).await;
    hub_a.create_task(&key, "first").await;
    let first = stream.next().await;
    // SIGTERM: hub B ends the stream (it would never end by itself) and exits.
    hub_b.signal("-TERM");
    assert!(stream.try_next().await.is_none(), "the stream ended");
    assert!(
        hub_b.wait_exit(WAIT),
        "hub B did not exit with a stream open"
    );
    hub_a.create_task(&key, "second").await;
    let mut stream = SseClient::open(&hub_a.base, "/v1/events/stream", &key, Some(&first.id)).await;
    let second = stream.next().await;
    assert_eq!(second.id, "2");
    assert_eq!(second.data["event"]["task"]["title"], "second");
}
