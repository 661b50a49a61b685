//! Every task ends, seen from the wire and from REST, on both backends and in both
//! codecs: a pause revokes held steps and a resume pushes them again; a step that fails
//! for good fails its task, the creator's agent hears the outcome, and a retry over REST
//! re-opens it; drafts are published; the timeline, progress and agent states; who hears
//! `agent.online`.

use agenthub_protocol::{Codec, ServerFrame, error_code};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::ctx::Settings;

use crate::gateway::{Agent, Hub, Team, expect_error, expect_ok, team_named};

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];

async fn team_for(hub: &Hub, codec: Codec) -> Team {
    let name = match codec {
        Codec::MsgPack => "acme",
        Codec::Json => "acme-json",
    };
    team_named(&hub.ctx, name).await
}

/// Every frame the agent has buffered or receives until `last` matches one (included).
async fn frames_until(agent: &mut Agent, last: impl Fn(&ServerFrame) -> bool) -> Vec<ServerFrame> {
    let mut seen: Vec<ServerFrame> = std::mem::take(&mut agent.events);
    if let Some(idx) = seen.iter().position(&last) {
        agent.events = seen.split_off(idx + 1);
        return seen;
    }
    loop {
        let frame = agent.recv().await.expect("session open");
        let done = last(&frame);
        seen.push(frame);
        if done {
            return seen;
        }
    }
}

fn task_status_is(frame: &ServerFrame, task_id: Uuid, status: &str) -> bool {
    matches!(frame, ServerFrame::TaskUpdated(updated)
        if updated.task.task_id == task_id && updated.task.status == status)
}

fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap()
}

