//! The durable event outbox: every state change writes its events here in the same
//! transaction, one row per audience (an agent or a member), numbered by a per-audience
//! gap-free `seq`. Pushes, replays and `GET /v1/events` all read from here.

pub mod model;

use std::collections::HashMap;
use std::sync::Arc;

use agenthub_protocol::ServerFrame;

use crate::bus::Notice;
use crate::content::{self, MAX_EVENT_BYTES, MAX_FANOUT_BYTES};
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
///
/// Every event must decode within the protocol's limits: one larger than
/// [`MAX_EVENT_BYTES`] in either codec makes `flush` refuse the change with `too_large`.
/// An outbox made with [`Outbox::for_request`] also bounds the request's fan-out: all its
/// events over every audience at most [`MAX_FANOUT_BYTES`].
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<(Audience, ServerFrame)>,
    written: Vec<Notice>,
    /// The fan-out limit, for an outbox of a request that may fan out widely.
    max_bytes: Option<usize>,
    /// The JSON bytes queued so far, over every audience.
    queued_bytes: usize,
    /// Why `flush` must refuse: an oversized event or too much fan-out.
    refused: Option<String>,
}

impl Outbox {
    /// An outbox whose events together may not exceed [`MAX_FANOUT_BYTES`]: for a request
    /// (a task's creation, a workflow change) whose events multiply by steps and audiences.
    pub fn for_request() -> Outbox {
        Outbox {
            max_bytes: Some(MAX_FANOUT_BYTES),
            ..Outbox::default()
        }
    }

    /// Queues `frame` for `audience`; its `seq` is assigned by [`Outbox::flush`].
    pub fn push(&mut self, audience: Audience, frame: ServerFrame) {
        if self.admit(&frame, 1) {
            self.pending.push((audience, frame));
        }
    }

    /// Queues the same frame for several audiences.
    pub fn push_all<'a>(
        &mut self,
        audiences: impl IntoIterator<Item = &'a Audience>,
        frame: &ServerFrame,
    ) {
        let audiences: Vec<&Audience> = audiences.into_iter().collect();
        if audiences.is_empty() || !self.admit(frame, audiences.len()) {
            return;
        }
        for audience in audiences {
            self.pending.push((audience.clone(), frame.clone()));
        }
    }

    /// Counts `copies` of `frame` against the limits; false (and `flush` will refuse) when
    /// they break one. Nothing more is queued after a refusal.
    fn admit(&mut self, frame: &ServerFrame, copies: usize) -> bool {
        if self.refused.is_some() {
            return false;
        }
        let json = serde_json::to_vec(frame).map_or(usize::MAX, |bytes| bytes.len());
        // MessagePack is at most 9/4 of the JSON size (a float: 9 bytes against `1.0,`).
        let size = if json.saturating_mul(9) / 4 > MAX_EVENT_BYTES {
            content::encoded_size(frame)
        } else {
            json
        };
        if size > MAX_EVENT_BYTES {
            self.refused = Some(format!(
                "a `{}` event of this change would be {size} bytes; events are at most \
                 {MAX_EVENT_BYTES} bytes: shorten the texts or upload large content with \
                 PUT /v1/files",
                frame.type_name()
            ));
            return false;
        }
        self.queued_bytes = self
            .queued_bytes
            .saturating_add(json.saturating_mul(copies));
        if let Some(max) = self.max_bytes
            && self.queued_bytes > max
        {
            self.refused = Some(format!(
                "this change would send more than {max} bytes of events to its steps' \
                 agents and followers; split it into smaller tasks or changes, or shorten \
                 what every step repeats"
            ));
            self.pending.clear();
            return false;
        }
        true
    }

    /// Assigns sequence numbers and writes the queued events. Call it last in the
    /// transaction; one counter update and one insert per audience.
    pub async fn flush(&mut self, db: &mut Db<'_>, workspace_id: &str) -> Result<()> {
        if let Some(refused) = &self.refused {
            return Err(Error::TooLarge(refused.clone()));
        }
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
