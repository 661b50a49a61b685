//! The durable event outbox: every state change writes its events here in the same
//! transaction, one row per audience (an agent or a member), numbered by a per-audience
//! gap-free `seq`. Pushes, replays, `GET /v1/events` and the event streams all read from
//! here. Every frame about a task is also written once to the task's feed ([`feed`]), and
//! every frame once to the workspace's feed ([`feed::workspace_audience_id`]), which the
//! webhooks follow.

pub mod feed;
pub mod model;
pub mod staged;
pub mod stream;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use agenthub_protocol::{Codec, ServerFrame};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::bus::Notice;
use crate::content::{self, MAX_EVENT_BYTES, MAX_FANOUT_BYTES};
use crate::error::{Error, Result};
use crate::notifications;
use crate::store::{Db, Store, now_ms};

pub use model::EventRow;

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    Agent(String),
    Member(String),
    /// A task's feed; holds its audience id ([`feed::audience_id`]).
    TaskFeed(String),
    /// A workspace's feed; holds its audience id ([`feed::workspace_audience_id`]).
    WorkspaceFeed(String),
}

impl Audience {
    /// The feed of a task.
    pub fn task_feed(task_id: &str) -> Audience {
        Audience::TaskFeed(feed::audience_id(task_id))
    }

    pub fn id(&self) -> &str {
        match self {
            Audience::Agent(id)
            | Audience::Member(id)
            | Audience::TaskFeed(id)
            | Audience::WorkspaceFeed(id) => id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Audience::Agent(_) => "agent",
            Audience::Member(_) => "member",
            Audience::TaskFeed(_) => "task",
            Audience::WorkspaceFeed(_) => "workspace",
        }
    }
}

/// A queued event: a protocol frame (shared by every audience it was queued for), or a
/// feed entry that only task feeds hold.
#[derive(Debug, Clone)]
enum Pending {
    Frame(Arc<Queued>),
    Entry {
        event_type: &'static str,
        body: Map<String, Value>,
    },
}

/// A frame as queued: encoded once, before its `seq` is known, for every copy.
#[derive(Debug)]
struct Queued {
    frame: ServerFrame,
    /// The frame as JSON, with the `seq` it had when queued.
    json: String,
    /// Where the `0` of `"seq":0` is in `json`, when it follows the type (every event
    /// frame of the protocol): each copy's JSON is then `json` with its number spliced in.
    seq_at: Option<usize>,
    /// The frame as MessagePack with its `seq` at 0, encoded at the first copy for an
    /// agent (the only audience that reads MessagePack); `None` when it has no such `seq`.
    msgpack: OnceLock<Option<SeqTemplate>>,
}

/// An encoded frame whose `seq` is `0`, at `seq` in `bytes`.
#[derive(Debug)]
struct SeqTemplate {
    bytes: Vec<u8>,
    seq: Range<usize>,
}

impl Queued {
    fn new(frame: ServerFrame, json: String) -> Queued {
        Queued {
            seq_at: seq_position(&json),
            frame,
            json,
            msgpack: OnceLock::new(),
        }
    }

    /// The MessagePack of the copy numbered `seq`: the frame is encoded once and each
    /// copy's number spliced in (a MessagePack map counts entries, not bytes, so a wider
    /// number leaves the rest as it is). `None` when the frame cannot be encoded so; the
    /// session then encodes the copy's JSON.
    fn msgpack_at(&self, seq: u64) -> Option<Bytes> {
        let template = self
            .msgpack
            .get_or_init(|| {
                let bytes = Codec::MsgPack.encode(&self.frame).ok()?;
                let at = Codec::MsgPack.peek_field(&bytes, "seq")?;
                (bytes.get(at.clone())? == [0]).then_some(SeqTemplate { bytes, seq: at })
            })
            .as_ref()?;
        let number = Codec::MsgPack.encode(&seq).ok()?;
        let mut bytes = Vec::with_capacity(template.bytes.len() + number.len());
        bytes.extend_from_slice(&template.bytes[..template.seq.start]);
        bytes.extend_from_slice(&number);
        bytes.extend_from_slice(&template.bytes[template.seq.end..]);
        Some(Bytes::from(bytes))
    }

    /// The JSON of the copy numbered `seq`.
    fn json_at(&self, seq: u64) -> Result<String> {
        if let Some(at) = self.seq_at {
            return Ok(splice_seq(&self.json, at, seq));
        }
        let mut frame = self.frame.clone();
        frame.set_seq(seq);
        Ok(serde_json::to_string(&frame)?)
    }
}

