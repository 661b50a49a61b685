//! Tasks: the list with its filters and paging, a task's page (its DAG drawn by the hub,
//! timeline, results, files, token usage, the live log of running steps, and the
//! actions the member may take), and the new-task form.

use askama::Template;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::accounts::{self, authority};
use crate::agents;
use crate::api::AppState;
use crate::approvals;
use crate::error::Error;
use crate::files;
use crate::tasks::{
    self, NewStep, NewTask, TaskAction, TaskFilter, TaskStatus, WorkflowChange, WorkflowOp, meeting,
};
use crate::web::home::{in_page, pretty_json};
use crate::web::{Layout, Page, PageForm, PageResult, dag_svg, render, see_other, when};

/// Tasks per page of the list.
const PAGE_SIZE: usize = 25;
/// The last page the list goes to (100,000 tasks back).
const MAX_PAGE: usize = 4000;
/// Steps the new-task form offers by default, and at most.
const FORM_STEPS: usize = 2;
const MAX_FORM_STEPS: usize = 20;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// `mine`, `waiting`, `active`, `failed`; anything else: all.
    #[serde(default)]
    pub filter: String,
    /// 1-based.
    #[serde(default)]
    pub page: Option<usize>,
}

pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub status: String,
    pub done: u32,
    pub total: u32,
    pub creator: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<TaskRow>,
    filter: String,
    filters: Vec<(&'static str, &'static str)>,
    page: usize,
    has_next: bool,
}

/// `GET /tasks?filter=…&page=…`.
pub async fn list(
    State(ctx): State<AppState>,
    page: Page,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let actor = page.actor();
    let page_no = query.page.unwrap_or(1).clamp(1, MAX_PAGE);
    let mut filter = TaskFilter {
        offset: ((page_no - 1) * PAGE_SIZE) as u32,
        // One more than shown: whether there is a next page.
        limit: PAGE_SIZE as u32 + 1,
        ..TaskFilter::default()
    };
    match query.filter.as_str() {
        "active" => filter.status = Some(TaskStatus::Active),
        "failed" => filter.status = Some(TaskStatus::Failed),
        "mine" => filter.created_by = Some(actor.member_id().to_string()),
        "waiting" => {
            let inbox = approvals::inbox(&ctx, actor).await?;
            let mut ids: Vec<String> = inbox
                .approvals
                .iter()
                .map(|(_, step)| step.task_id.clone())
                .chain(inbox.questions.iter().map(|(_, step)| step.task_id.clone()))
                .collect();
            ids.sort();
            ids.dedup();
            filter.ids = Some(ids);
        }
        _ => {}
    }
    let mut listed = tasks::list_tasks(&ctx, actor, &filter).await?;
    let has_next = listed.len() > PAGE_SIZE;
    listed.truncate(PAGE_SIZE);
    let members = accounts::list_members(&ctx.store, actor.workspace_id()).await?;
    let rows: Vec<TaskRow> = listed
        .into_iter()
        .map(|(task, progress)| TaskRow {
            creator: task
                .creator_member_id
                .as_deref()
                .and_then(|id| members.iter().find(|member| member.id == id))
                .map(|member| member.email.clone())
                .unwrap_or_default(),
            id: task.id,
            title: task.title,
            status: task.status,
            done: progress.done,
            total: progress.total,
            updated: when(task.updated_at),
        })
        .collect();
    render(&ListPage {
        layout: Layout::new(&page, "Tasks", "tasks"),
        rows,
        filter: query.filter,
        filters: vec![
            ("", "All"),
            ("mine", "Mine"),
            ("waiting", "Waiting on me"),
            ("active", "Active"),
            ("failed", "Failed"),
        ],
        page: page_no,
        has_next,
    })
}

