//! The workloads of DESIGN section 10 (W1-W6) and lost-agent detection. Each repeat starts
//! fresh hub processes on a fresh database and emits one JSON line; the summary table
//! shows medians over the repeats.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::agent::{self, Mode, Seen};
use crate::hubproc::{self, Database, Db, HubProcess};
use crate::report::{Line, Report, percentile};
use crate::setup::{self, Fixture};

pub struct Run {
    pub hub_bin: PathBuf,
    pub agentd_bin: PathBuf,
    pub db: Db,
    pub repeats: usize,
    pub redis_url: Option<String>,
    /// "SQLite WAL synchronous=NORMAL" or the server's `synchronous_commit`.
    pub durability: String,
    /// Extra `agenthub serve` flags for every hub (`--hub-arg`).
    pub hub_args: Vec<String>,
    pub report: Report,
}

/// Connections opened at once while agents connect.
const CONNECT_CONCURRENCY: usize = 64;
/// Source addresses the agents' connections are spread over (127.0.0.2 …), each with
/// its own ephemeral port range.
const SOURCE_ADDRESSES: usize = 8;
/// Frames per second allowed per agent session in W2 (the hub's default, 200, caps an
/// agent at ~100 steps/s: claim + submit).
const W2_MAX_FRAMES_PER_S: u32 = 100_000;

impl Run {
    fn peer(&self) -> String {
        match self.db {
            Db::Sqlite => "agenthub (sqlite)".into(),
            Db::Postgres(_) => "agenthub (postgres)".into(),
        }
    }

    fn emit(&self, line: Line) -> anyhow::Result<()> {
        self.report.emit(line)
    }

    /// Starts a hub on `database` with the workload's flags and `--hub-arg`s.
    fn spawn_hub(&self, database: &Database, flags: &[String]) -> anyhow::Result<HubProcess> {
        let mut args = flags.to_vec();
        args.extend(self.hub_args.iter().cloned());
        HubProcess::spawn(&self.hub_bin, database, free_port()?, &args)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn source_ip(idx: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (idx % SOURCE_ADDRESSES) as u8))
}

fn client_cpu() -> f64 {
    hubproc::cpu_secs("self")
}

/// Connects one agent per token (a few at a time) and runs each in its own task.
async fn connect_all(
    hub: SocketAddr,
    fixture: &Fixture,
    mode: impl Fn(usize) -> Mode,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let attempts = fixture.agents.iter().enumerate().map(|(idx, (_, token))| {
        let token = token.clone();
        let mode = mode(idx);
        async move {
            let (ws, _welcome) = agent::connect(hub, &token, Some(source_ip(idx)), 0)
                .await
                .with_context(|| format!("agent {idx} connecting"))?;
            anyhow::Ok(tokio::spawn(async move {
                let mut last_seq = 0;
                if let Err(err) = agent::run(ws, &mode, &mut last_seq, None).await {
                    eprintln!("agent {idx} stopped: {err:#}");
                }
            }))
        }
    });
    let mut tasks = Vec::with_capacity(fixture.agents.len());
    let mut connected = futures_util::stream::iter(attempts).buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(task) = connected.next().await {
        tasks.push(task?);
    }
    Ok(tasks)
}

fn abort_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        task.abort();
    }
}

