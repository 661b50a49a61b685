//! The hub does what docs/protocol.md says, checked with real WebSocket clients in both
//! codecs on both backends: what is malformed is refused and never executed, each
//! refusal has the documented code (and the request's `id` when it can be read), repeated
//! answers are `conflict`, a client flooding the hub still receives every reply and the
//! close frame, and the settled rules (capacity, held steps after a restart, reply order,
//! the order of events on a decision, paused tasks) hold.

use std::time::Duration;

use agenthub_protocol::{
    ClientFrame, Codec, Decision, ServerFrame, StepClaim, close_code, error_code,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::agents::{self, NewAgent};
use agenthub::ctx::Settings;

use crate::gateway::{Agent, Closed, Hub, Team, expect_error, expect_ok, one_step, team_named};

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];

/// A fresh team in a workspace of its own on a shared hub, per codec.
async fn team_for(hub: &Hub, codec: Codec) -> Team {
    let name = match codec {
        Codec::MsgPack => "acme",
        Codec::Json => "acme-json",
    };
    team_named(&hub.ctx, name).await
}

/// Sends `frame` (any JSON value, encoded in the agent's codec) as it is.
async fn send_value(agent: &mut Agent, frame: &Value) {
    let bytes = agent.codec.encode(frame).unwrap();
    agent.send_raw(bytes).await;
}