pub struct StepCard {
    pub id: String,
    pub key: String,
    pub title: String,
    pub status: String,
    pub attempt: i32,
    pub assignees: String,
    pub approvers: String,
    pub approval_level: i32,
    pub depends_on: String,
    pub summary: String,
    pub result: String,
    pub digest: String,
    /// What the step produced.
    pub files: Vec<FileLink>,
    /// What it was given (`input.attachments`).
    pub attachments: Vec<FileLink>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub progress: Option<i32>,
    pub progress_message: String,
    pub reason: String,
    pub log: String,
    pub running: bool,
    pub may_retry: bool,
    /// Not started yet: a workflow change may skip, remove or reassign it.
    pub changeable: bool,
    pub awaiting_me: bool,
    /// A meeting step's coordination.
    pub meeting: Option<MeetingCard>,
    /// `45 min`; empty without an estimate.
    pub estimate: String,
}

/// A meeting step: the answers so far, the proposed slot, and whether the reader
/// confirms it.
pub struct MeetingCard {
    pub status: String,
    pub duration_minutes: i32,
    pub window: String,
    /// The proposed (or scheduled) slot; empty when there is none.
    pub slot: String,
    pub participants: Vec<ParticipantRow>,
    pub may_confirm: bool,
    /// The invitation, once scheduled.
    pub file_id: String,
}

pub struct ParticipantRow {
    pub who: String,
    /// How they are asked: through their agent, in their inbox, or by the task's creator.
    pub asked: String,
    pub answered: bool,
    /// Their free intervals as they gave them.
    pub intervals: Vec<String>,
}

/// A planning round of a task in planning.
pub struct PlanCard {
    pub round: i32,
    pub status: String,
    pub planner: String,
    pub comment: String,
    pub note: String,
    pub steps: Vec<PlanStepRow>,
    /// A proposal waits and the reader may accept it or ask again.
    pub may_decide: bool,
}

pub struct PlanStepRow {
    pub key: String,
    pub title: String,
    pub description: String,
    pub assignees: String,
    pub depends_on: String,
    pub approval_level: u8,
    /// `90 min`; empty without an estimate.
    pub estimate: String,
}

/// A workflow change an agent's self-check suggested.
pub struct SuggestionCard {
    pub id: String,
    pub step_key: String,
    pub agent: String,
    pub what: String,
    pub reason: String,
    pub status: String,
    /// Pending, and the reader may decide it.
    pub may_decide: bool,
    /// The inbox item it came from (read once decided); empty on the task page.
    pub notification: String,
    /// The page a decision goes back to.
    pub back: String,
    pub task_id: String,
}

/// A file named by a step: a download link when it is a file of the workspace, else
/// the reference as the step gave it (a link, or a file since removed).
pub struct FileLink {
    pub href: String,
    pub name: String,
    pub size: String,
}

impl FileLink {
    fn resolve(reference: &str, known: &[files::FileRow]) -> FileLink {
        match known.iter().find(|row| row.id == reference) {
            Some(row) => FileLink {
                href: format!("/files/{}", row.id),
                name: row.name.clone(),
                size: human_size(row.size_bytes),
            },
            None => FileLink {
                href: String::new(),
                name: reference.to_string(),
                size: String::new(),
            },
        }
    }
}

/// `1.5 MB`, `320 B`.
fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The file ids a step names: its result's files, then its attachments.
fn file_refs(step: &tasks::model::Step) -> (Vec<String>, Vec<String>) {
    let produced: Vec<String> = serde_json::from_str(&step.files).unwrap_or_default();
    let attachments = serde_json::from_str::<serde_json::Value>(&step.input)
        .ok()
        .and_then(|input| {
            input
                .get("attachments")
                .and_then(|list| list.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|id| id.as_str().map(str::to_string))
                        .collect()
                })
        })
        .unwrap_or_default();
    (produced, attachments)
}

pub struct TimelineRow {
    pub at: String,
    pub what: String,
    pub change: String,
    pub by: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    layout: Layout,
    id: String,
    title: String,
    description: String,
    status: String,
    done: u32,
    total: u32,
    input_tokens: i64,
    output_tokens: i64,
    dag: String,
    steps: Vec<StepCard>,
    timeline: Vec<TimelineRow>,
    may_steer: bool,
    /// Assignees a workflow change may name (agents, then `member:` of each member).
    assignee_options: Vec<(String, String)>,
    plan: Option<PlanCard>,
    suggestions: Vec<SuggestionCard>,
}

