//! Home: the member's notification inbox. "Waiting on you" holds the open action items
//! (approvals with the result and its digest, questions with their options, availability
//! requests to their agents, a meeting's question when they are free, answered with
//! intervals, and workflow changes agents suggest for their tasks), each decided in one
//! click; "For your information" the others. The decisions are the same domain calls and
//! rules as `POST /v1/steps/{id}/approve|reject`, `/v1/input-requests/{id}/answer`,
//! `/v1/steps/{id}/meeting/availability` and `/v1/workflow-approvals/{id}/approve|reject`,
//! and the item acted on is marked read, as `POST /v1/me/notifications/{id}/read` does.

use askama::Template;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use crate::api::AppState;
use crate::approvals::{self, ApprovalRef, Verdict};
use crate::error::Error;
use crate::notifications::{self, ListQuery, ReadAll, model::NotificationRow};
use crate::tasks::{self, meeting};
use crate::web::tasks::SuggestionCard;
use crate::web::{Layout, Page, PageError, PageForm, PageResult, excerpt, render, see_other, when};
use agenthub_protocol::Decision;

/// How much of a result the inbox shows (the task page shows it whole).
const RESULT_EXCERPT: usize = 1500;
/// Information notifications per page of the inbox.
const INFO_PAGE: u32 = 25;

pub struct ApprovalItem {
    pub notification: String,
    pub step_id: String,
    pub task_id: String,
    pub step_title: String,
    pub level: i64,
    pub attempt: i64,
    pub digest: String,
    pub summary: String,
    pub result: String,
    pub may_reject: bool,
    pub asked: String,
    /// The submitting agent's check says the result does not fit the task.
    pub unfit: bool,
}

pub struct QuestionItem {
    pub notification: String,
    pub id: String,
    pub task_id: String,
    pub step_title: String,
    pub question: String,
    pub options: Vec<String>,
    pub asked: String,
}

pub struct AvailabilityItem {
    pub notification: String,
    pub id: String,
    pub agent: String,
    pub task_id: String,
    pub question: String,
    pub asked: String,
}

/// A meeting's question when a participant is free: answered with intervals.
pub struct MeetingItem {
    pub notification: String,
    /// The participant's request id.
    pub id: String,
    pub task_id: String,
    pub title: String,
    pub question: String,
    /// The window, in UTC.
    pub window: String,
    pub duration_minutes: i64,
    pub asked: String,
}

pub struct InfoItem {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub task_id: String,
    pub unread: bool,
    pub at: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    approvals: Vec<ApprovalItem>,
    questions: Vec<QuestionItem>,
    availability: Vec<AvailabilityItem>,
    meetings: Vec<MeetingItem>,
    suggestions: Vec<SuggestionCard>,
    /// Action items that wait on the member but are none of the above (a disabled
    /// webhook, or a kind this page does not know): shown by title and body.
    other_actions: Vec<InfoItem>,
    info: Vec<InfoItem>,
    /// Whether the information list was paged back (`?before=`).
    paged: bool,
    /// The cursor of the next, older page of information; empty on the last page.
    older: String,
}

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    /// Information older than this notification id.
    #[serde(default)]
    pub before: Option<String>,
}

