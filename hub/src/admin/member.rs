//! `agenthub admin member add | list | remove | login-link`.

use clap::Subcommand;
use serde::Serialize;

use crate::accounts::{self, Role, signin};
use crate::admin::{AdminCtx, table};
use crate::api::views::timestamp;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a member to a workspace.
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// owner, admin or member.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// List the members of a workspace.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Remove a member (their API keys and agents go too).
    Remove {
        #[arg(long)]
        workspace: String,
        /// Email or id.
        member: String,
    },
    /// Print a one-time sign-in link to the dashboard for a member (valid 10 minutes,
    /// usable once).
    LoginLink {
        #[arg(long)]
        workspace: String,
        /// The member's email or id.
        #[arg(long)]
        email: String,
        /// The hub's base URL as people reach it (default: the URL of AGENTHUB_LISTEN,
        /// else http://127.0.0.1:7700).
        #[arg(long, env = "AGENTHUB_PUBLIC_URL")]
        public_url: Option<String>,
    },
}

#[derive(Serialize)]
struct LoginLinkOut {
    url: String,
    email: String,
    expires_at: String,
}

#[derive(Serialize)]
struct MemberOut {
    id: String,
    email: String,
    name: String,
    role: String,
    created_at: String,
}

impl From<accounts::Member> for MemberOut {
    fn from(row: accounts::Member) -> Self {
        MemberOut {
            id: row.id,
            email: row.email,
            name: row.name,
            role: row.role,
            created_at: timestamp(row.created_at),
        }
    }
}

impl Command {
    pub async fn run(self, admin: &AdminCtx) -> anyhow::Result<()> {
        let store = &admin.ctx.store;
        match self {
            Command::Add {
                workspace,
                email,
                name,
                role,
            } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let role: Role = role.parse()?;
                let member = MemberOut::from(
                    accounts::add_member(store, &workspace_id, &email, name.as_deref(), role)
                        .await?,
                );
                admin.print(&member, || {
                    format!("added {} as {} ({})", member.email, member.role, member.id)
                })
            }
            Command::List { workspace } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let rows: Vec<MemberOut> = accounts::list_members(store, &workspace_id)
                    .await?
                    .into_iter()
                    .map(MemberOut::from)
                    .collect();
                admin.print(&rows, || {
                    table(
                        &["email", "name", "role", "id"],
                        rows.iter()
                            .map(|row| {
                                vec![
                                    row.email.clone(),
                                    row.name.clone(),
                                    row.role.clone(),
                                    row.id.clone(),
                                ]
                            })
                            .collect(),
                    )
                })
            }
            Command::Remove { workspace, member } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let removed = MemberOut::from(
                    accounts::remove_member(&admin.ctx, None, &workspace_id, &member).await?,
                );
                admin.print(&removed, || format!("removed {}", removed.email))
            }
            Command::LoginLink {
                workspace,
                email,
                public_url,
            } => {
                let workspace_id = admin.workspace_id(&workspace).await?;
                let link = signin::create_link(store, &workspace_id, &email).await?;
                let base = public_url.unwrap_or_else(default_public_url);
                let out = LoginLinkOut {
                    url: format!("{}{}", base.trim_end_matches('/'), link.path()),
                    email: link.member_email,
                    expires_at: timestamp(link.expires_at),
                };
                admin.print(&out, || {
                    format!(
                        "{}\n(sign-in link for {}, usable once until {})",
                        out.url, out.email, out.expires_at
                    )
                })
            }
        }
    }
}

/// The URL of `AGENTHUB_LISTEN` when it is set and valid, else the default listen
/// address's.
fn default_public_url() -> String {
    std::env::var("AGENTHUB_LISTEN")
        .ok()
        .and_then(|listen| listen.parse().ok())
        .map(|listen| crate::config::public_url_of("http", listen))
        .unwrap_or_else(|| crate::ctx::DEFAULT_PUBLIC_URL.to_string())
}
