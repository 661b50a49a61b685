//! The teammate commands, one module per command of `agentd --help`.

pub mod approve;
pub mod dashboard;
pub mod done;
pub mod inbox;
pub mod key;
pub mod login;
pub mod mcp;
pub mod retry;
pub mod run;
pub mod service;
pub mod status;
pub mod task;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use serde::Serialize;

use crate::config::Loaded;
use crate::credentials::{Credentials, Secret, SecretName};
use crate::error::{Error, Result};
use crate::hub::HubClient;
use crate::tls::{self, HubUrls};

/// What every command gets: the loaded configuration.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub loaded: Loaded,
}

impl Ctx {
    /// The secret stores.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            self.loaded.config.credential_store,
            &self.loaded.paths.credentials_file(),
        )
    }

    /// The configured hub's URLs.
    pub fn hub_urls(&self) -> Result<HubUrls> {
        HubUrls::parse(self.loaded.hub()?, self.loaded.config.insecure)
    }

    /// The TLS configuration (system roots plus the configured CA).
    pub fn tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        tls::client_config(self.loaded.config.ca_cert.as_deref())
    }

    /// The stored agent token, or the error telling the user to log in.
    pub fn token(&self) -> Result<Secret> {
        match self.credentials().get(SecretName::AgentToken)? {
            Some((token, _)) => Ok(token),
            None => Err(Error::config(
                "no agent token stored; run `agentd login --hub URL` (or set AGENTD_TOKEN)",
            )),
        }
    }

    /// A REST client for the configured hub and token.
    pub fn hub(&self) -> Result<HubClient> {
        HubClient::new(self.hub_urls()?, self.token()?, self.tls()?)
    }

    /// Prints `value` as JSON with `--json`, else the human text.
    pub fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.loaded.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("output values encode")
            );
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }
}

/// Reads a secret: from a prompt without echo on a terminal, else one line of stdin.
pub fn read_secret(prompt: &str) -> Result<Secret> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
        let line = read_line_without_echo()?;
        eprintln!();
        line
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line
    };
    let secret = Secret::new(&line);
    if secret.expose().is_empty() {
        return Err(Error::config("nothing was entered"));
    }
    Ok(secret)
}

#[cfg(unix)]
fn read_line_without_echo() -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let original = tcgetattr(&stdin).map_err(|err| Error::other(format!("terminal: {err}")))?;
    let mut silent = original.clone();
    silent.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &silent)
        .map_err(|err| Error::other(format!("terminal: {err}")))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &original);
    read?;
    Ok(line)
}

#[cfg(not(unix))]
fn read_line_without_echo() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line)
}
