//! `agenthub-bench`: runs the shared workloads (DESIGN section 10) against real hub
//! processes with simulated agents over real WebSockets (MessagePack), and prints one
//! JSON line per workload and repeat in the format of the peer benchmarks (stdout) and a
//! summary table of medians (stderr).

mod agent;
mod hubproc;
mod report;
mod setup;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::hubproc::Db;
use crate::report::Report;

#[derive(Debug, Parser)]
#[command(name = "agenthub-bench", about)]
struct Cli {
    /// The hub binary (default: `agenthub` next to this binary).
    #[arg(long, global = true)]
    hub_bin: Option<PathBuf>,
    /// The agentd binary for W5 (default: `agentd` next to this binary).
    #[arg(long, global = true)]
    agentd_bin: Option<PathBuf>,
    /// Run on PostgreSQL (a fresh database per repeat on this server, created and dropped
    /// by the bench) instead of SQLite.
    #[arg(long, global = true, value_name = "ADMIN_URL")]
    postgres: Option<String>,
    /// Redis for W4 (two hubs); only pub/sub and presence keys under `agenthub:` are used,
    /// nothing is flushed.
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// Repeats per workload (fresh hubs and database each).
    #[arg(long, global = true, default_value_t = 3)]
    repeats: usize,
    /// An extra `agenthub serve` flag for every hub started (repeatable), e.g.
    /// `--hub-arg=--heartbeat-interval-ms=60000`; shown in each line's config.
    #[arg(long = "hub-arg", global = true, allow_hyphen_values = true)]
    hub_args: Vec<String>,
    /// Append the JSON lines to this file too.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// W1 dispatch latency: M agents, N steps created one at a time.
    W1 {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        #[arg(long, default_value_t = 5000)]
        steps: usize,
        /// Write every measured create to FILE as CSV: when it was sent (unix µs), and
        /// how long its HTTP answer and its `step.ready` took (µs); each repeat replaces
        /// the one before.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Start creates at least this many µs apart (default: each as soon as the one
        /// before was answered and its `step.ready` decoded), so that two hubs whose
        /// answers take different times are measured at the same rate.
        #[arg(long, value_name = "US")]
        period_us: Option<u64>,
    },
    /// W2 throughput: N steps over M agents, each claimed, submitted and completed.
    W2 {
        #[arg(long, default_value_t = 50)]
        agents: usize,
        #[arg(long, default_value_t = 20000)]
        steps: usize,
        /// Concurrent creators.
        #[arg(long, default_value_t = 16)]
        creators: usize,
    },
    /// W3 idle connections: hub RSS per connected, idle agent (once per K).
    W3 {
        #[arg(long, value_delimiter = ',', default_value = "2000,10000")]
        connections: Vec<usize>,
    },
    /// W4 cross-hub latency: W1 with agents on hub B and creates on hub A (needs
    /// --postgres and --redis-url).
    W4 {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        #[arg(long, default_value_t = 5000)]
        steps: usize,
    },
    /// W5 agentd footprint: one real agentd connected and idle.
    W5 {
        #[arg(long, default_value_t = 60)]
        idle_s: u64,
    },
    /// W6 reconnect storm: K agents, hub killed and restarted.
    W6 {
        #[arg(long, default_value_t = 10000)]
        agents: usize,
        /// Steps created before the kill, and again during the reconnect storm.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
    },
    /// Lost-agent detection: time from an agent going silent to its step being pushed to
    /// another assignee.
    Lost {
        /// The hub's --lease-ms (default: the hub's default).
        #[arg(long)]
        lease_ms: Option<u64>,
        /// The hub's --sweep-interval-ms (default: the hub's default).
        #[arg(long)]
        sweep_interval_ms: Option<u64>,
    },
    /// A few seconds of each workload, to keep the code working (CI; no timing checks).
    /// W4 runs when --postgres and --redis-url are given, W5 when agentd is found.
    Smoke,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let exe = std::env::current_exe()?;
    let hub_bin = cli
        .hub_bin
        .unwrap_or_else(|| exe.with_file_name("agenthub"));
    let agentd_bin = cli
        .agentd_bin
        .unwrap_or_else(|| exe.with_file_name("agentd"));
    let (db, mut durability) = match &cli.postgres {
        Some(url) => (
            Db::Postgres(url.clone()),
            format!(
                "PostgreSQL synchronous_commit={}, fsync={}",
                hubproc::pg_setting(url, "synchronous_commit"),
                hubproc::pg_setting(url, "fsync")
            ),
        ),
        None => (Db::Sqlite, "SQLite WAL synchronous=NORMAL".to_string()),
    };
    if !cli.hub_args.is_empty() {
        durability.push_str(&format!("; hub flags: {}", cli.hub_args.join(" ")));
    }
    let smoke = matches!(cli.workload, Workload::Smoke);
    let run = workloads::Run {
        hub_bin,
        agentd_bin,
        db,
        repeats: if smoke { 1 } else { cli.repeats.max(1) },
        redis_url: cli.redis_url,
        durability,
        hub_args: cli.hub_args,
        report: Report::new(cli.out),
    };
    let res = match cli.workload {
        Workload::W1 {
            agents,
            steps,
            trace,
            period_us,
        } => {
            let period = period_us.map(Duration::from_micros);
            workloads::w1(&run, agents, steps, trace.as_deref(), period).await
        }
        Workload::W2 {
            agents,
            steps,
            creators,
        } => workloads::w2(&run, agents, steps, creators).await,
        Workload::W3 { connections } => {
            let mut res = Ok(());
            for k in connections {
                res = workloads::w3(&run, k).await;
                if res.is_err() {
                    break;
                }
            }
            res
        }
        Workload::W4 { agents, steps } => workloads::w4(&run, agents, steps).await,
        Workload::W5 { idle_s } => workloads::w5(&run, idle_s).await,
        Workload::W6 { agents, steps } => workloads::w6(&run, agents, steps).await,
        Workload::Lost {
            lease_ms,
            sweep_interval_ms,
        } => workloads::lost(&run, lease_ms, sweep_interval_ms).await,
        Workload::Smoke => smoke_all(&run).await,
    };
    run.report.print_table();
    res
}

/// Every workload, tiny.
async fn smoke_all(run: &workloads::Run) -> anyhow::Result<()> {
    let trace = tempfile::NamedTempFile::new()?;
    workloads::w1(
        run,
        4,
        40,
        Some(trace.path()),
        Some(Duration::from_millis(2)),
    )
    .await?;
    let lines = std::fs::read_to_string(trace.path())?.lines().count();
    anyhow::ensure!(
        lines == 41,
        "the W1 trace has {lines} lines, not a header and 40 creates"
    );
    workloads::w2(run, 4, 200, 4).await?;
    workloads::w3(run, 50).await?;
    if matches!(run.db, Db::Postgres(_)) && run.redis_url.is_some() {
        workloads::w4(run, 4, 40).await?;
    } else {
        eprintln!("smoke: W4 skipped (needs --postgres and --redis-url)");
    }
    if run.agentd_bin.exists() {
        workloads::w5(run, 2).await?;
    } else {
        eprintln!(
            "smoke: W5 skipped (no agentd at {})",
            run.agentd_bin.display()
        );
    }
    workloads::w6(run, 20, 20).await?;
    workloads::lost(run, Some(1000), Some(200)).await?;
    Ok(())
}