/// Creates a one-step task through the REST API (what a user calls).
async fn create_step(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    title: &str,
    assignees: &[&str],
    description: &str,
) -> anyhow::Result<()> {
    let body = json!({"title": title, "description": description,
        "steps": [{"key": "s", "title": title, "assignees": assignees}]});
    let resp = http
        .post(format!("{base}/v1/tasks"))
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

/// Creates `titles[i]` for agent `names[i % M]` with `n_creators` concurrent creators.
async fn create_many(
    base: String,
    key: String,
    names: Arc<Vec<String>>,
    titles: Vec<String>,
    n_creators: usize,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::new();
    let n_creators = n_creators.clamp(1, titles.len().max(1));
    let titles = Arc::new(titles);
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = Vec::with_capacity(n_creators);
    for _ in 0..n_creators {
        let (http, base, key, names, titles, next) = (
            http.clone(),
            base.clone(),
            key.clone(),
            Arc::clone(&names),
            Arc::clone(&titles),
            Arc::clone(&next),
        );
        creators.push(tokio::spawn(async move {
            loop {
                let idx = next.fetch_add(1, Ordering::Relaxed);
                let Some(title) = titles.get(idx) else {
                    return anyhow::Ok(());
                };
                let agent = names[idx % names.len()].as_str();
                create_step(&http, &base, &key, title, &[agent], "").await?;
            }
        }));
    }
    for creator in creators {
        creator.await??;
    }
    Ok(titles.len())
}

/// Paced dispatch latency: step `i` for agent `i % M`, the next create only once the
/// agent has decoded the previous `step.ready` (and, with a `period`, no sooner than that
/// after the previous create started). Returns sorted latencies in µs.
#[allow(clippy::too_many_arguments)]
async fn paced_latencies(
    create_base: &str,
    api_key: &str,
    names: &[String],
    received: &mut mpsc::UnboundedReceiver<Seen>,
    n_steps: usize,
    tag: &str,
    trace: Option<&Path>,
    period: Option<Duration>,
) -> anyhow::Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let n_agents = names.len();
    let body = "x".repeat(100);
    let mut latencies = Vec::with_capacity(n_steps);
    let mut traced = trace.map(|_| String::from("sent_unix_us,answered_us,ready_us\n"));
    let mut last_sent: Option<tokio::time::Instant> = None;
    // One unmeasured warm-up step per agent, then the measured ones.
    for idx in 0..(n_agents + n_steps) {
        let agent_name = names[idx % n_agents].as_str();
        let title = format!("{tag}-{idx}");
        if let (Some(period), Some(last)) = (period, last_sent) {
            tokio::time::sleep_until(last + period).await;
        }
        let sent_unix = SystemTime::now();
        let sent = Instant::now();
        last_sent = Some(tokio::time::Instant::from_std(sent));
        create_step(&http, create_base, api_key, &title, &[agent_name], &body).await?;
        let answered = sent.elapsed();
        let seen = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .with_context(|| format!("step.ready of {title} did not arrive within 10 s"))?
            .context("agents stopped")?;
        if seen.title != title {
            bail!("expected {title}, got {}", seen.title);
        }
        if idx >= n_agents {
            let ready = seen.at.duration_since(sent);
            latencies.push(ready.as_secs_f64() * 1e6);
            if let Some(traced) = &mut traced {
                let sent_us = sent_unix.duration_since(UNIX_EPOCH).unwrap_or_default();
                writeln!(
                    traced,
                    "{},{},{}",
                    sent_us.as_micros(),
                    answered.as_micros(),
                    ready.as_micros()
                )?;
            }
        }
    }
    if let (Some(path), Some(traced)) = (trace, traced) {
        std::fs::write(path, traced)
            .with_context(|| format!("cannot write the trace to {}", path.display()))?;
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(latencies)
}

fn latency_metrics(latencies: &[f64]) -> Vec<(&'static str, f64)> {
    vec![
        ("p50_us", percentile(latencies, 50.0)),
        ("p90_us", percentile(latencies, 90.0)),
        ("p99_us", percentile(latencies, 99.0)),
        ("max_us", latencies.last().copied().unwrap_or(f64::NAN)),
    ]
}

/// The SQLite writer's counters from the hub's `/metrics` (`agenthub_sqlite_writer_*`,
/// by the rest of their names); `None` on PostgreSQL, which has no single writer.
async fn writer_counters(base: &str) -> Option<HashMap<String, f64>> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let counters: HashMap<String, f64> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line
                .strip_prefix("agenthub_sqlite_writer_")?
                .split_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    (!counters.is_empty()).then_some(counters)
}