/// Where the `0` of `"seq":0` is in an event frame's JSON, when it follows the type
/// (every event frame of the protocol).
fn seq_position(json: &str) -> Option<usize> {
    json.strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.find('"'))
        .map(|end_of_type| r#"{"type":""#.len() + end_of_type + r#"","seq":"#.len())
        .filter(|&at| {
            json.get(..at)
                .is_some_and(|head| head.ends_with(r#"","seq":"#))
                && json.get(at..).is_some_and(|tail| tail.starts_with('0'))
                && matches!(json.as_bytes().get(at + 1), Some(b',' | b'}'))
        })
}

/// An event frame's JSON written with `"seq":0` ([`staged`]), numbered `seq`: the number
/// spliced in, or the frame read and written again when its `seq` is elsewhere.
pub(crate) fn with_seq(json: &str, seq: u64) -> String {
    if let Some(at) = seq_position(json) {
        return splice_seq(json, at, seq);
    }
    match serde_json::from_str::<ServerFrame>(json) {
        Ok(mut frame) => {
            frame.set_seq(seq);
            serde_json::to_string(&frame).unwrap_or_else(|_| json.to_string())
        }
        Err(_) => json.to_string(),
    }
}

/// `json` with `seq` in place of the `0` at `at` ([`seq_position`]).
fn splice_seq(json: &str, at: usize, seq: u64) -> String {
    let number = seq.to_string();
    let mut numbered = String::with_capacity(json.len() + number.len());
    numbered.push_str(&json[..at]);
    numbered.push_str(&number);
    numbered.push_str(&json[at + 1..]);
    numbered
}

/// Events collected during one transaction. [`Outbox::flush`] writes them (still inside
/// the transaction); after the commit the caller publishes [`Outbox::into_written`].
///
/// Every event must decode within the protocol's limits: one larger than
/// [`MAX_EVENT_BYTES`] in either codec makes `flush` refuse the change with `too_large`.
/// An outbox made with [`Outbox::for_request`] also bounds the request's fan-out: all its
/// events over every audience at most [`MAX_FANOUT_BYTES`].
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<(Audience, Pending)>,
    written: Written,
    /// The fan-out limit, for an outbox of a request that may fan out widely.
    max_bytes: Option<usize>,
    /// The JSON bytes queued so far, over every audience.
    queued_bytes: usize,
    /// Why `flush` must refuse: an oversized event or too much fan-out.
    refused: Option<String>,
    /// Tasks created in this transaction: no notification about them was open before
    /// it, so `flush` looks for none to resolve.
    created_tasks: Vec<String>,
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

    /// Notes that `task_id` was created in this transaction ([`Outbox::flush`] then
    /// spares the look for its open notifications).
    pub fn created_task(&mut self, task_id: &str) {
        self.created_tasks.push(task_id.to_string());
    }

    /// Queues `frame` for `audience`; its `seq` is assigned by [`Outbox::flush`].
    pub fn push(&mut self, audience: Audience, frame: ServerFrame) {
        if let Some(json) = self.admit(&frame, 1) {
            self.pending
                .push((audience, Pending::Frame(Arc::new(Queued::new(frame, json)))));
        }
    }

    /// Queues an entry of a task's feed (`step.log`, `step.progress`): its JSON is `body`
    /// with `type` and `seq` added.
    pub fn push_feed_entry(
        &mut self,
        task_id: &str,
        event_type: &'static str,
        body: Map<String, Value>,
    ) {
        self.pending.push((
            Audience::task_feed(task_id),
            Pending::Entry { event_type, body },
        ));
    }

    /// Queues the same frame for several audiences.
    pub fn push_all<'a>(
        &mut self,
        audiences: impl IntoIterator<Item = &'a Audience>,
        frame: &ServerFrame,
    ) {
        let audiences: Vec<&Audience> = audiences.into_iter().collect();
        if audiences.is_empty() {
            return;
        }
        let Some(json) = self.admit(frame, audiences.len()) else {
            return;
        };
        let queued = Arc::new(Queued::new(frame.clone(), json));
        for audience in audiences {
            self.pending
                .push((audience.clone(), Pending::Frame(Arc::clone(&queued))));
        }
    }

    /// Counts `copies` of `frame` against the limits and returns its JSON; `None` (and
    /// `flush` will refuse) when they break one. Nothing more is queued after a refusal.
    fn admit(&mut self, frame: &ServerFrame, copies: usize) -> Option<String> {
        if self.refused.is_some() {
            return None;
        }
        let encoded = serde_json::to_string(frame).ok();
        let json = encoded.as_ref().map_or(usize::MAX, String::len);
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
            return None;
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
            return None;
        }
        encoded
    }

    /// Assigns sequence numbers and writes the queued events. Call it last in the
    /// transaction: one statement reserves the numbers of every audience, one inserts
    /// the events (per 500), and each frame was encoded once when queued. On PostgreSQL
    /// the workspace's feed and the members' feeds get placeholders instead, numbered
    /// after the commit ([`staged`]); [`Outbox::into_written`] then names those feeds.
    pub async fn flush(&mut self, db: &mut Db<'_>, workspace_id: &str) -> Result<()> {
        if let Some(refused) = &self.refused {
            return Err(Error::TooLarge(refused.clone()));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let (mirrored, task_ids) = mirror_to_feeds(db, &self.pending).await?;
        let workspace_feed = mirror_to_workspace_feed(workspace_id, &self.pending);
        self.pending.extend(mirrored);
        self.pending.extend(workspace_feed);
        let mut projected = Vec::new();
        let mut by_audience: HashMap<Audience, Vec<Pending>> = HashMap::new();
        let mut order: Vec<Audience> = Vec::new();
        for (audience, frame) in self.pending.drain(..) {
            let frames = by_audience.entry(audience.clone()).or_default();
            if frames.is_empty() {
                order.push(audience);
            }
            frames.push(frame);
        }
        // On PostgreSQL the counters below (of agents and task feeds) are row locks held
        // to the commit, which every transaction that writes events for the same audience
        // waits for: what needs no sequence number goes out with them, not after. The
        // open action items are read in the counters' round trip; resolving them (only
        // when some are open: an approval or a question answered) follows it.
        let settled: Vec<String> = task_ids
            .iter()
            .filter(|task_id| !self.created_tasks.contains(task_id))
            .cloned()
            .collect();
        let settling = notifications::settle_ahead(db, &settled).await;
        let now = now_ms();
        let mut rows = Vec::new();
        // A fixed order of counter updates keeps concurrent transactions from deadlocking.
        order.sort_by(|left, right| left.id().cmp(right.id()));
        // The hot feeds of a PostgreSQL workspace get placeholders, numbered after the
        // commit ([`staged`]); the others their seqs now.
        let (deferred, numbered): (Vec<Audience>, Vec<Audience>) = order
            .into_iter()
            .partition(|audience| staged::defers(db, audience));
        let n_events = |audience: &Audience| by_audience.get(audience).map_or(0, Vec::len);
        let counts: Vec<(&str, i64)> = numbered
            .iter()
            .map(|audience| (audience.id(), n_events(audience) as i64))
            .collect();
        let n_deferred: usize = deferred.iter().map(n_events).sum();
        let placeholders = if n_deferred > 0 {
            Some(staged::placeholders(db, n_deferred).await)
        } else {
            None
        };
        let firsts = model::reserve_seqs(db, &counts).await?;
        settling.finish(db).await?;
        let mut placeholders = match placeholders {
            Some(placeholders) => placeholders.get(db).await?.into_iter(),
            None => Vec::new().into_iter(),
        };
        let audiences = numbered
            .iter()
            .map(|audience| (audience, false))
            .chain(deferred.iter().map(|audience| (audience, true)));
        for (audience, is_staged) in audiences {
            let frames = by_audience.remove(audience).unwrap_or_default();
            if is_staged {
                self.written.staged_feeds.push(audience.id().to_string());
            }
            let first = if is_staged {
                0
            } else {
                *firsts
                    .get(audience.id())
                    .ok_or(diesel::result::Error::NotFound)?
            };
            for (offset, pending) in frames.into_iter().enumerate() {
                let seq = if is_staged {
                    placeholders.next().ok_or(diesel::result::Error::NotFound)?
                } else {
                    first + offset as i64
                };
                let mut msgpack = None;
                let (event_type, payload) = match pending {
                    Pending::Frame(queued) => {
                        projected.extend(notifications::project(audience, seq, &queued.frame));
                        if let Audience::Agent(_) = audience {
                            msgpack = queued.msgpack_at(seq as u64);
                        }
                        // A placeholder is not written into the frame: it says `"seq":0`.
                        let json_seq = if is_staged { 0 } else { seq as u64 };
                        (queued.frame.type_name(), queued.json_at(json_seq)?)
                    }
                    Pending::Entry { event_type, body } => {
                        let mut object = Map::new();
                        object.insert("type".into(), Value::from(event_type));
                        object.insert("seq".into(), Value::from(seq));
                        object.extend(body);
                        (event_type, serde_json::to_string(&object)?)
                    }
                };
                if !is_staged {
                    let notice = Notice::new(
                        audience.id().to_string(),
                        seq as u64,
                        Arc::from(payload.as_str()),
                        now,
                    );
                    if let Some(msgpack) = msgpack {
                        notice.set_msgpack(msgpack);
                    }
                    self.written.notices.push(notice);
                }
                rows.push(EventRow {
                    audience_id: audience.id().to_string(),
                    seq,
                    workspace_id: workspace_id.to_string(),
                    audience_kind: audience.kind().to_string(),
                    event_type: event_type.to_string(),
                    payload,
                    created_at: now,
                });
            }
        }
        model::insert_events(db, rows).await?;
        notifications::record(db, workspace_id, projected, &task_ids).await
    }

    /// The written events, to publish after the commit ([`crate::ctx::Ctx::publish`]).
    pub fn into_written(self) -> Written {
        debug_assert!(self.pending.is_empty(), "outbox events pushed after flush");
        self.written
    }
}

