//! `agentd run`: the daemon in the foreground, logging to stderr.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cmd::Ctx;
use crate::control;
use crate::credentials::SecretName;
use crate::daemon::{self, Core, OnceResult, RunOptions};
use crate::error::{Error, Result};
use crate::executor::full_text::HubAccess;
use crate::executor::manual::Waiters;
use crate::executor::{ClaudeKey, Executors, Source};
use crate::notify::NotifyOptions;
use crate::state::State;

/// Connect to the hub and execute this agent's steps until stopped (Ctrl-C)
#[derive(Debug, Args)]
pub struct Run {
    /// Exit after one step's result is delivered (exit code 7 if the step failed)
    #[arg(long)]
    pub once: bool,
    /// No desktop notifications (also `notify = false` in config.toml)
    #[arg(long)]
    pub no_notify: bool,
}

impl Run {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let urls = ctx.hub_urls()?;
        let token = ctx.token()?;
        // Root certificates and the crypto provider are loaded only for a TLS hub: an
        // idle daemon on a loopback hub stays smaller.
        let tls = match urls.websocket.scheme() {
            "wss" => Some(ctx.tls()?),
            _ => None,
        };
        let config = &ctx.loaded.config;
        let claude_key = ctx
            .credentials()
            .get(SecretName::ClaudeKey)?
            .map(|(key, _)| key);
        let state = State::open(&ctx.loaded.paths.state_dir, &ctx.loaded.paths.work_root())?;
        let waiters = Waiters::default();
        let executors = Executors {
            config: Arc::new(config.clone()),
            config_file: ctx.loaded.paths.config_file.clone(),
            claude_key: ClaudeKey::new(claude_key, Some(ctx.credentials())),
            manual: waiters.clone(),
            hub: Some(HubAccess::new(
                urls.clone(),
                token.clone(),
                config.ca_cert.clone(),
            )),
        };
        let unnamed = executors.for_unnamed();
        match unnamed.source {
            Source::Fallback => tracing::warn!(
                "no Claude API key: steps that name no executor will fail until you run `agentd key set` (or set ANTHROPIC_API_KEY, or default_executor in config.toml)"
            ),
            _ => tracing::info!(
                executor = unnamed.name,
                "steps that name no executor run with `{}`",
                unnamed.name
            ),
        }
        let mut core = Core::new(
            &urls.display(),
            state,
            executors,
            config.max_concurrency,
            config.capabilities.clone(),
            Duration::from_secs(config.step_timeout_secs),
            self.once,
        )?;
        core.resume_uploads();
        if config.notify && !self.no_notify {
            core.start_notifier(NotifyOptions {
                action_timeout: Duration::from_secs(config.claude.ask_timeout_secs.max(3600)),
                hub: core.executors.hub.clone(),
            });
        }
        let control = control::serve(
            &ctx.loaded.paths.control_socket(),
            core.status.clone(),
            waiters,
        )?;
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
        tracing::info!(hub = %urls.display(), pid = std::process::id(), "agentd starting");
        let options = RunOptions {
            urls,
            token,
            tls,
            max_concurrency: config.max_concurrency,
            capabilities: config.capabilities.clone(),
            step_timeout: Duration::from_secs(config.step_timeout_secs),
            once: self.once,
        };
        let result = daemon::run(options, core, shutdown).await;
        control.abort();
        signals.abort();
        let _ = std::fs::remove_file(ctx.loaded.paths.control_socket());
        match result? {
            Some(OnceResult::Failed(reason)) => Err(Error::StepFailed(reason)),
            Some(OnceResult::Submitted(status)) => {
                ctx.print(&serde_json::json!({"status": status}), || {
                    format!("step delivered; it is {status}")
                });
                Ok(())
            }
            None => Ok(()),
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
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
    tracing::info!("stopping");
    shutdown.cancel();
}
