//! Real `agenthub serve` processes on one PostgreSQL and one Redis, with real WebSocket
//! agents: hubs behave as one, a hub killed with SIGKILL loses nothing, a Redis restart
//! loses no event, and SIGTERM moves agents to another hub without a failed request.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agenthub_protocol::{Codec, ServerFrame, StepSubmit, close_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::store::Store;

use crate::gateway::{Agent, Closed, expect_error, expect_ok, one_step};
use crate::support::TestDb;

const REDIS_URL_VAR: &str = "AGENTHUB_TEST_REDIS_URL";

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `agenthub serve` process, killed on drop.
pub(crate) struct HubProcess {
    child: Child,
    pub(crate) base: String,
    ws_url: String,
    _data_dir: tempfile::TempDir,
}

impl HubProcess {
    /// A hub with a short lease and sweep interval, so lost claims come back quickly.
    async fn start(database_url: &str, redis_url: &str) -> HubProcess {
        HubProcess::start_with(
            database_url,
            redis_url,
            &["--lease-ms", "3000", "--sweep-interval-ms", "100"],
        )
        .await
    }

    /// A hub on `database_url` and `redis_url` with `args` added to `agenthub serve`.
    pub(crate) async fn start_with(
        database_url: &str,
        redis_url: &str,
        args: &[&str],
    ) -> HubProcess {
        let port = free_port();
        let data_dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_agenthub"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--database-url", database_url, "--redis-url", redis_url])
            .args(args)
            .env("AGENTHUB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start agenthub serve");
        let hub = HubProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            ws_url: format!("ws://127.0.0.1:{port}/v1/agent/connect"),
            _data_dir: data_dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(resp) = http.get(format!("{}/readyz", hub.base)).send().await
                && resp.status() == StatusCode::OK
            {
                return hub;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agenthub serve did not become ready on {}", hub.base);
    }

    /// Sends `signal` to this process, by its PID.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Whether the process exited within `within`.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis server of the test's own on a free port, stopped on drop.
struct RedisProcess {
    child: Child,
    port: u16,
}

