//! Creates the workspace, an API key and the agents of a run directly in the database
//! (through the hub's own domain code, before the hub starts), which is much faster than
//! the CLI for thousands of agents.

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::store::{Store, StoreOptions};

use crate::hubproc::Database;

pub struct Fixture {
    pub api_key: String,
    /// (agent name, token)
    pub agents: Vec<(String, String)>,
}

impl Fixture {
    pub fn names(&self) -> Vec<String> {
        self.agents.iter().map(|(name, _)| name.clone()).collect()
    }
}

pub async fn create(
    database: &Database,
    n_agents: usize,
    max_concurrency: u32,
) -> anyhow::Result<Fixture> {
    let store = match &database.url {
        Some(url) => Store::connect(
            url,
            &StoreOptions {
                pg_pool_size: 4,
                ..StoreOptions::default()
            },
        )?,
        None => Store::open_data_dir(database.data_dir.path())?,
    };
    store.migrate().await?;
    let workspace = accounts::create_workspace(&store, "bench").await?;
    accounts::add_member(
        &store,
        &workspace.id,
        "bench@example.com",
        None,
        Role::Owner,
    )
    .await?;
    let api_key =
        accounts::create_api_key(&store, &workspace.id, "bench@example.com", Some("bench"))
            .await?
            .secret;
    // Each agent is a teammate's: bound to a member of its own, not to the creator (whose
    // own agents would hear of every task's status changes).
    let mut agents = Vec::with_capacity(n_agents);
    for idx in 0..n_agents {
        let name = format!("a{idx}");
        let owner = format!("{name}@example.com");
        accounts::add_member(&store, &workspace.id, &owner, None, Role::Member).await?;
        let new = NewAgent {
            workspace_id: &workspace.id,
            name: &name,
            owner: &owner,
            capabilities: &[],
            max_concurrency,
        };
        let created = agents::create_agent(&store, new).await?;
        agents.push((name, created.token));
    }
    Ok(Fixture { api_key, agents })
}
