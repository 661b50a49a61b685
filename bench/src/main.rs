//! `agenthub-bench`: runs the shared workloads (DESIGN section 10) against real hub
//! processes with simulated agents over real WebSockets (MessagePack), and prints a table
//! and one JSON line per workload and repeat in the format of the peer benchmarks.

mod agent;
mod hubproc;
mod setup;
mod workloads;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::hubproc::Db;

#[derive(Debug, Parser)]
#[command(name = "agenthub-bench", about)]
struct Cli {
    /// The hub binary (default: `agenthub` next to this binary).
    #[arg(long, global = true)]
    hub_bin: Option<PathBuf>,
    /// Run on PostgreSQL (a fresh database on this server) instead of SQLite.
    #[arg(long, global = true)]
    postgres: Option<String>,
    /// Repeats per workload (a fresh hub each).
    #[arg(long, global = true, default_value_t = 3)]
    repeats: usize,
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
    /// W3 idle connections: hub RSS per connected, idle agent.
    W3 {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
    },
    /// A few seconds of each workload, to keep the code working (CI).
    Smoke,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hub_bin = match cli.hub_bin {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("agenthub"),
    };
    let db = match &cli.postgres {
        Some(url) => Db::Postgres(url.clone()),
        None => Db::Sqlite,
    };
    let run = workloads::Run {
        hub_bin,
        db,
        repeats: cli.repeats,
        out: cli.out,
    };
    match cli.workload {
        Workload::W1 { agents, steps } => workloads::w1(&run, agents, steps).await?,
        Workload::W2 {
            agents,
            steps,
            creators,
        } => workloads::w2(&run, agents, steps, creators).await?,
        Workload::W3 { connections } => workloads::w3(&run, connections).await?,
        Workload::Smoke => {
            let run = workloads::Run { repeats: 1, ..run };
            workloads::w1(&run, 4, 40).await?;
            workloads::w2(&run, 4, 200, 4).await?;
            workloads::w3(&run, 50).await?;
        }
    }
    Ok(())
}
