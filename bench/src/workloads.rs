//! The workloads. Each repeat starts a fresh hub, prints one JSON line, and the summary
//! table shows medians over the repeats.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::agent::{self, Mode};
use crate::hubproc::{self, Db, HubProcess};
use crate::setup;

pub struct Run {
    pub hub_bin: PathBuf,
    pub db: Db,
    pub repeats: usize,
    pub out: Option<PathBuf>,
}

impl Run {
    fn peer(&self) -> &'static str {
        match self.db {
            Db::Sqlite => "agenthub (sqlite)",
            Db::Postgres(_) => "agenthub (postgres)",
        }
    }

    fn durability(&self) -> &'static str {
        match self.db {
            Db::Sqlite => "SQLite WAL synchronous=NORMAL",
            Db::Postgres(_) => "PostgreSQL synchronous_commit=on (server default)",
        }
    }

    fn emit(&self, line: &Value) -> anyhow::Result<()> {
        println!("{line}");
        if let Some(path) = &self.out {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(file, "{line}")?;
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    percentile(&values, 50.0)
}

fn addr(hub: &HubProcess) -> anyhow::Result<SocketAddr> {
    Ok(hub.base.trim_start_matches("http://").parse()?)
}

async fn create_step(
    http: &reqwest::Client,
    hub: &HubProcess,
    key: &str,
    title: &str,
    agent: &str,
) -> anyhow::Result<()> {
    let body = json!({"title": title, "description": "x".repeat(100),
        "steps": [{"key": "s", "title": title, "assignees": [agent]}]});
    let resp = http
        .post(format!("{}/v1/tasks", hub.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "create failed: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// W1: M connected agents; steps created one at a time, step `i` for agent `i % M`;
/// latency from just before the create call to the agent decoding `step.ready`.
pub async fn w1(run: &Run, n_agents: usize, n_steps: usize) -> anyhow::Result<()> {
    let mut p99s = Vec::new();
    let mut p50s = Vec::new();
    for repeat in 0..run.repeats {
        let hub = HubProcess::spawn(&run.hub_bin, &run.db, free_port()?, &[])?;
        let fixture = setup::create(&hub, n_agents, 1024).await?;
        let (sender, mut received) = mpsc::unbounded_channel();
        for (_, token) in &fixture.agents {
            let ws = agent::connect(addr(&hub)?, token, None).await?;
            tokio::spawn(agent::run(ws, Mode::Report(sender.clone())));
        }
        let http = reqwest::Client::new();
        let cpu_before = hub.cpu_secs();
        let client_before = hubproc::cpu_secs("self");
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(n_steps);
        // One unmeasured warm-up step per agent, then the measured ones.
        for idx in 0..(n_agents + n_steps) {
            let (agent_name, _) = &fixture.agents[idx % n_agents];
            let title = format!("w1-{idx}");
            let sent = Instant::now();
            create_step(&http, &hub, &fixture.api_key, &title, agent_name).await?;
            let (got_title, at) = tokio::time::timeout(Duration::from_secs(10), received.recv())
                .await
                .context("step.ready did not arrive within 10 s")?
                .context("agents stopped")?;
            if got_title != title {
                bail!("expected {title}, got {got_title}");
            }
            if idx >= n_agents {
                latencies.push(at.duration_since(sent).as_secs_f64() * 1e6);
            }
        }
        let wall = started.elapsed().as_secs_f64();
        latencies.sort_by(|a, b| a.total_cmp(b));
        let metrics = json!({
            "p50_us": percentile(&latencies, 50.0).round(), "p90_us": percentile(&latencies, 90.0).round(),
            "p99_us": percentile(&latencies, 99.0).round(), "max_us": latencies.last().copied().unwrap_or(f64::NAN).round(),
        });
        p50s.push(percentile(&latencies, 50.0));
        p99s.push(percentile(&latencies, 99.0));
        run.emit(&json!({"peer": run.peer(), "workload": "W1", "repeat": repeat, "metrics": metrics,
            "broker_cpu_s": hub.cpu_secs() - cpu_before, "client_cpu_s": hubproc::cpu_secs("self") - client_before, "wall_s": wall,
            "config": format!("M={n_agents} N={n_steps}; REST POST /v1/tasks (one-step task) per step, paced on receipt; {}", run.durability())}))?;
    }
    eprintln!(
        "W1 {}: median p50 {:.0} µs, median p99 {:.0} µs over {} repeats",
        run.peer(),
        median(p50s),
        median(p99s),
        run.repeats
    );
    Ok(())
}

/// W2: N steps over M agents, created by concurrent creators; each agent claims and
/// submits; the clock stops when the hub has answered every submit with `done` (sent
/// only after the commit).
pub async fn w2(
    run: &Run,
    n_agents: usize,
    n_steps: usize,
    n_creators: usize,
) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for repeat in 0..run.repeats {
        let hub = HubProcess::spawn(&run.hub_bin, &run.db, free_port()?, &[])?;
        let fixture = setup::create(&hub, n_agents, 1024).await?;
        let done = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(Notify::new());
        for (_, token) in &fixture.agents {
            let ws = agent::connect(addr(&hub)?, token, None).await?;
            tokio::spawn(agent::run(
                ws,
                Mode::Work {
                    done: Arc::clone(&done),
                    target: n_steps,
                    finished: Arc::clone(&finished),
                },
            ));
        }
        let http = reqwest::Client::new();
        let cpu_before = hub.cpu_secs();
        let client_before = hubproc::cpu_secs("self");
        let started = Instant::now();
        let names: Arc<Vec<String>> = Arc::new(
            fixture
                .agents
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
        );
        let hub_base = Arc::new(hub.base.clone());
        let mut creators = Vec::new();
        for creator in 0..n_creators {
            let (http, names, key, base) = (
                http.clone(),
                Arc::clone(&names),
                fixture.api_key.clone(),
                Arc::clone(&hub_base),
            );
            creators.push(tokio::spawn(async move {
                let mut idx = creator;
                while idx < n_steps {
                    let body = json!({"title": format!("w2-{idx}"), "steps": [{"key": "s", "title": "w2", "assignees": [names[idx % names.len()]]}]});
                    let resp = http.post(format!("{base}/v1/tasks")).bearer_auth(&key).json(&body).send().await?;
                    if !resp.status().is_success() {
                        bail!("create failed: {}", resp.status());
                    }
                    idx += n_creators;
                }
                anyhow::Ok(())
            }));
        }
        for creator in creators {
            creator.await??;
        }
        let limit = Duration::from_secs(600);
        if done.load(std::sync::atomic::Ordering::Relaxed) < n_steps {
            tokio::time::timeout(limit, finished.notified())
                .await
                .context("not every step completed within 10 minutes")?;
        }
        let wall = started.elapsed().as_secs_f64();
        let hub_cpu = hub.cpu_secs() - cpu_before;
        let rate = n_steps as f64 / wall;
        rates.push(rate);
        run.emit(&json!({"peer": run.peer(), "workload": "W2", "repeat": repeat,
            "metrics": {"items_per_s": rate.round(), "hub_cpu_us_per_item": (hub_cpu / n_steps as f64 * 1e6).round()},
            "broker_cpu_s": hub_cpu, "client_cpu_s": hubproc::cpu_secs("self") - client_before, "wall_s": wall,
            "config": format!("M={n_agents} N={n_steps}; {n_creators} concurrent REST creators; claim+submit over WebSocket, level 0; {}", run.durability())}))?;
    }
    eprintln!(
        "W2 {}: median {:.0} steps/s over {} repeats",
        run.peer(),
        median(rates),
        run.repeats
    );
    Ok(())
}

/// W3: K idle agents; (hub RSS after − before) / K.
pub async fn w3(run: &Run, n_connections: usize) -> anyhow::Result<()> {
    let hub = HubProcess::spawn(&run.hub_bin, &run.db, free_port()?, &[])?;
    let fixture = setup::create(&hub, n_connections, 1).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = hub.rss_kib();
    let hub_addr = addr(&hub)?;
    let mut sockets = Vec::with_capacity(n_connections);
    for (idx, (_, token)) in fixture.agents.iter().enumerate() {
        // Spread source addresses over 127.0.0.2-127.0.0.254 past the ephemeral-port limit.
        let local_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (idx / 20_000) as u8));
        let ws = agent::connect(hub_addr, token, Some(local_ip)).await?;
        sockets.push(tokio::spawn(agent::run(ws, Mode::Idle)));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = hub.rss_kib();
    let per_conn = (after.saturating_sub(before)) as f64 / n_connections as f64;
    run.emit(&json!({"peer": run.peer(), "workload": "W3", "repeat": 0, "metrics": {"kib_per_conn": (per_conn * 10.0).round() / 10.0},
        "broker_cpu_s": hub.cpu_secs(), "client_cpu_s": hubproc::cpu_secs("self"), "wall_s": 0.0,
        "config": format!("K={n_connections}; hello/welcome then idle; client read buffer 4 KiB; RSS before {before} KiB, after {after} KiB")}))?;
    eprintln!(
        "W3 {}: {per_conn:.1} KiB per idle connection at K={n_connections}",
        run.peer()
    );
    for socket in sockets {
        socket.abort();
    }
    Ok(())
}