/// W1: M connected agents; steps created one at a time, step `i` for agent `i % M`;
/// latency from just before the create call to the agent decoding `step.ready`.
pub async fn w1(
    run: &Run,
    n_agents: usize,
    n_steps: usize,
    trace: Option<&Path>,
    period: Option<Duration>,
) -> anyhow::Result<()> {
    for repeat in 0..run.repeats {
        let database = Database::create(&run.db)?;
        let fixture = setup::create(&database, n_agents, 1024).await?;
        let hub = run.spawn_hub(&database, &[])?;
        let (sender, mut received) = mpsc::unbounded_channel();
        let agents = connect_all(hub.addr(), &fixture, |_| Mode::Report(sender.clone())).await?;
        let cpu_before = hub.cpu_secs();
        let client_before = client_cpu();
        let started = Instant::now();
        let latencies = paced_latencies(
            &hub.base,
            &fixture.api_key,
            &fixture.names(),
            &mut received,
            n_steps,
            "w1",
            trace,
            period,
        )
        .await?;
        run.emit(Line {
            peer: run.peer(),
            workload: "W1",
            repeat,
            metrics: latency_metrics(&latencies),
            broker_cpu_s: hub.cpu_secs() - cpu_before,
            client_cpu_s: client_cpu() - client_before,
            wall_s: started.elapsed().as_secs_f64(),
            config: format!(
                "M={n_agents} N={n_steps}; REST POST /v1/tasks (one-step task, 100 B description) per step, paced on receipt{}, 1 warm-up step per agent; agents: Rust, MessagePack over WebSocket, one process; {}",
                period.map_or(String::new(), |period| format!(
                    " and at least {} µs apart",
                    period.as_micros()
                )),
                run.durability
            ),
            extra: json!({}),
        })?;
        abort_all(agents);
    }
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
    for repeat in 0..run.repeats {
        let database = Database::create(&run.db)?;
        let fixture = setup::create(&database, n_agents, 1024).await?;
        let hub = run.spawn_hub(
            &database,
            &["--max-frames-per-s".into(), W2_MAX_FRAMES_PER_S.to_string()],
        )?;
        let done = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(Notify::new());
        let agents = connect_all(hub.addr(), &fixture, |_| Mode::Work {
            done: Arc::clone(&done),
            target: n_steps,
            finished: Arc::clone(&finished),
        })
        .await?;
        let titles: Vec<String> = (0..n_steps).map(|idx| format!("w2-{idx}")).collect();
        let writer_before = writer_counters(&hub.base).await;
        let cpu_before = hub.cpu_secs();
        let client_before = client_cpu();
        let started = Instant::now();
        let all_done = finished.notified();
        tokio::pin!(all_done);
        all_done.as_mut().enable();
        create_many(
            hub.base.clone(),
            fixture.api_key.clone(),
            Arc::new(fixture.names()),
            titles,
            n_creators,
        )
        .await?;
        let created_s = started.elapsed().as_secs_f64();
        if done.load(Ordering::Relaxed) < n_steps {
            tokio::time::timeout(Duration::from_secs(600), all_done)
                .await
                .context("not every step completed within 10 minutes")?;
        }
        let wall = started.elapsed().as_secs_f64();
        let hub_cpu = hub.cpu_secs() - cpu_before;
        let client_cpu_s = client_cpu() - client_before;
        let writer_after = writer_counters(&hub.base).await;
        // Where the work goes, per step: PostgreSQL's counters (including the fixture and
        // the start), or the SQLite writer's over the run.
        let per_step = |value: f64| (value / n_steps as f64 * 10.0).round() / 10.0;
        let db_work = match hubproc::pg_counters(&database) {
            Some(
                [
                    commits,
                    rows_read,
                    idx_scans,
                    seq_scans,
                    seq_rows,
                    rows_written,
                ],
            ) => json!({
                "pg_commits_per_step": per_step(commits),
                "pg_index_scans_per_step": per_step(idx_scans),
                "pg_seq_scans_per_step": per_step(seq_scans),
                "pg_seq_rows_per_step": per_step(seq_rows),
                "pg_rows_read_per_step": per_step(rows_read),
                "pg_rows_written_per_step": per_step(rows_written),
            }),
            None => match (writer_before, writer_after) {
                (Some(before), Some(after)) => {
                    let grew = |name: &str| {
                        after.get(name).copied().unwrap_or(f64::NAN)
                            - before.get(name).copied().unwrap_or(0.0)
                    };
                    let busy = grew("busy_seconds_total");
                    let transactions = grew("transactions_total");
                    json!({
                        "sqlite_writer_busy_share": (busy / wall * 1000.0).round() / 1000.0,
                        "sqlite_writer_busy_us_per_step": per_step(busy * 1e6),
                        "sqlite_transactions_per_step": per_step(transactions),
                        "sqlite_transactions_per_commit":
                            (transactions / grew("commits_total") * 10.0).round() / 10.0,
                        "sqlite_writer_wait_us_per_transaction":
                            (grew("wait_seconds_total") * 1e6 / transactions).round(),
                    })
                }
                _ => json!(null),
            },
        };
        run.emit(Line {
            peer: run.peer(),
            workload: "W2",
            repeat,
            metrics: vec![
                ("items_per_s", n_steps as f64 / wall),
                ("broker_cpu_us_per_item", hub_cpu / n_steps as f64 * 1e6),
            ],
            broker_cpu_s: hub_cpu,
            client_cpu_s,
            wall_s: wall,
            config: format!(
                "M={n_agents} N={n_steps}; {n_creators} concurrent REST creators (one-step tasks); agents claim + submit over WebSocket (MessagePack), level 0, clock stops at the N-th `done` reply (sent after commit); --max-frames-per-s {W2_MAX_FRAMES_PER_S}; {}",
                run.durability
            ),
            extra: json!({"created_s": created_s, "db_work": db_work}),
        })?;
        abort_all(agents);
    }
    Ok(())
}

