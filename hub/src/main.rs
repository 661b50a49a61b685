//! `agenthub`: serve the hub, apply migrations, administer workspaces.

use std::io::IsTerminal;

use clap::{CommandFactory, Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use agenthub::admin::{self, AdminArgs};
use agenthub::api;
use agenthub::config::{DbArgs, ServeArgs};
use agenthub::ctx::Ctx;

/// AgentHub: tasks, steps and approvals for a team of people and their agents.
#[derive(Debug, Parser)]
#[command(name = "agenthub", version, about)]
struct Cli {
    /// Log lines on stderr: text (colours only on a terminal and without NO_COLOR) or
    /// json, one object a line
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "AGENTHUB_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line (for log shippers and the journal).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (applies pending migrations first).
    Serve {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage workspaces, members, API keys, agents and tasks.
    Admin(AdminArgs),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

/// mimalloc instead of the system allocator: glibc's `malloc` and `free` were ~12 % of the
/// hub's CPU on the W2 benchmark (docs/benchmarks.md, eighth wave).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The server logs its life; one-shot commands only say what went wrong.
    let default_filter = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter =
        EnvFilter::try_from_env("AGENTHUB_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match cli.log_format {
        LogFormat::Json => lines.json().boxed(),
        // Escape codes only where a person reads them: not in files, pipes or the journal.
        LogFormat::Text => lines
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(payload_ceiling())
        .init();
    if let Err(err) = run(cli).await {
        eprintln!("agenthub: {err:#}");
        std::process::exit(1);
    }
}

/// The most a library may log, whatever `AGENTHUB_LOG` asks: below these levels the
/// libraries log request payloads (task texts, frames), which may hold secrets.
fn payload_ceiling() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        // Every statement with its parameters, at debug.
        .with_target("tokio_postgres", LevelFilter::INFO)
        // Every WebSocket frame with its payload, at trace.
        .with_target("tungstenite", LevelFilter::DEBUG)
        .with_target("tokio_tungstenite", LevelFilter::DEBUG)
        // HTTP/2 header fields (the bearer token among them), at trace.
        .with_target("h2", LevelFilter::DEBUG)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { db, serve } => serve_hub(db, *serve).await,
        Command::Migrate { db } => {
            let store = db.open_store()?;
            let applied = store.migrate().await?;
            println!("applied {} migration(s)", applied.len());
            Ok(())
        }
        Command::Admin(args) => admin::run(args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "agenthub",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

async fn serve_hub(db: DbArgs, serve: ServeArgs) -> anyhow::Result<()> {
    let data_dir = db.data_dir()?;
    let store = db.open_store()?;
    store.migrate().await?;
    // Interrupted uploads of earlier runs (of this hub or another sharing the file store).
    if let Err(err) =
        agenthub::files::remove_orphans(&store, &data_dir, agenthub::files::ORPHAN_GRACE).await
    {
        tracing::warn!(error = %err, "cannot clean left-over uploads");
    }
    let mut ctx = Ctx::new(store, serve.settings(data_dir.clone()));
    if let Some(url) = &serve.redis_url {
        ctx = ctx
            .with_redis(&url.0, "agenthub:")
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(api::load_tls(cert, key).await.map_err(|err| {
            anyhow::anyhow!(
                "cannot load TLS certificate {} / key {}: {err}",
                cert.display(),
                key.display()
            )
        })?),
        _ => None,
    };
    let listener = std::net::TcpListener::bind(serve.listen)
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", serve.listen))?;
    let backend = match &db.database_url {
        Some(_) => "postgres".to_string(),
        None => format!("sqlite in {}", data_dir.display()),
    };
    tracing::info!(listen = %serve.listen, backend, tls = tls.is_some(), "agenthub serving");
    let sweeper = tokio::spawn(api::run_sweeper(
        ctx.clone(),
        std::time::Duration::from_millis(serve.sweep_interval_ms),
    ));
    let stop_webhooks = tokio_util::sync::CancellationToken::new();
    let webhooks = tokio::spawn(agenthub::webhooks::deliver::run_worker(
        ctx.clone(),
        stop_webhooks.clone(),
    ));
    let stop_a2a = tokio_util::sync::CancellationToken::new();
    let a2a = tokio::spawn(agenthub::a2a::delegate::run_worker(
        ctx.clone(),
        stop_a2a.clone(),
    ));
    match tls {
        Some(tls) => {
            api::serve_tls_with_listener(
                listener,
                ctx,
                tls,
                shutdown_signal(),
                std::time::Duration::from_secs(10),
            )
            .await?
        }
        None => {
            listener.set_nonblocking(true)?;
            api::serve_with_listener(TcpListener::from_std(listener)?, ctx, shutdown_signal())
                .await?;
        }
    }
    sweeper.abort();
    // The worker gives its webhooks' leases up, so another hub goes on at once.
    stop_webhooks.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(5), webhooks)
        .await
        .is_err()
    {
        tracing::warn!("the webhook worker did not stop in time; its leases expire");
    }
    // The A2A worker gives its calls up, so another hub follows them at once.
    stop_a2a.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(5), a2a)
        .await
        .is_err()
    {
        tracing::warn!("the A2A worker did not stop in time; its calls expire");
    }
    tracing::info!("agenthub stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
