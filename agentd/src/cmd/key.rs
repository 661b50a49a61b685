//! `agentd key set|status|clear`: the Claude API key, kept on this machine only.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cmd::{Ctx, read_secret};
use crate::credentials::SecretName;
use crate::error::Result;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store the Claude API key (read without echo, or from stdin)
    Set(Set),
    /// Say where the key is stored (never the key)
    Status,
    /// Remove the stored key
    Clear,
}

#[derive(Debug, Args)]
pub struct Set {}

impl Command {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let credentials = ctx.credentials();
        match self {
            Command::Set(Set {}) => {
                let key = read_secret("Claude API key (sk-ant-…)")?;
                let location = credentials.set(SecretName::ClaudeKey, &key)?;
                ctx.print(&json!({"stored_in": location.to_string()}), || {
                    format!("Claude API key stored in {location}")
                });
            }
            Command::Status => {
                let found = credentials.get(SecretName::ClaudeKey)?;
                let location = found.as_ref().map(|(_, location)| location.to_string());
                ctx.print(
                    &json!({"present": location.is_some(), "stored_in": location}),
                    || match &location {
                        Some(location) => format!("a Claude API key is set, from {location}"),
                        None => {
                            "no Claude API key; run `agentd key set` (or set ANTHROPIC_API_KEY)"
                                .to_string()
                        }
                    },
                );
            }
            Command::Clear => {
                let removed = credentials.delete(SecretName::ClaudeKey)?;
                let places: Vec<String> = removed.iter().map(ToString::to_string).collect();
                ctx.print(&json!({"removed_from": places}), || {
                    if places.is_empty() {
                        "no Claude API key was stored".to_string()
                    } else {
                        format!("Claude API key removed from {}", places.join(" and "))
                    }
                });
            }
        }
        Ok(())
    }
}
