//! Home: what waits for the member (approvals with the result and its digest, questions
//! with their options), and the decisions taken from it — the same domain calls and
//! rules as `POST /v1/steps/{id}/approve|reject` and `/v1/input-requests/{id}/answer`.

use askama::Template;
use axum::extract::{Path, State};

use crate::api::AppState;
use crate::approvals::{self, ApprovalRef, Verdict};
use crate::error::Error;
use crate::web::{Layout, Page, PageError, PageForm, PageResult, excerpt, render, see_other, when};
use agenthub_protocol::Decision;

/// How much of a result the inbox shows (the task page shows it whole).
const RESULT_EXCERPT: usize = 1500;

pub struct ApprovalItem {
    pub step_id: String,
    pub task_id: String,
    pub step_title: String,
    pub level: i32,
    pub attempt: i32,
    pub digest: String,
    pub summary: String,
    pub result: String,
    pub may_reject: bool,
    pub asked: String,
}

pub struct QuestionItem {
    pub id: String,
    pub task_id: String,
    pub step_title: String,
    pub question: String,
    pub options: Vec<String>,
    pub asked: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    approvals: Vec<ApprovalItem>,
    questions: Vec<QuestionItem>,
}

/// `GET /`: the member's pending approvals and open questions.
pub async fn inbox(State(ctx): State<AppState>, page: Page) -> PageResult {
    let inbox = approvals::inbox(&ctx, page.actor()).await?;
    let approvals = inbox
        .approvals
        .into_iter()
        .map(|(approval, step)| ApprovalItem {
            step_id: step.id.clone(),
            task_id: step.task_id.clone(),
            step_title: step.title.clone(),
            level: step.approval_level,
            attempt: approval.attempt,
            digest: step.result_digest.clone().unwrap_or_default(),
            summary: step.summary.clone().unwrap_or_default(),
            result: excerpt(&pretty_json(step.result.as_deref()), RESULT_EXCERPT),
            may_reject: step.approval_level >= 2,
            asked: when(approval.created_at),
        })
        .collect::<Vec<_>>();
    let questions = inbox
        .questions
        .into_iter()
        .map(|(question, step)| QuestionItem {
            id: question.id.clone(),
            task_id: step.task_id.clone(),
            step_title: step.title.clone(),
            question: question.question.clone(),
            options: serde_json::from_str(&question.options).unwrap_or_default(),
            asked: when(question.created_at),
        })
        .collect();
    let n_waiting = approvals.len();
    let title = if n_waiting == 0 {
        "Inbox".to_string()
    } else {
        format!("Inbox ({n_waiting})")
    };
    render(&InboxPage {
        layout: Layout::new(&page, title, "inbox"),
        approvals,
        questions,
    })
}

/// `POST /steps/{id}/approve` (fields `attempt`, `digest`): approves the result seen.
pub async fn approve(
    State(ctx): State<AppState>,
    Path(step_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let attempt = attempt_of(&form)?;
    let verdict = Verdict::new(Decision::Approve, None);
    let verdict = match form.field("digest") {
        "" => verdict,
        digest => verdict.seen(digest),
    };
    approvals::decide(
        &ctx,
        form.page.actor(),
        ApprovalRef::Step(&step_id, attempt),
        verdict,
    )
    .await
    .map_err(in_page(&form.page))?;
    Ok(see_other(back(&form)))
}

/// `POST /steps/{id}/reject` (fields `attempt`, `digest`, `comment`): sends the step
/// back for rework.
pub async fn reject(
    State(ctx): State<AppState>,
    Path(step_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let attempt = attempt_of(&form)?;
    let comment = form.field("comment");
    let verdict = Verdict::new(Decision::Reject, Some(comment));
    let verdict = match form.field("digest") {
        "" => verdict,
        digest => verdict.seen(digest),
    };
    approvals::decide(
        &ctx,
        form.page.actor(),
        ApprovalRef::Step(&step_id, attempt),
        verdict,
    )
    .await
    .map_err(in_page(&form.page))?;
    Ok(see_other(back(&form)))
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
    Ok(see_other(back(&form)))
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