/// The next `ok` or `error`, keeping events that arrive meanwhile.
async fn reply(agent: &mut Agent) -> ServerFrame {
    loop {
        let frame = agent.recv().await.expect("session open");
        match frame {
            ServerFrame::Ok(_) | ServerFrame::Error(_) => return frame,
            _ if frame.seq().is_some() => agent.events.push(frame),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// `error` with `code`, the request `id`, and a message containing `needle`.
#[track_caller]
fn expect_refused(frame: &ServerFrame, code: &str, id: Option<u64>, needle: &str) {
    match frame {
        ServerFrame::Error(err) => {
            assert_eq!(err.code, code, "{err:?}");
            assert_eq!(err.id, id, "{err:?}");
            assert!(err.message.contains(needle), "`{needle}` not in {err:?}");
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

async fn step_status(hub: &Hub, team: &Team, step: &str) -> (String, i64) {
    let stored = hub.step(&team.key, step).await;
    (
        stored["status"].as_str().unwrap().to_string(),
        stored["attempt"].as_i64().unwrap(),
    )
}

// ---------------------------------------------------------------- item: malformed frames

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_are_not_maps_with_a_string_type_are_refused_and_not_executed() {
    for hub in Hub::all(
        "conformance::frames_that_are_not_maps_with_a_string_type_are_refused_and_not_executed",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let steps = hub
                .create_task(&team.key, one_step("positional", &["min-laptop"]))
                .await;
            let step = &steps[0].1;
            min.ready(step).await;

            // A positional array: no named `id` to answer with.
            send_value(&mut min, &json!(["step.claim", 9010, step])).await;
            expect_refused(
                &reply(&mut min).await,
                error_code::BAD_FRAME,
                None,
                "not an array",
            );
            // An integer `type` (1 is the index of `step.claim`), answered with its id.
            for index in [1, 0, 11] {
                send_value(
                    &mut min,
                    &json!({"type": index, "id": 9011, "step_id": step, "seq": 1, "nonce": 1}),
                )
                .await;
                expect_refused(
                    &reply(&mut min).await,
                    error_code::BAD_FRAME,
                    Some(9011),
                    "the `type` field must be a string",
                );
            }
            assert_eq!(step_status(&hub, &team, step).await, ("ready".into(), 1));
            // The same claim as a map is executed.
            expect_ok(&min.claim(step).await, Some("claimed"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_canonical_uuids_percent_out_of_range_and_deep_results_are_refused_with_the_id() {
    for hub in Hub::all(
        "conformance::non_canonical_uuids_percent_out_of_range_and_deep_results_are_refused_with_the_id",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let steps = hub
                .create_task(&team.key, one_step("uuids", &["min-laptop"]))
                .await;
            let step = steps[0].1.clone();
            min.ready(&step).await;
            let simple = step.replace('-', "");
            for form in [
                step.to_uppercase(),
                simple.clone(),
                format!("{{{step}}}"),
                format!("urn:uuid:{step}"),
            ] {
                send_value(
                    &mut min,
                    &json!({"type": "step.claim", "id": 31, "step_id": form}),
                )
                .await;
                expect_refused(
                    &reply(&mut min).await,
                    error_code::BAD_FRAME,
                    Some(31),
                    "`step_id` must be a UUID in canonical form",
                );
            }
            assert_eq!(step_status(&hub, &team, &step).await, ("ready".into(), 1));
            expect_ok(&min.claim(&step).await, Some("claimed"));

            send_value(
                &mut min,
                &json!({"type": "step.progress", "id": 32, "step_id": step, "attempt": 1,
                        "percent": 101}),
            )
            .await;
            expect_refused(
                &reply(&mut min).await,
                error_code::BAD_FRAME,
                Some(32),
                "`percent` must be from 0 to 100, not 101",
            );
            assert_eq!(step_status(&hub, &team, &step).await, ("claimed".into(), 1));
            send_value(
                &mut min,
                &json!({"type": "step.progress", "id": 33, "step_id": step, "attempt": 1,
                        "percent": 100}),
            )
            .await;
            expect_ok(&reply(&mut min).await, None);

            let deep = (0..100).fold(Value::Null, |inner, _| json!([inner]));
            send_value(
                &mut min,
                &json!({"type": "step.submit", "id": 34, "step_id": step, "attempt": 1,
                        "result": deep}),
            )
            .await;
            expect_refused(
                &reply(&mut min).await,
                error_code::BAD_FRAME,
                Some(34),
                "nesting deeper than 64 levels",
            );
            assert_eq!(step_status(&hub, &team, &step).await, ("running".into(), 1));
        }
    }
}

// ---------------------------------------------------------------- item: availability

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_availability_request_is_answered_once_by_the_agent_asked() {
    for hub in Hub::all(
        "conformance::an_availability_request_is_answered_once_by_the_agent_asked",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut duan = Agent::connect(&hub, &team.duan, codec, 0).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let (status, body) = hub
                .call(
                    Method::POST,
                    "/v1/agents/duan-desktop/availability",
                    &team.key,
                    Some(json!({"question": "Can you take the review?"})),
                )
                .await;
            assert!(status.is_success(), "{status} {body}");
            let request_id = duan
                .event(|frame| match frame {
                    ServerFrame::AvailabilityRequested(asked) => Some(asked.request_id),
                    _ => None,
                })
                .await;
            let respond = |id: u64, request_id: String| {
                json!({"type": "availability.respond", "id": id, "request_id": request_id,
                       "available": true, "note": "after 3pm"})
            };
            send_value(&mut min, &respond(1, request_id.to_string())).await;
            expect_refused(
                &reply(&mut min).await,
                error_code::FORBIDDEN,
                Some(1),
                "addressed to another agent",
            );
            send_value(&mut duan, &respond(1, request_id.to_string())).await;
            expect_ok(&reply(&mut duan).await, None);
            // The second answer is refused: the first stands.
            send_value(&mut duan, &respond(2, request_id.to_string())).await;
            expect_refused(
                &reply(&mut duan).await,
                error_code::CONFLICT,
                Some(2),
                "already answered",
            );
            send_value(&mut duan, &respond(3, Uuid::now_v7().to_string())).await;
            expect_refused(
                &reply(&mut duan).await,
                error_code::NOT_FOUND,
                Some(3),
                "availability request",
            );
            send_value(
                &mut duan,
                &respond(4, request_id.to_string().to_uppercase()),
            )
            .await;
            expect_refused(
                &reply(&mut duan).await,
                error_code::BAD_FRAME,
                Some(4),
                "`request_id` must be a UUID",
            );
        }
    }
}

// ---------------------------------------------------------------- item: rejections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_needs_a_comment_and_level_1_cannot_be_rejected() {
    for hub in Hub::all(
        "conformance::a_rejection_needs_a_comment_and_level_1_cannot_be_rejected",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut duan = Agent::connect(&hub, &team.duan, codec, 0).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let steps = hub
                .create_task(
                    &team.key,
                    json!({"title": "Levels", "steps": [
                        {"key": "confirm", "title": "Confirm", "assignees": ["duan-desktop"],
                         "approval_level": 1, "approvers": ["min@example.com"]},
                        {"key": "review", "title": "Review", "assignees": ["duan-desktop"],
                         "approval_level": 2, "approvers": ["min@example.com"]}]}),
                )
                .await;
            let mut approvals = Vec::new();
            for (_, step) in &steps {
                duan.ready(step).await;
                expect_ok(&duan.claim(step).await, Some("claimed"));
                expect_ok(
                    &duan.submit(step, 1, json!({"ok": true})).await,
                    Some("awaiting_approval"),
                );
                approvals.push(min.approval_requested(Uuid::parse_str(step).unwrap()).await);
            }
            let (confirm, review) = (approvals[0], approvals[1]);
            // Level 1 is a confirmation: no rejection, with or without a comment.
            for comment in [Some("wrong"), None] {
                expect_error(
                    &min.decide(confirm, Decision::Reject, comment).await,
                    error_code::CONFLICT,
                    "level 1 approvals are confirmations; only levels 2 and 3 can reject",
                );
            }
            // Level 2: a rejection without a comment is `invalid`, not `bad_frame`.
            for comment in [None, Some(""), Some("   ")] {
                expect_error(
                    &min.decide(review, Decision::Reject, comment).await,
                    error_code::INVALID,
                    "a rejection needs a comment",
                );
            }
            // Nothing was decided by the refusals.
            assert_eq!(
                step_status(&hub, &team, &steps[1].1).await,
                ("awaiting_approval".into(), 1)
            );
            expect_ok(&min.decide(confirm, Decision::Approve, None).await, None);
            expect_ok(
                &min.decide(review, Decision::Reject, Some("add the totals"))
                    .await,
                None,
            );
            assert_eq!(
                step_status(&hub, &team, &steps[1].1).await,
                ("ready".into(), 2)
            );
        }
    }
}

// ---------------------------------------------------------------- item: flooding

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_the_hub_receives_the_rate_limited_errors_then_close_1008() {
    let settings = Settings {
        max_frames_per_s: 50,
        ..Settings::default()
    };
    for hub in Hub::all(
        "conformance::a_client_flooding_the_hub_receives_the_rate_limited_errors_then_close_1008",
        settings,
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut agent = Agent::connect(&hub, &team.spare, codec, 0).await;
            // Six times the rate, sent before reading anything: the hub closes long before
            // it has read them all.
            let n_frames = 300u64;
            for id in 1..=n_frames {
                let claim = ClientFrame::StepClaim(StepClaim {
                    id,
                    step_id: Uuid::now_v7(),
                    attempt: None,
                });
                agent.send(&claim).await;
            }
            let mut n_not_found = 0;
            let mut n_rate_limited = 0;
            let mut last_id = 0;
            let code = loop {
                match agent.recv().await {
                    Ok(ServerFrame::Error(err)) => {
                        let id = err.id.expect("every refusal names its claim");
                        assert!(id > last_id, "replies come in request order");
                        last_id = id;
                        match err.code.as_str() {
                            // A claim the bucket admits is answered; it refills at
                            // the rate while the hub works, so admitted claims may
                            // follow refused ones.
                            error_code::NOT_FOUND => n_not_found += 1,
                            error_code::RATE_LIMITED => n_rate_limited += 1,
                            other => panic!("{other}: {err:?}"),
                        }
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(Closed(code)) => break code,
                }
            };
            assert_eq!(
                code,
                close_code::POLICY_VIOLATION,
                "{codec:?}: {n_not_found} answered, {n_rate_limited} rate limited"
            );
            assert_eq!(n_rate_limited, 20, "the 20th refusal closes the session");
            assert!(
                n_not_found >= 99 && n_not_found + 20 < n_frames,
                "{n_not_found} claims answered"
            );
        }
    }
}

// ---------------------------------------------------------------- settled rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_beyond_max_concurrency_is_a_conflict_and_leaves_the_step_ready() {
    for hub in Hub::all(
        "conformance::a_claim_beyond_max_concurrency_is_a_conflict_and_leaves_the_step_ready",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let workspace = match codec {
                Codec::MsgPack => "acme",
                Codec::Json => "acme-json",
            };
            let workspace_id = agenthub::accounts::find_workspace(&hub.ctx.store, workspace)
                .await
                .unwrap()
                .id;
            let single = agents::create_agent(
                &hub.ctx.store,
                NewAgent {
                    workspace_id: &workspace_id,
                    name: "single",
                    owner: "min@example.com",
                    capabilities: &[],
                    max_concurrency: 1,
                },
            )
            .await
            .unwrap()
            .token;
            let mut agent = Agent::connect(&hub, &single, codec, 0).await;
            let first = hub
                .create_task(&team.key, one_step("first", &["single"]))
                .await[0]
                .1
                .clone();
            let second = hub
                .create_task(&team.key, one_step("second", &["single"]))
                .await[0]
                .1
                .clone();
            agent.ready(&first).await;
            agent.ready(&second).await;
            expect_ok(&agent.claim_attempt(&first, Some(1)).await, Some("claimed"));
            expect_error(
                &agent.claim_attempt(&second, Some(1)).await,
                error_code::CONFLICT,
                "agent `single` already holds 1 steps (max concurrency 1)",
            );
            assert_eq!(step_status(&hub, &team, &second).await, ("ready".into(), 1));
            expect_ok(
                &agent.submit(&first, 1, json!({"ok": true})).await,
                Some("done"),
            );
            // Capacity again: the deferred push is claimed at its attempt.
            expect_ok(
                &agent.claim_attempt(&second, Some(1)).await,
                Some("claimed"),
            );
            assert!(
                !agent
                    .events
                    .iter()
                    .any(|frame| matches!(frame, ServerFrame::StepRevoked(_))),
                "a refused claim revokes nothing: {:?}",
                agent.events
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_its_held_step_over_rest_with_its_own_token() {
    for hub in Hub::all(
        "conformance::an_agent_reads_its_held_step_over_rest_with_its_own_token",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let agent_id = min.welcome.as_ref().unwrap().agent_id.to_string();
            let steps = hub
                .create_task(
                    &team.key,
                    json!({"title": "Restart", "steps": [
                        {"key": "draft", "title": "Draft", "assignees": ["min-laptop"]},
                        {"key": "held", "title": "Held step", "description": "Write it up",
                         "assignees": ["min-laptop"], "depends_on": ["draft"],
                         "input": {"cmd": "make report"}}]}),
                )
                .await;
            let (draft, held) = (&steps[0].1, &steps[1].1);
            min.ready(draft).await;
            expect_ok(&min.claim(draft).await, Some("claimed"));
            expect_ok(
                &min.submit(draft, 1, json!({"outline": ["a"]})).await,
                Some("done"),
            );
            min.ready(held).await;
            expect_ok(&min.claim(held).await, Some("claimed"));
            drop(min); // the agent restarts, having kept only (step id, attempt)

            let (status, step) = hub
                .call(Method::GET, &format!("/v1/steps/{held}"), &team.min, None)
                .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "the agent token is accepted: {step}"
            );
            assert_eq!(step["status"], "claimed");
            assert_eq!(step["attempt"], 1);
            assert_eq!(step["claimed_by"], agent_id.as_str());
            assert_eq!(step["title"], "Held step");
            assert_eq!(step["description"], "Write it up");
            assert_eq!(step["input"], json!({"cmd": "make report"}));
            assert_eq!(step["depends_on"], json!(["draft"]), "dependencies by key");
            // The task, and through it the dependency's output, with the same token.
            let task_id = step["task_id"].as_str().unwrap();
            let (status, task) = hub
                .call(
                    Method::GET,
                    &format!("/v1/tasks/{task_id}"),
                    &team.min,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{task}");
            assert_eq!(task["title"], "Restart", "{task}");
            let dependency = task["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|step| step["key"] == "draft")
                .unwrap();
            assert_eq!(dependency["id"], draft.as_str());
            assert_eq!(dependency["result"], json!({"outline": ["a"]}));
            // A step of another workspace is not visible to the agent.
            let other = team_named(&hub.ctx, &format!("other-{}", codec.subprotocol())).await;
            let foreign = hub
                .create_task(&other.key, one_step("foreign", &["min-laptop"]))
                .await;
            let (status, body) = hub
                .call(
                    Method::GET,
                    &format!("/v1/steps/{}", foreign[0].1),
                    &team.min,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            // Back online, the agent continues the held attempt.
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            expect_ok(&min.progress(held, 1).await, None);
            expect_ok(
                &min.submit(held, 1, json!({"ok": true})).await,
                Some("done"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_come_in_request_order_and_an_unreadable_frame_is_answered_in_its_place() {
    for hub in Hub::all(
        "conformance::replies_come_in_request_order_and_an_unreadable_frame_is_answered_in_its_place",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut agent = Agent::connect(&hub, &team.spare, codec, 0).await;
            let claim = |id: u64| {
                json!({"type": "step.claim", "id": id, "step_id": Uuid::now_v7().to_string()})
            };
            // Sent back to back, before reading: claim 1, a frame without a readable id,
            // claim 2.
            send_value(&mut agent, &claim(1)).await;
            send_value(
                &mut agent,
                &json!({"type": "step.claim", "id": "two", "step_id": Uuid::now_v7().to_string()}),
            )
            .await;
            send_value(&mut agent, &claim(3)).await;
            expect_refused(&reply(&mut agent).await, error_code::NOT_FOUND, Some(1), "step");
            expect_refused(&reply(&mut agent).await, error_code::BAD_FRAME, None, "");
            expect_refused(&reply(&mut agent).await, error_code::NOT_FOUND, Some(3), "step");
        }
    }
}

/// The events an agent has received so far and receives within a moment, by type.
async fn drain_types(agent: &mut Agent) -> Vec<&'static str> {
    let mut frames: Vec<ServerFrame> = std::mem::take(&mut agent.events);
    while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(300), agent.recv()).await {
        frames.push(frame);
    }
    frames.iter().map(ServerFrame::type_name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_announced_before_what_it_causes() {
    for hub in Hub::all(
        "conformance::a_decision_is_announced_before_what_it_causes",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut duan = Agent::connect(&hub, &team.duan, codec, 0).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let steps = hub
                .create_task(
                    &team.key,
                    json!({"title": "Order", "steps": [
                        {"key": "review", "title": "Review", "assignees": ["duan-desktop"],
                         "approval_level": 2, "approvers": ["min@example.com"]},
                        {"key": "publish", "title": "Publish", "assignees": ["duan-desktop"],
                         "depends_on": ["review"]}]}),
                )
                .await;
            let review = &steps[0].1;
            let review_id = Uuid::parse_str(review).unwrap();

            // Reject: approval.resolved, then the next attempt's step.ready.
            duan.ready(review).await;
            expect_ok(&duan.claim(review).await, Some("claimed"));
            expect_ok(
                &duan.submit(review, 1, json!({"v": 1})).await,
                Some("awaiting_approval"),
            );
            let approval = min.approval_requested(review_id).await;
            let first_approval = approval;
            let _ = drain_types(&mut duan).await;
            expect_ok(
                &min.decide(approval, Decision::Reject, Some("more detail"))
                    .await,
                None,
            );
            assert_eq!(
                drain_types(&mut duan).await,
                ["approval.resolved", "step.ready"],
                "{codec:?}: on reject"
            );

            // Approve: approval.resolved, then the completion's events: the pushes of the
            // steps it made ready, then step.completed.
            expect_ok(&duan.claim(review).await, Some("claimed"));
            expect_ok(
                &duan.submit(review, 2, json!({"v": 2})).await,
                Some("awaiting_approval"),
            );
            let approval = min.approval_requested(review_id).await;
            let _ = drain_types(&mut duan).await;
            // A decision on the first attempt, or on another result, is refused and
            // changes nothing (the events below follow the one decision that counts).
            crate::gateway::expect_error(
                &min.decide(first_approval, Decision::Approve, None).await,
                "conflict",
                "this approval was for attempt 1",
            );
            crate::gateway::expect_error(
                &min.decide_on(approval, Decision::Approve, None, Some("sha256:00"))
                    .await,
                "conflict",
                "look at it again before deciding",
            );
            expect_ok(&min.decide(approval, Decision::Approve, None).await, None);
            assert_eq!(
                drain_types(&mut duan).await,
                ["approval.resolved", "step.ready", "step.completed"],
                "{codec:?}: on approve"
            );
            // The decider's agent hears of its decision too.
            let min_types = drain_types(&mut min).await;
            assert_eq!(
                min_types
                    .iter()
                    .filter(|kind| **kind == "approval.resolved")
                    .count(),
                2,
                "{min_types:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_task_refuses_claims_and_its_resume_pushes_the_ready_steps_again() {
    for hub in Hub::all(
        "conformance::a_paused_task_refuses_claims_and_its_resume_pushes_the_ready_steps_again",
        Settings::default(),
    )
    .await
    {
        for codec in CODECS {
            let team = team_for(&hub, codec).await;
            let mut min = Agent::connect(&hub, &team.min, codec, 0).await;
            let step = hub
                .create_task(&team.key, one_step("paused", &["min-laptop"]))
                .await[0]
                .1
                .clone();
            let (attempt, _) = min.ready(&step).await;
            let task_id = hub.step(&team.key, &step).await["task_id"]
                .as_str()
                .unwrap()
                .to_string();
            set_task(&hub, &team, &task_id, "pause").await;
            assert_eq!(task_updated(&mut min, &task_id).await, "paused");
            expect_error(
                &min.claim_attempt(&step, Some(attempt)).await,
                error_code::CONFLICT,
                "task is paused; its steps cannot be claimed",
            );
            set_task(&hub, &team, &task_id, "resume").await;
            assert_eq!(task_updated(&mut min, &task_id).await, "active");
            // Pushed again: the agent claims at the attempt of the new push.
            let (attempt, _) = min.ready(&step).await;
            let ok = expect_ok(
                &min.claim_attempt(&step, Some(attempt)).await,
                Some("claimed"),
            );
            assert_eq!(ok.attempt, Some(attempt));
        }
    }
}

/// `PATCH /v1/tasks/{id}` with `action` (pause, resume, …) as the task's creator.
async fn set_task(hub: &Hub, team: &Team, task_id: &str, action: &str) {
    let (status, body) = hub
        .call(
            Method::PATCH,
            &format!("/v1/tasks/{task_id}"),
            &team.key,
            Some(json!({"action": action})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{action}: {body}");
}

/// The status of the next `task.updated` of `task_id`.
async fn task_updated(agent: &mut Agent, task_id: &str) -> String {
    let task_id = Uuid::parse_str(task_id).unwrap();
    agent
        .event(|frame| match frame {
            ServerFrame::TaskUpdated(updated) if updated.task.task_id == task_id => {
                Some(updated.task.status.clone())
            }
            _ => None,
        })
        .await
}