/// `GET /?before=…`: the member's notifications: every open action item (the newest
/// [`notifications::MAX_PAGE`]), and a page of the others, newest first.
pub async fn inbox(
    State(ctx): State<AppState>,
    page: Page,
    Query(query): Query<InboxQuery>,
) -> PageResult {
    let actions = notifications::list(
        &ctx,
        page.actor(),
        &ListQuery {
            priority: Some(notifications::Priority::Action),
            limit: notifications::MAX_PAGE,
            ..ListQuery::default()
        },
    )
    .await?;
    let listed_info = notifications::list(
        &ctx,
        page.actor(),
        &ListQuery {
            priority: Some(notifications::Priority::Info),
            before: query.before.clone().filter(|id| !id.is_empty()),
            limit: INFO_PAGE,
            ..ListQuery::default()
        },
    )
    .await?;
    let older = match listed_info.notifications.last() {
        Some(last) if listed_info.has_more => last.id.clone(),
        _ => String::new(),
    };
    let info: Vec<InfoItem> = listed_info.notifications.iter().map(info_item).collect();
    let mut approvals = Vec::new();
    let mut questions = Vec::new();
    let mut availability = Vec::new();
    let mut meetings = Vec::new();
    let mut suggestions = Vec::new();
    let mut other_actions = Vec::new();
    for row in actions.notifications {
        // An action item that no longer waits is history, not work.
        if row.resolved_at.is_some() {
            continue;
        }
        let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
        let text = |key: &str| data[key].as_str().unwrap_or_default().to_string();
        match row.kind.as_str() {
            notifications::APPROVAL_REQUESTED => {
                let Some(step_id) = row.step_id.clone() else {
                    continue;
                };
                // The step gives the result to read; the digest and attempt the member
                // was asked about come with the notification.
                let step = match tasks::get_step(&ctx, page.actor(), &step_id).await {
                    Ok(view) => view.step,
                    Err(Error::NotFound(_)) => continue,
                    Err(other) => return Err(other.into()),
                };
                let level = data["approval_level"]
                    .as_i64()
                    .unwrap_or(i64::from(step.approval_level));
                let digest = match text("digest") {
                    digest if digest.is_empty() => step.result_digest.clone().unwrap_or_default(),
                    digest => digest,
                };
                approvals.push(ApprovalItem {
                    notification: row.id.clone(),
                    task_id: step.task_id.clone(),
                    step_title: step.title.clone(),
                    level,
                    attempt: data["attempt"].as_i64().unwrap_or(i64::from(step.attempt)),
                    digest,
                    summary: step.summary.clone().unwrap_or_default(),
                    result: excerpt(&pretty_json(step.result.as_deref()), RESULT_EXCERPT),
                    may_reject: level >= 2,
                    asked: when(row.created_at),
                    unfit: data["fits"] == Value::Bool(false),
                    step_id,
                });
            }
            notifications::INPUT_REQUESTED => questions.push(QuestionItem {
                notification: row.id.clone(),
                id: row
                    .subject_id
                    .clone()
                    .unwrap_or_else(|| text("input_request_id")),
                task_id: row.task_id.clone().unwrap_or_default(),
                step_title: step_title(&ctx, &page, &row).await?,
                question: text("question"),
                options: data["options"]
                    .as_array()
                    .map(|options| {
                        options
                            .iter()
                            .filter_map(|option| option.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                asked: when(row.created_at),
            }),
            // A meeting's request (it names the window) asks for free intervals.
            notifications::AVAILABILITY_REQUESTED | meeting::MEETING_AVAILABILITY
                if data["window"].is_object() =>
            {
                meetings.push(MeetingItem {
                    notification: row.id.clone(),
                    id: row.subject_id.clone().unwrap_or_else(|| text("request_id")),
                    task_id: row.task_id.clone().unwrap_or_default(),
                    // An agent's request is the member's own question.
                    title: if row.kind == notifications::AVAILABILITY_REQUESTED {
                        "When are you free?".to_string()
                    } else {
                        row.title.clone()
                    },
                    question: row.body.clone(),
                    window: format!(
                        "{} – {}",
                        data["window"]["from"].as_str().unwrap_or_default(),
                        data["window"]["to"].as_str().unwrap_or_default()
                    ),
                    duration_minutes: data["duration_minutes"].as_i64().unwrap_or_default(),
                    asked: when(row.created_at),
                });
            }
            notifications::WORKFLOW_PROPOSED => {
                let Some(id) = row.subject_id.clone() else {
                    other_actions.push(info_item(&row));
                    continue;
                };
                let what = serde_json::from_value(data["suggestion"].clone())
                    .map(|suggestion| tasks::describe_suggestion(&suggestion))
                    .unwrap_or_else(|_| row.title.clone());
                suggestions.push(SuggestionCard {
                    id,
                    step_key: text("step_key"),
                    agent: text("agent_name"),
                    what,
                    reason: row.body.clone(),
                    status: "pending".into(),
                    may_decide: true,
                    notification: row.id.clone(),
                    back: "/".into(),
                    task_id: row.task_id.clone().unwrap_or_default(),
                });
            }
            notifications::AVAILABILITY_REQUESTED => availability.push(AvailabilityItem {
                notification: row.id.clone(),
                id: row.subject_id.clone().unwrap_or_else(|| text("request_id")),
                agent: match text("agent_name") {
                    name if name.is_empty() => text("agent_id"),
                    name => name,
                },
                task_id: row.task_id.clone().unwrap_or_default(),
                question: text("question"),
                asked: when(row.created_at),
            }),
            _ => other_actions.push(info_item(&row)),
        }
    }
    let n_waiting = page.unread.action;
    let title = if n_waiting == 0 {
        "Inbox".to_string()
    } else {
        format!("Inbox ({n_waiting})")
    };
    render(&InboxPage {
        layout: Layout::new(&page, title, "inbox"),
        approvals,
        questions,
        availability,
        meetings,
        suggestions,
        other_actions,
        info,
        paged: query.before.is_some_and(|id| !id.is_empty()),
        older,
    })
}

/// The title of the step a notification is about; its own title without one.
async fn step_title(ctx: &AppState, page: &Page, row: &NotificationRow) -> PageResult<String> {
    let Some(step_id) = &row.step_id else {
        return Ok(row.title.clone());
    };
    match tasks::get_step(ctx, page.actor(), step_id).await {
        Ok(view) => Ok(view.step.title),
        Err(Error::NotFound(_)) => Ok(row.title.clone()),
        Err(other) => Err(other.into()),
    }
}

fn info_item(row: &NotificationRow) -> InfoItem {
    InfoItem {
        id: row.id.clone(),
        kind: row.kind.clone(),
        title: row.title.clone(),
        body: row.body.clone(),
        task_id: row.task_id.clone().unwrap_or_default(),
        unread: row.read_at.is_none() && row.resolved_at.is_none(),
        at: when(row.created_at),
    }
}

/// `POST /steps/{id}/approve` (fields `attempt`, `digest`): approves the result seen.
pub async fn approve(
    State(ctx): State<AppState>,
    Path(step_id): Path<String>,
    form: PageForm,
) -> PageResult {
    decide(&ctx, &step_id, &form, Verdict::new(Decision::Approve, None)).await
}

/// `POST /steps/{id}/reject` (fields `attempt`, `digest`, `comment`): sends the step
/// back for rework.
pub async fn reject(
    State(ctx): State<AppState>,
    Path(step_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let verdict = Verdict::new(Decision::Reject, Some(form.field("comment")));
    decide(&ctx, &step_id, &form, verdict).await
}

/// Decides the step's approval of the form's `attempt`, on the result of its `digest`
/// when the form names one, and goes back to the page the form came from.
async fn decide(
    ctx: &AppState,
    step_id: &str,
    form: &PageForm,
    verdict: Verdict<'_>,
) -> PageResult {
    let attempt = attempt_of(form)?;
    let verdict = match form.field("digest") {
        "" => verdict,
        digest => verdict.seen(digest),
    };
    approvals::decide(
        ctx,
        form.page.actor(),
        ApprovalRef::Step(step_id, attempt),
        verdict,
    )
    .await
    .map_err(in_page(&form.page))?;
    read_acted_on(ctx, form).await?;
    Ok(see_other(back(form)))
}

/// `POST /questions/{id}/answer` (field `answer`).
pub async fn answer(
    State(ctx): State<AppState>,
    Path(request_id): Path<String>,
    form: PageForm,
) -> PageResult {
    approvals::answer(&ctx, form.page.actor(), &request_id, form.field("answer"))
        .await
        .map_err(in_page(&form.page))?;
    read_acted_on(&ctx, &form).await?;
    Ok(see_other(back(&form)))
}

/// `POST /availability/{id}/answer` (fields `available`: `yes` or `no`, `note`): the
/// member answers an availability request to one of their agents.
pub async fn answer_availability(
    State(ctx): State<AppState>,
    Path(request_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let available = match form.field("available") {
        "yes" => true,
        "no" => false,
        _ => {
            return Err(in_page(&form.page)(Error::BadRequest {
                message: "say whether the agent is available: `yes` or `no`".into(),
                field: Some("available".into()),
            }));
        }
    };
    let note = Some(form.field("note")).filter(|note| !note.is_empty());
    approvals::respond_availability_for_agent(
        &ctx,
        form.page.actor(),
        &request_id,
        available,
        note,
    )
    .await
    .map_err(in_page(&form.page))?;
    read_acted_on(&ctx, &form).await?;
    Ok(see_other(back(&form)))
}

/// `POST /notifications/{id}/read`: marks one of the member's notifications read.
pub async fn mark_read(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    form: PageForm,
) -> PageResult {
    notifications::set_read(&ctx, form.page.actor(), &id, true)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(back(&form)))
}

/// `POST /notifications/read` (field `priority`: `action`, `info`, or empty for all):
/// marks the member's unread notifications read.
pub async fn mark_all_read(State(ctx): State<AppState>, form: PageForm) -> PageResult {
    let priority = match form.field("priority") {
        "" => None,
        priority => Some(priority.parse().map_err(in_page(&form.page))?),
    };
    let read_all = ReadAll {
        up_to: None,
        priority,
    };
    notifications::mark_all_read(&ctx, form.page.actor(), &read_all)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(back(&form)))
}

/// The notification a decision was taken from (hidden field `notification`) is read
/// now. The decision stands when the notification is gone (deleted by the sweep).
pub async fn read_acted_on(ctx: &AppState, form: &PageForm) -> PageResult<()> {
    let id = form.field("notification");
    if id.is_empty() {
        return Ok(());
    }
    match notifications::set_read(ctx, form.page.actor(), id, true).await {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(other) => Err(in_page(&form.page)(other)),
    }
}

/// The attempt a decision names (a hidden field of the form).
fn attempt_of(form: &PageForm) -> Result<u32, PageError> {
    form.field("attempt").parse().map_err(|_| {
        in_page(&form.page)(Error::BadRequest {
            message: "the form names no attempt; reload the page".into(),
            field: Some("attempt".into()),
        })
    })
}

/// Where a form goes back to: its `back` field when it is a path of this site, else home.
pub fn back(form: &PageForm) -> &str {
    let back = form.field("back");
    if back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') {
        back
    } else {
        "/"
    }
}

/// Shows a refused action in the page frame, with its message.
pub fn in_page(page: &Page) -> impl Fn(Error) -> PageError + '_ {
    move |error| PageError::in_layout(error, Layout::new(page, "Not done", "inbox"))
}

/// Stored JSON, indented for reading; empty for none.
pub fn pretty_json(stored: Option<&str>) -> String {
    let Some(text) = stored else {
        return String::new();
    };
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_else(|_| text.to_string())
}
