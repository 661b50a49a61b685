//! `agentd login` and `agentd logout`.

use clap::Args;
use serde_json::json;

use crate::cmd::{Ctx, read_secret};
use crate::credentials::{Secret, SecretName};
use crate::error::{Error, Result};
use crate::hub::HubClient;
use crate::tls::HubUrls;

/// Connect this machine to a hub: verify the agent token and store it.
#[derive(Debug, Args)]
pub struct Login {
    /// The agent token (`aha_…`); prompted for (without echo) when not given
    #[arg(long, env = "AGENTD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Login {
    pub async fn run(self, mut ctx: Ctx) -> Result<()> {
        let Some(hub) = ctx.loaded.config.hub.clone() else {
            return Err(Error::config(
                "login needs the hub's URL: `agentd login --hub https://hub.example.com`",
            ));
        };
        let urls = HubUrls::parse(&hub, ctx.loaded.config.insecure)?;
        let token = match self.token {
            Some(token) => Secret::new(&token),
            None => read_secret("agent token (aha_…)")?,
        };
        let client = HubClient::new(urls.clone(), token.clone(), ctx.tls()?)?;
        let me = client.me().await?;
        if me.kind != "agent" {
            return Err(Error::config(
                "this token belongs to a member (an API key), not an agent; ask an admin for an agent token (`agenthub admin agent create`)",
            ));
        }
        let location = ctx.credentials().set(SecretName::AgentToken, &token)?;
        ctx.loaded.config.hub = Some(urls.display());
        ctx.loaded.save()?;
        let agent_name = me.agent_name.clone().unwrap_or_default();
        ctx.print(
            &json!({
                "hub": urls.display(),
                "agent_id": me.agent_id,
                "agent_name": me.agent_name,
                "workspace_id": me.workspace_id,
                "token_stored_in": location.to_string(),
            }),
            || {
                format!(
                    "logged in to {} as agent {agent_name}; the token is stored in {location}\nnext: `agentd run` (or `agentd service install`)",
                    urls.display()
                )
            },
        );
        Ok(())
    }
}

/// Forget the agent token (the hub URL stays in the configuration).
#[derive(Debug, Args)]
pub struct Logout {}

impl Logout {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let removed = ctx.credentials().delete(SecretName::AgentToken)?;
        let places: Vec<String> = removed.iter().map(ToString::to_string).collect();
        ctx.print(&json!({"removed_from": places}), || {
            if places.is_empty() {
                "no agent token was stored".to_string()
            } else {
                format!("agent token removed from {}", places.join(" and "))
            }
        });
        Ok(())
    }
}