/// `GET /tasks/{id}`.
pub async fn show(
    State(ctx): State<AppState>,
    page: Page,
    Path(task_id): Path<String>,
) -> PageResult {
    let actor = page.actor();
    let layout = Layout::new(&page, "Task", "tasks").live(format!("/live/tasks/{task_id}"));
    let view = tasks::get_task(&ctx, actor, &task_id)
        .await
        .map_err(|err| crate::web::PageError::in_layout(err, layout.clone()))?;
    let timeline = tasks::timeline(&ctx, actor, &task_id).await?;
    let refs: Vec<(Vec<String>, Vec<String>)> = view
        .steps
        .iter()
        .map(|step_view| file_refs(&step_view.step))
        .collect();
    let all_refs: Vec<String> = refs
        .iter()
        .flat_map(|(produced, attachments)| produced.iter().chain(attachments))
        .cloned()
        .collect();
    let known = files::describe(&ctx, actor, &all_refs).await?;
    let rows: Vec<tasks::Step> = view
        .steps
        .iter()
        .map(|step_view| step_view.step.clone())
        .collect();
    let mut meetings = meeting::meetings_of(&ctx, actor, &rows).await?;
    let mut steps = Vec::new();
    for (step_view, (produced, attachments)) in view.steps.iter().zip(&refs) {
        let step = &step_view.step;
        let running = matches!(step.status.as_str(), "claimed" | "running" | "blocked");
        let log = if running || step.status == "failed" {
            tasks::step_logs(&ctx, actor, &step.id)
                .await?
                .into_iter()
                .filter(|line| line.attempt == step.attempt)
                .map(|line| line.text)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            String::new()
        };
        steps.push(StepCard {
            id: step.id.clone(),
            key: step.key.clone(),
            title: step.title.clone(),
            status: step.status.clone(),
            attempt: step.attempt,
            assignees: names(&step_view.assignees),
            approvers: names(&step_view.approvers),
            approval_level: step.approval_level,
            depends_on: step_view.depends_on.join(", "),
            summary: step.summary.clone().unwrap_or_default(),
            result: pretty_json(step.result.as_deref()),
            digest: step.result_digest.clone().unwrap_or_default(),
            files: produced
                .iter()
                .map(|reference| FileLink::resolve(reference, &known))
                .collect(),
            attachments: attachments
                .iter()
                .map(|reference| FileLink::resolve(reference, &known))
                .collect(),
            input_tokens: step.input_tokens,
            output_tokens: step.output_tokens,
            progress: step.progress_percent,
            progress_message: step.progress_message.clone().unwrap_or_default(),
            reason: step.status_reason.clone().unwrap_or_default(),
            log,
            running,
            may_retry: matches!(step.status.as_str(), "failed" | "skipped"),
            changeable: matches!(step.status.as_str(), "pending" | "ready"),
            awaiting_me: step.status == "awaiting_approval"
                && step_view
                    .approvers
                    .iter()
                    .any(|(member_id, _)| member_id == actor.member_id()),
            estimate: step
                .estimate_minutes
                .map(|minutes| format!("{minutes} min"))
                .unwrap_or_default(),
            meeting: meetings
                .iter()
                .position(|found| found.view.meeting.step_id == step.id)
                .map(|idx| meeting_card(meetings.swap_remove(idx))),
        });
    }
    let task = &view.task;
    let may_steer = authority::may_steer(actor, task).is_ok();
    let plan = if task.status == TaskStatus::Draft.as_str() {
        match tasks::get_plan(&ctx, actor, &task.id).await {
            Ok(plan) => Some(plan_card(plan, may_steer)),
            Err(Error::NotFound(_)) => None,
            Err(other) => return Err(other.into()),
        }
    } else {
        None
    };
    let suggestions = suggestion_cards(&ctx, actor, &view, may_steer).await?;
    let assignee_options = if may_steer {
        assignee_options(&ctx, actor).await?
    } else {
        Vec::new()
    };
    render(&TaskPage {
        layout: Layout {
            title: task.title.clone(),
            ..layout
        },
        id: task.id.clone(),
        title: task.title.clone(),
        description: task.description.clone(),
        status: task.status.clone(),
        done: view.progress.done,
        total: view.progress.total,
        input_tokens: steps.iter().map(|step| step.input_tokens).sum(),
        output_tokens: steps.iter().map(|step| step.output_tokens).sum(),
        dag: dag_svg::render(&view.steps),
        steps,
        timeline: timeline
            .into_iter()
            .map(|entry| TimelineRow {
                at: when(entry.at),
                what: entry
                    .step_key
                    .map_or_else(|| "task".to_string(), |key| format!("step {key}")),
                change: match entry.from {
                    Some(from) => format!("{from} → {}", entry.to),
                    None => entry.to,
                },
                by: entry.actor.name.unwrap_or(entry.actor.kind),
                reason: entry.reason.unwrap_or_default(),
            })
            .collect(),
        may_steer,
        assignee_options,
        plan,
        suggestions,
    })
}

