//! `agentd`: the teammate's agent daemon and CLI.

use std::io::IsTerminal;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use agentd::cmd::{self, Ctx};
use agentd::config::{GlobalArgs, Loaded, LogFormat};
use agentd::error::exit_code;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  bad command line
  3  bad or missing configuration, not logged in, or agentd not running
  4  the hub rejected the agent token (or another instance replaced this one)
  5  the hub could not be reached
  6  the hub refused the request (not found, forbidden, conflict, invalid)
  7  run --once: the step failed

Environment: AGENTD_HUB, AGENTD_TOKEN, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL,
AGENTD_CREDENTIAL_STORE (auto|keyring|file), AGENTD_LOG (log filter, e.g. debug),
AGENTD_LOG_FORMAT (text|json), NO_COLOR.";

/// agentd holds one connection to your team's AgentHub hub, executes the steps pushed
/// to your agent on this machine (with your own Claude API key, which never leaves it),
/// and lets you approve, answer and create work from the command line.
#[derive(Debug, Parser)]
#[command(name = "agentd", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect this machine to a hub: `agentd login --hub URL [--token aha_…]`
    Login(cmd::login::Login),
    /// Forget the stored agent token
    Logout(cmd::login::Logout),
    /// Manage the Claude API key kept on this machine
    #[command(subcommand)]
    Key(cmd::key::Command),
    /// Run the daemon in the foreground (logs to stderr)
    Run(cmd::run::Run),
    /// Show the hub, connection state, current steps and last seq
    Status(cmd::status::Status),
    /// Show what waits for you and what you should know; `agentd inbox read ID|--all`
    Inbox(cmd::inbox::Inbox),
    /// Approve a step's result, or allow a tool call waiting for you
    Approve(cmd::approve::Approve),
    /// Reject a step's result with a comment, or refuse a waiting tool call
    Reject(cmd::approve::Reject),
    /// Answer a question from a blocked step
    Answer(cmd::approve::Answer),
    /// Open the hub's dashboard in the browser, signed in with a one-time link
    Dashboard(cmd::dashboard::Dashboard),
    /// Run a failed or skipped step again: `agentd retry STEP_ID [--reason …]`
    Retry(cmd::retry::Retry),
    /// Finish a manual step: `agentd done STEP_ID --result …`
    Done(cmd::done::Done),
    /// List tasks with their progress
    Tasks(cmd::task::Tasks),
    /// Create a task, or show one with its steps and timeline
    #[command(subcommand)]
    Task(cmd::task::Command),
    /// Run agentd in the background (systemd user unit, launchd agent)
    #[command(subcommand)]
    Service(cmd::service::Command),
    /// The MCP permission server Claude Code starts for a claude-code step
    #[command(hide = true)]
    McpPermission(cmd::mcp::McpPermission),
    /// Print shell completions: `agentd completions bash > /etc/bash_completion.d/agentd`
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Run(_)) {
        "agentd=info"
    } else {
        "agentd=warn"
    };
    let filter =
        EnvFilter::try_from_env("AGENTD_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    match cli.global.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    let code = match run(cli).await {
        Ok(()) => exit_code::OK,
        Err(err) => {
            eprintln!("agentd: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> agentd::Result<()> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "agentd", &mut std::io::stdout());
        return Ok(());
    }
    // Started by Claude Code: needs no configuration.
    if let Command::McpPermission(server) = cli.command {
        return server.run().await;
    }
    let ctx = Ctx {
        loaded: Loaded::load(&cli.global)?,
    };
    match cli.command {
        Command::Login(login) => login.run(ctx).await,
        Command::Logout(logout) => logout.run(ctx).await,
        Command::Key(key) => key.run(ctx).await,
        Command::Run(run) => run.run(ctx).await,
        Command::Status(status) => status.run(ctx).await,
        Command::Inbox(inbox) => inbox.run(ctx).await,
        Command::Approve(approve) => approve.run(ctx).await,
        Command::Reject(reject) => reject.run(ctx).await,
        Command::Answer(answer) => answer.run(ctx).await,
        Command::Dashboard(dashboard) => dashboard.run(ctx).await,
        Command::Retry(retry) => retry.run(ctx).await,
        Command::Done(done) => done.run(ctx).await,
        Command::Tasks(tasks) => tasks.run(ctx).await,
        Command::Task(task) => task.run(ctx).await,
        Command::Service(service) => service.run(ctx).await,
        Command::Completions { .. } | Command::McpPermission(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
