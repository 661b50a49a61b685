//! The full text of what a `step.ready` carries cut short, fetched from the real hub's
//! REST API with the agent token.

use agentd::credentials::Secret;
use agentd::executor::full_text::{self, Truncated};
use agentd::hub::HubClient;
use agentd::tls::{self, HubUrls};
use agenthub_protocol::{StepInfo, StepOutput};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::hub::Hub;

fn client(hub: &Hub, token: &str) -> HubClient {
    HubClient::new(
        HubUrls::parse(&hub.url, false).unwrap(),
        Secret::new(token),
        tls::client_config(None).unwrap(),
    )
    .unwrap()
}

/// A `step.ready` for `step` of `task` as the hub would send it with its texts cut short.
fn cut_step(task: &Value) -> StepInfo {
    let first = &task["steps"][0];
    let second = &task["steps"][1];
    StepInfo {
        step_id: second["id"].as_str().unwrap().parse().unwrap(),
        task_id: task["id"].as_str().unwrap().parse().unwrap(),
        task_title: "Quarterly report".into(),
        task_description: "The figures of…".into(),
        task_description_truncated: true,
        key: "review".into(),
        title: "Review".into(),
        description: String::new(),
        attempt: 1,
        executor: Some("shell".into()),
        input: Value::Null,
        approval_level: 0,
        required_capabilities: vec![],
        expected_outputs: None,
        inputs: vec![StepOutput {
            step_id: first["id"].as_str().unwrap().parse().unwrap(),
            title: "Draft".into(),
            summary: Some("An excerpt…".into()),
            result: json!({"excerpt": "…"}),
            files: vec![],
            truncated: true,
        }],
        rework_comment: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_and_an_output_cut_short_are_fetched_in_full() {
    let hub = Hub::start().await;
    let description = "The figures of Q3, region by region. ".repeat(2000);
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.owner_key,
            Some(json!({
                "title": "Quarterly report",
                "description": description,
                "steps": [
                    {"key": "draft", "title": "Draft", "assignees": ["min-laptop"]},
                    {"key": "review", "title": "Review", "assignees": ["min-laptop"], "depends_on": ["draft"]},
                ],
            })),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let mut step = cut_step(&task);
    let truncated = Truncated::of(&step);
    assert_eq!(
        truncated,
        Truncated {
            task_description: true,
            outputs: vec![step.inputs[0].step_id],
        }
    );
    full_text::complete(&mut step, &truncated, &client(&hub, &hub.team.min_token))
        .await
        .unwrap();
    assert_eq!(step.task_description, description);
    // The draft has no result yet: the hub's full text is its null result.
    assert_eq!(step.inputs[0].summary, None);
    assert_eq!(step.inputs[0].result, Value::Null);

    // Nothing flagged: nothing fetched, nothing changed.
    let mut untouched = cut_step(&task);
    full_text::complete(
        &mut untouched,
        &Truncated::default(),
        &client(&hub, "aha_wrong"),
    )
    .await
    .unwrap();
    assert_eq!(untouched.task_description, "The figures of…");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_that_cannot_be_fetched_fails_the_attempt_retryably_saying_why() {
    let hub = Hub::start().await;
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.owner_key,
            Some(json!({
                "title": "Quarterly report",
                "steps": [
                    {"key": "draft", "title": "Draft", "assignees": ["min-laptop"]},
                    {"key": "review", "title": "Review", "assignees": ["min-laptop"], "depends_on": ["draft"]},
                ],
            })),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let mut step = cut_step(&task);
    step.task_id = Uuid::now_v7();
    let truncated = Truncated {
        task_description: true,
        outputs: vec![],
    };
    let failure = full_text::complete(&mut step, &truncated, &client(&hub, &hub.team.min_token))
        .await
        .unwrap_err();
    assert!(failure.retryable);
    assert!(
        failure.reason.starts_with(
            "the hub sent the task's description cut short and agentd cannot fetch it in full:"
        ),
        "{}",
        failure.reason
    );
    assert!(
        failure.reason.contains("not_found") || failure.reason.contains("not found"),
        "{}",
        failure.reason
    );
}