fn meeting_card(found: meeting::MeetingOfStep) -> MeetingCard {
    let meeting = found.view.meeting;
    MeetingCard {
        status: meeting.status,
        duration_minutes: meeting.duration_minutes,
        window: format!(
            "{} – {}",
            when(meeting.window_from),
            when(meeting.window_to)
        ),
        slot: meeting
            .slot_from
            .zip(meeting.slot_to)
            .map(|(from, to)| format!("{} – {}", when(from), when(to)))
            .unwrap_or_default(),
        participants: found
            .view
            .participants
            .into_iter()
            .map(|participant| ParticipantRow {
                who: match &participant.row.name {
                    Some(name) => format!("{name} <{}>", participant.row.email),
                    None => participant.row.email.clone(),
                },
                asked: match (participant.asked, &participant.agent_name) {
                    ("agent", Some(agent)) => format!("through {agent}"),
                    ("guest", _) => "by the task's creator".to_string(),
                    _ => "in their inbox".to_string(),
                },
                answered: participant.row.responded_at.is_some(),
                intervals: participant
                    .intervals
                    .into_iter()
                    .map(|interval| format!("{} – {}", interval.from, interval.to))
                    .collect(),
            })
            .collect(),
        may_confirm: found.may_confirm,
        file_id: meeting.file_id.unwrap_or_default(),
    }
}

fn plan_card(plan: tasks::PlanView, may_steer: bool) -> PlanCard {
    PlanCard {
        round: plan.plan.round,
        may_decide: may_steer && plan.plan.status == "proposed",
        status: plan.plan.status,
        planner: plan.planner_name,
        comment: plan.plan.comment.unwrap_or_default(),
        note: plan.plan.note.unwrap_or_default(),
        steps: plan
            .steps
            .into_iter()
            .map(|step| PlanStepRow {
                estimate: step
                    .estimate_minutes
                    .map(|minutes| format!("{minutes} min"))
                    .unwrap_or_default(),
                key: step.key,
                title: step.title,
                description: step.description,
                assignees: step.assignees.join(", "),
                depends_on: step.depends_on.join(", "),
                approval_level: step.approval_level,
            })
            .collect(),
    }
}

/// The workflow changes agents suggested for the task, newest first.
async fn suggestion_cards(
    ctx: &AppState,
    actor: &accounts::Actor,
    view: &tasks::TaskView,
    may_steer: bool,
) -> PageResult<Vec<SuggestionCard>> {
    let approvals = tasks::workflow_approvals(ctx, actor, &view.task.id).await?;
    if approvals.is_empty() {
        return Ok(Vec::new());
    }
    let agents = agents::list_agents(&ctx.store, &ctx.presence, actor.workspace_id()).await?;
    Ok(approvals
        .into_iter()
        .rev()
        .map(|approval| SuggestionCard {
            step_key: view
                .steps
                .iter()
                .find(|step_view| step_view.step.id == approval.row.step_id)
                .map(|step_view| step_view.step.key.clone())
                .unwrap_or_default(),
            agent: agents
                .iter()
                .find(|agent| agent.agent.id == approval.row.agent_id)
                .map_or_else(
                    || approval.row.agent_id.clone(),
                    |agent| agent.agent.name.clone(),
                ),
            what: tasks::describe_suggestion(&approval.suggestion),
            reason: approval.suggestion.reason.clone(),
            may_decide: may_steer && approval.row.status == "pending",
            notification: String::new(),
            back: format!("/tasks/{}", view.task.id),
            task_id: view.task.id.clone(),
            status: approval.row.status,
            id: approval.row.id,
        })
        .collect())
}

