//! Signed webhooks against real hubs and a real HTTP receiver on 127.0.0.1 that checks
//! every signature and can fail on purpose: deliveries arrive at least once and in order
//! despite failures, a hub killed with SIGKILL and two hubs at once; filters; pings,
//! redeliveries and the delivery log; a webhook failing too long is disabled and resumes
//! when enabled; private targets are refused without the operator's flag; bad input.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::ctx::Settings;
use agenthub::events::{self, EventRow, feed};
use agenthub::store::Store;
use agenthub::webhooks::WebhookSettings;
use agenthub::webhooks::deliver::run_worker;

use crate::cluster::HubProcess;
use crate::gateway::{Hub, Team, one_step, team};
use crate::support::TestDb;

const WAIT: Duration = Duration::from_secs(30);
const REDIS_URL_VAR: &str = "AGENTHUB_TEST_REDIS_URL";

// ---------------------------------------------------------------- the receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    delivery_id: String,
    event_type: String,
    body: Value,
    user_agent: String,
    /// Whether the receiver answered it with a 2xx.
    accepted: bool,
}

#[derive(Default)]
struct ReceiverState {
    secret: Mutex<String>,
    /// Requests still to fail (500) before answering 200.
    fail_next: AtomicI64,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicI64,
    received: Mutex<Vec<Received>>,
    /// What was wrong with a request (a bad signature, a missing header).
    problems: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A webhook target on 127.0.0.1 that verifies every signature.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
            task,
        }
    }

    fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = secret.to_string();
    }

    fn fail_next(&self, n_requests: i64) {
        self.state.fail_next.store(n_requests, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The events (not pings or redeliveries) answered with a 2xx, in arrival order.
    fn accepted_seqs(&self) -> Vec<i64> {
        self.received()
            .iter()
            .filter(|got| got.accepted && got.event_type != "ping")
            .map(|got| got.body["seq"].as_i64().unwrap())
            .collect()
    }

    fn assert_no_problems(&self) {
        let problems = self.state.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            self.state.max_in_flight.load(Ordering::SeqCst) <= 1,
            "deliveries of one webhook overlapped"
        );
    }

    /// Waits until every one of `seqs` was accepted at least once.
    async fn wait_for_seqs(&self, seqs: &[i64]) {
        let wanted: HashSet<i64> = seqs.iter().copied().collect();
        wait_until("every event to arrive", || {
            let got: HashSet<i64> = self.accepted_seqs().into_iter().collect();
            wanted.is_subset(&got)
        })
        .await;
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (AxumStatus, &'static str) {
    let n_in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(n_in_flight, Ordering::SeqCst);
    // Counted out however the request ends: a killed hub's connection drops this future.
    let _in_flight = InFlight(Arc::clone(&state));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let text = std::str::from_utf8(&body).unwrap().to_string();
    let secret = state.secret.lock().unwrap().clone();
    if let Err(problem) = verify(&secret, &header("agenthub-signature"), &text) {
        state.problems.lock().unwrap().push(problem);
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let event_type = header("agenthub-event");
    if body["type"] != event_type.as_str() || body["event"]["type"] != event_type.as_str() {
        state.problems.lock().unwrap().push(format!(
            "AgentHub-Event `{event_type}` is not the body's: {body}"
        ));
    }
    if header("content-type") != "application/json" {
        state.problems.lock().unwrap().push("not JSON".into());
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let accepted = state.fail_next.fetch_sub(1, Ordering::SeqCst) <= 0;
    state.received.lock().unwrap().push(Received {
        delivery_id: header("agenthub-delivery"),
        event_type,
        body,
        user_agent: header("user-agent"),
        accepted,
    });
    if accepted {
        (AxumStatus::OK, "thanks")
    } else {
        (AxumStatus::INTERNAL_SERVER_ERROR, "failing on purpose")
    }
}

struct InFlight(Arc<ReceiverState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks `AgentHub-Signature: t=<seconds>,v1=<hex>` as a receiver would: the HMAC-SHA256
/// of `<t>.<body>` with the secret, and a timestamp within five minutes.
fn verify(secret: &str, header: &str, body: &str) -> Result<(), String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value.to_string()),
            _ => return Err(format!("unreadable signature header `{header}`")),
        }
    }
    let timestamp = timestamp.ok_or_else(|| format!("no timestamp in `{header}`"))?;
    let now = agenthub::store::now_ms() / 1000;
    if (now - timestamp).abs() > 300 {
        return Err(format!("timestamp {timestamp} is {}s off", now - timestamp));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    if !signatures.contains(&expected) {
        return Err(format!("bad signature `{header}` for {body}"));
    }
    Ok(())
}

// ---------------------------------------------------------------- hubs and helpers

/// Fast retries and polling, private targets allowed (the receiver is on 127.0.0.1).
fn settings() -> Settings {
    Settings {
        webhooks: WebhookSettings {
            allow_private: true,
            retry_base_ms: 50,
            retry_cap_ms: 200,
            poll_ms: 100,
            lease_ms: 5_000,
            timeout_ms: 5_000,
            ..WebhookSettings::default()
        },
        ..Settings::default()
    }
}

/// A hub in this process with its webhook worker, stopped on drop.
struct HookHub {
    hub: Hub,
    stop: CancellationToken,
}

impl Drop for HookHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::ops::Deref for HookHub {
    type Target = Hub;

    fn deref(&self) -> &Hub {
        &self.hub
    }
}

impl HookHub {
    async fn all(test_name: &str, settings: Settings) -> Vec<HookHub> {
        let mut hubs = Vec::new();
        for db in TestDb::all(test_name).await {
            let hub = Hub::start(db, settings.clone()).await;
            let stop = CancellationToken::new();
            tokio::spawn(run_worker(hub.ctx.clone(), stop.clone()));
            hubs.push(HookHub { hub, stop });
        }
        hubs
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn workspace_id(store: &Store, name: &str) -> String {
    accounts::find_workspace(store, name).await.unwrap().id
}

/// The workspace feed's events after `after`.
async fn feed_after(store: &Store, workspace_id: &str, after: i64) -> Vec<EventRow> {
    events::list_after(
        store,
        &feed::workspace_audience_id(workspace_id),
        after as u64,
        10_000,
    )
    .await
    .unwrap()
}

fn seqs(rows: &[EventRow]) -> Vec<i64> {
    rows.iter().map(|row| row.seq).collect()
}

/// Creates a webhook over REST; panics unless `201`. The receiver learns its secret.
async fn create_webhook(hub: &Hub, key: &str, receiver: &Receiver, body: Value) -> Value {
    let mut body = body;
    body["url"] = json!(receiver.url);
    let (status, webhook) = hub
        .call(Method::POST, "/v1/webhooks", key, Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    let secret = webhook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{webhook}");
    receiver.set_secret(secret);
    webhook
}

async fn get_ok(hub: &Hub, key: &str, path: &str) -> Value {
    let (status, answer) = hub.call(Method::GET, path, key, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

async fn create_tasks(hub: &Hub, team: &Team, n_tasks: usize) -> Vec<String> {
    let mut task_ids = Vec::new();
    for idx in 0..n_tasks {
        let (status, task) = hub
            .call(
                Method::POST,
                "/v1/tasks",
                &team.key,
                Some(one_step(&format!("report {idx}"), &["spare"])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        task_ids.push(task["id"].as_str().unwrap().to_string());
    }
    task_ids
}

/// Whether `seqs` never goes back (a repeat of the last one is a retry after a crash).
fn never_back(seqs: &[i64]) -> bool {
    seqs.windows(2).all(|pair| pair[0] <= pair[1])
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_in_order_despite_failed_attempts() {
    for hub in HookHub::all(
        "webhooks::every_event_arrives_signed_and_in_order_despite_failed_attempts",
        settings(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let ws = workspace_id(&hub.ctx.store, "acme").await;
        create_tasks(&hub, &team, 1).await;
        let receiver = Receiver::start().await;
        receiver.fail_next(3);
        let webhook = create_webhook(
            &hub,
            &team.key,
            &receiver,
            json!({"description": "CI", "event_types": ["*"]}),
        )
        .await;
        assert_eq!(webhook["event_types"], json!(["*"]));
        assert_eq!(webhook["enabled"], true);
        let cursor = webhook["cursor"].as_i64().unwrap();
        assert!(
            cursor > 0,
            "events before the webhook are not sent: {webhook}"
        );
        create_tasks(&hub, &team, 4).await;
        let expected = feed_after(&hub.ctx.store, &ws, cursor).await;
        assert!(expected.len() >= 8, "{} events", expected.len());
        receiver.wait_for_seqs(&seqs(&expected)).await;
        receiver.assert_no_problems();
        let webhook_id = webhook["id"].as_str().unwrap();
        wait_for_cursor(&hub, &team.key, webhook_id, expected.last().unwrap().seq).await;

        // Exactly the events after the cursor, once each, in order (one hub, no crash).
        assert_eq!(receiver.accepted_seqs(), seqs(&expected));
        let received = receiver.received();
        let accepted: Vec<&Received> = received.iter().filter(|got| got.accepted).collect();
        for (got, row) in accepted.iter().zip(&expected) {
            // The body is an item of `GET /v1/events`, numbered in the workspace feed.
            assert_eq!(got.body["seq"], row.seq);
            assert_eq!(got.body["type"], row.event_type.as_str());
            let event: Value = serde_json::from_str(&row.payload).unwrap();
            assert_eq!(got.body["event"], event);
            assert!(got.body["created_at"].as_str().unwrap().ends_with('Z'));
            assert!(
                got.user_agent.starts_with("AgentHub-Webhooks/"),
                "{}",
                got.user_agent
            );
        }
        // The three refused attempts were of the first event, under its delivery id.
        assert_eq!(received.len(), expected.len() + 3);
        let first_id = &received[0].delivery_id;
        assert!(received[..4].iter().all(|got| &got.delivery_id == first_id));
        assert_eq!(received[0].body, received[3].body);

        // The delivery log, newest first, every attempt with its answer.
        let log = get_ok(
            &hub,
            &team.key,
            &format!("/v1/webhooks/{webhook_id}/deliveries?limit=100"),
        )
        .await;
        let deliveries = log["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), expected.len(), "{log}");
        assert_eq!(log["meta"]["has_more"], false);
        let logged: Vec<i64> = deliveries
            .iter()
            .rev()
            .map(|d| d["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(logged, seqs(&expected));
        assert!(
            deliveries
                .iter()
                .all(|d| d["status"] == "delivered" && d["kind"] == "event")
        );
        let first = deliveries.last().unwrap();
        assert_eq!(first["id"], first_id.as_str());
        let attempts = first["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 4, "{first}");
        for attempt in &attempts[..3] {
            assert_eq!(attempt["status_code"], 500);
            assert_eq!(attempt["response_excerpt"], "failing on purpose");
            assert!(
                attempt["error"].as_str().unwrap().contains("500"),
                "{attempt}"
            );
        }
        assert_eq!(attempts[3]["status_code"], 200);
        assert_eq!(attempts[3]["error"], Value::Null);
        assert_eq!(attempts[3]["response_excerpt"], "thanks");
        assert_eq!(first["payload"], received[0].body);

        // The cursor is the last event handled; the secret is not shown again.
        let webhook = get_ok(&hub, &team.key, &format!("/v1/webhooks/{webhook_id}")).await;
        assert_eq!(webhook["cursor"], expected.last().unwrap().seq);
        assert!(webhook.get("secret").is_none(), "{webhook}");
        let listed = get_ok(&hub, &team.key, "/v1/webhooks").await;
        assert_eq!(listed["meta"]["count"], 1);
        assert!(listed["webhooks"][0].get("secret").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_only_the_chosen_event_types_and_task() {
    for hub in HookHub::all(
        "webhooks::filters_deliver_only_the_chosen_event_types_and_task",
        settings(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let ws = workspace_id(&hub.ctx.store, "acme").await;
        let watched = create_tasks(&hub, &team, 1).await.remove(0);
        let by_type = Receiver::start().await;
        let by_task = Receiver::start().await;
        let typed = create_webhook(
            &hub,
            &team.key,
            &by_type,
            json!({"event_types": ["task.created", "task.updated", "task.created"]}),
        )
        .await;
        assert_eq!(
            typed["event_types"],
            json!(["task.created", "task.updated"])
        );
        let tasked = create_webhook(&hub, &team.key, &by_task, json!({"task_id": watched})).await;
        assert_eq!(tasked["task_id"], watched.as_str());
        let cursor = typed["cursor"].as_i64().unwrap();
        create_tasks(&hub, &team, 2).await;
        let (status, answer) = hub
            .call(
                Method::PATCH,
                &format!("/v1/tasks/{watched}"),
                &team.key,
                Some(json!({"action": "cancel"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let feed = feed_after(&hub.ctx.store, &ws, cursor).await;
        let last = feed.last().unwrap().seq;
        // Both cursors reach the end of the feed: skipped events move them too.
        for webhook in [&typed, &tasked] {
            wait_for_cursor(&hub, &team.key, webhook["id"].as_str().unwrap(), last).await;
        }
        let of_type: Vec<i64> = feed
            .iter()
            .filter(|row| ["task.created", "task.updated"].contains(&row.event_type.as_str()))
            .map(|row| row.seq)
            .collect();
        let of_task: Vec<i64> = feed
            .iter()
            .filter(|row| row.payload.contains(&watched))
            .map(|row| row.seq)
            .collect();
        // Each filter leaves some events out.
        assert!(
            of_type.len() >= 3 && of_type.len() < feed.len(),
            "{of_type:?}"
        );
        assert!(
            !of_task.is_empty() && of_task.len() < feed.len(),
            "{of_task:?}"
        );
        assert_eq!(by_type.accepted_seqs(), of_type);
        assert_eq!(by_task.accepted_seqs(), of_task);
        let types: HashSet<String> = by_type
            .received()
            .into_iter()
            .map(|got| got.event_type)
            .collect();
        assert_eq!(
            types,
            HashSet::from(["task.created".into(), "task.updated".into()])
        );
        by_type.assert_no_problems();
        by_task.assert_no_problems();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_and_a_redelivery_are_sent_at_once_and_logged() {
    for hub in HookHub::all(
        "webhooks::a_ping_and_a_redelivery_are_sent_at_once_and_logged",
        settings(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let receiver = Receiver::start().await;
        let webhook = create_webhook(&hub, &team.key, &receiver, json!({})).await;
        let webhook_id = webhook["id"].as_str().unwrap();
        let (status, ping) = hub
            .call(
                Method::POST,
                &format!("/v1/webhooks/{webhook_id}/ping"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ping}");
        assert_eq!(ping["kind"], "ping");
        assert_eq!(ping["status"], "delivered");
        assert_eq!(ping["attempts"][0]["status_code"], 200);
        let got = receiver.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event_type, "ping");
        assert_eq!(got[0].delivery_id, ping["id"].as_str().unwrap());
        assert_eq!(got[0].body["event"]["webhook_id"], webhook_id);

        // A ping to a receiver that refuses is answered too, failed, with the reason.
        receiver.fail_next(1);
        let (_, failed) = hub
            .call(
                Method::POST,
                &format!("/v1/webhooks/{webhook_id}/ping"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["attempts"][0]["status_code"], 500);
        assert_eq!(
            failed["attempts"][0]["response_excerpt"],
            "failing on purpose"
        );

        // An event, then its redelivery: the same body, a new delivery id.
        create_tasks(&hub, &team, 1).await;
        let ws = workspace_id(&hub.ctx.store, "acme").await;
        let cursor = webhook["cursor"].as_i64().unwrap();
        let expected = feed_after(&hub.ctx.store, &ws, cursor).await;
        receiver.wait_for_seqs(&seqs(&expected)).await;
        wait_for_cursor(&hub, &team.key, webhook_id, expected.last().unwrap().seq).await;
        let log = get_ok(
            &hub,
            &team.key,
            &format!("/v1/webhooks/{webhook_id}/deliveries"),
        )
        .await;
        let event = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == "event" && d["status"] == "delivered")
            .unwrap()
            .clone();
        let (status, again) = hub
            .call(
                Method::POST,
                &format!("/v1/deliveries/{}/redeliver", event["id"].as_str().unwrap()),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["kind"], "redeliver");
        assert_eq!(again["status"], "delivered");
        assert_eq!(again["redelivery_of"], event["id"]);
        assert_ne!(again["id"], event["id"]);
        assert_eq!(again["payload"], event["payload"]);
        let last = receiver.received().pop().unwrap();
        assert_eq!(last.delivery_id, again["id"].as_str().unwrap());
        assert_eq!(last.body, event["payload"]);
        receiver.assert_no_problems();

        // The log pages newest first with `before`.
        let all = get_ok(
            &hub,
            &team.key,
            &format!("/v1/webhooks/{webhook_id}/deliveries?limit=100"),
        )
        .await;
        let ids: Vec<String> = all["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        assert!(ids.len() >= 4, "{all}");
        assert_eq!(ids[0], again["id"].as_str().unwrap());
        let mut paged = Vec::new();
        let mut path = format!("/v1/webhooks/{webhook_id}/deliveries?limit=1");
        loop {
            let page = get_ok(&hub, &team.key, &path).await;
            for delivery in page["deliveries"].as_array().unwrap() {
                paged.push(delivery["id"].as_str().unwrap().to_string());
            }
            if page["meta"]["has_more"] == false {
                break;
            }
            let before = page["meta"]["next_before"].as_str().unwrap();
            path = format!("/v1/webhooks/{webhook_id}/deliveries?limit=1&before={before}");
        }
        assert_eq!(paged, ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_past_the_max_age_is_disabled_and_resumes_when_enabled() {
    let mut settings = settings();
    settings.webhooks.max_age_ms = 1_500;
    for hub in HookHub::all(
        "webhooks::a_webhook_failing_past_the_max_age_is_disabled_and_resumes_when_enabled",
        settings.clone(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let ws = workspace_id(&hub.ctx.store, "acme").await;
        let receiver = Receiver::start().await;
        receiver.fail_next(i64::MAX);
        let webhook = create_webhook(&hub, &team.key, &receiver, json!({})).await;
        let webhook_id = webhook["id"].as_str().unwrap().to_string();
        let cursor = webhook["cursor"].as_i64().unwrap();
        create_tasks(&hub, &team, 2).await;
        let path = format!("/v1/webhooks/{webhook_id}");
        let deadline = Instant::now() + WAIT;
        let disabled = loop {
            let current = get_ok(&hub, &team.key, &path).await;
            if current["enabled"] == false {
                break current;
            }
            assert!(Instant::now() < deadline, "never disabled: {current}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let reason = disabled["disabled_reason"].as_str().unwrap();
        assert!(
            reason.contains("failed for 1500 ms") && reason.contains("500"),
            "{reason}"
        );
        assert_eq!(
            disabled["cursor"], cursor,
            "the cursor stays before the failed event"
        );
        // Only the first event was tried, several times, under one delivery id.
        let received = receiver.received();
        assert!(received.len() >= 2, "{received:?}");
        assert!(
            received
                .iter()
                .all(|got| got.delivery_id == received[0].delivery_id)
        );
        let log = get_ok(&hub, &team.key, &format!("{path}/deliveries")).await;
        assert_eq!(log["meta"]["count"], 1, "{log}");
        assert_eq!(log["deliveries"][0]["status"], "failed");
        assert_eq!(
            log["deliveries"][0]["attempts"].as_array().unwrap().len(),
            received.len()
        );
        // Its creator finds it in their inbox, waiting on them.
        let inbox = get_ok(&hub, &team.key, "/v1/me/notifications?priority=action").await;
        let notice = inbox["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["kind"] == "webhook.disabled")
            .unwrap_or_else(|| panic!("no webhook.disabled notification: {inbox:#}"))
            .clone();
        assert_eq!(notice["subject_id"], webhook_id.as_str(), "{notice:#}");
        assert!(
            notice["body"]
                .as_str()
                .unwrap()
                .contains("failed for 1500 ms"),
            "{notice:#}"
        );
        // Disabled, nothing is sent.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(receiver.received().len(), received.len());

        // Enabled again, it resumes with the event that failed, under the same id.
        receiver.fail_next(0);
        let (status, enabled) = hub
            .call(
                Method::PATCH,
                &path,
                &team.key,
                Some(json!({"enabled": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{enabled}");
        assert_eq!(enabled["enabled"], true);
        assert_eq!(enabled["disabled_reason"], Value::Null);
        let expected = feed_after(&hub.ctx.store, &ws, cursor).await;
        receiver.wait_for_seqs(&seqs(&expected)).await;
        assert_eq!(receiver.accepted_seqs(), seqs(&expected));
        let first_accepted = receiver
            .received()
            .into_iter()
            .find(|got| got.accepted)
            .unwrap();
        assert_eq!(first_accepted.delivery_id, received[0].delivery_id);
        receiver.assert_no_problems();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_the_operator_allows_them() {
    // A name is checked after resolution, and an address in a blocked range is refused.
    for refused in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::",
    ] {
        let ip: std::net::IpAddr = refused.parse().unwrap();
        assert!(
            agenthub::webhooks::guard::refusal(ip).is_some(),
            "{refused}"
        );
    }
    for public in [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        "8.8.8.8",
    ] {
        let ip: std::net::IpAddr = public.parse().unwrap();
        assert_eq!(agenthub::webhooks::guard::refusal(ip), None, "{public}");
    }

    let mut strict = settings();
    strict.webhooks.allow_private = false;
    for hub in HookHub::all(
        "webhooks::private_targets_are_refused_unless_the_operator_allows_them",
        strict,
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let receiver = Receiver::start().await;
        let port = receiver.url.rsplit(':').next().unwrap().to_string();
        for url in [
            receiver.url.clone(),
            "http://[::1]/hook".into(),
            "http://169.254.169.254/latest/meta-data".into(),
            "https://10.0.0.8/hook".into(),
            "http://[::ffff:7f00:1]/hook".into(),
        ] {
            let (status, answer) = hub
                .call(
                    Method::POST,
                    "/v1/webhooks",
                    &team.key,
                    Some(json!({"url": url})),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
            assert_eq!(answer["error"]["field"], "url");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("--webhook-allow-private"),
                "{answer}"
            );
        }
        // A name is accepted, and refused on every attempt once it resolves to loopback.
        let (status, webhook) = hub
            .call(
                Method::POST,
                "/v1/webhooks",
                &team.key,
                Some(json!({"url": format!("http://localhost:{port}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        let webhook_id = webhook["id"].as_str().unwrap();
        let (status, ping) = hub
            .call(
                Method::POST,
                &format!("/v1/webhooks/{webhook_id}/ping"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ping}");
        assert_eq!(ping["status"], "failed");
        let attempt = &ping["attempts"][0];
        assert_eq!(attempt["status_code"], Value::Null);
        let error = attempt["error"].as_str().unwrap();
        assert!(
            error.contains("loopback") && error.contains("--webhook-allow-private"),
            "{error}"
        );
        // The ordered stream is refused the same way, and retried.
        create_tasks(&hub, &team, 1).await;
        let path = format!("/v1/webhooks/{webhook_id}/deliveries");
        let deadline = Instant::now() + WAIT;
        loop {
            let log = get_ok(&hub, &team.key, &path).await;
            let refused_event = log["deliveries"].as_array().unwrap().iter().any(|d| {
                d["kind"] == "event"
                    && d["status"] == "pending"
                    && d["attempts"][0]["error"]
                        .as_str()
                        .is_some_and(|error| error.contains("loopback"))
            });
            if refused_event {
                break;
            }
            assert!(Instant::now() < deadline, "no refused attempt: {log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            receiver.received().is_empty(),
            "a refused target got a request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let mut limited = settings();
    limited.webhooks.max_per_workspace = 2;
    for hub in HookHub::all(
        "webhooks::bad_input_gets_a_clear_error_and_changes_nothing",
        limited,
    )
    .await
    {
        let team = team(&hub.ctx).await;
        // A task of another workspace is not a filter of this one.
        let other = crate::gateway::team_named(&hub.ctx, "globex").await;
        let foreign_task = create_tasks(&hub, &other, 1).await.remove(0);
        let long = "x".repeat(2100);
        let cases: Vec<(Value, StatusCode, &str, &str)> = vec![
            (
                json!({"url": "ftp://example.com/hook"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "url",
                "http:// or https://",
            ),
            (
                json!({"url": "not a url"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "url",
                "is not a URL",
            ),
            (
                json!({"url": format!("https://example.com/{long}")}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "url",
                "1-2048 bytes",
            ),
            (
                json!({"url": ""}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "url",
                "1-2048 bytes",
            ),
            (
                json!({"url": "https://example.com/h", "event_types": ["task.created", "task.exploded"]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "event_types[1]",
                "unknown event type `task.exploded`",
            ),
            (
                json!({"url": "https://example.com/h", "task_id": foreign_task}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "task_id",
                "no task",
            ),
            (
                json!({"url": "https://example.com/h", "description": "d".repeat(501)}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "description",
                "500",
            ),
            (
                json!({"url": "https://example.com/h", "secret": "mine"}),
                StatusCode::BAD_REQUEST,
                "secret",
                "unknown field",
            ),
            (
                json!({"event_types": []}),
                StatusCode::BAD_REQUEST,
                "",
                "missing field `url`",
            ),
            (json!({"url": 7}), StatusCode::BAD_REQUEST, "url", "string"),
        ];
        for (body, status, field, needle) in cases {
            let (got, answer) = hub
                .call(Method::POST, "/v1/webhooks", &team.key, Some(body.clone()))
                .await;
            assert_eq!(got, status, "{body}: {answer}");
            if !field.is_empty() {
                assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
            }
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(needle),
                "{body}: {answer}"
            );
        }
        let listed = get_ok(&hub, &team.key, "/v1/webhooks").await;
        assert_eq!(
            listed["meta"]["count"], 0,
            "refused requests created nothing"
        );

        // The limit per workspace.
        for n in 0..2 {
            let (status, _) = hub
                .call(
                    Method::POST,
                    "/v1/webhooks",
                    &team.key,
                    Some(json!({"url": format!("https://example.com/{n}")})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, answer) = hub
            .call(
                Method::POST,
                "/v1/webhooks",
                &team.key,
                Some(json!({"url": "https://example.com/3"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("delete one first")
        );

        // A bad change leaves the webhook as it was.
        let webhook = listed_first(&hub, &team.key).await;
        let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
        for (body, status, field) in [
            (
                json!({"url": "gopher://example.com"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "url",
            ),
            (
                json!({"event_types": ["nope"]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "event_types[0]",
            ),
            (
                json!({"task_id": foreign_task}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "task_id",
            ),
            (
                json!({"enabled": "yes"}),
                StatusCode::BAD_REQUEST,
                "enabled",
            ),
        ] {
            let (got, answer) = hub
                .call(Method::PATCH, &path, &team.key, Some(body.clone()))
                .await;
            assert_eq!(got, status, "{body}: {answer}");
            assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        }
        assert_eq!(get_ok(&hub, &team.key, &path).await, webhook);

        // A rotation shows a new secret once; other changes apply.
        let (status, rotated) = hub
            .call(
                Method::PATCH,
                &path,
                &team.key,
                Some(json!({"rotate_secret": true, "description": "ops", "event_types": ["step.ready"], "enabled": false})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
        assert_eq!(rotated["description"], "ops");
        assert_eq!(rotated["event_types"], json!(["step.ready"]));
        assert_eq!(rotated["enabled"], false);
        let (_, unchanged) = hub
            .call(
                Method::PATCH,
                &path,
                &team.key,
                Some(json!({"description": "ops 2"})),
            )
            .await;
        assert!(unchanged.get("secret").is_none(), "{unchanged}");

        // Unknown ids.
        for (method, path) in [
            (Method::GET, "/v1/webhooks/nope".to_string()),
            (Method::PATCH, "/v1/webhooks/nope".into()),
            (Method::DELETE, "/v1/webhooks/nope".into()),
            (Method::POST, "/v1/webhooks/nope/ping".into()),
            (Method::GET, "/v1/webhooks/nope/deliveries".into()),
            (Method::POST, "/v1/deliveries/nope/redeliver".into()),
        ] {
            let body = (method == Method::PATCH).then(|| json!({}));
            let (status, answer) = hub.call(method.clone(), &path, &team.key, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        }
        // Deleted, it is gone with its log.
        let (status, _) = hub.call(Method::DELETE, &path, &team.key, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = hub.call(Method::GET, &path, &team.key, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// Waits until the webhook's cursor is `seq` (the event delivered and recorded).
async fn wait_for_cursor(hub: &Hub, key: &str, webhook_id: &str, seq: i64) {
    let path = format!("/v1/webhooks/{webhook_id}");
    let deadline = Instant::now() + WAIT;
    loop {
        let current = get_ok(hub, key, &path).await;
        if current["cursor"] == seq {
            return;
        }
        assert!(Instant::now() < deadline, "cursor stuck: {current}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn listed_first(hub: &Hub, key: &str) -> Value {
    let listed = get_ok(hub, key, "/v1/webhooks").await;
    listed["webhooks"][0].clone()
}

// ---------------------------------------------------------------- hub processes

/// Workspace `acme` with an owner key and agent `spare`; the key.
async fn process_team(store: &Store) -> String {
    let ws = accounts::create_workspace(store, "acme").await.unwrap();
    accounts::add_member(store, &ws.id, "aurora@example.com", None, Role::Owner)
        .await
        .unwrap();
    agents::create_agent(
        store,
        NewAgent {
            workspace_id: &ws.id,
            name: "spare",
            owner: "aurora@example.com",
            capabilities: &[],
            max_concurrency: 64,
        },
    )
    .await
    .unwrap();
    accounts::create_api_key(store, &ws.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret
}

const PROCESS_FLAGS: &[&str] = &[
    "--webhook-allow-private",
    "--webhook-retry-base-ms",
    "50",
    "--webhook-retry-cap-ms",
    "200",
    "--webhook-poll-ms",
    "100",
    "--webhook-lease-ms",
    "2000",
];

async fn post_tasks(base: &str, key: &str, range: std::ops::Range<usize>) {
    let http = reqwest::Client::new();
    for idx in range {
        let resp = http
            .post(format!("{base}/v1/tasks"))
            .bearer_auth(key)
            .json(&one_step(&format!("report {idx}"), &["spare"]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
}

async fn process_webhook(base: &str, key: &str, receiver: &Receiver) -> i64 {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let webhook: Value = resp.json().await.unwrap();
    receiver.set_secret(webhook["secret"].as_str().unwrap());
    webhook["cursor"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_stream_is_followed_by_another_without_loss_or_skip() {
    let Ok(redis_url) = std::env::var(REDIS_URL_VAR) else {
        eprintln!("skipped: {REDIS_URL_VAR} is needed (webhooks::a_hub_killed_mid_stream)");
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "skipped: AGENTHUB_TEST_DATABASE_URL is needed (webhooks::a_hub_killed_mid_stream)"
        );
        return;
    };
    let key = process_team(&db.store()).await;
    let ws = workspace_id(&db.store(), "acme").await;
    let receiver = Receiver::start().await;
    receiver.state.delay_ms.store(30, Ordering::SeqCst);
    let hub_a = HubProcess::start_with(db.url(), &redis_url, PROCESS_FLAGS).await;
    let cursor = process_webhook(&hub_a.base, &key, &receiver).await;
    post_tasks(&hub_a.base, &key, 0..15).await;
    wait_until("some deliveries", || receiver.accepted_seqs().len() >= 5).await;
    hub_a.signal("-KILL");
    drop(hub_a);
    // Events committed while no hub delivers, then another hub takes over.
    let hub_b = HubProcess::start_with(db.url(), &redis_url, PROCESS_FLAGS).await;
    post_tasks(&hub_b.base, &key, 15..20).await;
    let expected = seqs(&feed_after(&db.store(), &ws, cursor).await);
    assert!(expected.len() >= 40, "{} events", expected.len());
    receiver.wait_for_seqs(&expected).await;
    receiver.assert_no_problems();
    let accepted = receiver.accepted_seqs();
    assert!(never_back(&accepted), "out of order: {accepted:?}");
    let distinct: Vec<i64> = {
        let mut seen = accepted.clone();
        seen.dedup();
        seen
    };
    assert_eq!(distinct, expected, "each event, in order, nothing skipped");
    drop(hub_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_deliver_each_event_of_a_webhook_once_in_order() {
    let Ok(redis_url) = std::env::var(REDIS_URL_VAR) else {
        eprintln!("skipped: {REDIS_URL_VAR} is needed (webhooks::two_hubs_deliver)");
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: AGENTHUB_TEST_DATABASE_URL is needed (webhooks::two_hubs_deliver)");
        return;
    };
    let key = process_team(&db.store()).await;
    let ws = workspace_id(&db.store(), "acme").await;
    let receiver = Receiver::start().await;
    receiver.state.delay_ms.store(5, Ordering::SeqCst);
    receiver.fail_next(2);
    let hub_a = HubProcess::start_with(db.url(), &redis_url, PROCESS_FLAGS).await;
    let hub_b = HubProcess::start_with(db.url(), &redis_url, PROCESS_FLAGS).await;
    let cursor = process_webhook(&hub_a.base, &key, &receiver).await;
    // Events committed through both hubs at once.
    tokio::join!(
        post_tasks(&hub_a.base, &key, 0..10),
        post_tasks(&hub_b.base, &key, 10..20),
    );
    let expected = seqs(&feed_after(&db.store(), &ws, cursor).await);
    receiver.wait_for_seqs(&expected).await;
    // Settle: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.assert_no_problems();
    assert_eq!(receiver.accepted_seqs(), expected, "once each, in order");
}
