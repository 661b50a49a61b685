//! Meeting steps: the hub asks every participant when they are free (their agent with
//! `availability.requested`, a member without an agent in their inbox, the task's creator
//! for a person outside the workspace), intersects the answers into the earliest common
//! slot of the meeting's length, and on the assignee's confirmation sends everyone an
//! iCalendar invitation (attached to the step, and in `meeting.scheduled`) and completes
//! the step. Times are stored in UTC; answers keep the offsets they were given in.
//!
//! A meeting step is never claimed: it waits in `ready` while the answers come in, and
//! the confirmation moves it through `claimed` and `submitted` to `done` at once.

use std::str::FromStr;

use agenthub_protocol::{AvailabilityRequested, Interval, MeetingScheduled, ServerFrame};
use icalendar::{
    Attendee, Calendar, CalendarDateTime, Component, DatePerhapsTime, Event, EventLike,
};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::accounts::{Actor, AgentActor};
use crate::agents;
use crate::content::{self, MAX_TEXT_BYTES};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Audience, Outbox};
use crate::notifications::{self, Notification, Priority};
use crate::store::{Db, new_id, now_ms};
use crate::tasks::frames::uuid;
use crate::tasks::model::{self, Meeting, MeetingParticipant, Step, StepChange, Task};
use crate::tasks::timeline::By;
use crate::tasks::{StepStatus, TaskStatus, step_status, task_status, transition};

/// Participants of one meeting.
pub const MAX_PARTICIPANTS: usize = 50;
/// Free intervals in one answer.
pub const MAX_INTERVALS: usize = 500;
/// The longest meeting.
pub const MAX_DURATION_MINUTES: u32 = 24 * 60;
/// The widest window, in days.
pub const MAX_WINDOW_DAYS: i64 = 92;
/// Working days in the default window.
pub const DEFAULT_WINDOW_WORKING_DAYS: u32 = 5;

/// Notification kinds of meetings.
pub const MEETING_AVAILABILITY: &str = "meeting.availability";
pub const MEETING_PROPOSED: &str = "meeting.proposed";
pub const MEETING_NO_FIT: &str = "meeting.no_fit";
pub const MEETING_SCHEDULED: &str = "meeting.scheduled";

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const MINUTE_MS: i64 = 60 * 1000;

/// The meeting of a step to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMeeting {
    pub participants: Vec<NewParticipant>,
    pub duration_minutes: u32,
    /// `(from, to)` in ms since the epoch; `None`: the next five working days.
    pub window: Option<(i64, i64)>,
}

/// A participant: a member's email (`name` absent), or a person's name and email.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewParticipant {
    pub email: String,
    pub name: Option<String>,
}

/// A meeting as a caller shows it.
#[derive(Debug, Clone)]
pub struct MeetingView {
    pub meeting: Meeting,
    pub participants: Vec<ParticipantView>,
}

/// A participant, how they are asked, and their answer.
#[derive(Debug, Clone)]
pub struct ParticipantView {
    pub row: MeetingParticipant,
    /// `agent` (asked through it), `member` (in their inbox) or `guest` (the task's
    /// creator answers).
    pub asked: &'static str,
    pub agent_name: Option<String>,
    pub intervals: Vec<Interval>,
}

/// Parses an RFC 3339 timestamp with an offset into ms since the epoch.
pub fn parse_time(field: &str, text: &str) -> Result<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        Error::invalid_field(
            field,
            format!(
                "`{text}` is not an RFC 3339 timestamp with an offset (2026-12-07T09:00:00+09:00)"
            ),
        )
    })?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `ms` as an RFC 3339 UTC timestamp.