/// W3: K idle agents; (hub RSS after − before) / K.
pub async fn w3(run: &Run, n_connections: usize) -> anyhow::Result<()> {
    let limit = hubproc::raise_fd_limit();
    if (limit as usize) < n_connections + 200 {
        bail!(
            "the open-file limit is {limit}; K={n_connections} needs more (raise the hard limit)"
        );
    }
    let database = Database::create(&run.db)?;
    let fixture = setup::create(&database, n_connections, 1).await?;
    let hub = run.spawn_hub(&database, &[])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = hub.rss_kib();
    let cpu_before = hub.cpu_secs();
    let client_before = client_cpu();
    let started = Instant::now();
    let agents = connect_all(hub.addr(), &fixture, |_| Mode::Idle).await?;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = hub.rss_kib();
    let per_conn = after.saturating_sub(before) as f64 / n_connections as f64;
    run.emit(Line {
        peer: run.peer(),
        workload: "W3",
        repeat: 0,
        metrics: vec![("kib_per_conn", per_conn)],
        broker_cpu_s: hub.cpu_secs() - cpu_before,
        client_cpu_s: client_cpu() - client_before,
        wall_s: started.elapsed().as_secs_f64(),
        config: format!(
            "K={n_connections}; hello/welcome then idle (pings answered); hub WebSocket read buffer 1 KiB, write buffer 8 KiB (what a session queued leaves in one write; an idle one holds none); VmRSS of a fresh hub, then after K connections + 2 s"
        ),
        extra: json!({"rss_before_kib": before, "rss_after_kib": after, "connect_s": connect_s}),
    })?;
    abort_all(agents);
    Ok(())
}

/// W4: W1 across two hub processes on one PostgreSQL database and Redis: agents on hub B,
/// create calls on hub A.
pub async fn w4(run: &Run, n_agents: usize, n_steps: usize) -> anyhow::Result<()> {
    let Db::Postgres(_) = &run.db else {
        bail!("W4 needs --postgres");
    };
    let Some(redis_url) = &run.redis_url else {
        bail!("W4 needs --redis-url");
    };
    for repeat in 0..run.repeats {
        let database = Database::create(&run.db)?;
        let fixture = setup::create(&database, n_agents, 1024).await?;
        let redis_args = ["--redis-url".to_string(), redis_url.clone()];
        let hub_a = run.spawn_hub(&database, &redis_args)?;
        let hub_b = run.spawn_hub(&database, &redis_args)?;
        let (sender, mut received) = mpsc::unbounded_channel();
        let agents = connect_all(hub_b.addr(), &fixture, |_| Mode::Report(sender.clone())).await?;
        let cpu_before = hub_a.cpu_secs() + hub_b.cpu_secs();
        let client_before = client_cpu();
        let started = Instant::now();
        let latencies = paced_latencies(
            &hub_a.base,
            &fixture.api_key,
            &fixture.names(),
            &mut received,
            n_steps,
            "w4",
            None,
            None,
        )
        .await?;
        run.emit(Line {
            peer: "agenthub (2 hubs, postgres + redis)".into(),
            workload: "W4",
            repeat,
            metrics: latency_metrics(&latencies),
            broker_cpu_s: hub_a.cpu_secs() + hub_b.cpu_secs() - cpu_before,
            client_cpu_s: client_cpu() - client_before,
            wall_s: started.elapsed().as_secs_f64(),
            config: format!(
                "M={n_agents} N={n_steps}; agents on hub B, REST creates on hub A, paced on receipt; Redis pub/sub fan-out; {}",
                run.durability
            ),
            extra: json!({}),
        })?;
        abort_all(agents);
    }
    Ok(())
}

