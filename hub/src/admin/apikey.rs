//! `agenthub admin apikey create | list | revoke`.

use clap::Subcommand;
use serde::Serialize;

use crate::accounts;
use crate::admin::{AdminCtx, SHOWN_ONCE, table};
use crate::api::views::timestamp;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an API key for a member; the key is printed once.
    Create {
        #[arg(long)]
        workspace: String,
        /// The member's email or id.
        #[arg(long)]
        member: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List API keys (never their secrets).
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Revoke an API key by id.
    Revoke {
        #[arg(long)]
        workspace: String,
        id: String,
    },
}

#[derive(Serialize)]
struct ApiKeyOut {
    id: String,
    name: String,
    member_id: String,
    prefix: String,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<accounts::ApiKey> for ApiKeyOut {
    fn from(row: accounts::ApiKey) -> Self {
        ApiKeyOut {
            id: row.id,
            name: row.name,
            member_id: row.member_id,
            prefix: row.token_prefix,
            created_at: timestamp(row.created_at),
            last_used_at: row.last_used_at.map(timestamp),
            revoked_at: row.revoked_at.map(timestamp),
        }
    }
}

#[derive(Serialize)]
struct CreatedOut {
    #[serde(flatten)]
    key: ApiKeyOut,
    token: String,
}

impl Command {
    pub async fn run(self, admin: &AdminCtx) -> anyhow::Result<()> {
        let store = &admin.ctx.store;
        match self {
            Command::Create {
                workspace,
                member,
                name,
            } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let created =
                    accounts::create_api_key(store, &workspace_id, &member, name.as_deref())
                        .await?;
                let out = CreatedOut {
                    key: created.key.into(),
                    token: created.secret,
                };
                admin.print(&out, || {
                    format!(
                        "created API key {} for {member}:\n\n    {}\n\n{SHOWN_ONCE}",
                        out.key.id, out.token
                    )
                })
            }
            Command::List { workspace } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let rows: Vec<ApiKeyOut> = accounts::list_api_keys(store, &workspace_id)
                    .await?
                    .into_iter()
                    .map(ApiKeyOut::from)
                    .collect();
                admin.print(&rows, || {
                    table(
                        &["id", "name", "prefix", "last used", "revoked"],
                        rows.iter()
                            .map(|row| {
                                vec![
                                    row.id.clone(),
                                    row.name.clone(),
                                    format!("{}…", row.prefix),
                                    row.last_used_at.clone().unwrap_or_else(|| "never".into()),
                                    row.revoked_at.clone().unwrap_or_default(),
                                ]
                            })
                            .collect(),
                    )
                })
            }
            Command::Revoke { workspace, id } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                accounts::revoke_api_key(store, &workspace_id, &id).await?;
                admin.print(&serde_json::json!({"id": id, "revoked": true}), || {
                    format!("revoked API key {id}")
                })
            }
        }
    }
}