pub fn utc_text(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The default window from `now`: until the end (UTC) of the fifth working day
/// (Monday to Friday) after today.
pub fn default_window(now: i64) -> (i64, i64) {
    let mut day_start = now - now.rem_euclid(DAY_MS);
    let mut n_days = 0;
    while n_days < DEFAULT_WINDOW_WORKING_DAYS {
        day_start += DAY_MS;
        // 1970-01-01 was a Thursday: day 0 → 3 (Monday = 0).
        let weekday = (day_start / DAY_MS + 3).rem_euclid(7);
        if weekday < 5 {
            n_days += 1;
        }
    }
    (now, day_start + DAY_MS)
}

/// Checks what a create can check without the database: the length, the window, the
/// participants. `field` names the meeting (`steps.meeting`).
pub fn validate(key: &str, meeting: &NewMeeting, now: i64) -> Result<()> {
    let invalid = |field: &str, message: String| {
        Error::invalid_field(
            format!("steps.meeting.{field}"),
            format!("step `{key}`: {message}"),
        )
    };
    if meeting.duration_minutes == 0 || meeting.duration_minutes > MAX_DURATION_MINUTES {
        return Err(invalid(
            "duration_minutes",
            format!("a meeting lasts 1 to {MAX_DURATION_MINUTES} minutes"),
        ));
    }
    if let Some((from, to)) = meeting.window {
        validate_window(meeting.duration_minutes, from, to, now)
            .map_err(|message| invalid("window", message))?;
    }
    if meeting.participants.is_empty() || meeting.participants.len() > MAX_PARTICIPANTS {
        return Err(invalid(
            "participants",
            format!("a meeting has 1 to {MAX_PARTICIPANTS} participants"),
        ));
    }
    let mut seen = Vec::new();
    for participant in &meeting.participants {
        let email = participant.email.trim().to_lowercase();
        let local_and_domain = email.split_once('@');
        if email.len() > 254
            || email.contains(char::is_whitespace)
            || local_and_domain.is_none_or(|(local, domain)| local.is_empty() || domain.is_empty())
        {
            return Err(invalid(
                "participants",
                format!("`{}` is not an email address", participant.email),
            ));
        }
        if let Some(name) = &participant.name {
            content::person_text("steps.meeting.participants.name", name, MAX_TEXT_BYTES)?;
            if name.trim().is_empty() {
                return Err(invalid(
                    "participants",
                    format!("the name of `{email}` must not be empty"),
                ));
            }
        }
        if seen.contains(&email) {
            return Err(invalid("participants", format!("`{email}` is named twice")));
        }
        seen.push(email);
    }
    Ok(())
}

/// Checks a window for a meeting of `duration_minutes`; the error says what is wrong.
pub fn validate_window(
    duration_minutes: u32,
    from: i64,
    to: i64,
    now: i64,
) -> std::result::Result<(), String> {
    if from >= to {
        return Err("the window must end after it starts".into());
    }
    if to <= now {
        return Err("the window is in the past".into());
    }
    if to - from > MAX_WINDOW_DAYS * DAY_MS {
        return Err(format!("the window spans at most {MAX_WINDOW_DAYS} days"));
    }
    if to - from.max(now) < i64::from(duration_minutes) * MINUTE_MS {
        return Err("what remains of the window is shorter than the meeting".into());
    }
    Ok(())
}

/// Writes the meeting of a new step: each participant is resolved to a member (and the
/// agent that answers for them) or kept as a guest. A bare email must be a member's.
pub(crate) async fn insert(
    db: &mut Db<'_>,
    task: &Task,
    step_id: &str,
    key: &str,
    meeting: &NewMeeting,
) -> Result<()> {
    let now = now_ms();
    let (window_from, window_to) = meeting.window.unwrap_or_else(|| default_window(now));
    let mut rows = Vec::new();
    for (position, participant) in meeting.participants.iter().enumerate() {
        let email = participant.email.trim().to_lowercase();
        let member = crate::accounts::model::find_member(db, &task.workspace_id, &email).await?;
        if member.is_none() && participant.name.is_none() {
            return Err(Error::invalid_field(
                "steps.meeting.participants",
                format!(
                    "step `{key}`: participant `{email}` is not a member of this workspace; \
                     give {{\"name\", \"email\"}} for a person outside it"
                ),
            ));
        }
        let agent_id = match &member {
            Some(member) => answering_agent(db, &member.id).await?,
            None => None,
        };
        rows.push(MeetingParticipant {
            id: new_id(),
            step_id: step_id.to_string(),
            workspace_id: task.workspace_id.clone(),
            position: position as i32,
            email,
            name: participant
                .name
                .as_ref()
                .map(|name| name.trim().to_string())
                .or_else(|| member.as_ref().map(|member| member.name.clone())),
            member_id: member.map(|member| member.id),
            agent_id,
            intervals: None,
            responded_at: None,
        });
    }
    let row = Meeting {
        step_id: step_id.to_string(),
        workspace_id: task.workspace_id.clone(),
        task_id: task.id.clone(),
        duration_minutes: meeting.duration_minutes as i32,
        window_from,
        window_to,
        status: "waiting".into(),
        slot_from: None,
        slot_to: None,
        file_id: None,
        confirmed_by: None,
        updated_at: now,
    };
    model::insert_meeting(db, &row, &rows).await?;
    Ok(())
}

/// The agent that answers for a member: the first by name (an online one first).
async fn answering_agent(db: &mut Db<'_>, member_id: &str) -> Result<Option<String>> {
    let mut agents = agents::model::agents_of_member(db, member_id).await?;
    agents.sort_by(|left, right| {
        (left.status != "online", &left.name).cmp(&(right.status != "online", &right.name))
    });
    Ok(agents.into_iter().next().map(|agent| agent.id))
}

/// The ids of the meeting steps among `steps`, as their rows say.
fn meeting_step_ids(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|step| step.is_meeting())
        .map(|step| step.id.clone())
        .collect()
}

