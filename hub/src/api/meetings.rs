//! Meeting step routes: answer for a participant, confirm the proposed slot, change the
//! window.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::extract::{ApiJson, Auth};
use crate::api::views::timestamp;
use crate::error::{Error, Result};
use crate::tasks::meeting::{self, MeetingView, NewMeeting, NewParticipant};
use agenthub_protocol::Interval;

/// `"meeting"` of a step to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingRequest {
    /// Member emails, or `{"name", "email"}` of people without an agent (outside the
    /// workspace, or members named with their name): 1-50, each once.
    pub participants: Vec<ParticipantRequest>,
    /// 1-1440.
    pub duration_minutes: u32,
    /// Where to look for a slot (RFC 3339 with offsets; at most 92 days, not over);
    /// default: from now to the end (UTC) of the fifth working day after today.
    #[serde(default)]
    pub window: Option<WindowRequest>,
}

/// A participant: a member's email, or a person's name and email.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ParticipantRequest {
    Email(String),
    Person { name: String, email: String },
}

/// A span of time: RFC 3339 timestamps with an offset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    pub from: String,
    pub to: String,
}

impl TryFrom<MeetingRequest> for NewMeeting {
    type Error = Error;

    fn try_from(req: MeetingRequest) -> Result<Self> {
        let window = match &req.window {
            None => None,
            Some(window) => Some((
                meeting::parse_time("steps.meeting.window.from", &window.from)?,
                meeting::parse_time("steps.meeting.window.to", &window.to)?,
            )),
        };
        Ok(NewMeeting {
            participants: req
                .participants
                .into_iter()
                .map(|participant| match participant {
                    ParticipantRequest::Email(email) => NewParticipant { email, name: None },
                    ParticipantRequest::Person { name, email } => NewParticipant {
                        email,
                        name: Some(name),
                    },
                })
                .collect(),
            duration_minutes: req.duration_minutes,
            window,
        })
    }
}

/// A meeting step's coordination.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingResponse {
    pub duration_minutes: i32,
    /// In UTC.
    pub window: WindowRequest,
    /// `waiting` (the step is not ready), `collecting` (answers come in), `proposed`
    /// (`slot` fits everyone; the assignee confirms), `no_fit` (nothing fits: widen the
    /// window) or `scheduled` (confirmed; `file_id` is the invitation).
    pub status: String,
    /// The earliest slot every participant is free for, in UTC.
    pub slot: Option<WindowRequest>,
    /// The `.ics` invitation attached to the step (`GET /v1/files/{id}`).
    pub file_id: Option<String>,
    /// Who confirmed (`member:<id>` or `agent:<id>`).
    pub confirmed_by: Option<String>,
    pub participants: Vec<ParticipantResponse>,
}

/// One participant and their answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantResponse {
    pub email: String,
    pub name: Option<String>,
    /// `agent` (its agent answers), `member` (asked in their inbox) or `guest` (the
    /// task's creator answers for them).
    pub asked: String,
    pub agent: Option<String>,
    pub answered_at: Option<String>,
    /// When they are free, as answered (offsets kept).
    pub intervals: Vec<WindowRequest>,
}

