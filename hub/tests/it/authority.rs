//! Who may do what: every REST route and every client frame, tried by every kind of
//! caller on a fresh object each time, on both backends. [`MATRIX`] drives the test and
//! is the table of docs/api.md ("Who may do what"), which is checked against it.
//!
//! Callers, in the columns' order: the workspace's owner, an admin, a member who did not
//! create the task, the member who created it, an agent bound to that creator, an agent
//! bound to the other member (who is the step's approver), and a caller from another
//! workspace using this workspace's ids and names. API keys cannot open the WebSocket,
//! so frames are tried by the three agents only.

use agenthub_protocol::{
    ApprovalDecide, AvailabilityRespond, ClientFrame, Codec, Decision, InputAnswer, LogStream,
    PlanStep, PlanSubmit, ServerFrame, StepBlock, StepClaim, StepFail, StepLog, StepProgress,
    StepSubmit,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::accounts::{self, Actor, AgentActor, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::approvals;
use agenthub::ctx::Settings;
use agenthub::notifications;
use agenthub::tasks::{self, NewStep, NewTask};

use crate::gateway::{Agent, Hub, upgrade};
use crate::support::TestDb;

/// A plan step for `assignee`.
fn plan_step(key: &str, assignee: &str) -> PlanStep {
    PlanStep {
        key: key.into(),
        title: "Draft the outline".into(),
        description: String::new(),
        assignees: vec![assignee.into()],
        depends_on: Vec::new(),
        approval_level: 0,
        approvers: Vec::new(),
        required_capabilities: Vec::new(),
        executor: None,
        expected_inputs: None,
        expected_outputs: None,
        estimate_minutes: None,
    }
}

const START: &str = "<!-- roles:start -->";
const END: &str = "<!-- roles:end -->";

/// The callers, in the order of a row's cells.
const CALLERS: [&str; 7] = [
    "owner",
    "admin",
    "member",
    "creator",
    "creator's agent",
    "other agent",
    "other workspace",
];

/// `ok` (a 2xx answer, or an `ok` frame), an error code (`forbidden`, `not_found`, …;
/// over REST with its status), or `–` where the caller cannot send it at all.
type Cells = [&'static str; 7];

/// What is tried: a REST route or a client frame, with the action it stands for.
pub struct Row {
    action: &'static str,
    /// `GET /v1/tasks/{id}` or the frame's type (`step.claim`).
    request: &'static str,
    cells: Cells,
}

const fn row(action: &'static str, request: &'static str, cells: Cells) -> Row {
    Row {
        action,
        request,
        cells,
    }
}

const OK: &str = "ok";
const FORBIDDEN: &str = "forbidden";
const NOT_FOUND: &str = "not_found";
const NONE: &str = "–";

/// Reads: every member and agent of the workspace; another workspace sees nothing.
const READ: Cells = [OK, OK, OK, OK, OK, OK, NOT_FOUND];
/// Reads of lists: another workspace gets its own (empty) list.
const LIST: Cells = [OK, OK, OK, OK, OK, OK, OK];
/// Steering a task: its creator (and their agent), owners and admins.
const STEER: Cells = [OK, OK, FORBIDDEN, OK, OK, FORBIDDEN, NOT_FOUND];
/// Deciding the step's approval: the listed approver (the member) and their agent only.
const APPROVER: Cells = [
    FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, OK, NOT_FOUND,
];
/// Managing members: owners and admins with a member's API key.
const MANAGE: Cells = [
    OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND,
];
/// Something of the creator's own (their agent, their key): them, owners and admins.
const OWN: Cells = [OK, OK, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND];
/// Members' own accounts (keys, agents): any member, never an agent token.
const SELF_SERVICE: Cells = [OK, OK, OK, OK, FORBIDDEN, FORBIDDEN, OK];
/// Webhooks of one's own workspace: owners and admins with a member's API key; another
/// workspace's owner gets its own.
const WEBHOOKS: Cells = [OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK];
/// Something only its member has (a notification of the creator's): them and their
/// agent; to everyone else it does not exist.
const MINE: Cells = [
    NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK, NOT_FOUND, NOT_FOUND,
];
/// A meeting step of the creator assigned to their agent: its organizers (the creator,
/// through their agent too), who also answer for its guest.
const ORGANIZER: Cells = [
    FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK, FORBIDDEN, NOT_FOUND,
];
/// A frame about the creator's agent's step.
const ASSIGNED: Cells = [NONE, NONE, NONE, NONE, OK, FORBIDDEN, NOT_FOUND];

/// Every REST route (but the anonymous operational ones, checked at the end) and every
/// client request frame.
pub const MATRIX: &[Row] = &[
    row(
        "create a task",
        "POST /v1/tasks",
        [OK, OK, OK, OK, OK, OK, "invalid"],
    ),
    row("list tasks", "GET /v1/tasks", LIST),
    row("read a task", "GET /v1/tasks/{id}", READ),
    row("read a task's history", "GET /v1/tasks/{id}/history", READ),
    row("follow a task live", "GET /v1/tasks/{id}/stream", READ),
    row("follow one's events live", "GET /v1/events/stream", LIST),
    row(
        "read a task's timeline",
        "GET /v1/tasks/{id}/timeline",
        READ,
    ),
    row("pause a task", "PATCH /v1/tasks/{id} pause", STEER),
    row("resume a task", "PATCH /v1/tasks/{id} resume", STEER),
    row("cancel a task", "PATCH /v1/tasks/{id} cancel", STEER),
    row(
        "change a task's workflow",
        "PATCH /v1/tasks/{id}/workflow",
        STEER,
    ),
    row("publish a draft", "POST /v1/tasks/{id}/publish", STEER),
    row("read a task's plan", "GET /v1/tasks/{id}/plan", READ),
    row(
        "accept a task's plan",
        "POST /v1/tasks/{id}/plan/accept",
        STEER,
    ),
    row(
        "ask for another plan",
        "POST /v1/tasks/{id}/plan/revise",
        STEER,
    ),
    row(
        "read a task's suggested workflow changes",
        "GET /v1/tasks/{id}/workflow-approvals",
        READ,
    ),
    row(
        "approve a suggested workflow change",
        "POST /v1/workflow-approvals/{id}/approve",
        STEER,
    ),
    row(
        "reject a suggested workflow change",
        "POST /v1/workflow-approvals/{id}/reject",
        STEER,
    ),
    row("retry a failed step", "POST /v1/steps/{id}/retry", STEER),
    row("read a step", "GET /v1/steps/{id}", READ),
    row("read a step's logs", "GET /v1/steps/{id}/logs", READ),
    row("approve a step", "POST /v1/steps/{id}/approve", APPROVER),
    row("reject a step", "POST /v1/steps/{id}/reject", APPROVER),
    row(
        "answer for a meeting's guest",
        "POST /v1/steps/{id}/meeting/availability",
        ORGANIZER,
    ),
    row(
        "confirm a meeting's slot",
        "POST /v1/steps/{id}/meeting/confirm",
        ORGANIZER,
    ),
    row(
        "change a meeting's window",
        "PUT /v1/steps/{id}/meeting/window",
        ORGANIZER,
    ),
    row(
        "answer a question",
        "POST /v1/input-requests/{id}/answer",
        [
            FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK, FORBIDDEN, NOT_FOUND,
        ],
    ),
    row("who am I", "GET /v1/me", LIST),
    row("read one's inbox", "GET /v1/me/inbox", LIST),
    row("read one's notifications", "GET /v1/me/notifications", LIST),
    row(
        "mark one's notifications read",
        "POST /v1/me/notifications/read",
        LIST,
    ),
    row(
        "mark a notification read",
        "POST /v1/me/notifications/{id}/read",
        MINE,
    ),
    row(
        "mark a notification unread",
        "POST /v1/me/notifications/{id}/unread",
        MINE,
    ),
    row(
        "get a sign-in link to the dashboard",
        "POST /v1/me/login-link",
        LIST,
    ),
    row("list agents", "GET /v1/agents", LIST),
    row("read an agent", "GET /v1/agents/{id}", READ),
    row(
        "ask an agent's availability",
        "POST /v1/agents/{id}/availability",
        READ,
    ),
    row("register an agent", "POST /v1/agents", SELF_SERVICE),
    row("rotate an agent's token", "POST /v1/agents/{id}/token", OWN),
    row("revoke an agent", "DELETE /v1/agents/{id}", OWN),
    row(
        "publish an agent on the A2A card",
        "PUT /v1/agents/{id}/a2a",
        OWN,
    ),
    row(
        "take an agent off the A2A card",
        "DELETE /v1/agents/{id}/a2a",
        OWN,
    ),
    row("read events", "GET /v1/events", LIST),
    row("upload a file", "PUT /v1/files", LIST),
    row("download a file", "GET /v1/files/{id}", READ),
    row("list members", "GET /v1/members", LIST),
    row(
        "add a member",
        "POST /v1/members",
        [OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK],
    ),
    row(
        "add an owner",
        "POST /v1/members owner",
        [
            OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK,
        ],
    ),
    row("change a member's role", "PATCH /v1/members/{id}", MANAGE),
    row(
        "make a member an owner",
        "PATCH /v1/members/{id} owner",
        [
            OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND,
        ],
    ),
    row("remove a member", "DELETE /v1/members/{id}", MANAGE),
    row("create an API key", "POST /v1/api-keys", SELF_SERVICE),
    row("list API keys", "GET /v1/api-keys", SELF_SERVICE),
    row("revoke an API key", "DELETE /v1/api-keys/{id}", OWN),
    row("create a webhook", "POST /v1/webhooks", WEBHOOKS),
    row("list webhooks", "GET /v1/webhooks", WEBHOOKS),
    row("read a webhook", "GET /v1/webhooks/{id}", MANAGE),
    row("change a webhook", "PATCH /v1/webhooks/{id}", MANAGE),
    row("delete a webhook", "DELETE /v1/webhooks/{id}", MANAGE),
    row("ping a webhook", "POST /v1/webhooks/{id}/ping", MANAGE),
    row(
        "read a webhook's deliveries",
        "GET /v1/webhooks/{id}/deliveries",
        MANAGE,
    ),
    row(
        "redeliver a delivery",
        "POST /v1/deliveries/{id}/redeliver",
        MANAGE,
    ),
    row(
        "open the agent WebSocket",
        "GET /v1/agent/connect",
        [
            "unauthorized",
            "unauthorized",
            "unauthorized",
            "unauthorized",
            OK,
            OK,
            OK,
        ],
    ),
    row("claim a step", "step.claim", ASSIGNED),
    row("report progress", "step.progress", ASSIGNED),
    row("send a log line", "step.log", ASSIGNED),
    row("submit a result", "step.submit", ASSIGNED),
    row("ask a question", "step.block", ASSIGNED),
    row("fail a step", "step.fail", ASSIGNED),
    row(
        "decide an approval",
        "approval.decide",
        [NONE, NONE, NONE, NONE, FORBIDDEN, OK, NOT_FOUND],
    ),
    row(
        "answer a question",
        "input.answer",
        [NONE, NONE, NONE, NONE, OK, FORBIDDEN, NOT_FOUND],
    ),
    row(
        "answer an availability request",
        "availability.respond",
        ASSIGNED,
    ),
    row("propose a plan", "plan.submit", ASSIGNED),
];

/// The hub with workspace `acme` (aurora owner, ada admin, mo member, cy member who
/// creates the tasks; agents `cy-bot` of cy and `mo-bot` of mo) and workspace `globex`
/// (its owner's key and agent `globex-bot`).
struct World {
    hub: Hub,
    workspace_id: String,
    /// Per caller: an API key, or an agent token.
    tokens: [String; 7],
    creator: Actor,
    creator_agent: AgentActor,
    approver: Actor,
    /// Sessions of the three agents (creator's, other, other workspace's).
    sessions: Vec<Agent>,
    /// The other workspace's agent, which opens the WebSocket for that column.
    other_workspace_agent: String,
    n_made: u32,
}

impl World {
    async fn new(db: TestDb) -> World {
        let hub = Hub::start(db, Settings::default()).await;
        let store = hub.ctx.store.clone();
        let acme = accounts::create_workspace(&store, "acme").await.unwrap();
        let mut keys = Vec::new();
        for (email, role) in [
            ("aurora@example.com", Role::Owner),
            ("ada@example.com", Role::Admin),
            ("mo@example.com", Role::Member),
            ("cy@example.com", Role::Member),
        ] {
            accounts::add_member(&store, &acme.id, email, None, role)
                .await
                .unwrap();
            keys.push(
                accounts::create_api_key(&store, &acme.id, email, None)
                    .await
                    .unwrap()
                    .secret,
            );
        }
        let agent = async |workspace_id: &str, name: &str, owner: &str| {
            agents::create_agent(
                &store,
                NewAgent {
                    workspace_id,
                    name,
                    owner,
                    capabilities: &[],
                    max_concurrency: 1000,
                },
            )
            .await
            .unwrap()
            .token
        };
        let cy_bot = agent(&acme.id, "cy-bot", "cy@example.com").await;
        let mo_bot = agent(&acme.id, "mo-bot", "mo@example.com").await;
        let globex = accounts::create_workspace(&store, "globex").await.unwrap();
        accounts::add_member(&store, &globex.id, "gil@example.com", None, Role::Owner)
            .await
            .unwrap();
        let globex_key = accounts::create_api_key(&store, &globex.id, "gil@example.com", None)
            .await
            .unwrap()
            .secret;
        let globex_bot = agent(&globex.id, "globex-bot", "gil@example.com").await;
        let member = async |key: &str| {
            Actor::Member(accounts::authenticate_api_key(&store, key).await.unwrap())
        };
        let creator = member(&keys[3]).await;
        let approver = member(&keys[2]).await;
        let creator_agent = agents::authenticate_token(&store, &cy_bot).await.unwrap();
        World {
            sessions: Vec::new(),
            other_workspace_agent: globex_bot,
            tokens: [
                keys[0].clone(),
                keys[1].clone(),
                keys[2].clone(),
                keys[3].clone(),
                cy_bot,
                mo_bot,
                globex_key,
            ],
            hub,
            workspace_id: acme.id,
            creator,
            creator_agent,
            approver,
            n_made: 0,
        }
    }

    fn unique(&mut self, prefix: &str) -> String {
        self.n_made += 1;
        format!("{prefix}{}", self.n_made)
    }

    /// A task of the creator with one step for `cy-bot`, reviewed (level 2) by mo.
    async fn task(&self, draft: bool) -> (String, String) {
        let view = tasks::create_task(
            &self.hub.ctx,
            &self.creator,
            NewTask {
                title: "Quarterly report".into(),
                draft,
                steps: vec![NewStep {
                    key: "draft".into(),
                    title: "Draft the outline".into(),
                    assignees: vec!["cy-bot".into()],
                    approval_level: 2,
                    approvers: vec!["mo@example.com".into()],
                    ..NewStep::default()
                }],
                ..NewTask::default()
            },
        )
        .await
        .unwrap();
        (view.task.id.clone(), view.steps[0].step.id.clone())
    }

    /// A task of the creator with a ready meeting step for `cy-bot` (participants mo and a
    /// guest), both answered when `proposed`; the step id and its window.
    async fn meeting(&self, proposed: bool) -> (String, Value) {
        let now = agenthub::store::now_ms();
        let (from, to) = (now + 24 * 3_600_000, now + 48 * 3_600_000);
        let view = tasks::create_task(
            &self.hub.ctx,
            &self.creator,
            NewTask {
                title: "Meet".into(),
                steps: vec![NewStep {
                    key: "meet".into(),
                    title: "Meet".into(),
                    assignees: vec!["cy-bot".into()],
                    meeting: Some(tasks::NewMeeting {
                        participants: vec![
                            tasks::NewParticipant {
                                email: "mo@example.com".into(),
                                name: None,
                            },
                            tasks::NewParticipant {
                                email: "guest@outside.example".into(),
                                name: Some("Guest".into()),
                            },
                        ],
                        duration_minutes: 30,
                        window: Some((from, to)),
                    }),
                    ..NewStep::default()
                }],
                ..NewTask::default()
            },
        )
        .await
        .unwrap();
        let step_id = view.steps[0].step.id.clone();
        let window = json!({
            "from": tasks::meeting::utc_text(from),
            "to": tasks::meeting::utc_text(to),
        });
        if proposed {
            let all = [agenthub_protocol::Interval {
                from: tasks::meeting::utc_text(from),
                to: tasks::meeting::utc_text(to),
            }];
            for (who, email) in [
                (&self.approver, "mo@example.com"),
                (&self.creator, "guest@outside.example"),
            ] {
                tasks::meeting::respond(&self.hub.ctx, who, &step_id, email, &all)
                    .await
                    .unwrap();
            }
        }
        (step_id, window)
    }

    /// A task of the creator in planning by `cy-bot`, with a proposal when `proposed`;
    /// the task id and the plan id.
    async fn planned(&self, proposed: bool) -> (String, String) {
        let view = tasks::create_task(
            &self.hub.ctx,
            &self.creator,
            NewTask {
                title: "Quarterly report".into(),
                plan: Some(tasks::PlanRequest {
                    planner: Some("cy-bot".into()),
                }),
                ..NewTask::default()
            },
        )
        .await
        .unwrap();
        let plan = tasks::get_plan(&self.hub.ctx, &self.creator, &view.task.id)
            .await
            .unwrap();
        if proposed {
            tasks::submit_plan(
                &self.hub.ctx,
                &self.creator_agent,
                &plan.plan.id,
                vec![plan_step("draft", "cy-bot")],
                None,
            )
            .await
            .unwrap();
        }
        (view.task.id.clone(), plan.plan.id)
    }

    /// A workflow change `cy-bot`'s check suggested (a step to insert) for the creator;
    /// the task id and the workflow approval's id.
    async fn suggestion(&self) -> (String, String) {
        let (task_id, step_id, attempt) = self.claimed().await;
        let check = agenthub_protocol::SelfCheck {
            fits: true,
            reasons: Vec::new(),
            suggestions: vec![agenthub_protocol::Suggestion {
                op: agenthub_protocol::SuggestionOp::Insert,
                step: None,
                new_step: Some(plan_step("extra", "cy-bot")),
                assignees: Vec::new(),
                reason: "one more".into(),
            }],
        };
        crate::support::submit_checked(
            &self.hub.ctx,
            &self.creator_agent,
            &step_id,
            attempt,
            Some(check),
        )
        .await
        .unwrap();
        let rows = tasks::workflow_approvals(&self.hub.ctx, &self.creator, &task_id)
            .await
            .unwrap();
        (task_id, rows[0].row.id.clone())
    }

    /// A task whose step `cy-bot` holds; the step id and attempt.
    async fn claimed(&self) -> (String, String, u32) {
        let (task_id, step_id) = self.task(false).await;
        let claimed = tasks::claim_step(&self.hub.ctx, &self.creator_agent, &step_id)
            .await
            .unwrap();
        (task_id, step_id, claimed.attempt)
    }

    /// A step awaiting mo's review; the step id and mo's approval id.
    async fn awaiting_review(&self) -> (String, String) {
        let (_, step_id, attempt) = self.claimed().await;
        crate::support::submit(&self.hub.ctx, &self.creator_agent, &step_id, attempt)
            .await
            .unwrap();
        let inbox = approvals::inbox(&self.hub.ctx, &self.approver)
            .await
            .unwrap();
        let (approval, _) = inbox
            .approvals
            .into_iter()
            .find(|(_, step)| step.id == step_id)
            .unwrap();
        (step_id, approval.id)
    }

    /// A question `cy-bot` asked of cy; its id.
    async fn question(&self) -> String {
        let (_, step_id, attempt) = self.claimed().await;
        approvals::ask(
            &self.hub.ctx,
            &self.creator_agent,
            &step_id,
            attempt,
            "Which quarter?",
            &[],
        )
        .await
        .unwrap()
    }

    /// A notification of the creator's (the question `cy-bot` asked of cy); its id.
    async fn notification(&self) -> String {
        let question_id = self.question().await;
        let page = notifications::list(
            &self.hub.ctx,
            &self.creator,
            &notifications::ListQuery {
                limit: 200,
                ..notifications::ListQuery::default()
            },
        )
        .await
        .unwrap();
        page.notifications
            .into_iter()
            .find(|row| row.subject_id.as_deref() == Some(question_id.as_str()))
            .unwrap()
            .id
    }

    /// An agent of the creator, made for one cell.
    async fn creators_agent(&mut self) -> String {
        let name = self.unique("cy-spare-");
        agents::create_agent(
            &self.hub.ctx.store,
            NewAgent {
                workspace_id: &self.workspace_id,
                name: &name,
                owner: "cy@example.com",
                capabilities: &[],
                max_concurrency: 1,
            },
        )
        .await
        .unwrap()
        .agent
        .id
    }

    /// A webhook of the workspace with one delivery, made for one cell: its id and the
    /// delivery's. Its target is an address the hub refuses, so a ping or a redelivery
    /// fails at once, without the network.
    async fn webhook(&mut self) -> (String, String) {
        use agenthub::webhooks::model::{self, Delivery, Webhook};
        let now = agenthub::store::now_ms();
        let webhook = Webhook {
            id: agenthub::store::new_id(),
            workspace_id: self.workspace_id.clone(),
            url: "http://127.0.0.1:9/".into(),
            secret: "whsec_test".into(),
            event_types: "[]".into(),
            task_id: None,
            description: String::new(),
            enabled: false,
            disabled_reason: None,
            cursor_seq: 0,
            lease_owner: None,
            lease_until: None,
            created_by: None,
            created_at: now,
            updated_at: now,
            a2a_token: None,
        };
        let delivery = Delivery {
            id: agenthub::store::new_id(),
            webhook_id: webhook.id.clone(),
            kind: "ping".into(),
            seq: 0,
            event_type: "ping".into(),
            payload: r#"{"seq":0,"type":"ping","event":{"type":"ping"},"created_at":"2026-12-04T00:00:00Z"}"#.into(),
            status: "delivered".into(),
            attempts: 1,
            next_attempt_at: None,
            first_attempt_at: Some(now),
            last_attempt_at: Some(now),
            delivered_at: Some(now),
            redelivery_of: None,
            created_at: now,
        };
        let ids = (webhook.id.clone(), delivery.id.clone());
        self.hub
            .ctx
            .store
            .transaction(async |db| {
                model::insert_webhook(db, &webhook).await?;
                model::insert_delivery(db, &delivery).await?;
                Ok::<_, agenthub::error::Error>(())
            })
            .await
            .unwrap();
        ids
    }

    /// A member made for one cell; their id.
    async fn spare_member(&mut self) -> String {
        let email = format!("{}@example.com", self.unique("spare"));
        accounts::add_member(
            &self.hub.ctx.store,
            &self.workspace_id,
            &email,
            None,
            Role::Member,
        )
        .await
        .unwrap()
        .id
    }

    /// Prepares a fresh object for `request` and sends it as caller `who` over REST:
    /// `ok` or the error code, checked against the status.
    async fn rest(&mut self, request: &str, who: usize) -> String {
        let (method, path, body): (Method, String, Option<Value>) = match request {
            "GET /v1/events/stream" => return self.follow("/v1/events/stream", who).await,
            "GET /v1/tasks/{id}/stream" => {
                let (task_id, _) = self.task(false).await;
                return self
                    .follow(&format!("/v1/tasks/{task_id}/stream"), who)
                    .await;
            }
            "POST /v1/tasks" => (
                Method::POST,
                "/v1/tasks".into(),
                Some(
                    json!({"title": "Notes", "steps": [{"key": "a", "title": "Write", "assignees": ["cy-bot"]}]}),
                ),
            ),
            "GET /v1/tasks" => (Method::GET, "/v1/tasks".into(), None),
            "GET /v1/tasks/{id}" | "GET /v1/tasks/{id}/history" | "GET /v1/tasks/{id}/timeline" => {
                let (task_id, _) = self.task(false).await;
                let path = request.trim_start_matches("GET ").replace("{id}", &task_id);
                (Method::GET, path, None)
            }
            "PATCH /v1/tasks/{id} pause"
            | "PATCH /v1/tasks/{id} cancel"
            | "PATCH /v1/tasks/{id} resume" => {
                let (task_id, _) = self.task(false).await;
                let action = request.rsplit(' ').next().unwrap();
                if action == "resume" {
                    tasks::set_task_status(
                        &self.hub.ctx,
                        &self.creator,
                        &task_id,
                        tasks::TaskAction::Pause,
                    )
                    .await
                    .unwrap();
                }
                (
                    Method::PATCH,
                    format!("/v1/tasks/{task_id}"),
                    Some(json!({"action": action})),
                )
            }
            "PATCH /v1/tasks/{id}/workflow" => {
                let (task_id, _) = self.task(false).await;
                (
                    Method::PATCH,
                    format!("/v1/tasks/{task_id}/workflow"),
                    Some(
                        json!({"reason": "not needed", "operations": [{"op": "skip_step", "step": "draft"}]}),
                    ),
                )
            }
            "POST /v1/tasks/{id}/publish" => {
                let (task_id, _) = self.task(true).await;
                (Method::POST, format!("/v1/tasks/{task_id}/publish"), None)
            }
            "GET /v1/tasks/{id}/workflow-approvals" => {
                let (task_id, _) = self.suggestion().await;
                (
                    Method::GET,
                    format!("/v1/tasks/{task_id}/workflow-approvals"),
                    None,
                )
            }
            "POST /v1/workflow-approvals/{id}/approve"
            | "POST /v1/workflow-approvals/{id}/reject" => {
                let (_, id) = self.suggestion().await;
                let path = request.trim_start_matches("POST ").replace("{id}", &id);
                (Method::POST, path, None)
            }
            "GET /v1/tasks/{id}/plan" => {
                let (task_id, _) = self.planned(false).await;
                (Method::GET, format!("/v1/tasks/{task_id}/plan"), None)
            }
            "POST /v1/tasks/{id}/plan/accept" => {
                let (task_id, _) = self.planned(true).await;
                (
                    Method::POST,
                    format!("/v1/tasks/{task_id}/plan/accept"),
                    None,
                )
            }
            "POST /v1/tasks/{id}/plan/revise" => {
                let (task_id, _) = self.planned(true).await;
                (
                    Method::POST,
                    format!("/v1/tasks/{task_id}/plan/revise"),
                    Some(json!({"comment": "split the review"})),
                )
            }
            "POST /v1/steps/{id}/meeting/availability" => {
                let (step_id, window) = self.meeting(false).await;
                (
                    Method::POST,
                    format!("/v1/steps/{step_id}/meeting/availability"),
                    Some(json!({"participant": "guest@outside.example", "intervals": [window]})),
                )
            }
            "POST /v1/steps/{id}/meeting/confirm" => {
                let (step_id, _) = self.meeting(true).await;
                (
                    Method::POST,
                    format!("/v1/steps/{step_id}/meeting/confirm"),
                    None,
                )
            }
            "PUT /v1/steps/{id}/meeting/window" => {
                let (step_id, window) = self.meeting(false).await;
                (
                    Method::PUT,
                    format!("/v1/steps/{step_id}/meeting/window"),
                    Some(window),
                )
            }
            "POST /v1/steps/{id}/retry" => {
                let (_, step_id, attempt) = self.claimed().await;
                tasks::fail_step(
                    &self.hub.ctx,
                    &self.creator_agent,
                    &step_id,
                    attempt,
                    "broken",
                    false,
                )
                .await
                .unwrap();
                (Method::POST, format!("/v1/steps/{step_id}/retry"), None)
            }
            "GET /v1/steps/{id}" | "GET /v1/steps/{id}/logs" => {
                let (_, step_id) = self.task(false).await;
                let path = request.trim_start_matches("GET ").replace("{id}", &step_id);
                (Method::GET, path, None)
            }
            "POST /v1/steps/{id}/approve" | "POST /v1/steps/{id}/reject" => {
                let (step_id, _) = self.awaiting_review().await;
                let path = request
                    .trim_start_matches("POST ")
                    .replace("{id}", &step_id);
                (
                    Method::POST,
                    path,
                    Some(json!({"attempt": 1, "comment": "use the new figures"})),
                )
            }
            "POST /v1/input-requests/{id}/answer" => {
                let request_id = self.question().await;
                (
                    Method::POST,
                    format!("/v1/input-requests/{request_id}/answer"),
                    Some(json!({"answer": "the third"})),
                )
            }
            "GET /v1/me" | "GET /v1/me/inbox" | "GET /v1/agents" | "GET /v1/events"
            | "GET /v1/members" | "GET /v1/api-keys" => {
                (Method::GET, request.trim_start_matches("GET ").into(), None)
            }
            "GET /v1/me/notifications" | "POST /v1/me/notifications/read" => {
                let method = if request.starts_with("GET") {
                    Method::GET
                } else {
                    Method::POST
                };
                (method, request.split(' ').nth(1).unwrap().into(), None)
            }
            "POST /v1/me/notifications/{id}/read" | "POST /v1/me/notifications/{id}/unread" => {
                let notification_id = self.notification().await;
                let path = request
                    .trim_start_matches("POST ")
                    .replace("{id}", &notification_id);
                (Method::POST, path, None)
            }
            "POST /v1/me/login-link" => (Method::POST, "/v1/me/login-link".into(), None),
            "GET /v1/agents/{id}" => (Method::GET, "/v1/agents/cy-bot".into(), None),
            "POST /v1/agents/{id}/availability" => (
                Method::POST,
                "/v1/agents/cy-bot/availability".into(),
                Some(json!({"question": "Free today?"})),
            ),
            "POST /v1/agents" => (
                Method::POST,
                "/v1/agents".into(),
                Some(json!({"name": self.unique("laptop-")})),
            ),
            "POST /v1/agents/{id}/token" => {
                let agent_id = self.creators_agent().await;
                (Method::POST, format!("/v1/agents/{agent_id}/token"), None)
            }
            "DELETE /v1/agents/{id}" => {
                let agent_id = self.creators_agent().await;
                (Method::DELETE, format!("/v1/agents/{agent_id}"), None)
            }
            "PUT /v1/agents/{id}/a2a" => {
                let agent_id = self.creators_agent().await;
                (
                    Method::PUT,
                    format!("/v1/agents/{agent_id}/a2a"),
                    Some(json!({"description": "Writes notes."})),
                )
            }
            "DELETE /v1/agents/{id}/a2a" => {
                let agent_id = self.creators_agent().await;
                let now = agenthub::store::now_ms();
                let skill = agenthub::a2a::SkillRow {
                    agent_id: agent_id.clone(),
                    workspace_id: self.workspace_id.clone(),
                    description: String::new(),
                    examples: "[]".into(),
                    created_at: now,
                    updated_at: now,
                };
                self.hub
                    .ctx
                    .store
                    .transaction(async |db| {
                        agenthub::a2a::model::upsert_skill(db, &skill).await?;
                        Ok::<_, agenthub::error::Error>(())
                    })
                    .await
                    .unwrap();
                (Method::DELETE, format!("/v1/agents/{agent_id}/a2a"), None)
            }
            "PUT /v1/files" => {
                let status = self.upload(who).await;
                return outcome(status, &Value::Null);
            }
            "GET /v1/files/{id}" => {
                let file_id = self.uploaded().await;
                (Method::GET, format!("/v1/files/{file_id}"), None)
            }
            "POST /v1/members" | "POST /v1/members owner" => {
                let role = if request.ends_with("owner") {
                    "owner"
                } else {
                    "admin"
                };
                let email = format!("{}@example.com", self.unique("new"));
                (
                    Method::POST,
                    "/v1/members".into(),
                    Some(json!({"email": email, "role": role})),
                )
            }
            "PATCH /v1/members/{id}" | "PATCH /v1/members/{id} owner" => {
                let member_id = self.spare_member().await;
                let role = if request.ends_with("owner") {
                    "owner"
                } else {
                    "admin"
                };
                (
                    Method::PATCH,
                    format!("/v1/members/{member_id}"),
                    Some(json!({"role": role})),
                )
            }
            "DELETE /v1/members/{id}" => {
                let member_id = self.spare_member().await;
                (Method::DELETE, format!("/v1/members/{member_id}"), None)
            }
            "POST /v1/webhooks" => (
                Method::POST,
                "/v1/webhooks".into(),
                Some(json!({"url": "https://hooks.example.com/agenthub"})),
            ),
            "GET /v1/webhooks" => (Method::GET, "/v1/webhooks".into(), None),
            "GET /v1/webhooks/{id}"
            | "PATCH /v1/webhooks/{id}"
            | "DELETE /v1/webhooks/{id}"
            | "POST /v1/webhooks/{id}/ping"
            | "GET /v1/webhooks/{id}/deliveries" => {
                let (webhook_id, _) = self.webhook().await;
                let (method, path) = request.split_once(' ').unwrap();
                let body = (method == "PATCH").then(|| json!({"description": "CI"}));
                (
                    method.parse().unwrap(),
                    path.replace("{id}", &webhook_id),
                    body,
                )
            }
            "POST /v1/deliveries/{id}/redeliver" => {
                let (_, delivery_id) = self.webhook().await;
                (
                    Method::POST,
                    format!("/v1/deliveries/{delivery_id}/redeliver"),
                    None,
                )
            }
            "POST /v1/api-keys" => (
                Method::POST,
                "/v1/api-keys".into(),
                Some(json!({"name": "laptop", "scopes": ["read"]})),
            ),
            "DELETE /v1/api-keys/{id}" => {
                let key = accounts::create_api_key(
                    &self.hub.ctx.store,
                    &self.workspace_id,
                    "cy@example.com",
                    Some("spare"),
                )
                .await
                .unwrap();
                (Method::DELETE, format!("/v1/api-keys/{}", key.key.id), None)
            }
            "GET /v1/agent/connect" => {
                let token = if who == 6 {
                    &self.other_workspace_agent
                } else {
                    &self.tokens[who]
                };
                return match upgrade(
                    &self.hub.ws_url,
                    Some(token),
                    Some(Codec::Json.subprotocol()),
                )
                .await
                {
                    Ok(_) => OK.into(),
                    Err((status, body)) => outcome(StatusCode::from_u16(status).unwrap(), &body),
                };
            }
            other => panic!("no preparation for `{other}`"),
        };
        let (status, answer) = self.hub.call(method, &path, &self.tokens[who], body).await;
        outcome(status, &answer)
    }

    /// Opens an event stream: `ok` when it starts (then it is dropped), else the error.
    async fn follow(&self, path: &str, who: usize) -> String {
        let resp = self
            .hub
            .http
            .get(format!("{}{path}", self.hub.base))
            .bearer_auth(&self.tokens[who])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status.is_success() {
            let kind = resp
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            assert!(kind.starts_with("text/event-stream"), "{path}: {kind}");
            return OK.into();
        }
        let answer: Value = resp.json().await.unwrap_or_default();
        outcome(status, &answer)
    }

    async fn upload(&self, who: usize) -> StatusCode {
        self.hub
            .http
            .put(format!("{}/v1/files?name=notes.txt", self.hub.base))
            .bearer_auth(&self.tokens[who])
            .body("the notes")
            .send()
            .await
            .unwrap()
            .status()
    }

    /// A file the creator uploaded; its id.
    async fn uploaded(&self) -> String {
        let answer: Value = self
            .hub
            .http
            .put(format!("{}/v1/files?name=notes.txt", self.hub.base))
            .bearer_auth(&self.tokens[3])
            .body("the notes")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["id"].as_str().unwrap().to_string()
    }

    /// Opens the sessions of the three agents (once, when frames are about to be sent, so
    /// that no session idles through the REST part until its heartbeat times out).
    async fn connect(&mut self) {
        if !self.sessions.is_empty() {
            return;
        }
        for token in [
            &self.tokens[4],
            &self.tokens[5],
            &self.other_workspace_agent,
        ] {
            self.sessions
                .push(Agent::connect(&self.hub, token, Codec::Json, 0).await);
        }
    }

    /// Prepares a fresh object for `frame` and sends it from the session of agent `who`
    /// (4, 5 or 6): `ok` or the error frame's code.
    async fn frame(&mut self, frame: &str, who: usize) -> String {
        self.connect().await;
        let ctx = self.hub.ctx.clone();
        let build: Box<dyn FnOnce(u64) -> ClientFrame + Send> = match frame {
            "step.claim" => {
                let (_, step_id) = self.task(false).await;
                let step_id = Uuid::parse_str(&step_id).unwrap();
                Box::new(move |id| {
                    ClientFrame::StepClaim(StepClaim {
                        id,
                        step_id,
                        attempt: None,
                    })
                })
            }
            "step.progress" | "step.log" | "step.submit" | "step.block" | "step.fail" => {
                let (_, step_id, attempt) = self.claimed().await;
                let step_id = Uuid::parse_str(&step_id).unwrap();
                match frame {
                    "step.progress" => Box::new(move |id| {
                        ClientFrame::StepProgress(StepProgress {
                            id,
                            step_id,
                            attempt,
                            message: None,
                            percent: Some(10),
                        })
                    }),
                    "step.log" => Box::new(move |id| {
                        ClientFrame::StepLog(StepLog {
                            id,
                            step_id,
                            attempt,
                            stream: LogStream::Stdout,
                            text: "hello".into(),
                        })
                    }),
                    "step.submit" => Box::new(move |id| {
                        ClientFrame::StepSubmit(StepSubmit {
                            id,
                            step_id,
                            attempt,
                            result: json!({"ok": true}),
                            summary: None,
                            self_check: None,
                            check: None,
                            files: vec![],
                            usage: None,
                        })
                    }),
                    "step.block" => Box::new(move |id| {
                        ClientFrame::StepBlock(StepBlock {
                            id,
                            step_id,
                            attempt,
                            question: "Which?".into(),
                            options: vec![],
                        })
                    }),
                    _ => Box::new(move |id| {
                        ClientFrame::StepFail(StepFail {
                            id,
                            step_id,
                            attempt,
                            reason: "broken".into(),
                            retryable: false,
                        })
                    }),
                }
            }
            "approval.decide" => {
                let (_, approval_id) = self.awaiting_review().await;
                let approval_id = Uuid::parse_str(&approval_id).unwrap();
                Box::new(move |id| {
                    ClientFrame::ApprovalDecide(ApprovalDecide {
                        id,
                        approval_id,
                        decision: Decision::Approve,
                        comment: None,
                        digest: None,
                    })
                })
            }
            "input.answer" => {
                let input_request_id = Uuid::parse_str(&self.question().await).unwrap();
                Box::new(move |id| {
                    ClientFrame::InputAnswer(InputAnswer {
                        id,
                        input_request_id,
                        answer: "the third".into(),
                    })
                })
            }
            "availability.respond" => {
                let request = approvals::request_availability(
                    &ctx,
                    &self.creator,
                    "cy-bot",
                    "Free today?",
                    None,
                )
                .await
                .unwrap();
                let request_id = Uuid::parse_str(&request.id).unwrap();
                Box::new(move |id| {
                    ClientFrame::AvailabilityRespond(AvailabilityRespond {
                        id,
                        request_id,
                        available: true,
                        note: None,
                        intervals: None,
                    })
                })
            }
            "plan.submit" => {
                let (_, plan_id) = self.planned(false).await;
                let plan_id = Uuid::parse_str(&plan_id).unwrap();
                Box::new(move |id| {
                    ClientFrame::PlanSubmit(PlanSubmit {
                        id,
                        plan_id,
                        steps: vec![plan_step("draft", "cy-bot")],
                        note: None,
                    })
                })
            }
            other => panic!("no preparation for `{other}`"),
        };
        match self.sessions[who - 4].request(build).await {
            ServerFrame::Ok(_) => OK.into(),
            ServerFrame::Error(err) => err.code,
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// `ok` for a 2xx answer, else the error code, which must go with the status.
fn outcome(status: StatusCode, answer: &Value) -> String {
    if status.is_success() {
        return OK.into();
    }
    let code = answer["error"]["code"]
        .as_str()
        .unwrap_or("<no code>")
        .to_string();
    let expected_status = match code.as_str() {
        "bad_request" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "conflict" => 409,
        "invalid" => 422,
        _ => 0,
    };
    assert_eq!(status.as_u16(), expected_status, "{code}: {answer}");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_frame_answers_each_caller_as_the_role_table_says() {
    for db in TestDb::all(module_path!()).await {
        let backend = db.backend();
        let mut world = World::new(db).await;
        let mut wrong = Vec::new();
        for row in MATRIX {
            let is_frame = !row.request.contains(' ');
            for (who, expected) in row.cells.iter().enumerate() {
                let got = if *expected == NONE {
                    continue;
                } else if is_frame {
                    world.frame(row.request, who).await
                } else {
                    world.rest(row.request, who).await
                };
                if got != *expected {
                    wrong.push(format!(
                        "{} ({}) by {}: expected {expected}, got {got}",
                        row.action, row.request, CALLERS[who]
                    ));
                }
            }
        }
        // The operational routes need no token at all.
        for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
            let status = world
                .hub
                .http
                .get(format!("{}{path}", world.hub.base))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::OK, "{path}");
        }
        assert!(wrong.is_empty(), "on {backend:?}:\n{}", wrong.join("\n"));
    }
}

/// The table of docs/api.md, rendered from [`MATRIX`].
fn render() -> String {
    let mut text = String::new();
    text.push_str("| action | request |");
    for caller in CALLERS {
        text.push_str(&format!(" {caller} |"));
    }
    text.push_str("\n|---|---|");
    text.push_str(&"---|".repeat(CALLERS.len()));
    text.push('\n');
    for row in MATRIX {
        let is_frame = !row.request.contains(' ');
        text.push_str(&format!("| {} | `{}` |", row.action, row.request));
        for cell in row.cells {
            let shown = match cell {
                OK => "✓".to_string(),
                NONE => NONE.to_string(),
                code if is_frame => format!("`{code}`"),
                code => format!("{} `{code}`", status_of(code)),
            };
            text.push_str(&format!(" {shown} |"));
        }
        text.push('\n');
    }
    text
}

fn status_of(code: &str) -> u16 {
    match code {
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "invalid" => 422,
        other => panic!("no status for `{other}`"),
    }
}

#[test]
fn api_md_role_table_matches_the_matrix() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        panic!("docs/api.md lacks the markers `{START}` and `{END}` around the role table");
    };
    let section_start = start + START.len() + 1;
    let rendered = render();
    if text[section_start..end] == rendered {
        return;
    }
    if std::env::var_os("UPDATE_API_DOCS").is_some() {
        let updated = format!("{}{rendered}{}", &text[..section_start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "docs/api.md's role table differs from MATRIX in hub/tests/it/authority.rs; \
         regenerate it with `UPDATE_API_DOCS=1 cargo test -p agenthub --test it authority`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_closes_their_agents_sessions_and_hands_their_decisions_over() {
    for db in TestDb::all(module_path!()).await {
        let mut world = World::new(db).await;
        world.connect().await;
        let ctx = world.hub.ctx.clone();
        let (owner, creator, mo) = (
            world.tokens[0].clone(),
            world.tokens[3].clone(),
            world.tokens[2].clone(),
        );
        // A review waiting for mo alone, and a question mo's agent asked of mo.
        let (reviewed_step, _) = world.awaiting_review().await;
        let view = tasks::create_task(
            &ctx,
            &world.creator,
            NewTask {
                title: "Figures".into(),
                steps: vec![NewStep {
                    key: "count".into(),
                    title: "Count".into(),
                    assignees: vec!["mo-bot".into()],
                    ..NewStep::default()
                }],
                ..NewTask::default()
            },
        )
        .await
        .unwrap();
        let asking_step = view.steps[0].step.id.clone();
        let mo_bot = agents::authenticate_token(&ctx.store, &world.tokens[5])
            .await
            .unwrap();
        let attempt = tasks::claim_step(&ctx, &mo_bot, &asking_step)
            .await
            .unwrap()
            .attempt;
        let question = approvals::ask(&ctx, &mo_bot, &asking_step, attempt, "Which year?", &[])
            .await
            .unwrap();

        // Only an owner or admin removes; then mo's key and agent stop working at once.
        let mo_id = world.approver.member_id().to_string();
        let (status, answer) = world
            .hub
            .call(
                Method::DELETE,
                &format!("/v1/members/{mo_id}"),
                &creator,
                None,
            )
            .await;
        assert_eq!(outcome(status, &answer), FORBIDDEN);
        let (status, answer) = world
            .hub
            .call(
                Method::DELETE,
                &format!("/v1/members/{mo_id}"),
                &owner,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
        assert_eq!(world.sessions[1].closed().await, 4001);
        let (status, answer) = world.hub.call(Method::GET, "/v1/me", &mo, None).await;
        assert_eq!(outcome(status, &answer), "unauthorized");
        let refused = upgrade(
            &world.hub.ws_url,
            Some(&world.tokens[5]),
            Some(Codec::Json.subprotocol()),
        )
        .await;
        assert_eq!(refused.err().map(|(status, _)| status), Some(401));

        // The creator now holds both: the approval (no other approver was left) and the
        // question, and both go through.
        let inbox = approvals::inbox(&ctx, &world.creator).await.unwrap();
        assert!(
            inbox
                .approvals
                .iter()
                .any(|(_, step)| step.id == reviewed_step)
        );
        assert!(
            inbox
                .questions
                .iter()
                .any(|(asked, _)| asked.id == question)
        );
        let (status, answer) = world
            .hub
            .call(
                Method::POST,
                &format!("/v1/steps/{reviewed_step}/approve"),
                &creator,
                Some(json!({"attempt": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (status, answer) = world
            .hub
            .call(
                Method::POST,
                &format!("/v1/input-requests/{question}/answer"),
                &creator,
                Some(json!({"answer": "2026"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            world.hub.step(&creator, &reviewed_step).await["status"],
            "done"
        );
        // The creator's agent was told to decide, and the history says why.
        let approval = world.sessions[0]
            .approval_requested(Uuid::parse_str(&reviewed_step).unwrap())
            .await;
        assert!(!approval.is_nil());
        let step = world.hub.step(&creator, &reviewed_step).await;
        let task_id = step["task_id"].as_str().unwrap().to_string();
        let (_, history) = world
            .hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}/history"),
                &creator,
                None,
            )
            .await;
        let kinds: Vec<&str> = history["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|entry| entry["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"approver_removed"), "{history}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_carry_scopes_and_expiry_and_members_keep_an_owner() {
    for db in TestDb::all(module_path!()).await {
        let world = World::new(db).await;
        let (owner, creator) = (world.tokens[0].clone(), world.tokens[3].clone());
        let create = async |token: &str, body: Value| {
            world
                .hub
                .call(Method::POST, "/v1/api-keys", token, Some(body))
                .await
        };
        // A read-only key reads, and is refused anything else, naming the scope.
        let (status, key) = create(
            &creator,
            json!({"name": "dashboard", "scopes": ["read"], "expires_in": 3600}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        assert_eq!(key["scopes"], json!(["read"]));
        assert!(key["expires_at"].is_string());
        let read_only = key["token"].as_str().unwrap().to_string();
        let (status, _) = world
            .hub
            .call(Method::GET, "/v1/tasks", &read_only, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, answer) = world
            .hub
            .call(
                Method::POST,
                "/v1/tasks",
                &read_only,
                Some(json!({"title": "x", "steps": []})),
            )
            .await;
        assert_eq!(outcome(status, &answer), FORBIDDEN);
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`write` scope"),
            "{answer}"
        );

        // Bad requests say what is wrong and create nothing.
        for (body, field) in [
            (json!({"scopes": ["root"]}), "scopes"),
            (json!({"scopes": []}), "scopes"),
            (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
            (
                json!({"expires_at": "2099-01-01T00:00:00Z", "expires_in": 60}),
                "expires_in",
            ),
        ] {
            let (status, answer) = create(&creator, body).await;
            assert_eq!(outcome(status, &answer), "invalid");
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
        let (_, keys) = world
            .hub
            .call(Method::GET, "/v1/api-keys", &creator, None)
            .await;
        assert_eq!(keys["meta"]["count"], 2, "{keys}");

        // An expired key is refused like a revoked one.
        let (_, key) = create(&creator, json!({"expires_in": 1})).await;
        let short_lived = key["token"].as_str().unwrap().to_string();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (status, answer) = world
            .hub
            .call(Method::GET, "/v1/me", &short_lived, None)
            .await;
        assert_eq!(outcome(status, &answer), "unauthorized");

        // An owner's key without `admin` cannot manage members; a revoked key stops.
        let (_, key) = create(&owner, json!({"scopes": ["read", "write"]})).await;
        let no_admin = key["token"].as_str().unwrap().to_string();
        let (status, answer) = world
            .hub
            .call(
                Method::POST,
                "/v1/members",
                &no_admin,
                Some(json!({"email": "kim@example.com"})),
            )
            .await;
        assert_eq!(outcome(status, &answer), FORBIDDEN);
        let key_id = key["id"].as_str().unwrap().to_string();
        let (status, _) = world
            .hub
            .call(
                Method::DELETE,
                &format!("/v1/api-keys/{key_id}"),
                &no_admin,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, answer) = world.hub.call(Method::GET, "/v1/me", &no_admin, None).await;
        assert_eq!(outcome(status, &answer), "unauthorized");

        // The last owner stays an owner.
        let (status, answer) = world
            .hub
            .call(
                Method::PATCH,
                "/v1/members/aurora@example.com",
                &owner,
                Some(json!({"role": "member"})),
            )
            .await;
        assert_eq!(outcome(status, &answer), "conflict");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("last owner"),
            "{answer}"
        );
        let (_, members) = world
            .hub
            .call(Method::GET, "/v1/members", &owner, None)
            .await;
        let roles: Vec<&str> = members["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|member| member["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["owner", "admin", "member", "member"]);
    }
}

/// Every route of the OpenAPI document that takes a token has a row: a route added
/// without deciding who may call it fails here.
#[test]
fn every_documented_route_has_a_row_in_the_matrix() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(agenthub::api::ApiDoc::openapi()).unwrap();
    let open = ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"];
    let mut missing = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if open.contains(&path.as_str()) {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let request = format!("{} {path}", method.to_uppercase());
            let listed = MATRIX.iter().any(|row| {
                row.request == request || row.request.starts_with(&format!("{request} "))
            });
            if !listed {
                missing.push(request);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a row in the role matrix: {missing:?}"
    );
}