/// Of `steps` (ready steps of an active task), starts the meetings not started yet:
/// every participant is asked. Returns the ids of the steps that are meetings, which get
/// no `step.ready`.
pub(crate) async fn start_ready(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    steps: &[Step],
) -> Result<Vec<String>> {
    // The rows say which are meetings: most pushes read nothing more.
    let ids = meeting_step_ids(steps);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let meetings = model::meetings_among(db, &ids).await?;
    let mut meeting_ids = Vec::new();
    for mut meeting in meetings {
        meeting_ids.push(meeting.step_id.clone());
        if meeting.status != "waiting" {
            continue;
        }
        let Some(step) = steps.iter().find(|step| step.id == meeting.step_id) else {
            continue;
        };
        meeting.status = "collecting".into();
        meeting.updated_at = now_ms();
        model::update_meeting(db, &meeting).await?;
        ask_everyone(db, outbox, task, step, &meeting).await?;
    }
    Ok(meeting_ids)
}

/// Sends each participant the question: its agent `availability.requested`, a member
/// without an agent an inbox item, the task's creator one per guest.
async fn ask_everyone(
    db: &mut Db<'_>,
    outbox: &mut Outbox,
    task: &Task,
    step: &Step,
    meeting: &Meeting,
) -> Result<()> {
    let window = Interval {
        from: utc_text(meeting.window_from),
        to: utc_text(meeting.window_to),
    };
    let question = format!(
        "When are you free for \"{}\" ({} minutes) between {} and {}?",
        step.title, meeting.duration_minutes, window.from, window.to
    );
    for participant in model::participants_of(db, &meeting.step_id).await? {
        if let Some(agent_id) = &participant.agent_id {
            outbox.push(
                Audience::Agent(agent_id.clone()),
                ServerFrame::AvailabilityRequested(AvailabilityRequested {
                    seq: 0,
                    request_id: uuid(&participant.id),
                    task_id: Some(uuid(&task.id)),
                    question: question.clone(),
                    step_id: Some(uuid(&step.id)),
                    window: Some(window.clone()),
                    duration_minutes: Some(meeting.duration_minutes as u32),
                }),
            );
            continue;
        }
        let (member_id, body) = match &participant.member_id {
            Some(member_id) => (member_id.clone(), question.clone()),
            None => {
                let Some(creator) = &task.creator_member_id else {
                    continue;
                };
                (
                    creator.clone(),
                    format!(
                        "Ask {} <{}>: {question}",
                        participant.name.as_deref().unwrap_or_default(),
                        participant.email
                    ),
                )
            }
        };
        notifications::notify(
            db,
            &task.workspace_id,
            &member_id,
            Notification {
                kind: MEETING_AVAILABILITY.into(),
                priority: Priority::Action,
                task_id: Some(task.id.clone()),
                step_id: Some(step.id.clone()),
                subject_id: Some(participant.id.clone()),
                title: format!("When is {} free?", participant.email),
                body,
                data: json!({
                    "step_id": step.id,
                    "participant": participant.email,
                    "window": {"from": window.from, "to": window.to},
                    "duration_minutes": meeting.duration_minutes,
                }),
            },
        )
        .await?;
    }
    Ok(())
}

