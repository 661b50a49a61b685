//! `agenthub admin agent create | list | show | revoke-token`.

use clap::Subcommand;
use serde::Serialize;

use crate::admin::{AdminCtx, SHOWN_ONCE, table};
use crate::agents::{self, NewAgent};
use crate::api::views::AgentResponse;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register an agent bound to a member; its token is printed once.
    Create {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        name: String,
        /// The email or id of the member the agent acts for.
        #[arg(long)]
        owner: String,
        /// A capability label; repeat for several.
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        #[arg(long, default_value_t = 1)]
        max_concurrency: u32,
    },
    /// List agents with their presence.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Show one agent.
    Show {
        #[arg(long)]
        workspace: String,
        /// Name or id.
        agent: String,
    },
    /// Revoke every token of an agent (connected sessions are closed).
    RevokeToken {
        #[arg(long)]
        workspace: String,
        /// Name or id.
        agent: String,
        /// Issue a new token after revoking.
        #[arg(long)]
        reissue: bool,
    },
}

#[derive(Serialize)]
struct CreatedOut {
    #[serde(flatten)]
    agent: AgentResponse,
    token: String,
}

fn rows(agents: &[AgentResponse]) -> String {
    table(
        &[
            "name",
            "status",
            "owner",
            "capabilities",
            "max",
            "last seen",
            "id",
        ],
        agents
            .iter()
            .map(|agent| {
                vec![
                    agent.name.clone(),
                    agent.status.clone(),
                    agent.owner.clone(),
                    agent.capabilities.join(","),
                    agent.max_concurrency.to_string(),
                    agent.last_seen_at.clone().unwrap_or_else(|| "never".into()),
                    agent.id.clone(),
                ]
            })
            .collect(),
    )
}

impl Command {
    pub async fn run(self, admin: &AdminCtx) -> anyhow::Result<()> {
        let ctx = &admin.ctx;
        match self {
            Command::Create {
                workspace,
                name,
                owner,
                capabilities,
                max_concurrency,
            } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let new = NewAgent {
                    workspace_id: &workspace_id,
                    name: &name,
                    owner: &owner,
                    capabilities: &capabilities,
                    max_concurrency,
                };
                let created = agents::create_agent(&ctx.store, new).await?;
                let view =
                    agents::get_agent(&ctx.store, &ctx.presence, &workspace_id, &created.agent.id)
                        .await?;
                let out = CreatedOut {
                    agent: view.into(),
                    token: created.token,
                };
                admin.print(&out, || {
                    format!(
                        "created agent {} ({}) for {}; its token:\n\n    {}\n\n{SHOWN_ONCE}",
                        out.agent.name, out.agent.id, out.agent.owner, out.token
                    )
                })
            }
            Command::List { workspace } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let agents: Vec<AgentResponse> =
                    agents::list_agents(&ctx.store, &ctx.presence, &workspace_id)
                        .await?
                        .into_iter()
                        .map(AgentResponse::from)
                        .collect();
                admin.print(&agents, || rows(&agents))
            }
            Command::Show { workspace, agent } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let agent = AgentResponse::from(
                    agents::get_agent(&ctx.store, &ctx.presence, &workspace_id, &agent).await?,
                );
                admin.print(&agent, || rows(std::slice::from_ref(&agent)))
            }
            Command::RevokeToken {
                workspace,
                agent,
                reissue,
            } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let (agent, n_revoked, token) =
                    agents::revoke_tokens(&ctx.store, &workspace_id, &agent, reissue).await?;
                let out = serde_json::json!({"agent_id": agent.id, "name": agent.name, "revoked": n_revoked, "token": token});
                admin.print(&out, || match &token {
                    Some(token) => format!("revoked {n_revoked} token(s) of {}; the new token:\n\n    {token}\n\n{SHOWN_ONCE}", agent.name),
                    None => format!("revoked {n_revoked} token(s) of {}", agent.name),
                })
            }
        }
    }
}
