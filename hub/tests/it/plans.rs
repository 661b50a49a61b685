//! Planning a task: `POST /v1/tasks` with `plan` asks an agent of the creator for a plan
//! (`plan.requested`), the agent proposes one (`plan.submit`, checked like a create with
//! every error listed), and the creator accepts it (as is or edited) or asks again. Over
//! a real hub, its REST API and WebSocket sessions, on both backends.

use agenthub_protocol::{ClientFrame, Codec, PlanRequested, PlanStep, PlanSubmit, ServerFrame};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::accounts::{self, Role};
use agenthub::ctx::Settings;

use crate::gateway::{Agent, Hub, expect_error, expect_ok, team};

fn plan_step(key: &str, title: &str, assignee: &str, depends_on: &[&str]) -> PlanStep {
    PlanStep {
        key: key.into(),
        title: title.into(),
        description: format!("{title}, carefully."),
        assignees: vec![assignee.into()],
        depends_on: depends_on.iter().map(|dep| dep.to_string()).collect(),
        approval_level: 0,
        approvers: Vec::new(),
        required_capabilities: Vec::new(),
        executor: None,
        expected_inputs: None,
        expected_outputs: None,
        estimate_minutes: Some(30),
    }
}

/// The plan of the issue: min breaks down the report, duan reviews it (min confirms).
fn good_plan() -> Vec<PlanStep> {
    vec![
        plan_step("outline", "Break down the report", "min-laptop", &[]),
        PlanStep {
            approval_level: 1,
            approvers: vec!["min@example.com".into()],
            ..plan_step("review", "Review the outline", "duan-desktop", &["outline"])
        },
    ]
}

async fn plan_requested(agent: &mut Agent) -> PlanRequested {
    agent
        .event(|frame| match frame {
            ServerFrame::PlanRequested(requested) => Some(requested.as_ref().clone()),
            _ => None,
        })
        .await
}

async fn submit(agent: &mut Agent, plan_id: Uuid, steps: Vec<PlanStep>) -> ServerFrame {
    agent
        .request(|id| {
            ClientFrame::PlanSubmit(PlanSubmit {
                id,
                plan_id,
                steps,
                note: Some("min knows the report".into()),
            })
        })
        .await
}