impl RedisProcess {
    fn start_on(port: u16) -> RedisProcess {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisProcess { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL and Redis for a cluster test, or `None` (printing the skip).
async fn backends(test_name: &str) -> Option<(TestDb, String)> {
    let (Ok(redis_url), Some(db)) = (std::env::var(REDIS_URL_VAR), TestDb::postgres().await) else {
        eprintln!(
            "skipped: {REDIS_URL_VAR} and AGENTHUB_TEST_DATABASE_URL are both needed ({test_name})"
        );
        return None;
    };
    Some((db, redis_url))
}

/// Workspace `acme` with an owner API key and `n_agents` agents `agent-0…`; returns the
/// key and the agents' tokens.
async fn workspace(store: &Store, n_agents: usize) -> (String, Vec<String>) {
    let ws = accounts::create_workspace(store, "acme").await.unwrap();
    accounts::add_member(store, &ws.id, "aurora@example.com", None, Role::Owner)
        .await
        .unwrap();
    let key = accounts::create_api_key(store, &ws.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret;
    let mut tokens = Vec::new();
    for n in 0..n_agents {
        let name = format!("agent-{n}");
        let created = agents::create_agent(
            store,
            NewAgent {
                workspace_id: &ws.id,
                name: &name,
                owner: "aurora@example.com",
                capabilities: &[],
                max_concurrency: 64,
            },
        )
        .await
        .unwrap();
        tokens.push(created.token);
    }
    (key, tokens)
}

async fn create(base: &str, key: &str, body: &Value) -> Result<Vec<String>, String> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/tasks"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .map_err(|err| err.to_string())?;
    if resp.status() != StatusCode::CREATED {
        return Err(format!("{}", resp.status()));
    }
    let task: Value = resp.json().await.unwrap();
    Ok(task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["id"].as_str().unwrap().to_string())
        .collect())
}

async fn get(base: &str, key: &str, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

fn all_agents(n_agents: usize) -> Vec<String> {
    (0..n_agents).map(|n| format!("agent-{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_behave_as_one_for_pushes_claims_and_presence() {
    let Some((db, redis_url)) =
        backends("cluster::two_hubs_behave_as_one_for_pushes_claims_and_presence").await
    else {
        return;
    };
    let (key, tokens) = workspace(&db.store(), 2).await;
    let hub_a = HubProcess::start(db.url(), &redis_url).await;
    let hub_b = HubProcess::start(db.url(), &redis_url).await;
    let mut on_b = Agent::open_url(&hub_b.ws_url, &tokens[0], Codec::MsgPack).await;
    on_b.hello(0).await;
    let mut on_a = Agent::open_url(&hub_a.ws_url, &tokens[1], Codec::Json).await;
    on_a.hello(0).await;

    // Presence is the same from both hubs.
    for hub in [&hub_a, &hub_b] {
        let listed = get(&hub.base, &key, "/v1/agents").await;
        let online: Vec<bool> = listed["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|agent| agent["online"] == true)
            .collect();
        assert_eq!(online, [true, true], "{listed}");
    }

    for round in 0..15 {
        // Created through hub A, pushed to the agent on hub B at once.
        let steps = create(
            &hub_a.base,
            &key,
            &one_step(&format!("race {round}"), &["agent-0", "agent-1"]),
        )
        .await
        .unwrap();
        let step = &steps[0];
        on_b.ready(step).await;
        on_a.ready(step).await;
        let (left, right) = tokio::join!(on_b.claim(step), on_a.claim(step));
        let winners = [&left, &right]
            .iter()
            .filter(|frame| matches!(frame, ServerFrame::Ok(_)))
            .count();
        assert_eq!(winners, 1, "round {round}: {left:?} / {right:?}");
    }
}

/// A worker that stays connected to one of `urls` (moving to the next when its hub
/// goes), claims every step pushed to it and submits it; returns the steps it completed.
async fn worker(urls: Vec<String>, token: String, stop: Arc<AtomicBool>) -> (HashSet<String>, u32) {
    let mut done = HashSet::new();
    let mut held: HashMap<Uuid, u32> = HashMap::new();
    let mut last_seq = 0;
    let mut next_url = 0;
    let mut n_reconnects = 0;
    while !stop.load(Ordering::Relaxed) {
        let url = &urls[next_url % urls.len()];
        let Ok((socket, _)) =
            crate::gateway::upgrade(url, Some(&token), Some(Codec::MsgPack.subprotocol())).await
        else {
            next_url += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        drop(socket);
        let mut agent = Agent::open_url(url, &token, Codec::MsgPack).await;
        agent.hello(last_seq).await;
        // Steps held before the reconnect are finished under the same attempt.
        let mut pending: Vec<(Uuid, u32)> = held.iter().map(|(id, at)| (*id, *at)).collect();
        let res: Result<(), Closed> = async {
            loop {
                for (step_id, attempt) in pending.drain(..) {
                    let reply = agent
                        .try_request(|id| {
                            agenthub_protocol::ClientFrame::StepSubmit(StepSubmit {
                                id,
                                step_id,
                                attempt,
                                result: json!({"by": token.len()}),
                                summary: None,
                                self_check: None,
                                check: None,
                                files: vec![],
                                usage: None,
                            })
                        })
                        .await?;
                    held.remove(&step_id);
                    if let ServerFrame::Ok(_) = reply {
                        done.insert(step_id.to_string());
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let frame = if agent.events.is_empty() {
                    match tokio::time::timeout(Duration::from_millis(500), agent.recv()).await {
                        Ok(frame) => frame?,
                        Err(_) => continue,
                    }
                } else {
                    agent.events.remove(0)
                };
                if let ServerFrame::StepReady(ready) = frame {
                    let step_id = ready.step.step_id;
                    let attempt = ready.step.attempt;
                    let reply = agent
                        .try_request(|id| {
                            agenthub_protocol::ClientFrame::StepClaim(
                                agenthub_protocol::StepClaim {
                                    id,
                                    step_id,
                                    attempt: Some(attempt),
                                },
                            )
                        })
                        .await?;
                    if let ServerFrame::Ok(ok) = reply {
                        held.insert(step_id, ok.attempt.unwrap());
                        pending.push((step_id, ok.attempt.unwrap()));
                    }
                }
            }
        }
        .await;
        last_seq = agent.last_seq;
        if res.is_err() {
            n_reconnects += 1;
            next_url += 1;
        }
    }
    (done, n_reconnects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_traffic_loses_no_step_and_no_event() {
    let Some((db, redis_url)) =
        backends("cluster::a_hub_killed_mid_traffic_loses_no_step_and_no_event").await
    else {
        return;
    };
    let n_agents = 6;
    let (key, tokens) = workspace(&db.store(), n_agents).await;
    let hubs = [
        HubProcess::start(db.url(), &redis_url).await,
        HubProcess::start(db.url(), &redis_url).await,
        HubProcess::start(db.url(), &redis_url).await,
    ];
    let urls: Vec<String> = hubs.iter().map(|hub| hub.ws_url.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            // Two agents start on each hub.
            let mut order = urls.clone();
            order.rotate_left(n % 3);
            tokio::spawn(worker(order, token.clone(), Arc::clone(&stop)))
        })
        .collect();
    let mut hubs = hubs;
    let names = all_agents(n_agents);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut created = Vec::new();
    for n in 0..60 {
        if n == 20 {
            hubs[2].signal("-KILL");
            assert!(hubs[2].wait_exit(Duration::from_secs(5)));
        }
        // Creations go to the hubs that are up.
        let base = &hubs[n % 2].base;
        created.extend(
            create(base, &key, &one_step(&format!("job {n}"), &names))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait until every step is done (or a minute passed), then stop the workers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut remaining: Vec<&String> = created.iter().collect();
    while !remaining.is_empty() && Instant::now() < deadline {
        let step = remaining[0];
        let stored = get(&hubs[0].base, &key, &format!("/v1/steps/{step}")).await;
        if stored["status"] == "done" {
            remaining.remove(0);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut by_step: HashMap<String, usize> = HashMap::new();
    let mut n_reconnects = 0;
    for handle in workers {
        let (done, reconnects) = handle.await.unwrap();
        n_reconnects += reconnects;
        for step in done {
            *by_step.entry(step).or_default() += 1;
        }
    }
    assert!(n_reconnects >= 2, "the killed hub's agents reconnected");
    for step in &created {
        assert_eq!(by_step.get(step), Some(&1), "step {step} done exactly once");
        let stored = get(&hubs[0].base, &key, &format!("/v1/steps/{step}")).await;
        assert_eq!(stored["status"], "done", "{stored}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_event_and_live_delivery_resumes() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "skipped: AGENTHUB_TEST_DATABASE_URL is needed (cluster::a_redis_restart_loses_no_event_and_live_delivery_resumes)"
        );
        return;
    };
    let port = free_port();
    let redis = RedisProcess::start_on(port);
    let (key, tokens) = workspace(&db.store(), 1).await;
    let hub_a = HubProcess::start(db.url(), &redis.url()).await;
    let hub_b = HubProcess::start(db.url(), &redis.url()).await;
    let mut agent = Agent::open_url(&hub_b.ws_url, &tokens[0], Codec::MsgPack).await;
    agent.hello(0).await;
    let mut expected = Vec::new();
    let mut redis = Some(redis);
    for n in 0..30 {
        if n == 10 {
            drop(redis.take()); // Redis goes away mid-traffic
        }
        if n == 20 {
            redis = Some(RedisProcess::start_on(port));
        }
        expected.extend(
            create(
                &hub_a.base,
                &key,
                &one_step(&format!("job {n}"), &["agent-0"]),
            )
            .await
            .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every step reaches the agent on hub B exactly once, in order (`recv` checks seq).
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        if let ServerFrame::StepReady(ready) = agent.recv().await.unwrap() {
            seen.push(ready.step.step_id.to_string());
        }
    }
    assert_eq!(seen, expected);
    // Live delivery through Redis again: a new step arrives well within the polling
    // fallback's interval once the bus has reconnected.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for n in 0..5 {
        let started = Instant::now();
        let steps = create(
            &hub_a.base,
            &key,
            &one_step(&format!("live {n}"), &["agent-0"]),
        )
        .await
        .unwrap();
        agent.ready(&steps[0]).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    assert!(
        latencies[2] < Duration::from_millis(900),
        "median {:?}: events come from Redis, not from polling",
        latencies[2]
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_moves_agents_to_another_hub_without_a_failed_request() {
    let Some((db, redis_url)) =
        backends("cluster::sigterm_moves_agents_to_another_hub_without_a_failed_request").await
    else {
        return;
    };
    let (key, tokens) = workspace(&db.store(), 2).await;
    let mut hub_a = HubProcess::start(db.url(), &redis_url).await;
    let hub_b = HubProcess::start(db.url(), &redis_url).await;
    let mut first = Agent::open_url(&hub_a.ws_url, &tokens[0], Codec::MsgPack).await;
    first.hello(0).await;
    let mut second = Agent::open_url(&hub_a.ws_url, &tokens[1], Codec::Json).await;
    second.hello(0).await;
    let steps = create(&hub_b.base, &key, &one_step("before", &["agent-0"]))
        .await
        .unwrap();
    first.ready(&steps[0]).await;
    expect_ok(&first.claim(&steps[0]).await, Some("claimed"));

    hub_a.signal("-TERM");
    assert_eq!(first.closed().await, close_code::GOING_AWAY);
    assert_eq!(second.closed().await, close_code::GOING_AWAY);
    assert!(hub_a.wait_exit(Duration::from_secs(15)), "the hub exits");

    // Both resume on hub B, where every request succeeds.
    let mut first_b = Agent::open_url(&hub_b.ws_url, &tokens[0], Codec::MsgPack).await;
    first_b.hello(first.last_seq).await;
    expect_ok(
        &first_b.submit(&steps[0], 1, json!({"moved": true})).await,
        Some("done"),
    );
    let mut second_b = Agent::open_url(&hub_b.ws_url, &tokens[1], Codec::Json).await;
    second_b.hello(second.last_seq).await;
    let steps = create(&hub_b.base, &key, &one_step("after", &["agent-1"]))
        .await
        .unwrap();
    second_b.ready(&steps[0]).await;
    expect_ok(&second_b.claim(&steps[0]).await, Some("claimed"));
    expect_error(
        &first_b.claim(&steps[0]).await,
        agenthub_protocol::error_code::FORBIDDEN,
        "not assigned",
    );
}