/// `availability.respond` to a meeting's request: the participant's agent answers with
/// free intervals. `Ok(false)`: `request_id` is no meeting's.
pub async fn respond_as_agent(
    ctx: &Ctx,
    agent: &AgentActor,
    request_id: &str,
    intervals: Option<&[Interval]>,
) -> Result<bool> {
    ctx.store
        .transaction(async |db| {
            let Some(participant) =
                model::find_participant(db, &agent.workspace_id, request_id).await?
            else {
                return Ok::<_, Error>(false);
            };
            if participant.agent_id.as_deref() != Some(agent.agent_id.as_str()) {
                return Err(Error::forbidden(
                    "this availability request was addressed to another agent",
                ));
            }
            let Some(intervals) = intervals else {
                return Err(Error::invalid_field(
                    "intervals",
                    "a meeting's availability request is answered with `intervals`",
                ));
            };
            record(db, &participant, intervals).await?;
            Ok(true)
        })
        .await
}

/// `POST /v1/steps/{id}/meeting/availability`: a member answers for themselves, or the
/// task's creator for a guest.
pub async fn respond(
    ctx: &Ctx,
    actor: &Actor,
    step_id: &str,
    email: &str,
    intervals: &[Interval],
) -> Result<MeetingView> {
    ctx.store
        .transaction(async |db| {
            let (task, _step, _meeting) = load(db, actor.workspace_id(), step_id).await?;
            let email = email.trim().to_lowercase();
            let participant = model::participants_of(db, step_id)
                .await?
                .into_iter()
                .find(|participant| participant.email == email)
                .ok_or_else(|| {
                    Error::invalid_field(
                        "participant",
                        format!("`{email}` is not a participant of this meeting"),
                    )
                })?;
            may_answer_for(actor, &task, &participant)?;
            record(db, &participant, intervals).await?;
            view_in(db, step_id).await
        })
        .await
}

/// A member answers the availability request `request_id` (a participant's, as
/// `availability.requested` and the inbox name it): for themselves, or as the task's
/// creator for a guest.
pub async fn respond_to_request(
    ctx: &Ctx,
    actor: &Actor,
    request_id: &str,
    intervals: &[Interval],
) -> Result<MeetingView> {
    ctx.store
        .transaction(async |db| {
            let participant = model::find_participant(db, actor.workspace_id(), request_id)
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!("meeting availability request `{request_id}`"))
                })?;
            let (task, _step, _meeting) =
                load(db, actor.workspace_id(), &participant.step_id).await?;
            may_answer_for(actor, &task, &participant)?;
            record(db, &participant, intervals).await?;
            view_in(db, &participant.step_id).await
        })
        .await
}

/// Members answer for themselves, the task's creator for people outside the workspace.
fn may_answer_for(actor: &Actor, task: &Task, participant: &MeetingParticipant) -> Result<()> {
    let allowed = match &participant.member_id {
        Some(member_id) => member_id == actor.member_id(),
        None => task.creator_member_id.as_deref() == Some(actor.member_id()),
    };
    if !allowed {
        return Err(Error::forbidden(
            "members answer for themselves, and the task's creator for people outside the workspace",
        ));
    }
    Ok(())
}

/// A meeting as a task's page shows it, with whether the reader confirms it.
#[derive(Debug, Clone)]
pub struct MeetingOfStep {
    pub view: MeetingView,
    /// The reader is the step's assignee (an assignee agent, or the member owning one).
    pub may_confirm: bool,
}

/// The meetings among `steps` (steps of one task the caller read).
pub async fn meetings_of(ctx: &Ctx, actor: &Actor, steps: &[Step]) -> Result<Vec<MeetingOfStep>> {
    let ids = meeting_step_ids(steps);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    ctx.store
        .read(async |db| {
            let mut found = Vec::new();
            for meeting in model::meetings_among(db, &ids).await? {
                let Some(step) = steps.iter().find(|step| step.id == meeting.step_id) else {
                    continue;
                };
                let may_confirm = match confirming_agent(db, actor, step).await {
                    Ok(_) => true,
                    Err(Error::Forbidden(_)) => false,
                    Err(other) => return Err(other),
                };
                found.push(MeetingOfStep {
                    view: view_in(db, &step.id).await?,
                    may_confirm,
                });
            }
            Ok(found)
        })
        .await
}