/// W5: one real `agentd run` connected to a hub and idle for `idle_s`: RSS, CPU seconds
/// and wake-ups (voluntary context switches of all its threads) per minute.
pub async fn w5(run: &Run, idle_s: u64) -> anyhow::Result<()> {
    if !run.agentd_bin.exists() {
        bail!(
            "no agentd at {}; pass --agentd-bin",
            run.agentd_bin.display()
        );
    }
    for repeat in 0..run.repeats {
        let database = Database::create(&run.db)?;
        let fixture = setup::create(&database, 1, 4).await?;
        let hub = run.spawn_hub(&database, &[])?;
        let home = tempfile::Builder::new()
            .prefix("agenthub-bench")
            .tempdir()?;
        let dir = |name: &str| -> anyhow::Result<PathBuf> {
            let path = home.path().join(name);
            std::fs::create_dir_all(&path)?;
            Ok(path)
        };
        let runtime_dir = dir("run")?;
        std::fs::set_permissions(
            &runtime_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let mut agentd = AgentdProcess(
            std::process::Command::new(&run.agentd_bin)
                .arg("run")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", home.path())
                .env("XDG_CONFIG_HOME", dir("config")?)
                .env("XDG_DATA_HOME", dir("data")?)
                .env("XDG_STATE_HOME", dir("state")?)
                .env("XDG_CACHE_HOME", dir("cache")?)
                .env("XDG_RUNTIME_DIR", &runtime_dir)
                .env("AGENTD_HUB", &hub.base)
                .env("AGENTD_TOKEN", &fixture.agents[0].1)
                .env("AGENTD_CREDENTIAL_STORE", "file")
                .env("AGENTD_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting agentd")?,
        );
        let pid = agentd.0.id();
        wait_sessions(&hub, 1, Duration::from_secs(30))
            .await
            .context("agentd did not connect")?;
        // Let start-up work settle, then measure the idle window.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu_before = hubproc::cpu_secs(pid);
        let switches_before = hubproc::voluntary_switches(pid);
        let hub_cpu_before = hub.cpu_secs();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle_s)).await;
        let wall = started.elapsed().as_secs_f64();
        if let Ok(Some(status)) = agentd.0.try_wait() {
            bail!("agentd exited during the idle window: {status}");
        }
        let cpu = hubproc::cpu_secs(pid) - cpu_before;
        let switches = hubproc::voluntary_switches(pid) - switches_before;
        let rss = hubproc::rss_kib(pid);
        let threads = hubproc::threads(pid);
        run.emit(Line {
            peer: "agentd".into(),
            workload: "W5",
            repeat,
            metrics: vec![
                ("rss_kib", rss as f64),
                ("cpu_s", cpu),
                ("wakeups_per_min", switches as f64 * 60.0 / wall),
            ],
            broker_cpu_s: hub.cpu_secs() - hub_cpu_before,
            client_cpu_s: cpu,
            wall_s: wall,
            config: format!(
                "agentd run (release), connected to a hub on 127.0.0.1 and idle {idle_s} s; hub flags: [{}] (default heartbeat 15 s = 4 pings/min); wake-ups = voluntary context switches summed over agentd's threads",
                run.hub_args.join(" ")
            ),
            extra: json!({"threads": threads}),
        })?;
        agentd.stop();
    }
    Ok(())
}

/// An agentd process, killed (by PID) on drop.
struct AgentdProcess(std::process::Child);