impl From<MeetingView> for MeetingResponse {
    fn from(view: MeetingView) -> Self {
        let meeting = view.meeting;
        MeetingResponse {
            duration_minutes: meeting.duration_minutes,
            window: WindowRequest {
                from: timestamp(meeting.window_from),
                to: timestamp(meeting.window_to),
            },
            status: meeting.status,
            slot: meeting
                .slot_from
                .zip(meeting.slot_to)
                .map(|(from, to)| WindowRequest {
                    from: timestamp(from),
                    to: timestamp(to),
                }),
            file_id: meeting.file_id,
            confirmed_by: meeting.confirmed_by,
            participants: view
                .participants
                .into_iter()
                .map(|participant| ParticipantResponse {
                    email: participant.row.email,
                    name: participant.row.name,
                    asked: participant.asked.to_string(),
                    agent: participant.agent_name,
                    answered_at: participant.row.responded_at.map(timestamp),
                    intervals: participant
                        .intervals
                        .into_iter()
                        .map(|interval| WindowRequest {
                            from: interval.from,
                            to: interval.to,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// `{"meeting": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingEnvelope {
    pub meeting: MeetingResponse,
}

/// Free intervals of one participant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerAvailabilityRequest {
    /// The participant's email.
    pub participant: String,
    /// When they are free: each inside the window, RFC 3339 with offsets; may be empty.
    pub intervals: Vec<WindowRequest>,
}

/// A participant's free time: a member answers for themselves (when they have no agent,
/// or instead of it), the task's creator for a person outside the workspace. An answer
/// replaces the participant's previous one; once everyone answered, the hub proposes
/// the earliest common slot (or says none fits).
#[utoipa::path(post, path = "/v1/steps/{id}/meeting/availability", tag = "steps",
    params(("id" = String, Path, description = "The meeting step's id.")),
    request_body = AnswerAvailabilityRequest,
    responses(
        (status = 200, description = "the meeting with the answer", body = MeetingEnvelope),
        (status = 422, description = "`invalid`: not a participant, an interval not RFC 3339, inverted or outside the window, over 500 intervals"),
        (status = 403, description = "`forbidden`: the caller does not answer for this participant"),
        (status = 404, description = "`not_found`: no such step, or it is not a meeting"),
        (status = 409, description = "`conflict`: the step is not ready yet, or the meeting is scheduled"),
    ))]
pub async fn answer_availability(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    ApiJson(req): ApiJson<AnswerAvailabilityRequest>,
) -> Result<Json<MeetingEnvelope>> {
    let intervals: Vec<Interval> = req
        .intervals
        .into_iter()
        .map(|interval| Interval {
            from: interval.from,
            to: interval.to,
        })
        .collect();
    let view = meeting::respond(&ctx, &actor, &step_id, &req.participant, &intervals).await?;
    Ok(Json(MeetingEnvelope {
        meeting: view.into(),
    }))
}

/// The step's assignee (an assignee agent, or the member owning one) confirms the
/// proposed slot: every participant is sent the `.ics` invitation (their agent in
/// `meeting.scheduled`, others in the inbox), which is attached to the step, and the
/// step is done.
#[utoipa::path(post, path = "/v1/steps/{id}/meeting/confirm", tag = "steps",
    params(("id" = String, Path, description = "The meeting step's id.")),
    responses(
        (status = 200, description = "the scheduled meeting", body = MeetingEnvelope),
        (status = 403, description = "`forbidden`: the caller is not the step's assignee"),
        (status = 404, description = "`not_found`: no such step, or it is not a meeting"),
        (status = 409, description = "`conflict`: no slot is proposed (answers missing, none fits, already scheduled)"),
    ))]
pub async fn confirm_meeting(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
) -> Result<Json<MeetingEnvelope>> {
    let view = meeting::confirm(&ctx, &actor, &step_id).await?;
    Ok(Json(MeetingEnvelope {
        meeting: view.into(),
    }))
}

/// A new window (after none fitted, say), by the task's creator or the step's
/// assignee: every answer is dropped and every participant is asked again.
#[utoipa::path(put, path = "/v1/steps/{id}/meeting/window", tag = "steps",
    params(("id" = String, Path, description = "The meeting step's id.")),
    request_body = WindowRequest,
    responses(
        (status = 200, description = "the meeting, collecting again", body = MeetingEnvelope),
        (status = 422, description = "`invalid`: the window is inverted, in the past, over 92 days or shorter than the meeting"),
        (status = 403, description = "`forbidden`: the caller is neither the task's creator nor the step's assignee"),
        (status = 404, description = "`not_found`: no such step, or it is not a meeting"),
        (status = 409, description = "`conflict`: the meeting is scheduled"),
    ))]
pub async fn change_window(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(step_id): Path<String>,
    ApiJson(req): ApiJson<WindowRequest>,
) -> Result<Json<MeetingEnvelope>> {
    let from = meeting::parse_time("from", &req.from)?;
    let to = meeting::parse_time("to", &req.to)?;
    let view = meeting::change_window(&ctx, &actor, &step_id, from, to).await?;
    Ok(Json(MeetingEnvelope {
        meeting: view.into(),
    }))
}