async fn load(db: &mut Db<'_>, workspace_id: &str, step_id: &str) -> Result<(Task, Step, Meeting)> {
    let step = model::find_step(db, workspace_id, step_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
    let meeting = model::find_meeting(db, &step.id)
        .await?
        .ok_or_else(|| Error::not_found(format!("meeting of step `{step_id}`")))?;
    let task = model::lock_task(db, workspace_id, &step.task_id)
        .await?
        .ok_or_else(|| Error::not_found("task"))?;
    Ok((task, step, meeting))
}

/// Checks and stores one participant's intervals; when everyone has answered, proposes
/// the earliest common slot (or says none fits).
async fn record(
    db: &mut Db<'_>,
    participant: &MeetingParticipant,
    intervals: &[Interval],
) -> Result<()> {
    let (task, step, mut meeting) =
        load(db, &participant.workspace_id, &participant.step_id).await?;
    match meeting.status.as_str() {
        "collecting" | "proposed" | "no_fit" => {}
        "waiting" => {
            return Err(Error::conflict(
                "the meeting has not started: its step is not ready",
            ));
        }
        _ => return Err(Error::conflict("the meeting is already scheduled")),
    }
    if intervals.len() > MAX_INTERVALS {
        return Err(Error::invalid_field(
            "intervals",
            format!("at most {MAX_INTERVALS} intervals"),
        ));
    }
    for (idx, interval) in intervals.iter().enumerate() {
        let from = parse_time("intervals.from", &interval.from)?;
        let to = parse_time("intervals.to", &interval.to)?;
        if from >= to {
            return Err(Error::invalid_field(
                "intervals",
                format!("interval {idx} ends before it starts"),
            ));
        }
        if from < meeting.window_from || to > meeting.window_to {
            return Err(Error::invalid_field(
                "intervals",
                format!(
                    "interval {idx} ({} to {}) is outside the window {} to {}",
                    interval.from,
                    interval.to,
                    utc_text(meeting.window_from),
                    utc_text(meeting.window_to)
                ),
            ));
        }
    }
    model::set_intervals(
        db,
        &participant.id,
        &serde_json::to_string(intervals)?,
        now_ms(),
    )
    .await?;
    notifications::resolve_subject(db, &participant.id).await?;
    let participants = model::participants_of(db, &meeting.step_id).await?;
    if participants
        .iter()
        .any(|other| other.responded_at.is_none())
    {
        return Ok(());
    }
    let free: Vec<Vec<(i64, i64)>> = participants
        .iter()
        .map(|other| spans(other.intervals.as_deref()))
        .collect();
    let slot = earliest_slot(
        &free,
        meeting.window_from,
        meeting.window_to,
        i64::from(meeting.duration_minutes) * MINUTE_MS,
    );
    meeting.updated_at = now_ms();
    meeting.slot_from = slot.map(|(from, _)| from);
    meeting.slot_to = slot.map(|(_, to)| to);
    meeting.status = if slot.is_some() { "proposed" } else { "no_fit" }.into();
    model::update_meeting(db, &meeting).await?;
    let (kind, title, body) = match slot {
        Some((from, to)) => (
            MEETING_PROPOSED,
            format!("\"{}\" fits everyone at {}", step.title, utc_text(from)),
            format!(
                "Every participant is free from {} to {}; confirm it (POST /v1/steps/{}/meeting/confirm).",
                utc_text(from),
                utc_text(to),
                step.id
            ),
        ),
        None => (
            MEETING_NO_FIT,
            format!("No slot fits everyone for \"{}\"", step.title),
            format!(
                "No {} minutes between {} and {} suit every participant; give a wider window (PUT /v1/steps/{}/meeting/window).",
                meeting.duration_minutes,
                utc_text(meeting.window_from),
                utc_text(meeting.window_to),
                step.id
            ),
        ),
    };
    for member_id in organizers(db, &task, &step).await? {
        notifications::notify(
            db,
            &task.workspace_id,
            &member_id,
            Notification {
                kind: kind.into(),
                priority: Priority::Action,
                task_id: Some(task.id.clone()),
                step_id: Some(step.id.clone()),
                subject_id: Some(format!("meeting:{}", step.id)),
                title: title.clone(),
                body: body.clone(),
                data: json!({
                    "step_id": step.id,
                    "slot": slot.map(|(from, to)| json!({"from": utc_text(from), "to": utc_text(to)})),
                }),
            },
        )
        .await?;
    }
    Ok(())
}

/// The members who decide on the meeting: the owners of its assignees (and the task's
/// creator), each once.
async fn organizers(db: &mut Db<'_>, task: &Task, step: &Step) -> Result<Vec<String>> {
    let assignees = model::assignees_of(db, std::slice::from_ref(&step.id)).await?;
    let agent_ids: Vec<String> = assignees
        .into_iter()
        .map(|(_, agent_id)| agent_id)
        .collect();
    let mut members: Vec<String> = agents::model::agents_by_ids(db, &agent_ids)
        .await?
        .into_iter()
        .map(|agent| agent.owner_member_id)
        .collect();
    if let Some(creator) = &task.creator_member_id {
        members.push(creator.clone());
    }
    members.sort();
    members.dedup();
    Ok(members)
}

fn spans(intervals: Option<&str>) -> Vec<(i64, i64)> {
    let intervals: Vec<Interval> = intervals
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    intervals
        .iter()
        .filter_map(|interval| {
            Some((
                parse_time("from", &interval.from).ok()?,
                parse_time("to", &interval.to).ok()?,
            ))
        })
        .collect()
}

/// Sorted, merged spans clipped to `[from, to)`.
fn normalized(spans: &[(i64, i64)], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut clipped: Vec<(i64, i64)> = spans
        .iter()
        .map(|(start, end)| ((*start).max(from), (*end).min(to)))
        .filter(|(start, end)| start < end)
        .collect();
    clipped.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (start, end) in clipped {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The earliest `[start, start + duration)` inside every participant's free spans and
/// the window, if any.
pub fn earliest_slot(
    free: &[Vec<(i64, i64)>],
    window_from: i64,
    window_to: i64,
    duration_ms: i64,
) -> Option<(i64, i64)> {
    let mut common = vec![(window_from, window_to)];
    for spans in free {
        let spans = normalized(spans, window_from, window_to);
        let mut next = Vec::new();
        let (mut left, mut right) = (0, 0);
        while left < common.len() && right < spans.len() {
            let start = common[left].0.max(spans[right].0);
            let end = common[left].1.min(spans[right].1);
            if start < end {
                next.push((start, end));
            }
            if common[left].1 < spans[right].1 {
                left += 1;
            } else {
                right += 1;
            }
        }
        common = next;
    }
    common
        .into_iter()
        .find(|(start, end)| end - start >= duration_ms)
        .map(|(start, _)| (start, start + duration_ms))
}

/// `PUT /v1/steps/{id}/meeting/window`: the task's creator or an assignee's member gives
/// a new window (after none fitted, say); every answer is dropped and everyone is asked
/// again.
pub async fn change_window(
    ctx: &Ctx,
    actor: &Actor,
    step_id: &str,
    from: i64,
    to: i64,
) -> Result<MeetingView> {
    let mut outbox = Outbox::for_request();
    let view = ctx
        .store
        .transaction(async |db| {
            let (task, step, mut meeting) = load(db, actor.workspace_id(), step_id).await?;
            if !organizers(db, &task, &step)
                .await?
                .iter()
                .any(|member| member == actor.member_id())
            {
                return Err(Error::forbidden(
                    "only the task's creator or the step's assignee changes the meeting's window",
                ));
            }
            validate_window(meeting.duration_minutes as u32, from, to, now_ms())
                .map_err(|message| Error::invalid_field("window", message))?;
            if meeting.status == "scheduled" {
                return Err(Error::conflict("the meeting is already scheduled"));
            }
            meeting.window_from = from;
            meeting.window_to = to;
            meeting.slot_from = None;
            meeting.slot_to = None;
            meeting.updated_at = now_ms();
            let started = meeting.status != "waiting";
            if started {
                meeting.status = "collecting".into();
            }
            model::update_meeting(db, &meeting).await?;
            model::reset_participants(db, step_id).await?;
            notifications::resolve_subject(db, &format!("meeting:{step_id}")).await?;
            if started {
                ask_everyone(db, &mut outbox, &task, &step, &meeting).await?;
            }
            outbox.flush(db, actor.workspace_id()).await?;
            view_in(db, step_id).await
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(view)
}

/// `POST /v1/steps/{id}/meeting/confirm`: the step's assignee (an assignee agent, or
/// the member who owns one) confirms the proposed slot. Every participant gets the
/// invitation, attached to the step as `meeting.ics`, and the step is done.
pub async fn confirm(ctx: &Ctx, actor: &Actor, step_id: &str) -> Result<MeetingView> {
    let (task, step, meeting, participants, confirmer) = ctx
        .store
        .read(async |db| {
            let step = model::find_step(db, actor.workspace_id(), step_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("step `{step_id}`")))?;
            let meeting = model::find_meeting(db, &step.id)
                .await?
                .ok_or_else(|| Error::not_found(format!("meeting of step `{step_id}`")))?;
            let task = model::find_task(db, actor.workspace_id(), &step.task_id)
                .await?
                .ok_or_else(|| Error::not_found("task"))?;
            let confirmer = confirming_agent(db, actor, &step).await?;
            let participants = model::participants_of(db, &step.id).await?;
            Ok::<_, Error>((task, step, meeting, participants, confirmer))
        })
        .await?;
    let (Some(slot_from), Some(slot_to), "proposed") =
        (meeting.slot_from, meeting.slot_to, meeting.status.as_str())
    else {
        return Err(Error::conflict(format!(
            "the meeting has no slot to confirm (it is {})",
            meeting.status
        )));
    };
    if task_status(&task) != TaskStatus::Active {
        return Err(Error::conflict(format!("task is {}", task.status)));
    }
    let ics = invitation(&task, &step, slot_from, slot_to, &participants)?;
    let body = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(ics.clone()))
    });
    let file =
        crate::files::upload(ctx, actor, "meeting.ics", "text/calendar", Box::pin(body)).await?;
    let mut outbox = Outbox::for_request();
    let by = By::actor(actor);
    let view = ctx
        .store
        .transaction(async |db| {
            let (task, mut step, mut current) = load(db, actor.workspace_id(), step_id).await?;
            if current.status != "proposed"
                || current.slot_from != Some(slot_from)
                || current.slot_to != Some(slot_to)
            {
                return Err(Error::conflict("the proposal changed; read the step again"));
            }
            current.status = "scheduled".into();
            current.file_id = Some(file.id.clone());
            current.confirmed_by = Some(actor.describe());
            current.updated_at = now_ms();
            model::update_meeting(db, &current).await?;
            let now = now_ms();
            if step_status(&step) != StepStatus::Ready {
                return Err(Error::conflict(format!(
                    "step is {}; a meeting is confirmed while its step is ready",
                    step.status
                )));
            }
            transition(
                db,
                &mut step,
                StepStatus::Claimed,
                StepChange {
                    claimed_by: Some(Some(confirmer.clone())),
                    started_at: Some(Some(now)),
                    ..Default::default()
                },
                &by,
                None,
            )
            .await?;
            let slot = Interval {
                from: utc_text(slot_from),
                to: utc_text(slot_to),
            };
            let emails: Vec<String> = participants.iter().map(|p| p.email.clone()).collect();
            let result = json!({"meeting": {"from": slot.from, "to": slot.to, "participants": emails}});
            let summary = format!("Meeting scheduled from {} to {}", slot.from, slot.to);
            let files = serde_json::to_string(&[&file.id])?;
            let digest = crate::tasks::result_digest(Some(&summary), &result, std::slice::from_ref(&file.id));
            transition(
                db,
                &mut step,
                StepStatus::Submitted,
                StepChange {
                    result: Some(Some(result.to_string())),
                    summary: Some(Some(summary.clone())),
                    files: Some(files),
                    lease_until: Some(None),
                    result_digest: Some(Some(digest)),
                    ..Default::default()
                },
                &by,
                None,
            )
            .await?;
            let frame = ServerFrame::MeetingScheduled(Box::new(MeetingScheduled {
                seq: 0,
                task_id: uuid(&task.id),
                step_id: uuid(&step.id),
                title: step.title.clone(),
                slot: slot.clone(),
                participants: emails.clone(),
                ics: ics.clone(),
            }));
            let mut told_members: Vec<String> = Vec::new();
            for participant in &participants {
                if let Some(agent_id) = &participant.agent_id {
                    outbox.push(Audience::Agent(agent_id.clone()), frame.clone());
                    continue;
                }
                let member_id = match (&participant.member_id, &task.creator_member_id) {
                    (Some(member_id), _) => member_id.clone(),
                    (None, Some(creator)) => creator.clone(),
                    (None, None) => continue,
                };
                if told_members.contains(&member_id) && participant.member_id.is_none() {
                    continue;
                }
                told_members.push(member_id.clone());
                notifications::notify(
                    db,
                    &task.workspace_id,
                    &member_id,
                    Notification {
                        kind: MEETING_SCHEDULED.into(),
                        priority: Priority::Info,
                        task_id: Some(task.id.clone()),
                        step_id: Some(step.id.clone()),
                        subject_id: Some(file.id.clone()),
                        title: format!("\"{}\" is scheduled", step.title),
                        body: format!(
                            "{summary}; the invitation is file {} (GET /v1/files/{}).",
                            file.id, file.id
                        ),
                        data: json!({"step_id": step.id, "file_id": file.id, "slot": {"from": slot.from, "to": slot.to}}),
                    },
                )
                .await?;
            }
            crate::tasks::complete_in_tx(db, &mut outbox, &task, &mut step, &by).await?;
            outbox.flush(db, actor.workspace_id()).await?;
            view_in(db, step_id).await
        })
        .await?;
    ctx.publish(outbox.into_written()).await;
    Ok(view)
}

/// The assignee agent a confirmation is made for: the calling agent, or an agent of the
/// calling member among the step's assignees.
async fn confirming_agent(db: &mut Db<'_>, actor: &Actor, step: &Step) -> Result<String> {
    let assignees = model::assignees_of(db, std::slice::from_ref(&step.id)).await?;
    let agent_ids: Vec<String> = assignees
        .into_iter()
        .map(|(_, agent_id)| agent_id)
        .collect();
    let found = match actor {
        Actor::Agent(agent) => agent_ids.iter().find(|id| **id == agent.agent_id).cloned(),
        Actor::Member(member) => agents::model::agents_by_ids(db, &agent_ids)
            .await?
            .into_iter()
            .find(|agent| agent.owner_member_id == member.member_id)
            .map(|agent| agent.id),
    };
    found.ok_or_else(|| Error::forbidden("only the step's assignee confirms its meeting"))
}

/// The invitation: one `VEVENT` in UTC with every participant as an attendee.
pub fn invitation(
    task: &Task,
    step: &Step,
    slot_from: i64,
    slot_to: i64,
    participants: &[MeetingParticipant],
) -> Result<String> {
    let ical_time = |ms: i64| -> Result<DatePerhapsTime> {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|err| Error::internal(format!("meeting time: {err}")))?;
        let text = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        CalendarDateTime::from_str(&text)
            .map(DatePerhapsTime::DateTime)
            .map_err(|_| Error::internal(format!("meeting time `{text}`")))
    };
    let mut event = Event::new();
    event
        .uid(&format!("{}@agenthub", step.id))
        .summary(&step.title)
        .description(&format!("{}\n\n{}", task.title, step.description))
        .starts(ical_time(slot_from)?)
        .ends(ical_time(slot_to)?);
    for participant in participants {
        let mut attendee = Attendee::new(format!("mailto:{}", participant.email));
        if let Some(name) = &participant.name {
            attendee = attendee.cn(name.clone());
        }
        event.attendee(attendee);
    }
    let calendar = Calendar::new().push(event.done()).done();
    Ok(calendar.to_string())
}

