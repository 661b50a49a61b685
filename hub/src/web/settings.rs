//! Workspace settings: for owners and admins, the members and their roles and every API
//! key and agent; for a member, their own API keys and agents. A created API key's
//! secret is shown once, on the page that answers the form.

use askama::Template;
use axum::extract::{Path, State};

use crate::accounts::authority::Scopes;
use crate::accounts::{self, NewApiKey, Role};
use crate::agents;
use crate::api::AppState;
use crate::error::Error;
use crate::web::home::in_page;
use crate::web::webhooks::WebhookRow;
use crate::web::{Layout, Page, PageForm, PageResult, render, see_other, when};

pub struct MemberRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub owner: String,
    pub scopes: String,
    pub last_used: String,
    pub revoked: bool,
}

pub struct AgentRow {
    pub name: String,
    pub owner: String,
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    is_admin: bool,
    members: Vec<MemberRow>,
    keys: Vec<KeyRow>,
    agents: Vec<AgentRow>,
    /// A key created by the form just sent: its secret, shown this once.
    new_secret: String,
    /// The webhooks of the workspace (owners and admins).
    webhooks: Vec<WebhookRow>,
    /// A webhook created by the form just sent: its signing secret, shown this once.
    new_webhook_secret: String,
}

/// `GET /settings`.
pub async fn show(State(ctx): State<AppState>, page: Page) -> PageResult {
    settings_page(&ctx, &page, String::new(), String::new()).await
}

/// The settings page showing a just-created webhook's signing secret.
pub async fn page_with_webhook_secret(ctx: &AppState, page: &Page, secret: String) -> PageResult {
    settings_page(ctx, page, String::new(), secret).await
}

async fn settings_page(
    ctx: &AppState,
    page: &Page,
    new_secret: String,
    new_webhook_secret: String,
) -> PageResult {
    let actor = page.actor();
    let is_admin = page.is_admin();
    let members = accounts::list_members(&ctx.store, actor.workspace_id()).await?;
    let email_of = |member_id: &str| {
        members
            .iter()
            .find(|member| member.id == member_id)
            .map(|member| member.email.clone())
            .unwrap_or_default()
    };
    let keys = accounts::list_api_keys_for(&ctx.store, actor)
        .await?
        .into_iter()
        .map(|key| KeyRow {
            owner: email_of(&key.member_id),
            scopes: Scopes::from_stored(&key.scopes).names().join(", "),
            last_used: key.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            revoked: key.revoked_at.is_some(),
            id: key.id,
            name: key.name,
            prefix: key.token_prefix,
        })
        .collect();
    let agents = agents::list_agents(&ctx.store, &ctx.presence, actor.workspace_id())
        .await?
        .into_iter()
        .filter(|view| is_admin || view.agent.owner_member_id == actor.member_id())
        .map(|view| AgentRow {
            name: view.agent.name,
            owner: view.owner_email,
            state: view.state.as_str(),
        })
        .collect();
    let members = if is_admin {
        members
            .iter()
            .map(|member| MemberRow {
                id: member.id.clone(),
                email: member.email.clone(),
                name: member.name.clone(),
                role: member.role.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    render(&SettingsPage {
        // Forms to fill in and a secret shown once: no live refresh.
        layout: Layout::new(page, "Settings", "settings").live(String::new()),
        is_admin,
        members,
        keys,
        agents,
        new_secret,
        webhooks: super::webhooks::rows(ctx, page).await?,
        new_webhook_secret,
    })
}

/// `POST /settings/api-keys` (field `name`): creates an API key of the member's own with
/// every scope and shows its secret once.
pub async fn create_key(State(ctx): State<AppState>, form: PageForm) -> PageResult {
    let name = Some(form.field("name")).filter(|name| !name.is_empty());
    let created = accounts::create_own_api_key(
        &ctx.store,
        form.page.actor(),
        NewApiKey {
            name,
            scopes: Scopes::ALL,
            expires_at: None,
        },
    )
    .await
    .map_err(in_page(&form.page))?;
    settings_page(&ctx, &form.page, created.secret, String::new()).await
}

/// `POST /settings/api-keys/{id}/revoke`.
pub async fn revoke_key(
    State(ctx): State<AppState>,
    Path(key_id): Path<String>,
    form: PageForm,
) -> PageResult {
    accounts::revoke_api_key_as(&ctx.store, form.page.actor(), &key_id)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other("/settings"))
}

/// `POST /settings/members/{id}/role` (field `role`): owners and admins only.
pub async fn change_role(
    State(ctx): State<AppState>,
    Path(member_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let role: Role = form
        .field("role")
        .parse()
        .map_err(|err: Error| in_page(&form.page)(err))?;
    accounts::change_role(&ctx.store, form.page.actor(), &member_id, role)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other("/settings"))
}
