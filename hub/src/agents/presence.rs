//! Which agents have a live session on this hub, as the domain reads it. Presence is the
//! existence of a session: the gateway's registry of sessions implements [`Presence`].

use std::fmt::Debug;

/// This hub's live agent sessions, as the domain sees them.
pub trait Presence: Debug + Send + Sync {
    /// When the agent's session on this hub opened (unix milliseconds), if it has one.
    fn last_seen(&self, agent_id: &str) -> Option<i64>;

    /// Whether the agent has a session on this hub.
    fn is_online(&self, agent_id: &str) -> bool {
        self.last_seen(agent_id).is_some()
    }

    /// Ends at once (`4001`) this hub's sessions authenticated by one of `token_hashes`,
    /// which were revoked; returns how many.
    fn close_revoked(&self, token_hashes: &[String]) -> usize;
}

/// A shared registry is read as the registry itself (`&ctx.presence` where a
/// `&dyn Presence` is asked for).
impl<P: Presence + ?Sized> Presence for std::sync::Arc<P> {
    fn last_seen(&self, agent_id: &str) -> Option<i64> {
        (**self).last_seen(agent_id)
    }

    fn is_online(&self, agent_id: &str) -> bool {
        (**self).is_online(agent_id)
    }

    fn close_revoked(&self, token_hashes: &[String]) -> usize {
        (**self).close_revoked(token_hashes)
    }
}