/// What an [`Outbox`] wrote, to publish after the commit: the numbered events, and the
/// feeds whose events wait for their numbers ([`staged`]), published once numbered.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub notices: Vec<Notice>,
    /// The audience ids of the feeds with placeholders, each once.
    pub staged_feeds: Vec<String>,
}

/// One copy of each distinct frame about a task, for the task's feed, in the order the
/// frames were queued, and the ids of the tasks they are about. Frames that name only
/// their step (`approval.resolved`, `input.answered`) find their task with one query.
async fn mirror_to_feeds(
    db: &mut Db<'_>,
    pending: &[(Audience, Pending)],
) -> Result<(Vec<(Audience, Pending)>, Vec<String>)> {
    let mut subjects = Vec::new();
    let mut step_ids = Vec::new();
    for (audience, pending) in pending {
        let (Audience::Agent(_) | Audience::Member(_), Pending::Frame(queued)) =
            (audience, pending)
        else {
            continue;
        };
        let Some(subject) = feed::subject_of(&queued.frame) else {
            continue;
        };
        if let feed::Subject::Step(step_id) = subject {
            step_ids.push(step_id.to_string());
        }
        subjects.push((subject, queued));
    }
    if subjects.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let step_tasks = if step_ids.is_empty() {
        Vec::new()
    } else {
        step_ids.sort();
        step_ids.dedup();
        model::tasks_of_steps(db, &step_ids).await?
    };
    let mut mirrored: Vec<(String, &Arc<Queued>)> = Vec::new();
    let mut seen: HashSet<(String, &str)> = HashSet::new();
    for (subject, queued) in subjects {
        let task_id = match subject {
            feed::Subject::Task(task_id) => task_id.to_string(),
            feed::Subject::Step(step_id) => {
                let step_id = step_id.to_string();
                match step_tasks.iter().find(|(id, _)| *id == step_id) {
                    Some((_, task_id)) => task_id.clone(),
                    None => continue,
                }
            }
        };
        // Copies of one frame, and equal frames queued apart, are mirrored once.
        if seen.insert((task_id.clone(), queued.json.as_str())) {
            mirrored.push((task_id, queued));
        }
    }
    let mut task_ids: Vec<String> = mirrored
        .iter()
        .map(|(task_id, _)| task_id.clone())
        .collect();
    task_ids.sort();
    task_ids.dedup();
    let mirrored = mirrored
        .into_iter()
        .map(|(task_id, queued)| {
            (
                Audience::task_feed(&task_id),
                Pending::Frame(Arc::clone(queued)),
            )
        })
        .collect();
    Ok((mirrored, task_ids))
}

