//! The live agent sessions of this hub, one per agent, which are also the agents'
//! presence on this hub: the gateway registers and removes sessions and kicks them; the
//! domain reads presence and closes the sessions of revoked tokens through
//! [`agents::Presence`](crate::agents::Presence), the only part of the hub this module
//! uses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use agenthub_protocol::close_code;
use tokio::sync::oneshot;

use crate::agents::Presence;

/// Why a session is told to end from outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    pub code: u16,
    pub reason: &'static str,
}

#[derive(Debug)]
struct Entry {
    session_id: u64,
    token_hash: String,
    /// When the session registered (unix milliseconds).
    online_since: i64,
    /// Taken by the first kick; later kicks of the same session are no-ops.
    kick: Option<oneshot::Sender<Kick>>,
}

impl Entry {
    fn kick(&mut self, kick: Kick) {
        if let Some(sender) = self.kick.take() {
            let _already_ending = sender.send(kick);
        }
    }
}

/// The live sessions of this hub, one per agent: a newer session of an agent replaces
/// the older one (closed with `4005`).
#[derive(Debug, Default)]
pub struct Sessions {
    by_agent: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    /// Session tasks not finished yet (including their close handshake).
    running: AtomicUsize,
}

/// Counts a session task as running until dropped.
#[derive(Debug)]
pub struct Running<'a>(&'a Sessions);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A registered session: its id and where kicks arrive.
#[derive(Debug)]
pub struct Registration {
    pub session_id: u64,
    /// Resolves with the reason when the session is told to end from outside (a oneshot:
    /// an idle session costs a few bytes instead of an mpsc block).
    pub kicks: oneshot::Receiver<Kick>,
}

impl Sessions {
    /// Marks a session task as running until the returned guard is dropped.
    pub fn running(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self)
    }

    /// Registers the session of `agent_id` (online from `now_ms`), closing an older one of
    /// the same agent.
    pub fn register(&self, agent_id: &str, token_hash: &str, now_ms: i64) -> Registration {
        let session_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (kick, kicks) = oneshot::channel();
        let old = self.by_agent.lock().expect("sessions lock").insert(
            agent_id.to_string(),
            Entry {
                session_id,
                token_hash: token_hash.to_string(),
                online_since: now_ms,
                kick: Some(kick),
            },
        );
        if let Some(mut old) = old {
            old.kick(Kick {
                code: close_code::SUPERSEDED,
                reason: "a newer session of this agent replaced this one",
            });
        }
        Registration { session_id, kicks }
    }

    /// Removes the session; true when it was still the agent's current one.
    pub fn unregister(&self, agent_id: &str, session_id: u64) -> bool {
        let mut by_agent = self.by_agent.lock().expect("sessions lock");
        match by_agent.get(agent_id) {
            Some(entry) if entry.session_id == session_id => {
                by_agent.remove(agent_id);
                true
            }
            _ => false,
        }
    }

    /// Session tasks not finished yet.
    pub fn n_running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The agents with a session on this hub.
    pub fn agent_ids(&self) -> Vec<String> {
        self.by_agent
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.by_agent.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends the sessions authenticated by one of `token_hashes`; returns how many.
    pub fn kick_tokens(&self, token_hashes: &[String], kick: Kick) -> usize {
        let mut by_agent = self.by_agent.lock().expect("sessions lock");
        let mut n_kicked = 0;
        for entry in by_agent.values_mut() {
            if token_hashes.contains(&entry.token_hash) {
                entry.kick(kick);
                n_kicked += 1;
            }
        }
        n_kicked
    }

    /// Ends every session (hub shutdown: `1001`, reconnect elsewhere).
    pub fn kick_all(&self, kick: Kick) {
        for entry in self.by_agent.lock().expect("sessions lock").values_mut() {
            entry.kick(kick);
        }
    }
}

impl Presence for Sessions {
    fn last_seen(&self, agent_id: &str) -> Option<i64> {
        self.by_agent
            .lock()
            .expect("sessions lock")
            .get(agent_id)
            .map(|entry| entry.online_since)
    }

    /// Ends the sessions of revoked tokens at once (`4001`).
    fn close_revoked(&self, token_hashes: &[String]) -> usize {
        self.kick_tokens(
            token_hashes,
            Kick {
                code: close_code::TOKEN_REVOKED,
                reason: "the agent token was revoked",
            },
        )
    }
}