async fn create_planned(hub: &Hub, key: &str, body: Value) -> Value {
    let (status, task) = hub.call(Method::POST, "/v1/tasks", key, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_task_is_proposed_by_the_creators_agent_and_starts_when_accepted() {
    for hub in Hub::all(
        "plans::a_planned_task_is_proposed_by_the_creators_agent_and_starts_when_accepted",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        let mut duan = Agent::connect(&hub, &team.duan, Codec::Json, 0).await;
        let sentence = "Min breaks down the director's report, then Duan reviews the outline";
        let task = create_planned(
            &hub,
            &team.min_key,
            json!({"title": "Quarterly report", "description": sentence, "plan": true}),
        )
        .await;
        assert_eq!(task["status"], "draft");
        assert_eq!(task["steps"], json!([]));
        let task_id = task["id"].as_str().unwrap().to_string();

        // The creator's only agent is asked, with the task and the team.
        let requested = plan_requested(&mut min).await;
        assert_eq!(requested.task.task_id.to_string(), task_id);
        assert_eq!(requested.task.description, sentence);
        assert_eq!(requested.round, 1);
        assert_eq!(requested.comment, None);
        let mut names: Vec<&str> = requested
            .agents
            .iter()
            .map(|agent| agent.name.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["duan-desktop", "min-laptop", "spare"]);
        let duan_row = requested
            .agents
            .iter()
            .find(|agent| agent.name == "duan-desktop")
            .unwrap();
        assert_eq!(duan_row.member, "duan@example.com");
        assert!(duan_row.online);
        assert_eq!(requested.members.len(), 3);

        // Nobody else hears of the draft.
        let (status, plan) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}/plan"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{plan}");
        assert_eq!(plan["plan"]["status"], "requested");
        assert_eq!(plan["plan"]["planner"], "min-laptop");

        // An invalid plan is answered with every error and changes nothing.
        let invalid = vec![
            plan_step("a", "First", "nobody", &["b"]),
            plan_step("b", "Second", "duan-desktop", &["a"]),
            PlanStep {
                approval_level: 2,
                ..plan_step("c", "Third", "min-laptop", &[])
            },
        ];
        let answer = submit(&mut min, requested.plan_id, invalid).await;
        expect_error(&answer, "invalid", "the plan has 3 errors:\n- ");
        let ServerFrame::Error(error) = &answer else {
            unreachable!()
        };
        for part in [
            "step `c` has approval level 2 but no approvers",
            "dependencies form a cycle",
            "step `a`: assignee `nobody` is not an agent of this workspace",
        ] {
            assert!(error.message.contains(part), "{part}: {}", error.message);
        }
        let (_, plan) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}/plan"),
                &team.min_key,
                None,
            )
            .await;
        assert_eq!(plan["plan"]["status"], "requested");
        assert_eq!(plan["plan"]["steps"], json!([]));

        // Another agent may not answer for the planner.
        let answer = submit(&mut duan, requested.plan_id, good_plan()).await;
        expect_error(&answer, "forbidden", "only the agent asked");

        // A good plan waits for the creator, who is notified.
        let answer = submit(&mut min, requested.plan_id, good_plan()).await;
        expect_ok(&answer, Some("proposed"));
        let (_, plan) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}/plan"),
                &team.min_key,
                None,
            )
            .await;
        assert_eq!(plan["plan"]["status"], "proposed");
        assert_eq!(plan["plan"]["note"], "min knows the report");
        assert_eq!(plan["plan"]["steps"][1]["key"], "review");
        assert_eq!(plan["plan"]["steps"][1]["depends_on"], json!(["outline"]));
        assert_eq!(plan["plan"]["steps"][0]["estimate_minutes"], 30);
        let (_, notifications) = hub
            .call(Method::GET, "/v1/me/notifications", &team.min_key, None)
            .await;
        let proposed: Vec<&Value> = notifications["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["kind"] == "plan.proposed")
            .collect();
        assert_eq!(proposed.len(), 1, "{notifications:#}");

        // Publishing would skip the plan.
        let (status, body) = hub
            .call(
                Method::POST,
                &format!("/v1/tasks/{task_id}/publish"),
                &team.min_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("plan/accept"),
            "{body}"
        );

        // Accepting starts the task; each agent is told its own steps.
        let (status, task) = hub
            .call(
                Method::POST,
                &format!("/v1/tasks/{task_id}/plan/accept"),
                &team.min_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{task}");
        assert_eq!(task["status"], "active");
        let keys: Vec<&str> = task["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["outline", "review"]);
        // The planner's estimates stay with the steps.
        for step in task["steps"].as_array().unwrap() {
            assert_eq!(step["estimate_minutes"], 30, "{step}");
            assert_eq!(step["kind"], "task", "{step}");
        }
        let outline_id = task["steps"][0]["id"].as_str().unwrap().to_string();

        let created = min
            .event(|frame| match frame {
                ServerFrame::TaskCreated(created) => Some(created.clone()),
                _ => None,
            })
            .await;
        assert_eq!(created.task.status, "active");
        assert_eq!(created.your_steps.len(), 1, "{created:?}");
        assert_eq!(created.your_steps[0].key, "outline");
        assert_eq!(created.your_steps[0].status, "ready");
        assert!(created.your_steps[0].waiting_for.is_empty());
        min.ready(&outline_id).await;

        let created = duan
            .event(|frame| match frame {
                ServerFrame::TaskCreated(created) => Some(created.clone()),
                _ => None,
            })
            .await;
        assert_eq!(created.your_steps.len(), 1, "{created:?}");
        assert_eq!(created.your_steps[0].key, "review");
        assert_eq!(created.your_steps[0].status, "pending");
        assert_eq!(created.your_steps[0].waiting_for, ["Break down the report"]);

        // The round is closed; the history says who accepted which plan.
        let answer = submit(&mut min, requested.plan_id, good_plan()).await;
        expect_error(&answer, "conflict", "no longer change");
        let (_, history) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}/history"),
                &team.min_key,
                None,
            )
            .await;
        let accepted = history["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["kind"] == "plan_accepted")
            .unwrap_or_else(|| panic!("{history:#}"));
        assert_eq!(accepted["triggered_by"], "member:min@example.com");
        assert_eq!(accepted["reason"], "plan round 1 accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_again_sends_the_comment_and_an_edited_plan_is_what_starts() {
    for hub in Hub::all(
        "plans::asking_again_sends_the_comment_and_an_edited_plan_is_what_starts",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
        let task = create_planned(
            &hub,
            &team.min_key,
            json!({
                "title": "Quarterly report",
                "plan": true,
                "steps": [{"key": "read", "title": "Read the report", "assignees": ["min-laptop"]}],
            }),
        )
        .await;
        let task_id = task["id"].as_str().unwrap().to_string();
        let first = plan_requested(&mut min).await;
        // The creator's own steps are where the planner starts.
        assert_eq!(first.steps.len(), 1);
        assert_eq!(first.steps[0].key, "read");

        // Nothing to accept before a proposal.
        let accept = format!("/v1/tasks/{task_id}/plan/accept");
        let (status, body) = hub.call(Method::POST, &accept, &team.min_key, None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        expect_ok(
            &submit(&mut min, first.plan_id, good_plan()).await,
            Some("proposed"),
        );
        let revise = format!("/v1/tasks/{task_id}/plan/revise");
        let (status, body) = hub
            .call(
                Method::POST,
                &revise,
                &team.min_key,
                Some(json!({"comment": "  "})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = hub
            .call(
                Method::POST,
                &revise,
                &team.min_key,
                Some(json!({"comment": "Duan should also draft the template"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["plan"]["round"], 2);
        assert_eq!(body["plan"]["status"], "requested");

        let second = plan_requested(&mut min).await;
        assert_eq!(second.round, 2);
        assert_eq!(
            second.comment.as_deref(),
            Some("Duan should also draft the template")
        );
        let keys: Vec<&str> = second.steps.iter().map(|step| step.key.as_str()).collect();
        assert_eq!(keys, ["outline", "review"]);
        // The refused round takes nothing any more.
        expect_error(
            &submit(&mut min, first.plan_id, good_plan()).await,
            "conflict",
            "round 1 is replaced",
        );
        expect_ok(
            &submit(&mut min, second.plan_id, good_plan()).await,
            Some("proposed"),
        );

        // An invalid edit lists its errors and leaves the proposal waiting.
        let (status, body) = hub
            .call(
                Method::POST,
                &accept,
                &team.min_key,
                Some(json!({"steps": [
                    {"key": "one", "title": "One", "assignees": ["ghost"]},
                    {"key": "two", "title": "Two", "assignees": ["min-laptop"], "depends_on": ["zero"]},
                ]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("the plan has 2 errors:"), "{message}");
        assert!(message.contains("`ghost`"), "{message}");
        assert!(message.contains("`zero`"), "{message}");

        // The edit is what starts.
        let (status, task) = hub
            .call(
                Method::POST,
                &accept,
                &team.min_key,
                Some(json!({"steps": [
                    {"key": "template", "title": "Draft the template", "assignees": ["duan-desktop"]},
                ]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{task}");
        assert_eq!(task["status"], "active");
        assert_eq!(task["steps"].as_array().unwrap().len(), 1);
        assert_eq!(task["steps"][0]["key"], "template");
        assert_eq!(task["steps"][0]["status"], "ready");
        let (_, history) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}/history"),
                &team.min_key,
                None,
            )
            .await;
        assert!(
            history["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|row| row["reason"] == "plan round 2 accepted with edits"),
            "{history:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_asked_only_of_an_agent_of_the_creator() {
    let hub = Hub::start(crate::support::TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let workspace = accounts::find_workspace(&hub.ctx.store, "acme")
        .await
        .unwrap()
        .id;
    accounts::add_member(
        &hub.ctx.store,
        &workspace,
        "ana@example.com",
        None,
        Role::Member,
    )
    .await
    .unwrap();
    let ana_key = accounts::create_api_key(&hub.ctx.store, &workspace, "ana@example.com", None)
        .await
        .unwrap()
        .secret;
    let body = json!({"title": "Quarterly report", "plan": true});
    let (status, error) = hub
        .call(Method::POST, "/v1/tasks", &ana_key, Some(body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "plan");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agentd login"),
        "{error}"
    );

    let body = json!({"title": "Quarterly report", "plan": true, "planner": "duan-desktop"});
    let (status, error) = hub
        .call(Method::POST, "/v1/tasks", &team.min_key, Some(body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "planner");

    // Without `plan`, a task still needs steps.
    let body = json!({"title": "Quarterly report"});
    let (status, error) = hub
        .call(Method::POST, "/v1/tasks", &team.min_key, Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "steps");

    // Not one task was created by the refused requests.
    let (_, tasks) = hub
        .call(Method::GET, "/v1/tasks", &team.min_key, None)
        .await;
    assert_eq!(tasks["tasks"], json!([]));
}