/// Every assignee a step may get, as (value, label): the workspace's agents with their
/// owner and online state, then each member as `member:<email>`.
async fn assignee_options(
    ctx: &AppState,
    actor: &accounts::Actor,
) -> PageResult<Vec<(String, String)>> {
    let agents = agents::list_agents(&ctx.store, &ctx.presence, actor.workspace_id()).await?;
    let members = accounts::list_members(&ctx.store, actor.workspace_id()).await?;
    let mut options: Vec<(String, String)> = agents
        .into_iter()
        .map(|view| {
            let state = if view.online { "online" } else { "offline" };
            let label = format!("{} ({}) — {state}", view.agent.name, view.owner_email);
            (view.agent.name, label)
        })
        .collect();
    options.extend(members.into_iter().map(|member| {
        let label = format!("any machine of {}", member.email);
        (format!("member:{}", member.email), label)
    }));
    Ok(options)
}

/// `POST /tasks/{id}/workflow`: one workflow change from the task page. Field `op`:
/// `add` (`key`, `title`, `description`, `assignees`, `depends_on`), `skip`, `remove`
/// or `assign` (`step`, and `assignees` for `assign`); always a `reason`.
pub async fn change_workflow(
    State(ctx): State<AppState>,
    Path(task_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let step = form.field("step").to_string();
    let operation = match form.field("op") {
        "add" => WorkflowOp::AddStep(Box::new(NewStep {
            key: form.field("key").to_string(),
            title: form.field("title").to_string(),
            description: form.field("description").to_string(),
            assignees: form.all("assignees"),
            depends_on: split_keys(form.field("depends_on")),
            ..NewStep::default()
        })),
        "skip" => WorkflowOp::SkipStep { step },
        "remove" => WorkflowOp::RemoveStep { step },
        "assign" => WorkflowOp::SetAssignees {
            step,
            assignees: form.all("assignees"),
        },
        other => {
            return Err(in_page(&form.page)(Error::BadRequest {
                message: format!("unknown change `{other}`; use add, skip, remove or assign"),
                field: Some("op".into()),
            }));
        }
    };
    let change = WorkflowChange {
        reason: form.field("reason").to_string(),
        operations: vec![operation],
    };
    tasks::change_workflow(&ctx, form.page.actor(), &task_id, change)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{task_id}")))
}

/// `a, b ,c` → `["a", "b", "c"]`.
fn split_keys(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_string)
        .collect()
}

