//! `agentd`: the teammate's agent daemon and CLI.

use clap::Parser;

/// AgentHub agent daemon: holds one connection to the hub and executes the steps pushed
/// to this machine's agent.
#[derive(Debug, Parser)]
#[command(name = "agentd", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("agentd: the daemon is not built yet; see the README for what runs today");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
