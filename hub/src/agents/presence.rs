//! Which agents have a live session on this hub. Presence is the existence of a session;
//! the gateway registers and removes them.

use std::collections::HashMap;
use std::sync::RwLock;

/// Online agents of this hub process, with the time they were last heard from.
#[derive(Debug, Default)]
pub struct Presence {
    online: RwLock<HashMap<String, i64>>,
}

impl Presence {
    pub fn set_online(&self, agent_id: &str, now_ms: i64) {
        self.online
            .write()
            .expect("presence lock")
            .insert(agent_id.to_string(), now_ms);
    }

    pub fn set_offline(&self, agent_id: &str) {
        self.online.write().expect("presence lock").remove(agent_id);
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        self.online
            .read()
            .expect("presence lock")
            .contains_key(agent_id)
    }

    /// When the agent was last heard from, if it is online.
    pub fn last_seen(&self, agent_id: &str) -> Option<i64> {
        self.online
            .read()
            .expect("presence lock")
            .get(agent_id)
            .copied()
    }
}
