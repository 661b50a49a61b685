//! The durable event outbox: every state change writes its events here in the same
//! transaction, one row per audience (an agent or a member), numbered by a per-audience
//! gap-free `seq`. Pushes, replays and `GET /v1/events` all read from here.

pub mod model;

use std::collections::HashMap;
use std::sync::Arc;

use agenthub_protocol::ServerFrame;

use crate::bus::Notice;
use crate::error::{Error, Result};
use crate::store::{Db, Store, now_ms};

pub use model::EventRow;

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    Agent(String),
    Member(String),
}

impl Audience {
    pub fn id(&self) -> &str {
        match self {
            Audience::Agent(id) | Audience::Member(id) => id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Audience::Agent(_) => "agent",
            Audience::Member(_) => "member",
        }
    }
}

/// Events collected during one transaction. [`Outbox::flush`] writes them (still inside
/// the transaction); after the commit the caller publishes [`Outbox::into_notices`].
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<(Audience, ServerFrame)>,
    written: Vec<Notice>,
}

impl Outbox {
    /// Queues `frame` for `audience`; its `seq` is assigned by [`Outbox::flush`].
    pub fn push(&mut self, audience: Audience, frame: ServerFrame) {
        self.pending.push((audience, frame));
    }

    /// Queues the same frame for several audiences.
    pub fn push_all<'a>(
        &mut self,
        audiences: impl IntoIterator<Item = &'a Audience>,
        frame: &ServerFrame,
    ) {
        for audience in audiences {
            self.pending.push((audience.clone(), frame.clone()));
        }
    }

    /// Assigns sequence numbers and writes the queued events. Call it last in the
    /// transaction; one counter update and one insert per audience.
    pub async fn flush(&mut self, db: &mut Db<'_>, workspace_id: &str) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut by_audience: HashMap<Audience, Vec<ServerFrame>> = HashMap::new();
        let mut order: Vec<Audience> = Vec::new();
        for (audience, frame) in self.pending.drain(..) {
            let frames = by_audience.entry(audience.clone()).or_default();
            if frames.is_empty() {
                order.push(audience);
            }
            frames.push(frame);
        }
        let now = now_ms();
        let mut rows = Vec::new();
        // A fixed order of counter updates keeps concurrent transactions from deadlocking.
        order.sort_by(|left, right| left.id().cmp(right.id()));
        for audience in order {
            let frames = by_audience.remove(&audience).unwrap_or_default();
            let first = model::reserve_seqs(db, audience.id(), frames.len() as i64).await?;
            for (offset, mut frame) in frames.into_iter().enumerate() {
                let seq = first + offset as i64;
                frame.set_seq(seq as u64);
                let payload = serde_json::to_string(&frame)?;
                self.written.push(Notice {
                    audience_id: audience.id().to_string(),
                    seq: seq as u64,
                    payload: Arc::from(payload.as_str()),
                });
                rows.push(EventRow {
                    audience_id: audience.id().to_string(),
                    seq,
                    workspace_id: workspace_id.to_string(),
                    audience_kind: audience.kind().to_string(),
                    event_type: frame.type_name().to_string(),
                    payload,
                    created_at: now,
                });
            }
        }
        for chunk in rows.chunks(500) {
            model::insert_events(db, chunk).await?;
        }
        Ok(())
    }

    /// The written events, to publish after the commit.
    pub fn into_notices(self) -> Vec<Notice> {
        debug_assert!(self.pending.is_empty(), "outbox events pushed after flush");
        self.written
    }
}

/// Events of one audience after `after`, oldest first, at most `limit`.
pub async fn list_after(
    store: &Store,
    audience_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<EventRow>> {
    let after =
        i64::try_from(after).map_err(|_| Error::invalid_field("after", "after is too large"))?;
    store
        .read(async |db| Ok(model::events_after(db, audience_id, after, i64::from(limit)).await?))
        .await
}

/// The highest seq committed for an audience (0 when none).
pub async fn last_seq(store: &Store, audience_id: &str) -> Result<u64> {
    store
        .read(async |db| Ok(model::last_seq(db, audience_id).await? as u64))
        .await
}
