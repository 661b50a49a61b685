//! The notification inbox over real HTTP on both backends: a member who was away finds
//! what waits on them with counts, acting resolves it, read one / read all / unread,
//! the end of a task for its creator, an agent offline while it holds work, isolation
//! between members and workspaces, clear errors for bad ids and parameters, retention.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use agenthub::accounts::{self, Actor, AgentActor};
use agenthub::agents;
use agenthub::approvals::{self, DecisionTimeout, OnTimeout, Verdict};
use agenthub::ctx::Settings;
use agenthub::notifications::{self, Notification, Priority};
use agenthub::store::now_ms;
use agenthub::tasks::{self, TaskAction};
use agenthub_protocol::Decision;

use crate::gateway::Hub;
use crate::support::{Team, new_step, new_task, report_task, step_id, submit};

/// A hub per backend with the support team (aurora, duan; agents min and duan-bot) and
/// API keys for both members.
struct World {
    hub: Hub,
    team: Team,
    aurora_key: String,
    duan_key: String,
}

async fn worlds(test_name: &str) -> Vec<World> {
    let mut worlds = Vec::new();
    for hub in Hub::all(test_name, Settings::default()).await {
        let team = Team::new(&hub.ctx.store).await;
        let aurora_key = key_of(&team, "aurora@example.com").await;
        let duan_key = key_of(&team, "duan@example.com").await;
        worlds.push(World {
            hub,
            team,
            aurora_key,
            duan_key,
        });
    }
    worlds
}

async fn key_of(team: &Team, email: &str) -> String {
    accounts::create_api_key(team.store(), &team.workspace_id, email, None)
        .await
        .unwrap()
        .secret
}

impl World {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.hub.call(method, path, token, body).await
    }

    /// `GET /v1/me/notifications{query}`, asserting `200`.
    async fn inbox(&self, token: &str, query: &str) -> Value {
        let (status, page) = self
            .call(
                Method::GET,
                &format!("/v1/me/notifications{query}"),
                token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page
    }

    /// A step of a new task assigned to `agent`, claimed by it; (task id, step id, attempt).
    async fn claimed_by(
        &self,
        creator: &Actor,
        agent: &AgentActor,
        title: &str,
    ) -> (String, String, u32) {
        let view = tasks::create_task(
            &self.team.ctx,
            creator,
            new_task(title, vec![new_step("only", &[&agent.agent_name], &[])]),
        )
        .await
        .unwrap();
        let step = step_id(&view, "only");
        let claimed = tasks::claim_step(&self.team.ctx, agent, &step)
            .await
            .unwrap();
        (view.task.id.clone(), step, claimed.attempt)
    }

    /// A one-step task of aurora's run to its end by min.
    async fn finished_task(&self, title: &str) -> String {
        let (task_id, step, attempt) = self
            .claimed_by(&self.team.aurora, &self.team.min, title)
            .await;
        submit(&self.team.ctx, &self.team.min, &step, attempt)
            .await
            .unwrap();
        task_id
    }
}

fn kinds(page: &Value) -> Vec<&str> {
    page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["kind"].as_str().unwrap())
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

