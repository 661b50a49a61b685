//! Self-checks: a submit's `check` is recorded with the step, each suggestion waits for
//! the task's creator as a workflow approval, an approved one is applied as a workflow
//! change triggered by the agent through its step, a rejected one changes nothing, and a
//! result that does not fit is flagged. Over a real hub on both backends.

use agenthub_protocol::{
    ClientFrame, Codec, PlanStep, SelfCheck, ServerFrame, StepSubmit, Suggestion, SuggestionOp,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::ctx::Settings;

use crate::gateway::{Agent, Hub, expect_error, expect_ok, team};

fn suggestion(op: SuggestionOp, reason: &str) -> Suggestion {
    Suggestion {
        op,
        step: None,
        new_step: None,
        assignees: Vec::new(),
        reason: reason.into(),
    }
}

fn check() -> SelfCheck {
    SelfCheck {
        fits: false,
        reasons: vec!["the figures are from last year".into()],
        suggestions: vec![
            Suggestion {
                new_step: Some(PlanStep {
                    key: "figures".into(),
                    title: "Update the figures".into(),
                    description: String::new(),
                    assignees: vec!["duan-desktop".into()],
                    depends_on: vec!["draft".into()],
                    approval_level: 0,
                    approvers: Vec::new(),
                    required_capabilities: Vec::new(),
                    executor: None,
                    expected_inputs: None,
                    expected_outputs: None,
                    estimate_minutes: Some(20),
                }),
                ..suggestion(SuggestionOp::Insert, "the outline quotes old figures")
            },
            Suggestion {
                step: Some("appendix".into()),
                ..suggestion(SuggestionOp::Skip, "there is nothing for an appendix")
            },
            Suggestion {
                step: Some("review".into()),
                assignees: vec!["min-laptop".into()],
                ..suggestion(SuggestionOp::Reassign, "min knows the figures")
            },
        ],
    }
}

async fn submit(agent: &mut Agent, step_id: &str, check: Option<SelfCheck>) -> ServerFrame {
    let step_id = Uuid::parse_str(step_id).unwrap();
    agent
        .request(|id| {
            ClientFrame::StepSubmit(StepSubmit {
                id,
                step_id,
                attempt: 1,
                result: json!({"outline": ["Revenue"]}),
                summary: Some("an outline".into()),
                self_check: None,
                check: check.map(Box::new),
                files: Vec::new(),
                usage: None,
            })
        })
        .await
}

async fn get(hub: &Hub, key: &str, path: &str) -> Value {
    let (status, body) = hub.call(Method::GET, path, key, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggestions_wait_for_the_creator_and_change_the_workflow_only_when_approved() {
    for hub in Hub::all(
        "checks::suggestions_wait_for_the_creator_and_change_the_workflow_only_when_approved",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        let steps = hub
            .create_task(
                &team.min_key,
                json!({"title": "Quarterly report", "steps": [
                    {"key": "draft", "title": "Draft the outline", "assignees": ["min-laptop"]},
                    {"key": "appendix", "title": "Write an appendix", "assignees": ["duan-desktop"], "depends_on": ["draft"]},
                    {"key": "review", "title": "Review the outline", "assignees": ["duan-desktop"], "depends_on": ["draft"]},
                    {"key": "other", "title": "Another draft", "assignees": ["min-laptop"]},
                ]}),
            )
            .await;
        let id_of = |key: &str| {
            steps
                .iter()
                .find(|(step_key, _)| step_key == key)
                .unwrap()
                .1
                .clone()
        };
        let draft = id_of("draft");
        let task_id = hub.step(&team.min_key, &draft).await["task_id"]
            .as_str()
            .unwrap()
            .to_string();

        // A malformed check refuses the submit and loses nothing: the step still runs.
        let other = id_of("other");
        min.ready(&other).await;
        expect_ok(&min.claim(&other).await, Some("claimed"));
        let malformed = SelfCheck {
            fits: true,
            reasons: Vec::new(),
            suggestions: vec![Suggestion {
                step: Some("review".into()),
                ..suggestion(SuggestionOp::Reassign, "no one named")
            }],
        };
        let answer = submit(&mut min, &other, Some(malformed)).await;
        expect_error(&answer, "invalid", "a reassignment names its `assignees`");
        let ServerFrame::Error(error) = &answer else {
            unreachable!()
        };
        assert!(error.message.contains("check.suggestions[0]"), "{error:?}");
        assert_eq!(hub.step(&team.min_key, &other).await["status"], "claimed");

        min.ready(&draft).await;
        expect_ok(&min.claim(&draft).await, Some("claimed"));
        expect_ok(&submit(&mut min, &draft, Some(check())).await, Some("done"));
        // A resent submit records nothing twice.
        expect_ok(&submit(&mut min, &draft, Some(check())).await, Some("done"));

        let step = hub.step(&team.min_key, &draft).await;
        assert_eq!(
            step["check"],
            json!({"attempt": 1, "fits": false, "reasons": ["the figures are from last year"]})
        );
        let path = format!("/v1/tasks/{task_id}/workflow-approvals");
        let list = get(&hub, &team.min_key, &path).await;
        let rows = list["workflow_approvals"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 3, "{list:#}");
        assert!(
            rows.iter()
                .all(|row| row["kind"] == "workflow" && row["status"] == "pending")
        );
        let ops: Vec<&str> = rows
            .iter()
            .map(|row| row["suggestion"]["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["insert", "skip", "reassign"]);

        // Nothing changed by itself; the creator is asked and told the result does not fit.
        let task = get(&hub, &team.min_key, &format!("/v1/tasks/{task_id}")).await;
        assert_eq!(task["steps"].as_array().unwrap().len(), 4);
        let notifications = get(&hub, &team.min_key, "/v1/me/notifications").await;
        let kinds: Vec<&str> = notifications["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|kind| **kind == "workflow.proposed")
                .count(),
            3,
            "{kinds:?}"
        );
        assert!(kinds.contains(&"step.unfit"), "{kinds:?}");

        // A rejected suggestion changes nothing.
        let skip_id = rows[1]["id"].as_str().unwrap();
        let (status, body) = hub
            .call(
                Method::POST,
                &format!("/v1/workflow-approvals/{skip_id}/reject"),
                &team.min_key,
                Some(json!({"comment": "keep the appendix"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["workflow_approval"]["status"], "rejected");
        assert_eq!(body["workflow_approval"]["comment"], "keep the appendix");
        assert_eq!(
            hub.step(&team.min_key, &id_of("appendix")).await["status"],
            "ready"
        );
        let (status, body) = hub
            .call(
                Method::POST,
                &format!("/v1/workflow-approvals/{skip_id}/approve"),
                &team.min_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // Approved ones are applied, triggered by the agent through its step.
        for row in [&rows[0], &rows[2]] {
            let id = row["id"].as_str().unwrap();
            let (status, body) = hub
                .call(
                    Method::POST,
                    &format!("/v1/workflow-approvals/{id}/approve"),
                    &team.min_key,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["workflow_approval"]["status"], "approved");
        }
        let task = get(&hub, &team.min_key, &format!("/v1/tasks/{task_id}")).await;
        let steps = task["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 5);
        let figures = steps.iter().find(|step| step["key"] == "figures").unwrap();
        assert_eq!(figures["status"], "ready");
        let review = steps.iter().find(|step| step["key"] == "review").unwrap();
        assert_eq!(review["assignees"][0]["name"], "min-laptop");
        let history = get(&hub, &team.min_key, &format!("/v1/tasks/{task_id}/history")).await;
        let kinds: Vec<(&str, &str)> = history["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["kind"].as_str().unwrap(),
                    row["triggered_by"].as_str().unwrap(),
                )
            })
            .collect();
        let by = "agent:min-laptop (check of step `draft`), approved by member:min@example.com";
        assert_eq!(
            kinds,
            [("step_added", by), ("assignees_changed", by)],
            "{history:#}"
        );
        // min-laptop now holds the review: it is pushed to it.
        min.ready(review["id"].as_str().unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_is_told_whether_the_agent_judged_its_result_to_fit() {
    for hub in Hub::all(
        "checks::the_approver_is_told_whether_the_agent_judged_its_result_to_fit",
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        let mut spare = Agent::connect(&hub, &team.spare, Codec::Json, 0).await;
        let steps = hub
            .create_task(
                &team.min_key,
                json!({"title": "Quarterly report", "steps": [
                    {"key": "checked", "title": "Draft the outline", "assignees": ["min-laptop"],
                     "approval_level": 1, "approvers": ["aurora@example.com"]},
                    {"key": "unchecked", "title": "Another draft", "assignees": ["min-laptop"],
                     "approval_level": 1, "approvers": ["aurora@example.com"]},
                ]}),
            )
            .await;
        for (key, check, fits) in [
            ("checked", Some(check()), Some(false)),
            ("unchecked", None, None),
        ] {
            let step_id = steps
                .iter()
                .find(|(step_key, _)| step_key == key)
                .unwrap()
                .1
                .clone();
            min.ready(&step_id).await;
            expect_ok(&min.claim(&step_id).await, Some("claimed"));
            expect_ok(
                &submit(&mut min, &step_id, check).await,
                Some("awaiting_approval"),
            );
            let step_uuid = Uuid::parse_str(&step_id).unwrap();
            let requested = spare
                .event(|frame| match frame {
                    ServerFrame::ApprovalRequested(requested) if requested.step_id == step_uuid => {
                        Some(requested.clone())
                    }
                    _ => None,
                })
                .await;
            assert_eq!(requested.fits, fits, "{key}");
            // The check came with the result: it is there when the approver looks.
            let step = hub.step(&team.min_key, &step_id).await;
            match fits {
                Some(_) => assert_eq!(step["check"]["fits"], false, "{step}"),
                None => assert!(step["check"].is_null(), "{step}"),
            }
        }
        // Aurora's inbox item says the agent thinks the result does not fit.
        let notifications = get(&hub, &team.key, "/v1/me/notifications").await;
        let approvals: Vec<&Value> = notifications["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["kind"] == "approval.requested")
            .collect();
        assert_eq!(approvals.len(), 2, "{notifications:#}");
        let unfit: Vec<bool> = approvals
            .iter()
            .map(|row| {
                row["body"]
                    .as_str()
                    .unwrap()
                    .contains("does not fit the task")
            })
            .collect();
        assert_eq!(
            unfit.iter().filter(|unfit| **unfit).count(),
            1,
            "{notifications:#}"
        );
    }
}
