//! What agents propose and people decide from the dashboard: a task's plan (accept it,
//! or ask again with a comment), the workflow changes a self-check suggests (accept or
//! refuse each), and meeting steps (a participant's free intervals, the assignee's
//! confirmation of the proposed slot). The same domain calls and rules as
//! `POST /v1/tasks/{id}/plan/accept|revise`, `/v1/workflow-approvals/{id}/approve|reject`
//! and `/v1/steps/{id}/meeting/availability|confirm`.

use axum::extract::{Path, State};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::AppState;
use crate::error::Error;
use crate::tasks::{self, meeting};
use crate::web::home::{back, in_page, read_acted_on};
use crate::web::{PageForm, PageResult, see_other};
use agenthub_protocol::Interval;

/// `POST /tasks/{id}/plan/accept`: the proposal as it is.
pub async fn accept_plan(
    State(ctx): State<AppState>,
    Path(task_id): Path<String>,
    form: PageForm,
) -> PageResult {
    tasks::accept_plan(&ctx, form.page.actor(), &task_id, None)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{task_id}")))
}

/// `POST /tasks/{id}/plan/revise` (field `comment`): asks the planner again.
pub async fn revise_plan(
    State(ctx): State<AppState>,
    Path(task_id): Path<String>,
    form: PageForm,
) -> PageResult {
    tasks::revise_plan(
        &ctx,
        form.page.actor(),
        &task_id,
        form.field("comment"),
        None,
    )
    .await
    .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{task_id}")))
}

/// `POST /workflow-approvals/{id}/approve` (fields `comment`, `notification`, `back`):
/// the suggested change is applied.
pub async fn approve_suggestion(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    form: PageForm,
) -> PageResult {
    decide_suggestion(&ctx, &id, &form, true).await
}

/// `POST /workflow-approvals/{id}/reject` (fields `comment`, `notification`, `back`):
/// nothing changes.
pub async fn reject_suggestion(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    form: PageForm,
) -> PageResult {
    decide_suggestion(&ctx, &id, &form, false).await
}

async fn decide_suggestion(ctx: &AppState, id: &str, form: &PageForm, approve: bool) -> PageResult {
    let comment = Some(form.field("comment")).filter(|comment| !comment.trim().is_empty());
    tasks::decide_workflow_approval(ctx, form.page.actor(), id, approve, comment)
        .await
        .map_err(in_page(&form.page))?;
    read_acted_on(ctx, form).await?;
    Ok(see_other(back(form)))
}

/// `POST /steps/{id}/meeting/confirm`: the step's assignee confirms the proposed slot.
pub async fn confirm_meeting(
    State(ctx): State<AppState>,
    Path(step_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let view = meeting::confirm(&ctx, form.page.actor(), &step_id)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{}", view.meeting.task_id)))
}

/// `POST /meetings/{request_id}/availability`: a participant's free intervals, as rows
/// of `from` and `to` (`2026-12-07T09:00` at the form's `offset`, or RFC 3339 with their
/// own offset; empty rows are left out), or `none=yes`: not free in the window.
pub async fn answer_meeting(
    State(ctx): State<AppState>,
    Path(request_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let intervals = if form.field("none") == "yes" {
        Vec::new()
    } else {
        let intervals = intervals_of(&form).map_err(in_page(&form.page))?;
        if intervals.is_empty() {
            return Err(in_page(&form.page)(Error::invalid_field(
                "from",
                "give at least one time you are free, or answer that you are not free in the window",
            )));
        }
        intervals
    };
    meeting::respond_to_request(&ctx, form.page.actor(), &request_id, &intervals)
        .await
        .map_err(in_page(&form.page))?;
    read_acted_on(&ctx, &form).await?;
    Ok(see_other(back(&form)))
}

/// The rows of an availability form as intervals with offsets.
fn intervals_of(form: &PageForm) -> Result<Vec<Interval>, Error> {
    let offset = match form.field("offset").trim() {
        "" | "Z" | "z" => "Z".to_string(),
        offset => offset.to_string(),
    };
    let valid_offset = offset == "Z"
        || (offset.len() == 6
            && offset.starts_with(['+', '-'])
            && offset.as_bytes()[3] == b':'
            && offset[1..3]
                .bytes()
                .chain(offset[4..].bytes())
                .all(|byte| byte.is_ascii_digit()));
    if !valid_offset {
        return Err(Error::invalid_field(
            "offset",
            format!("`{offset}` is not a UTC offset; write it as +09:00 or -05:30"),
        ));
    }
    // Rows pair up by position, empty fields included.
    let row_values = |name: &str| -> Vec<&str> {
        form.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    };
    let (froms, tos) = (row_values("from"), row_values("to"));
    if froms.len() != tos.len() {
        return Err(Error::invalid_field(
            "from",
            "each row gives when you are free from and until; reload the page",
        ));
    }
    let mut intervals = Vec::new();
    for (idx, (from, to)) in froms.iter().zip(tos.iter()).enumerate() {
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() && to.is_empty() {
            continue;
        }
        if from.is_empty() || to.is_empty() {
            return Err(Error::invalid_field(
                "from",
                format!(
                    "row {} needs both when you are free from and until",
                    idx + 1
                ),
            ));
        }
        intervals.push(Interval {
            from: with_offset(from, &offset),
            to: with_offset(to, &offset),
        });
    }
    Ok(intervals)
}

/// `2026-12-07T09:00` (a browser's local date and time) at `offset`; a time with its own
/// offset as it is. The domain checks the result.
fn with_offset(text: &str, offset: &str) -> String {
    if OffsetDateTime::parse(text, &Rfc3339).is_ok() {
        return text.to_string();
    }
    // `HH:MM` without seconds, as browsers send it.
    let seconds = if text.len() == "2026-12-07T09:00".len() {
        ":00"
    } else {
        ""
    };
    format!("{text}{seconds}{offset}")
}