fn names(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(_, name)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `POST /tasks/{id}/status` (field `action`: `pause`, `resume` or `cancel`).
pub async fn set_status(
    State(ctx): State<AppState>,
    Path(task_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let action = match form.field("action") {
        "pause" => TaskAction::Pause,
        "resume" => TaskAction::Resume,
        "cancel" => TaskAction::Cancel,
        other => {
            return Err(in_page(&form.page)(Error::BadRequest {
                message: format!("unknown action `{other}`; use pause, resume or cancel"),
                field: Some("action".into()),
            }));
        }
    };
    tasks::set_task_status(&ctx, form.page.actor(), &task_id, action)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{task_id}")))
}

/// `POST /steps/{id}/retry` (field `reason`, optional).
pub async fn retry(
    State(ctx): State<AppState>,
    Path(step_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let reason = Some(form.field("reason")).filter(|reason| !reason.is_empty());
    let view = tasks::retry_step(&ctx, form.page.actor(), &step_id, reason)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{}", view.task.id)))
}

#[derive(Debug, Deserialize)]
pub struct NewFormQuery {
    #[serde(default)]
    pub steps: Option<usize>,
}

pub struct AgentOption {
    pub name: String,
    pub owner: String,
    pub online: bool,
}

/// A member as an assignee (`member:<email>`): any of their agents may take the step.
pub struct MemberOption {
    pub email: String,
    /// Their agents online now.
    pub online: usize,
}

#[derive(Template)]
#[template(path = "new_task.html")]
struct NewTaskPage {
    layout: Layout,
    n_steps: usize,
    more_steps: usize,
    max_steps: usize,
    agents: Vec<AgentOption>,
    member_assignees: Vec<MemberOption>,
    offline: String,
    members: Vec<(String, String)>,
}

/// `GET /tasks/new?steps=N`: the form, with N step rows (default 2, at most 20).
pub async fn new_form(
    State(ctx): State<AppState>,
    page: Page,
    Query(query): Query<NewFormQuery>,
) -> PageResult {
    let actor = page.actor();
    let agents = agents::list_agents(&ctx.store, &ctx.presence, actor.workspace_id()).await?;
    let members = accounts::list_members(&ctx.store, actor.workspace_id()).await?;
    let n_steps = query.steps.unwrap_or(FORM_STEPS).clamp(1, MAX_FORM_STEPS);
    let agents: Vec<AgentOption> = agents
        .into_iter()
        .map(|view| AgentOption {
            name: view.agent.name,
            owner: view.owner_email,
            online: view.online,
        })
        .collect();
    let member_assignees = members
        .iter()
        .map(|member| MemberOption {
            email: member.email.clone(),
            online: agents
                .iter()
                .filter(|agent| agent.online && agent.owner == member.email)
                .count(),
        })
        .collect();
    let offline = agents
        .iter()
        .filter(|agent| !agent.online)
        .map(|agent| agent.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    render(&NewTaskPage {
        // A form to fill in: no live refresh under the person's hands.
        layout: Layout::new(&page, "New task", "new").live(String::new()),
        n_steps,
        more_steps: (n_steps + 1).min(MAX_FORM_STEPS),
        max_steps: MAX_FORM_STEPS,
        agents,
        member_assignees,
        offline,
        members: members
            .into_iter()
            .map(|member| (member.email, member.name))
            .collect(),
    })
}

/// `POST /tasks/new`: creates the task from the form's rows (`steps.N.key`, `.title`,
/// `.description`, `.assignees`, `.depends_on`, `.approval_level`, `.approvers`,
/// `.attachments`: ids of files uploaded with `PUT /files`); rows without a title are
/// left out.
pub async fn create(State(ctx): State<AppState>, form: PageForm) -> PageResult {
    let actor = form.page.actor();
    let mut steps = Vec::new();
    for idx in 0..MAX_FORM_STEPS {
        let field = |name: &str| form.field(&format!("steps.{idx}.{name}")).to_string();
        let title = field("title");
        if title.is_empty() {
            continue;
        }
        let key = match field("key") {
            key if key.is_empty() => format!("step-{}", idx + 1),
            key => key,
        };
        let approval_level = field("approval_level").parse::<u8>().unwrap_or(0);
        let attachments = form.all(&format!("steps.{idx}.attachments"));
        let input = if attachments.is_empty() {
            serde_json::Value::Null
        } else {
            let known = files::describe(&ctx, actor, &attachments).await?;
            if let Some(missing) = attachments
                .iter()
                .find(|id| !known.iter().any(|row| row.id == **id))
            {
                return Err(in_page(&form.page)(Error::invalid_field(
                    format!("steps.{idx}.attachments"),
                    format!("no file `{missing}` in this workspace; upload it again"),
                )));
            }
            serde_json::json!({ "attachments": attachments })
        };
        steps.push(NewStep {
            key,
            title,
            description: field("description"),
            assignees: form.all(&format!("steps.{idx}.assignees")),
            depends_on: split_keys(&field("depends_on")),
            approval_level,
            approvers: form.all(&format!("steps.{idx}.approvers")),
            input,
            ..NewStep::default()
        });
    }
    let new = NewTask {
        title: form.field("title").to_string(),
        description: form.field("description").to_string(),
        steps,
        ..NewTask::default()
    };
    let view = tasks::create_task(&ctx, actor, new)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/tasks/{}", view.task.id)))
}