impl AgentdProcess {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the hub's `/metrics` shows `n` open agent sessions.
async fn wait_sessions(hub: &HubProcess, n: u64, limit: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(format!("{}/metrics", hub.base)).send().await
            && let Ok(text) = resp.text().await
        {
            let open = text
                .lines()
                .find(|line| line.starts_with("agenthub_agent_sessions_open"))
                .and_then(|line| line.split_whitespace().last()?.parse::<f64>().ok());
            if open.is_some_and(|open| open as u64 >= n) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("fewer than {n} agent sessions after {limit:?}")
}

/// W6: K agents (reconnecting like agentd) on one hub; S steps created, the hub killed
/// (SIGKILL) right after the last create returned and started again on the same
/// database, S more steps created during the reconnect storm. Time until every agent
/// has reconnected and caught up with the hub's `last_seq`; steps created but never
/// pushed (lost) and pushed twice to one agent (duplicated).
pub async fn w6(run: &Run, n_agents: usize, n_steps: usize) -> anyhow::Result<()> {
    let limit = hubproc::raise_fd_limit();
    if (limit as usize) < n_agents + 200 {
        bail!("the open-file limit is {limit}; K={n_agents} needs more (raise the hard limit)");
    }
    for repeat in 0..run.repeats {
        let database = Database::create(&run.db)?;
        let fixture = setup::create(&database, n_agents, 1024).await?;
        let mut hub = run.spawn_hub(&database, &[])?;
        let client_before = client_cpu();
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
        let (caught_tx, mut caught_rx) = mpsc::unbounded_channel::<(usize, Instant, Instant)>();
        let mut agents = Vec::with_capacity(n_agents);
        for (idx, (_, token)) in fixture.agents.iter().enumerate() {
            agents.push(tokio::spawn(agent::run_resilient(
                hub.addr(),
                token.clone(),
                Some(source_ip(idx)),
                Mode::Report(seen_tx.clone()),
                idx,
                caught_tx.clone(),
            )));
        }
        drop(caught_tx);
        // Everyone connected once.
        let mut first = HashSet::new();
        let connect_started = Instant::now();
        while first.len() < n_agents {
            let (idx, _, _) = tokio::time::timeout(Duration::from_secs(120), caught_rx.recv())
                .await
                .context("the agents did not all connect within 120 s")?
                .context("agents stopped")?;
            first.insert(idx);
        }
        let connect_s = connect_started.elapsed().as_secs_f64();
        let names = Arc::new(fixture.names());
        let before: Vec<String> = (0..n_steps).map(|idx| format!("w6-before-{idx}")).collect();
        let after: Vec<String> = (0..n_steps).map(|idx| format!("w6-after-{idx}")).collect();
        create_many(
            hub.base.clone(),
            fixture.api_key.clone(),
            Arc::clone(&names),
            before,
            16,
        )
        .await?;
        let killed_at = Instant::now();
        hub.kill();
        while caught_rx.try_recv().is_ok() {}
        let restart_at = Instant::now();
        let mut hub = tokio::task::spawn_blocking(move || hub.restart().map(|()| hub)).await??;
        let listening_at = Instant::now();
        let base = hub.base.clone();
        let api_key = fixture.api_key.clone();
        let creator = tokio::spawn(create_many(base, api_key, names, after, 16));
        let mut resynced = HashSet::new();
        let mut last_resync = listening_at;
        while resynced.len() < n_agents {
            let (idx, session_started, at) =
                tokio::time::timeout(Duration::from_secs(120), caught_rx.recv())
                    .await
                    .context("the agents did not all resync within 120 s")?
                    .context("agents stopped")?;
            if session_started >= restart_at && resynced.insert(idx) {
                last_resync = last_resync.max(at);
            }
        }
        let resync_s = last_resync.duration_since(listening_at).as_secs_f64();
        creator.await??;
        // Collect what was pushed; every created step should arrive exactly once.
        let expected = 2 * n_steps;
        let mut counts: HashMap<(String, u32), u32> = HashMap::new();
        let mut titles = HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            while let Ok(seen) = seen_rx.try_recv() {
                titles.insert(seen.title.clone());
                *counts.entry((seen.title, seen.attempt)).or_default() += 1;
            }
            if titles.len() >= expected || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A moment more for late duplicates.
        tokio::time::sleep(Duration::from_secs(1)).await;
        while let Ok(seen) = seen_rx.try_recv() {
            titles.insert(seen.title.clone());
            *counts.entry((seen.title, seen.attempt)).or_default() += 1;
        }
        let lost = expected.saturating_sub(titles.len());
        let duplicated: u32 = counts.values().map(|count| count - 1).sum();
        run.emit(Line {
            peer: run.peer(),
            workload: "W6",
            repeat,
            metrics: vec![
                ("resync_s", resync_s),
                ("since_kill_s", last_resync.duration_since(killed_at).as_secs_f64()),
                ("lost", lost as f64),
                ("duplicated", f64::from(duplicated)),
            ],
            broker_cpu_s: hub.cpu_secs(),
            client_cpu_s: client_cpu() - client_before,
            wall_s: last_resync.duration_since(killed_at).as_secs_f64(),
            config: format!(
                "K={n_agents}; {n_steps} steps created, hub SIGKILLed right after, restarted on the same database, {n_steps} more created during the reconnect storm; agents reconnect like agentd (random delay up to 1 s, doubling) and resume from their last seq; resync_s = hub listening again → last agent caught up with its welcome last_seq; {}",
                run.durability
            ),
            extra: json!({"first_connect_s": connect_s, "hub_restart_s": listening_at.duration_since(restart_at).as_secs_f64()}),
        })?;
        abort_all(agents);
        hub.kill();
    }
    Ok(())
}

/// Lost-agent detection: a step assigned to two agents is claimed by the first, which
/// then goes silent without closing; the time until the step is pushed (`step.ready`,
/// attempt 2) to the second. Bounded by the lease and the sweep interval.
pub async fn lost(run: &Run, lease_ms: Option<u64>, sweep_ms: Option<u64>) -> anyhow::Result<()> {
    let mut args = Vec::new();
    if let Some(lease_ms) = lease_ms {
        args.extend(["--lease-ms".to_string(), lease_ms.to_string()]);
    }
    if let Some(sweep_ms) = sweep_ms {
        args.extend(["--sweep-interval-ms".to_string(), sweep_ms.to_string()]);
    }
    let lease = lease_ms.unwrap_or(agenthub::ctx::DEFAULT_LEASE_MS);
    for repeat in 0..run.repeats {
        let database = Database::create(&run.db)?;
        let fixture = setup::create(&database, 2, 4).await?;
        let hub = run.spawn_hub(&database, &args)?;
        let (vanish_tx, mut vanished) = mpsc::unbounded_channel();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let agents = connect_all(hub.addr(), &fixture, |idx| {
            if idx == 0 {
                Mode::ClaimThenVanish(vanish_tx.clone())
            } else {
                Mode::Report(seen_tx.clone())
            }
        })
        .await?;
        let cpu_before = hub.cpu_secs();
        let names = fixture.names();
        let http = reqwest::Client::new();
        create_step(
            &http,
            &hub.base,
            &fixture.api_key,
            "lost-0",
            &[names[0].as_str(), names[1].as_str()],
            "",
        )
        .await?;
        let vanished_at = tokio::time::timeout(Duration::from_secs(10), vanished.recv())
            .await
            .context("the first agent did not claim within 10 s")?
            .context("agents stopped")?;
        let patience = Duration::from_millis(lease) * 2 + Duration::from_secs(60);
        let requeued_at = loop {
            let next = tokio::time::timeout(patience, seen.recv())
                .await
                .context("the step was not pushed again")?
                .context("agents stopped")?;
            if next.attempt >= 2 {
                break next.at;
            }
        };
        let requeue_s = requeued_at.duration_since(vanished_at).as_secs_f64();
        run.emit(Line {
            peer: run.peer(),
            workload: "lost-agent",
            repeat,
            metrics: vec![("requeue_s", requeue_s)],
            broker_cpu_s: hub.cpu_secs() - cpu_before,
            client_cpu_s: 0.0,
            wall_s: requeue_s,
            config: format!(
                "step for 2 agents; the claimer goes silent (socket open, no close, no pong); until step.ready attempt 2 reaches the other; --lease-ms {} --sweep-interval-ms {}",
                lease_ms.map_or(format!("{} (default)", agenthub::ctx::DEFAULT_LEASE_MS), |ms| ms.to_string()),
                sweep_ms.map_or("1000 (default)".into(), |ms| ms.to_string()),
            ),
            extra: json!({}),
        })?;
        abort_all(agents);
    }
    Ok(())
}