fn unread(page: &Value) -> (u64, u64) {
    let counts = &page["meta"]["unread"];
    (
        counts["action"].as_u64().unwrap(),
        counts["info"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_online_finds_approvals_and_questions_waiting() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        // While duan is away: min's outline review waits for his approval, and his own
        // agent asks him a question.
        let view = team.create(report_task()).await;
        let draft = step_id(&view, "draft");
        let review = step_id(&view, "review");
        assert_eq!(team.run_step(&team.min, &draft).await, "done");
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        let (_, blocked, attempt) = world
            .claimed_by(&team.aurora, &team.duan_bot, "Figures")
            .await;
        let question_id = approvals::ask(
            &team.ctx,
            &team.duan_bot,
            &blocked,
            attempt,
            "Which quarter?",
            &["Q3".to_string(), "Q4".to_string()],
        )
        .await
        .unwrap();

        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(
            kinds(&page),
            ["input.requested", "approval.requested"],
            "{page}"
        );
        assert_eq!(unread(&page), (2, 0));
        let question = &page["notifications"][0];
        assert_eq!(question["priority"], "action");
        assert_eq!(question["subject_id"], question_id.as_str());
        assert_eq!(question["data"]["options"], json!(["Q3", "Q4"]));
        assert_eq!(question["unread"], true);
        let approval = page["notifications"][1].clone();
        assert_eq!(approval["step_id"], review.as_str());
        assert_eq!(approval["task_id"], view.task.id.as_str());
        assert_eq!(approval["data"]["attempt"], 1);
        let digest = approval["data"]["digest"].as_str().unwrap().to_string();
        assert!(digest.starts_with("sha256:"), "{approval}");
        assert!(approval["event_seq"].as_i64().unwrap() > 0);
        // The approver's agent reads the same inbox (its bound member's).
        let bot_page = world
            .inbox(
                &agent_token(&world, "duan-phone", "duan@example.com").await,
                "?unread=true",
            )
            .await;
        assert_eq!(ids(&bot_page), ids(&page));
        // The creator has nothing to act on yet.
        assert_eq!(unread(&world.inbox(&world.aurora_key, "").await), (0, 0));

        // Deciding from what the notification shows resolves it.
        let (status, decided) = world
            .call(
                Method::POST,
                &format!("/v1/steps/{review}/approve"),
                &world.duan_key,
                Some(json!({"attempt": approval["data"]["attempt"], "digest": digest})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{decided}");
        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(unread(&page), (1, 0));
        let approval = &page["notifications"][1];
        assert!(approval["resolved_at"].is_string(), "{approval}");
        assert_eq!(approval["unread"], false);
        assert!(approval["read_at"].is_null());
        let waiting = world.inbox(&world.duan_key, "?unread=true").await;
        assert_eq!(kinds(&waiting), ["input.requested"]);

        // Answering resolves the question; nothing waits any more.
        let (status, answered) = world
            .call(
                Method::POST,
                &format!("/v1/input-requests/{question_id}/answer"),
                &world.duan_key,
                Some(json!({"answer": "Q3"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answered}");
        let page = world.inbox(&world.duan_key, "?unread=true").await;
        assert_eq!(kinds(&page), Vec::<&str>::new());
        assert_eq!(unread(&page), (0, 0));

        // The report's creator hears that it finished.
        let page = world.inbox(&world.aurora_key, "").await;
        assert_eq!(kinds(&page), ["task.completed"], "{page}");
        assert_eq!(page["notifications"][0]["priority"], "info");
        assert_eq!(page["notifications"][0]["task_id"], view.task.id.as_str());
        assert_eq!(unread(&page), (0, 1));
    }
}

/// The token of a new agent bound to `owner`.
async fn agent_token(world: &World, name: &str, owner: &str) -> String {
    agents::create_agent(
        world.team.store(),
        agents::NewAgent {
            workspace_id: &world.team.workspace_id,
            name,
            owner,
            capabilities: &[],
            max_concurrency: 1,
        },
    )
    .await
    .unwrap()
    .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_one_read_all_unread_and_pages() {
    for world in worlds(module_path!()).await {
        let mut finished = Vec::new();
        for title in ["One", "Two", "Three"] {
            finished.push(world.finished_task(title).await);
        }
        let page = world.inbox(&world.aurora_key, "").await;
        assert_eq!(kinds(&page), ["task.completed"; 3]);
        assert_eq!(unread(&page), (0, 3));
        let all = ids(&page);
        // Newest first.
        assert_eq!(page["notifications"][0]["title"], "Task finished: Three");

        // Pages by cursor, without loss or duplicate.
        let first = world.inbox(&world.aurora_key, "?limit=2").await;
        assert_eq!(ids(&first), all[..2]);
        assert_eq!(first["meta"]["has_more"], true);
        let cursor = first["meta"]["next_before"].as_str().unwrap().to_string();
        let second = world
            .inbox(&world.aurora_key, &format!("?limit=2&before={cursor}"))
            .await;
        assert_eq!(ids(&second), all[2..]);
        assert_eq!(second["meta"]["has_more"], false);
        assert!(second["meta"]["next_before"].is_null());

        // Read one: it leaves the unread count; reading again keeps the first time.
        let path = format!("/v1/me/notifications/{}/read", all[0]);
        let (status, read) = world
            .call(Method::POST, &path, &world.aurora_key, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read["notification"]["unread"], false);
        assert_eq!(read["unread"]["info"], 2);
        let read_at = read["notification"]["read_at"].clone();
        assert!(read_at.is_string());
        let (_, again) = world
            .call(Method::POST, &path, &world.aurora_key, None)
            .await;
        assert_eq!(again["notification"]["read_at"], read_at);
        let page = world.inbox(&world.aurora_key, "?unread=true").await;
        assert_eq!(ids(&page), all[1..]);

        // Unread again.
        let (status, unread_again) = world
            .call(
                Method::POST,
                &format!("/v1/me/notifications/{}/unread", all[0]),
                &world.aurora_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{unread_again}");
        assert_eq!(unread_again["unread"]["info"], 3);

        // Read up to one: it and older ones.
        let (status, marked) = world
            .call(
                Method::POST,
                "/v1/me/notifications/read",
                &world.aurora_key,
                Some(json!({"up_to": all[1]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        assert_eq!(marked["marked"], 2);
        assert_eq!(marked["unread"]["info"], 1);
        assert_eq!(
            ids(&world.inbox(&world.aurora_key, "?unread=true").await),
            all[..1]
        );

        // Only action items: none here.
        let (_, marked) = world
            .call(
                Method::POST,
                "/v1/me/notifications/read",
                &world.aurora_key,
                Some(json!({"priority": "action"})),
            )
            .await;
        assert_eq!(marked["marked"], 0);

        // Read all, with no body.
        let (status, marked) = world
            .call(
                Method::POST,
                "/v1/me/notifications/read",
                &world.aurora_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        assert_eq!(marked["marked"], 1);
        assert_eq!(marked["unread"], json!({"action": 0, "info": 0}));
        // Read ones are still listed, just not as unread.
        let page = world.inbox(&world.aurora_key, "?priority=info").await;
        assert_eq!(ids(&page), all);
        assert_eq!(
            world.inbox(&world.aurora_key, "?priority=action").await["meta"]["count"],
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_and_parameters_are_clear_errors_and_change_nothing() {
    for world in worlds(module_path!()).await {
        world.finished_task("Notes").await;
        let key = &world.aurora_key;
        for (query, field) in [
            ("?priority=urgent", Some("priority")),
            ("?before=yesterday", Some("before")),
            ("?limit=many", None),
            ("?unread=maybe", None),
        ] {
            let (status, body) = world
                .call(
                    Method::GET,
                    &format!("/v1/me/notifications{query}"),
                    key,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert_eq!(body["error"]["code"], "bad_request", "{query}");
            if let Some(field) = field {
                assert_eq!(body["error"]["field"], field, "{query}");
            }
        }
        for id in ["not-an-id", &uuid::Uuid::now_v7().to_string()] {
            for action in ["read", "unread"] {
                let (status, body) = world
                    .call(
                        Method::POST,
                        &format!("/v1/me/notifications/{id}/{action}"),
                        key,
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
                assert_eq!(body["error"]["code"], "not_found");
            }
        }
        for (body, field) in [
            (json!({"up_to": "the last one"}), Some("up_to")),
            (json!({"priority": "all"}), Some("priority")),
            (json!({"colour": "red"}), None),
        ] {
            let (status, answer) = world
                .call(
                    Method::POST,
                    "/v1/me/notifications/read",
                    key,
                    Some(body.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            if let Some(field) = field {
                assert_eq!(answer["error"]["field"], field, "{body}");
            }
        }
        // Nothing was marked by the refused requests.
        assert_eq!(unread(&world.inbox(key, "").await), (0, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creator_hears_of_failures_and_of_cancellations_by_others() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        let (task_id, step, attempt) = world.claimed_by(&team.aurora, &team.min, "Deploy").await;
        tasks::fail_step(
            &team.ctx,
            &team.min,
            &step,
            attempt,
            "the disk is full",
            false,
        )
        .await
        .unwrap();
        let page = world.inbox(&world.aurora_key, "").await;
        assert_eq!(kinds(&page), ["task.failed"], "{page}");
        let failed = &page["notifications"][0];
        assert_eq!(failed["task_id"], task_id.as_str());
        assert_eq!(failed["title"], "Task failed: Deploy");
        let body = failed["body"].as_str().unwrap();
        assert!(
            body.contains("the disk is full") && body.contains("only"),
            "{body}"
        );
        assert_eq!(failed["data"]["status"], "failed");
        // Nobody else is told.
        assert_eq!(
            kinds(&world.inbox(&world.duan_key, "").await),
            Vec::<&str>::new()
        );

        // duan's task, waiting for aurora's approval, cancelled by aurora (an owner):
        // duan hears of it and aurora's approval stops waiting.
        let mut review = new_step("only", &["duan-bot"], &[]);
        review.approval_level = 1;
        review.approvers = vec!["aurora@example.com".into()];
        let view = tasks::create_task(&team.ctx, &team.duan, new_task("Budget", vec![review]))
            .await
            .unwrap();
        let step = step_id(&view, "only");
        assert_eq!(
            team.run_step(&team.duan_bot, &step).await,
            "awaiting_approval"
        );
        assert_eq!(unread(&world.inbox(&world.aurora_key, "").await), (1, 1));
        tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
            .await
            .unwrap();
        let page = world.inbox(&world.aurora_key, "").await;
        assert_eq!(kinds(&page), ["approval.requested", "task.failed"]);
        assert!(
            page["notifications"][0]["resolved_at"].is_string(),
            "{page}"
        );
        assert_eq!(unread(&page), (0, 1));
        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(kinds(&page), ["task.cancelled"], "{page}");
        assert!(
            page["notifications"][0]["body"]
                .as_str()
                .unwrap()
                .contains("aurora"),
            "{page}"
        );

        // Cancelling one's own task tells nobody.
        let (own, _, _) = world.claimed_by(&team.aurora, &team.min, "Mine").await;
        tasks::set_task_status(&team.ctx, &team.aurora, &own, TaskAction::Cancel)
            .await
            .unwrap();
        assert_eq!(unread(&world.inbox(&world.aurora_key, "").await), (0, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_and_a_timeout_resolve_what_waited() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        let view = team.create(report_task()).await;
        let draft = step_id(&view, "draft");
        let review = step_id(&view, "review");
        team.run_step(&team.min, &draft).await;
        team.run_step(&team.min, &review).await;
        approvals::decide(
            &team.ctx,
            &team.duan,
            approvals::ApprovalRef::Step(&review, 1),
            Verdict::new(Decision::Reject, Some("use the new figures")),
        )
        .await
        .unwrap();
        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(unread(&page), (0, 0), "{page}");
        // The rework asks again: a new item for attempt 2.
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        let page = world.inbox(&world.duan_key, "?unread=true").await;
        assert_eq!(kinds(&page), ["approval.requested"]);
        assert_eq!(page["notifications"][0]["data"]["attempt"], 2);

        // A question nobody answers before its deadline closes (on_timeout `fail`).
        let mut asked = new_step("only", &["duan-bot"], &[]);
        asked.decision_timeout = DecisionTimeout::After(60_000);
        asked.on_timeout = OnTimeout::Fail;
        let view = tasks::create_task(&team.ctx, &team.aurora, new_task("Quiz", vec![asked]))
            .await
            .unwrap();
        let step = step_id(&view, "only");
        let claimed = tasks::claim_step(&team.ctx, &team.duan_bot, &step)
            .await
            .unwrap();
        approvals::ask(
            &team.ctx,
            &team.duan_bot,
            &step,
            claimed.attempt,
            "Now?",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(unread(&world.inbox(&world.duan_key, "").await), (2, 0));
        approvals::sweep_overdue_at(&team.ctx, now_ms() + 120_000)
            .await
            .unwrap();
        let page = world.inbox(&world.duan_key, "?unread=true").await;
        assert_eq!(kinds(&page), ["approval.requested"], "{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_offline_while_it_holds_work_is_told_to_its_member() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        // duan-bot holds nothing: going offline is no news.
        agents::announce_presence(&team.ctx, &team.duan_bot, false)
            .await
            .unwrap();
        assert_eq!(unread(&world.inbox(&world.duan_key, "").await), (0, 0));

        let (task_id, step, _) = world.claimed_by(&team.duan, &team.min, "Slides").await;
        agents::announce_presence(&team.ctx, &team.min, false)
            .await
            .unwrap();
        let page = world.inbox(&world.aurora_key, "").await;
        assert_eq!(kinds(&page), ["agent.offline"], "{page}");
        let offline = &page["notifications"][0];
        assert_eq!(offline["priority"], "info");
        assert_eq!(offline["subject_id"], team.min.agent_id.as_str());
        assert_eq!(offline["task_id"], task_id.as_str());
        assert_eq!(offline["data"]["steps"][0]["step_id"], step.as_str());
        assert_eq!(offline["title"], "min went offline holding work");
        // The task's creator (duan) is not min's member.
        assert_eq!(unread(&world.inbox(&world.duan_key, "").await), (0, 0));

        // Flapping while that one is unread adds nothing; once read, the next is news.
        agents::announce_presence(&team.ctx, &team.min, true)
            .await
            .unwrap();
        agents::announce_presence(&team.ctx, &team.min, false)
            .await
            .unwrap();
        assert_eq!(world.inbox(&world.aurora_key, "").await["meta"]["count"], 1);
        world
            .call(
                Method::POST,
                "/v1/me/notifications/read",
                &world.aurora_key,
                None,
            )
            .await;
        agents::announce_presence(&team.ctx, &team.min, false)
            .await
            .unwrap();
        assert_eq!(unread(&world.inbox(&world.aurora_key, "").await), (0, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_requests_wait_on_the_agents_member_until_answered() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        let (status, asked) = world
            .call(
                Method::POST,
                "/v1/agents/duan-bot/availability",
                &world.aurora_key,
                Some(json!({"question": "Free this afternoon?"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{asked}");
        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(kinds(&page), ["availability.requested"], "{page}");
        assert_eq!(
            page["notifications"][0]["title"],
            "Can duan-bot take on work?"
        );
        assert_eq!(page["notifications"][0]["body"], "Free this afternoon?");
        assert_eq!(unread(&page), (1, 0));
        let request_id = page["notifications"][0]["subject_id"].as_str().unwrap();
        approvals::respond_availability(&team.ctx, &team.duan_bot, request_id, true, None)
            .await
            .unwrap();
        assert_eq!(unread(&world.inbox(&world.duan_key, "").await), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_workspaces_see_only_their_own() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        let other = Team::in_workspace(&world.hub.ctx.store, "globex").await;
        let other_duan_key = key_of(&other, "duan@example.com").await;
        let view = team.create(report_task()).await;
        team.run_step(&team.min, &step_id(&view, "draft")).await;
        team.run_step(&team.min, &step_id(&view, "review")).await;
        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(kinds(&page), ["approval.requested"]);
        let id = page["notifications"][0]["id"].as_str().unwrap().to_string();

        // The same email in another workspace, and another member here, see nothing of it.
        assert_eq!(world.inbox(&other_duan_key, "").await["meta"]["count"], 0);
        assert_eq!(world.inbox(&world.aurora_key, "").await["meta"]["count"], 0);
        for (token, who) in [
            (&world.aurora_key, "aurora"),
            (&other_duan_key, "globex duan"),
        ] {
            for action in ["read", "unread"] {
                let (status, body) = world
                    .call(
                        Method::POST,
                        &format!("/v1/me/notifications/{id}/{action}"),
                        token,
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{who} {action}: {body}");
            }
            let (_, marked) = world
                .call(
                    Method::POST,
                    "/v1/me/notifications/read",
                    token,
                    Some(json!({"up_to": id})),
                )
                .await;
            assert_eq!(marked["marked"], 0, "{who}");
        }
        assert_eq!(unread(&world.inbox(&world.duan_key, "").await), (1, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_modules_notify_and_read_notifications_expire() {
    for world in worlds(module_path!()).await {
        let team = &world.team;
        let workspace_id = team.workspace_id.clone();
        let member_id = team.duan.member_id().to_string();
        team.store()
            .transaction(async |db| {
                notifications::notify(
                    db,
                    &workspace_id,
                    &member_id,
                    Notification {
                        kind: "webhook.disabled".into(),
                        priority: Priority::Info,
                        task_id: None,
                        step_id: None,
                        subject_id: None,
                        title: "x".repeat(500),
                        body: "failing for a day".into(),
                        data: json!({"url": "https://ci.example.com/hook"}),
                    },
                )
                .await
            })
            .await
            .unwrap();
        let page = world.inbox(&world.duan_key, "").await;
        assert_eq!(kinds(&page), ["webhook.disabled"]);
        let title = page["notifications"][0]["title"].as_str().unwrap();
        assert!(
            title.len() <= notifications::MAX_TITLE_BYTES && title.ends_with('…'),
            "{title}"
        );
        assert_eq!(
            page["notifications"][0]["data"]["url"],
            "https://ci.example.com/hook"
        );

        // Retention deletes read notifications only.
        world.finished_task("Kept").await;
        world
            .call(
                Method::POST,
                "/v1/me/notifications/read",
                &world.duan_key,
                None,
            )
            .await;
        let n_deleted = notifications::delete_read_before(team.store(), now_ms() + 1)
            .await
            .unwrap();
        assert_eq!(n_deleted, 1);
        assert_eq!(world.inbox(&world.duan_key, "").await["meta"]["count"], 0);
        assert_eq!(
            kinds(&world.inbox(&world.aurora_key, "").await),
            ["task.completed"]
        );
    }
}