/// One copy of each distinct frame of the transaction (those queued for agents and
/// members, but not an agent's own view of one, [`feed::is_own_view`]; a task feed's own
/// entries are not), for the workspace's feed, in the order the frames were queued.
fn mirror_to_workspace_feed(
    workspace_id: &str,
    pending: &[(Audience, Pending)],
) -> Vec<(Audience, Pending)> {
    let mut frames: Vec<&Arc<Queued>> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (audience, pending) in pending {
        // Copies of one frame, and equal frames queued apart, are mirrored once.
        if let (Audience::Agent(_) | Audience::Member(_), Pending::Frame(queued)) =
            (audience, pending)
            && !feed::is_own_view(&queued.frame)
            && seen.insert(queued.json.as_str())
        {
            frames.push(queued);
        }
    }
    let audience = Audience::WorkspaceFeed(feed::workspace_audience_id(workspace_id));
    frames
        .into_iter()
        .map(|queued| (audience.clone(), Pending::Frame(Arc::clone(queued))))
        .collect()
}

/// An outbox payload (an event frame as JSON) in MessagePack, with the keys in the
/// order of the JSON, as [`Outbox::flush`] encodes a frame for its agents: a replayed
/// event and a live one are the same bytes. A payload that does not read back as the
/// same JSON through this hub's frames (written by another version: an unknown type or
/// field) is carried over value by value, so nothing of it is lost.
pub fn msgpack_of_json(payload: &str) -> Result<Bytes> {
    let frame = serde_json::from_str::<ServerFrame>(payload)
        .ok()
        .filter(|frame| serde_json::to_string(frame).is_ok_and(|json| json == payload));
    let encoded = match frame {
        Some(frame) => Codec::MsgPack.encode(&frame),
        None => Codec::MsgPack.encode(&serde_json::from_str::<Value>(payload)?),
    };
    encoded
        .map(Bytes::from)
        .map_err(|err| Error::internal(err.to_string()))
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