/// The meeting of a step, if it is one.
pub(crate) async fn view_of(db: &mut Db<'_>, step_id: &str) -> Result<Option<MeetingView>> {
    if model::find_meeting(db, step_id).await?.is_none() {
        return Ok(None);
    }
    view_in(db, step_id).await.map(Some)
}

async fn view_in(db: &mut Db<'_>, step_id: &str) -> Result<MeetingView> {
    let meeting = model::find_meeting(db, step_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("meeting of step `{step_id}`")))?;
    let rows = model::participants_of(db, step_id).await?;
    let agent_ids: Vec<String> = rows.iter().filter_map(|row| row.agent_id.clone()).collect();
    let agents = agents::model::agents_by_ids(db, &agent_ids).await?;
    let participants = rows
        .into_iter()
        .map(|row| ParticipantView {
            asked: match (&row.agent_id, &row.member_id) {
                (Some(_), _) => "agent",
                (None, Some(_)) => "member",
                (None, None) => "guest",
            },
            agent_name: row.agent_id.as_ref().and_then(|agent_id| {
                agents
                    .iter()
                    .find(|agent| &agent.id == agent_id)
                    .map(|agent| agent.name.clone())
            }),
            intervals: row
                .intervals
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            row,
        })
        .collect();
    Ok(MeetingView {
        meeting,
        participants,
    })
}
