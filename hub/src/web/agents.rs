//! The agents of the workspace: owner, state, last seen, what each holds; the signed-in
//! member's own agents first.

use askama::Template;
use axum::extract::State;

use crate::agents;
use crate::api::AppState;
use crate::web::{Layout, Page, PageResult, render, when};

pub struct AgentRow {
    pub name: String,
    pub owner: String,
    pub mine: bool,
    pub state: &'static str,
    pub last_seen: String,
    pub capabilities: String,
    pub max_concurrency: i32,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    layout: Layout,
    rows: Vec<AgentRow>,
}

/// `GET /agents`.
pub async fn list(State(ctx): State<AppState>, page: Page) -> PageResult {
    let actor = page.actor();
    let views = agents::list_agents(&ctx.store, &ctx.presence, actor.workspace_id()).await?;
    let mut rows: Vec<AgentRow> = views
        .into_iter()
        .map(|view| AgentRow {
            mine: view.agent.owner_member_id == actor.member_id(),
            capabilities: view.agent.capability_list().join(", "),
            max_concurrency: view.agent.max_concurrency,
            name: view.agent.name,
            owner: view.owner_email,
            state: view.state.as_str(),
            last_seen: view
                .last_seen_at
                .map(when)
                .unwrap_or_else(|| "never".into()),
        })
        .collect();
    // Stable: the registry's order within each group.
    rows.sort_by_key(|row| !row.mine);
    render(&AgentsPage {
        layout: Layout::new(&page, "Agents", "agents"),
        rows,
    })
}