async fn task_of(hub: &Hub, key: &str, task_id: &str) -> Value {
    let (status, task) = hub
        .call(Method::GET, &format!("/v1/tasks/{task_id}"), key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    task
}

/// Creates a task over REST; returns its id and its steps' ids by key.
async fn create(hub: &Hub, key: &str, body: Value) -> (String, Vec<(String, String)>) {
    let (status, task) = hub.call(Method::POST, "/v1/tasks", key, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let steps = task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["key"].as_str().unwrap().to_string(),
                step["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (task["id"].as_str().unwrap().to_string(), steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_revokes_held_steps_and_a_resume_pushes_them_again() {
    for hub in Hub::all(
        "task_end::a_pause_revokes_held_steps_and_a_resume_pushes_them_again",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let (task_id, steps) = create(
                &hub,
                &team.key,
                json!({"title": "Pausable", "steps": [
                    {"key": "only", "title": "Write it", "assignees": ["min-laptop"]}]}),
            )
            .await;
            let only = &steps[0].1;
            min.ready(only).await;
            expect_ok(&min.claim(only).await, Some("claimed"));
            expect_ok(&min.progress(only, 1).await, None);
            // The running step's last progress is on the task.
            let task = task_of(&hub, &team.key, &task_id).await;
            assert_eq!(task["progress"]["running"][0]["percent"], 50, "{task}");
            assert_eq!(task["progress"]["running"][0]["message"], "working");

            let (status, paused) = hub
                .call(
                    Method::PATCH,
                    &format!("/v1/tasks/{task_id}"),
                    &team.key,
                    Some(json!({"action": "pause"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{paused}");
            let seen = frames_until(&mut min, |frame| {
                task_status_is(frame, uuid(&task_id), "paused")
            })
            .await;
            let revoked = seen.iter().position(|frame| {
                matches!(frame, ServerFrame::StepRevoked(revoked)
                    if revoked.step_id == uuid(only) && revoked.attempt == 1
                        && revoked.reason == "the task was paused")
            });
            assert!(revoked.is_some(), "the holder is told first: {seen:?}");
            // The revoked attempt's result is refused; nothing is claimed while paused.
            expect_error(
                &min.submit(only, 1, json!({"late": true})).await,
                error_code::CONFLICT,
                "attempt 1 is not current",
            );
            expect_error(
                &min.claim(only).await,
                error_code::CONFLICT,
                "task is paused",
            );

            let (status, _) = hub
                .call(
                    Method::PATCH,
                    &format!("/v1/tasks/{task_id}"),
                    &team.key,
                    Some(json!({"action": "resume"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            let (attempt, _) = min.ready(only).await;
            assert_eq!(attempt, 2);
            expect_ok(&min.claim(only).await, Some("claimed"));
            expect_ok(
                &min.submit(only, 2, json!({"text": "written"})).await,
                Some("done"),
            );
            // The task's end comes after the step's completion.
            let seen = frames_until(&mut min, |frame| {
                task_status_is(frame, uuid(&task_id), "done")
            })
            .await;
            let completed = seen.iter().position(|frame| {
                matches!(frame, ServerFrame::StepCompleted(completed) if completed.step_id == uuid(only))
            });
            assert!(
                completed.is_some(),
                "step.completed before task.updated(done): {seen:?}"
            );
            let ServerFrame::TaskUpdated(done) = seen.last().unwrap() else {
                unreachable!()
            };
            assert_eq!(done.task.outcome.as_ref().unwrap().status, "done");
            min.ack().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_fails_its_task_tells_the_creators_agent_and_a_retry_reopens_it() {
    for hub in Hub::all(
        "task_end::a_failed_step_fails_its_task_tells_the_creators_agent_and_a_retry_reopens_it",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            // `spare` is bound to aurora, who creates the task: it is her agent.
            let mut spare = Agent::connect(&hub, &team.spare, codec, 0).await;
            let (task_id, steps) = create(
                &hub,
                &team.key,
                json!({"title": "Quarterly report", "steps": [
                    {"key": "draft", "title": "Draft the outline", "assignees": ["min-laptop"]},
                    {"key": "review", "title": "Review the outline", "assignees": ["duan-desktop"],
                     "depends_on": ["draft"]}]}),
            )
            .await;
            let (draft, review) = (&steps[0].1, &steps[1].1);
            min.ready(draft).await;
            expect_ok(&min.claim(draft).await, Some("claimed"));
            let failed = min
                .request(|id| {
                    agenthub_protocol::ClientFrame::StepFail(agenthub_protocol::StepFail {
                        id,
                        step_id: uuid(draft),
                        attempt: 1,
                        reason: "a shell step needs `input.command`".into(),
                        retryable: false,
                    })
                })
                .await;
            expect_ok(&failed, None);

            let outcome = spare
                .event(|frame| match frame {
                    ServerFrame::TaskUpdated(updated)
                        if updated.task.task_id == uuid(&task_id)
                            && updated.task.status == "failed" =>
                    {
                        updated.task.outcome.clone()
                    }
                    _ => None,
                })
                .await;
            assert_eq!(outcome.step_id, Some(uuid(draft)));
            assert_eq!(outcome.step_key.as_deref(), Some("draft"));
            assert_eq!(
                outcome.reason.as_deref(),
                Some("a shell step needs `input.command`")
            );
            let by = outcome.by.unwrap();
            assert_eq!(
                (by.kind.as_str(), by.name.as_deref()),
                ("agent", Some("min-laptop"))
            );

            let task = task_of(&hub, &team.key, &task_id).await;
            assert_eq!(task["status"], "failed");
            assert_eq!(task["outcome"]["step_key"], "draft");
            assert_eq!(task["outcome"]["by"]["name"], "min-laptop");
            assert_eq!(task["steps"][1]["status"], "skipped");
            assert_eq!(task["steps"][1]["status_reason"], "step `draft` failed");
            assert_eq!(
                task["progress"],
                json!({"done": 2, "total": 2, "running": []})
            );

            // Retrying the skipped step names the one to retry; only the creator or an
            // admin may retry; a bad body is refused.
            let retry = |step: &str| format!("/v1/steps/{step}/retry");
            let (status, body) = hub
                .call(Method::POST, &retry(review), &team.key, None)
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("retry `draft`"),
                "{body}"
            );
            let (status, body) = hub
                .call(Method::POST, &retry(draft), &team.min_key, None)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            let (status, body) = hub
                .call(
                    Method::POST,
                    &retry(draft),
                    &team.key,
                    Some(json!({"reason": 5})),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let (status, body) = hub
                .call(
                    Method::POST,
                    &retry(&Uuid::nil().to_string()),
                    &team.key,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

            let (status, task) = hub
                .call(
                    Method::POST,
                    &retry(draft),
                    &team.key,
                    Some(json!({"reason": "the command is set now"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{task}");
            assert_eq!(task["status"], "active");
            assert_eq!(task["outcome"], Value::Null);
            assert_eq!(task["steps"][0]["status"], "ready");
            assert_eq!(task["steps"][0]["attempt"], 2);
            assert_eq!(task["steps"][1]["status"], "pending");
            let (status, body) = hub.call(Method::POST, &retry(draft), &team.key, None).await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");

            let (attempt, _) = min.ready(draft).await;
            assert_eq!(attempt, 2);
            expect_ok(&min.claim(draft).await, Some("claimed"));
            expect_ok(
                &min.submit(draft, 2, json!({"outline": 1})).await,
                Some("done"),
            );

            // The timeline tells the whole story, oldest first, with who and why.
            let (status, timeline) = hub
                .call(
                    Method::GET,
                    &format!("/v1/tasks/{task_id}/timeline"),
                    &team.key,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{timeline}");
            let entries: Vec<(String, String, String, String)> = timeline["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| {
                    (
                        entry["step_key"].as_str().unwrap_or("(task)").to_string(),
                        entry["from"].as_str().unwrap_or("").to_string(),
                        entry["to"].as_str().unwrap().to_string(),
                        entry["actor"]["name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let expected: Vec<(String, String, String, String)> = [
                ("(task)", "", "active", "aurora@example.com"),
                ("draft", "", "ready", "aurora@example.com"),
                ("review", "", "pending", "aurora@example.com"),
                ("draft", "ready", "claimed", "min-laptop"),
                ("draft", "claimed", "failed", "min-laptop"),
                ("review", "pending", "skipped", "min-laptop"),
                ("(task)", "active", "failed", "min-laptop"),
                ("(task)", "failed", "active", "aurora@example.com"),
                ("draft", "failed", "pending", "aurora@example.com"),
                ("review", "skipped", "pending", "aurora@example.com"),
                ("draft", "pending", "ready", "aurora@example.com"),
                ("draft", "ready", "claimed", "min-laptop"),
                ("draft", "claimed", "submitted", "min-laptop"),
                ("draft", "submitted", "done", "min-laptop"),
                ("review", "pending", "ready", "min-laptop"),
            ]
            .into_iter()
            .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()))
            .collect();
            assert_eq!(entries, expected, "{timeline}");
            let (status, _) = hub
                .call(
                    Method::GET,
                    &format!("/v1/tasks/{}/timeline", Uuid::nil()),
                    &team.key,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            min.ack().await;
            spare.ack().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_starts_nothing_until_it_is_published() {
    for hub in Hub::all(
        "task_end::a_draft_starts_nothing_until_it_is_published",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let (task_id, steps) = create(
                &hub,
                &team.key,
                json!({"title": "Later", "draft": true, "steps": [
                    {"key": "only", "title": "Do it", "assignees": ["min-laptop"]}]}),
            )
            .await;
            let only = &steps[0].1;
            let task = task_of(&hub, &team.key, &task_id).await;
            assert_eq!(task["status"], "draft");
            assert_eq!(task["steps"][0]["status"], "pending");
            expect_error(&min.claim(only).await, error_code::CONFLICT, "pending");
            let publish = format!("/v1/tasks/{task_id}/publish");
            let (status, body) = hub.call(Method::POST, &publish, &team.min_key, None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            let (status, task) = hub.call(Method::POST, &publish, &team.key, None).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            assert_eq!(task["status"], "active");
            // The first event the agent hears of the task is its creation, then the push.
            let seen = frames_until(&mut min, |frame| {
                matches!(frame, ServerFrame::StepReady(ready) if ready.step.step_id == uuid(only))
            })
            .await;
            let types: Vec<&str> = seen.iter().map(ServerFrame::type_name).collect();
            assert_eq!(types, ["task.created", "step.ready"]);
            let (status, body) = hub.call(Method::POST, &publish, &team.key, None).await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("only a draft"),
                "{body}"
            );
            min.ack().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_working_together_hear_each_other_come_and_go_and_states_follow_their_steps() {
    for hub in Hub::all(
        "task_end::agents_working_together_hear_each_other_come_and_go_and_states_follow_their_steps",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let (_, steps) = create(
                &hub,
                &team.key,
                json!({"title": "Together", "steps": [
                    {"key": "draft", "title": "Draft", "assignees": ["min-laptop"]},
                    {"key": "review", "title": "Review", "assignees": ["duan-desktop"],
                     "depends_on": ["draft"], "approval_level": 1, "approvers": ["aurora@example.com"]}]}),
            )
            .await;
            let draft = &steps[0].1;
            let mut duan = Agent::connect(&hub, &team.duan, codec, 0).await;
            let mut spare = Agent::connect(&hub, &team.spare, codec, 0).await;
            let state = async |name: &str| {
                let (status, agent) = hub
                    .call(Method::GET, &format!("/v1/agents/{name}"), &team.key, None)
                    .await;
                assert_eq!(status, StatusCode::OK, "{agent}");
                agent["status"].as_str().unwrap().to_string()
            };
            assert_eq!(state("min-laptop").await, "offline");
            assert_eq!(state("duan-desktop").await, "idle");

            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let online = duan
                .event(|frame| match frame {
                    ServerFrame::AgentOnline(presence) => Some(presence.name.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(online, "min-laptop");
            min.ready(draft).await;
            expect_ok(&min.claim(draft).await, Some("claimed"));
            assert_eq!(state("min-laptop").await, "working");
            expect_ok(&min.submit(draft, 1, json!({})).await, Some("done"));
            assert_eq!(state("min-laptop").await, "idle");
            drop(min);
            let offline = duan
                .event(|frame| match frame {
                    ServerFrame::AgentOffline(presence) => Some(presence.name.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(offline, "min-laptop");
            // An agent not working on the task hears nothing of its agents.
            let review = &steps[1].1;
            duan.ready(review).await;
            expect_ok(&duan.claim(review).await, Some("claimed"));
            expect_ok(&duan.submit(review, 1, json!({})).await, Some("awaiting_approval"));
            assert_eq!(state("duan-desktop").await, "waiting");
            // aurora's agent is asked to approve; it heard nothing of min-laptop before.
            let seen = frames_until(&mut spare, |frame| {
                matches!(frame, ServerFrame::ApprovalRequested(_))
            })
            .await;
            let heard = seen
                .iter()
                .any(|frame| matches!(frame, ServerFrame::AgentOnline(_) | ServerFrame::AgentOffline(_)));
            assert!(!heard, "{seen:?}");
            spare.ack().await;
            duan.ack().await;
        }
    }
}
