//! Human decisions: approvals at levels 1-3, who may decide, input requests and their
//! answers, availability requests and the inbox.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::Barrier;

use agenthub::accounts::{Actor, Role};
use agenthub::approvals::{self, ApprovalRef, AvailabilityRequest};
use agenthub::db;
use agenthub::error::Error;
use agenthub::schema::availability_requests;
use agenthub::store::StoreError;
use agenthub::tasks::{self, NewStep};
use agenthub_protocol::{Decision, ServerFrame};

use crate::support::{
    Team, backend_test, events, expect_err, new_step, new_task, step_id, submit, types, uuid,
};

/// A task whose step `review` (by min, `level`, `approvers`) is followed by `publish`;
/// `review` has been submitted and awaits approval. Returns (task id, review, publish).
async fn awaiting(team: &Team, level: u8, approvers: &[&str]) -> (String, String, String) {
    let view = team
        .create(new_task(
            "Report",
            vec![
                NewStep {
                    approval_level: level,
                    approvers: approvers.iter().map(|email| email.to_string()).collect(),
                    ..new_step("review", &["min"], &[])
                },
                new_step("publish", &["duan-bot"], &["review"]),
            ],
        ))
        .await;
    let review = step_id(&view, "review");
    assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
    let publish = step_id(&view, "publish");
    (view.task.id, review, publish)
}

async fn decide(
    team: &Team,
    actor: &Actor,
    step: &str,
    decision: Decision,
    comment: Option<&str>,
) -> Result<approvals::Decided, Error> {
    crate::support::decide_current(
        &team.ctx,
        actor,
        step,
        approvals::Verdict::new(decision, comment),
    )
    .await
}

/// The `step.ready` events of `frames` for `step`: (attempt, rework comment).
fn ready_for(frames: &[ServerFrame], step: &str) -> Vec<(u32, Option<String>)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::StepReady(ready) if ready.step.step_id == uuid(step) => {
                Some((ready.step.attempt, ready.step.rework_comment.clone()))
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- levels

backend_test!(
    async fn level_1_is_confirmed_by_one_listed_approver(store) {
        let team = Team::new(&store).await;
        let (task_id, review, publish) =
            awaiting(&team, 1, &["duan@example.com", "aurora@example.com"]).await;
        // Each approver (and their agents) is asked.
        for (member, agent) in [(&team.duan, &team.duan_bot), (&team.aurora, &team.min)] {
            for audience in [member.member_id(), agent.agent_id.as_str()] {
                let asked = events(&store, audience).await.into_iter().any(|frame| {
                    matches!(frame, ServerFrame::ApprovalRequested(requested)
                        if requested.step_id == uuid(&review) && requested.approval_level == 1)
                });
                assert!(asked, "{audience} was not asked");
            }
        }
        expect_err(
            decide(&team, &team.duan, &review, Decision::Reject, Some("no")).await,
            "conflict",
            "level 1 approvals are confirmations; only levels 2 and 3 can reject",
        );
        let decided = decide(&team, &team.duan, &review, Decision::Approve, None).await.unwrap();
        assert_eq!(decided.step_status, "done");
        assert_eq!(team.step(&publish).await.status, "ready");
        // The other approver has nothing left to decide.
        assert!(approvals::inbox(&team.ctx, &team.aurora).await.unwrap().approvals.is_empty());
        expect_err(
            decide(&team, &team.aurora, &review, Decision::Approve, None).await,
            "conflict",
            "step is done at attempt 1; this approval was for attempt 1",
        );
        assert_eq!(team.task(&task_id).await.task.status, "active");
    }
);

backend_test!(
    async fn level_2_rejection_needs_a_comment_and_sends_the_step_back_for_rework(store) {
        let team = Team::new(&store).await;
        let (_, review, publish) = awaiting(&team, 2, &["duan@example.com"]).await;
        for blank in [None, Some(""), Some("   ")] {
            let err = expect_err(
                decide(&team, &team.duan, &review, Decision::Reject, blank).await,
                "invalid",
                "a rejection needs a comment",
            );
            assert!(matches!(&err, Error::Invalid { field: Some(field), .. } if field == "comment"), "{err:?}");
        }
        let decided = decide(&team, &team.duan, &review, Decision::Reject, Some("Add the Q3 numbers"))
            .await
            .unwrap();
        assert_eq!(decided.step_status, "ready");
        let step = team.step(&review).await;
        assert_eq!((step.attempt, step.claimed_by.as_deref()), (2, None));
        assert_eq!(step.rework_comment.as_deref(), Some("Add the Q3 numbers"));
        assert_eq!(team.step(&publish).await.status, "pending");

        // The assignee hears why, and gets the step again with the comment.
        let min_frames = events(&store, &team.min.agent_id).await;
        assert_eq!(
            ready_for(&min_frames, &review),
            [(1, None), (2, Some("Add the Q3 numbers".to_string()))]
        );
        let resolved = min_frames
            .iter()
            .find_map(|frame| match frame {
                ServerFrame::ApprovalResolved(resolved) => Some(resolved.clone()),
                _ => None,
            })
            .expect("approval.resolved for the assignee");
        assert_eq!(resolved.decision, Decision::Reject);
        assert_eq!(resolved.comment.as_deref(), Some("Add the Q3 numbers"));
        assert_eq!(resolved.decided_by, "duan@example.com");
        // Retrying the first submit changes nothing.
        assert_eq!(
            submit(&team.ctx, &team.min, &review, 1).await.unwrap().status,
            "awaiting_approval"
        );
        assert_eq!(team.step(&review).await.status, "ready");

        // The second attempt is reviewed afresh and approved.
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        let inbox = approvals::inbox(&team.ctx, &team.duan).await.unwrap();
        assert_eq!(inbox.approvals.len(), 1);
        assert_eq!(inbox.approvals[0].0.attempt, 2);
        let decided = decide(&team, &team.duan, &review, Decision::Approve, Some("good")).await.unwrap();
        assert_eq!(decided.step_status, "done");
        assert_eq!(team.step(&publish).await.status, "ready");
    }
);

backend_test!(
    async fn level_3_needs_every_listed_approver_and_one_rejection_sends_it_back(store) {
        let team = Team::new(&store).await;
        let kim = team.add_member("kim@example.com", Role::Member).await;
        let approvers = ["duan@example.com", "aurora@example.com", "kim@example.com"];
        let (_, review, publish) = awaiting(&team, 3, &approvers).await;
        for approver in [&team.duan, &team.aurora] {
            let decided = decide(&team, approver, &review, Decision::Approve, None).await.unwrap();
            assert_eq!(decided.step_status, "awaiting_approval");
        }
        assert_eq!(team.step(&publish).await.status, "pending");
        let decided = decide(&team, &kim, &review, Decision::Approve, None).await.unwrap();
        assert_eq!(decided.step_status, "done");
        assert_eq!(team.step(&publish).await.status, "ready");

        // Two approvals and one rejection: back to ready, and the remaining decision is moot.
        let (_, review, _) = awaiting(&team, 3, &approvers).await;
        decide(&team, &team.duan, &review, Decision::Approve, None).await.unwrap();
        let decided = decide(&team, &kim, &review, Decision::Reject, Some("wrong totals"))
            .await
            .unwrap();
        assert_eq!(decided.step_status, "ready");
        assert_eq!(team.step(&review).await.attempt, 2);
        expect_err(
            decide(&team, &team.aurora, &review, Decision::Approve, None).await,
            "conflict",
            "step is ready; there is nothing to approve",
        );
        // The next attempt asks everyone again.
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        for approver in [&team.duan, &team.aurora] {
            decide(&team, approver, &review, Decision::Approve, None).await.unwrap();
        }
        assert_eq!(
            decide(&team, &kim, &review, Decision::Approve, None).await.unwrap().step_status,
            "done"
        );
    }
);

backend_test!(
    /// Every approver of a level 3 step approves at the same moment: the step is done,
    /// whatever the interleaving, 15 rounds.
    async fn concurrent_level_3_approvals_complete_the_step(store) {
        let team = Team::new(&store).await;
        let kim = team.add_member("kim@example.com", Role::Member).await;
        let approvers = [team.duan.clone(), team.aurora.clone(), kim];
        for round in 0..15 {
            let (task_id, review, publish) = awaiting(
                &team,
                3,
                &["duan@example.com", "aurora@example.com", "kim@example.com"],
            )
            .await;
            let barrier = Arc::new(Barrier::new(approvers.len()));
            let handles: Vec<_> = approvers
                .iter()
                .map(|approver| {
                    let ctx = team.ctx.clone();
                    let approver = approver.clone();
                    let review = review.clone();
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        crate::support::decide_current(&ctx, &approver, &review, approvals::Verdict::new(Decision::Approve, None))
                            .await
                    })
                })
                .collect();
            let mut n_done = 0;
            for handle in handles {
                let decided = handle.await.unwrap().unwrap();
                n_done += usize::from(decided.step_status == "done");
            }
            assert_eq!(team.step(&review).await.status, "done", "round {round} on {:?}", store.backend());
            assert_eq!(n_done, 1, "round {round}: exactly one decision completes the step");
            assert_eq!(team.step(&publish).await.status, "ready");
            tasks::set_task_status(&team.ctx, &team.aurora, &task_id, tasks::TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

// ---------------------------------------------------------------- who decides

backend_test!(
    async fn only_listed_approvers_decide_and_only_once(store) {
        let team = Team::new(&store).await;
        let kim = team.add_member("kim@example.com", Role::Admin).await;
        let (_, review, _) = awaiting(&team, 3, &["duan@example.com", "aurora@example.com"]).await;
        let duans = approvals::inbox(&team.ctx, &team.duan).await.unwrap().approvals[0].0.clone();

        // Not listed: refused by step and by approval id, even an admin or an agent of one.
        expect_err(
            decide(&team, &kim, &review, Decision::Approve, None).await,
            "forbidden",
            "only a listed approver of this step may decide",
        );
        for outsider in [&kim, &team.aurora] {
            expect_err(
                approvals::decide(&team.ctx, outsider, ApprovalRef::Id(&duans.id), approvals::Verdict::new(Decision::Approve, None)).await,
                "forbidden",
                "only a listed approver of this step may decide",
            );
        }
        let kims_bot = team.add_agent("kim-bot", "kim@example.com", &[], 1).await;
        expect_err(
            decide(&team, &Actor::Agent(kims_bot), &review, Decision::Approve, None).await,
            "forbidden",
            "only a listed approver",
        );
        expect_err(
            approvals::decide(&team.ctx, &team.duan, ApprovalRef::Id("nope"), approvals::Verdict::new(Decision::Approve, None)).await,
            "not_found",
            "approval `nope`",
        );

        // Deciding twice is a conflict, by step or by id, and does not count twice.
        decide(&team, &team.duan, &review, Decision::Approve, None).await.unwrap();
        expect_err(
            decide(&team, &team.duan, &review, Decision::Approve, None).await,
            "conflict",
            "this approval was already decided",
        );
        expect_err(
            approvals::decide(&team.ctx, &team.duan, ApprovalRef::Id(&duans.id), approvals::Verdict::new(Decision::Reject, Some("no"))).await,
            "conflict",
            "this approval was already decided",
        );
        assert_eq!(team.step(&review).await.status, "awaiting_approval");
        // Level 2, decided: a second decision is refused as well.
        let (_, level_two, _) = awaiting(&team, 2, &["duan@example.com"]).await;
        decide(&team, &team.duan, &level_two, Decision::Approve, None).await.unwrap();
        expect_err(
            decide(&team, &team.duan, &level_two, Decision::Reject, Some("changed my mind")).await,
            "conflict",
            "step is done",
        );
        assert_eq!(team.step(&level_two).await.status, "done");
    }
);

backend_test!(
    /// duan's agent approves: the decision is duan's.
    async fn a_decision_through_an_agent_counts_as_its_members(store) {
        let team = Team::new(&store).await;
        let (_, review, _) = awaiting(&team, 2, &["duan@example.com"]).await;
        let bot = Actor::Agent(team.duan_bot.clone());
        let inbox = approvals::inbox(&team.ctx, &bot).await.unwrap();
        assert_eq!(inbox.approvals.len(), 1, "an agent's inbox is its member's");
        let decided = decide(&team, &bot, &review, Decision::Approve, None).await.unwrap();
        assert_eq!(decided.step_status, "done");
        assert!(approvals::inbox(&team.ctx, &team.duan).await.unwrap().approvals.is_empty());
        let resolved = events(&store, &team.min.agent_id)
            .await
            .into_iter()
            .find_map(|frame| match frame {
                ServerFrame::ApprovalResolved(resolved) => Some(resolved),
                _ => None,
            })
            .expect("approval.resolved for the assignee");
        assert_eq!(resolved.decided_by, "duan@example.com");
        assert_eq!(resolved.approval_id, uuid(&decided.approval_id));
        expect_err(
            decide(&team, &team.duan, &review, Decision::Approve, None).await,
            "conflict",
            "step is done",
        );
        // An agent of someone else cannot decide for duan.
        let (_, review, _) = awaiting(&team, 2, &["duan@example.com"]).await;
        expect_err(
            decide(&team, &Actor::Agent(team.min.clone()), &review, Decision::Approve, None).await,
            "forbidden",
            "only a listed approver",
        );
    }
);

// ---------------------------------------------------------------- input requests

backend_test!(
    async fn a_question_blocks_the_step_until_the_asked_member_answers(store) {
        let team = Team::new(&store).await;
        let kim = team.add_member("kim@example.com", Role::Member).await;
        let view = team
            .create(new_task("Ask", vec![new_step("ask", &["duan-bot"], &[])]))
            .await;
        let ask = step_id(&view, "ask");
        let ctx = &team.ctx;
        let bot = &team.duan_bot;
        expect_err(
            approvals::ask(ctx, bot, &ask, 1, "Which quarter?", &[]).await,
            "conflict",
            "step is ready at attempt 1",
        );
        tasks::claim_step(ctx, bot, &ask).await.unwrap();
        expect_err(approvals::ask(ctx, bot, &ask, 1, "  ", &[]).await, "invalid", "the question must not be empty");
        let options = vec!["Q3".to_string(), "Q4".to_string()];
        let request_id = approvals::ask(ctx, bot, &ask, 1, "Which quarter?", &options).await.unwrap();
        let step = team.step(&ask).await;
        assert_eq!((step.status.as_str(), step.lease_until), ("blocked", None));
        expect_err(tasks::progress_step(ctx, bot, &ask, 1, None, None).await, "conflict", "step is blocked");
        expect_err(submit(ctx, bot, &ask, 1).await, "conflict", "step is blocked");
        // A blocked step is not swept, however long the human takes.
        assert_eq!(tasks::sweep_expired_leases(ctx).await.unwrap(), 0);

        // duan (the agent's member) is asked, directly and through his agents.
        let asked = events(&store, team.duan.member_id()).await;
        let ServerFrame::InputRequested(requested) = asked.last().unwrap() else {
            panic!("{:?}", types(&asked))
        };
        assert_eq!((requested.question.as_str(), requested.options.clone()), ("Which quarter?", options));
        assert_eq!(requested.input_request_id, uuid(&request_id));
        let inbox = approvals::inbox(ctx, &team.duan).await.unwrap();
        assert_eq!(inbox.questions.len(), 1);
        assert_eq!(inbox.questions[0].0.id, request_id);
        assert!(approvals::inbox(ctx, &kim).await.unwrap().questions.is_empty());

        // Only the asked member answers; an empty answer is refused.
        expect_err(
            approvals::answer(ctx, &kim, &request_id, "Q4").await,
            "forbidden",
            "this question was asked of another member",
        );
        expect_err(approvals::answer(ctx, &team.duan, &request_id, " ").await, "invalid", "the answer must not be empty");
        expect_err(approvals::answer(ctx, &team.duan, "nope", "Q3").await, "not_found", "input request `nope`");
        let answered = approvals::answer(ctx, &team.duan, &request_id, "Q3").await.unwrap();
        assert_eq!(answered.answer.as_deref(), Some("Q3"));
        assert_eq!(answered.answered_by.as_deref(), Some("duan@example.com"));
        let step = team.step(&ask).await;
        assert_eq!(step.status, "running");
        assert!(step.lease_until.is_some(), "the lease runs again");

        // The agent is told the answer.
        let told = events(&store, &bot.agent_id).await.into_iter().find_map(|frame| match frame {
            ServerFrame::InputAnswered(answered) => Some(answered),
            _ => None,
        });
        let told = told.expect("input.answered for the agent");
        assert_eq!((told.answer.as_str(), told.answered_by.as_str()), ("Q3", "duan@example.com"));
        assert_eq!(told.step_id, uuid(&ask));
        expect_err(
            approvals::answer(ctx, &team.duan, &request_id, "Q4").await,
            "conflict",
            "this question was already answered",
        );
        assert!(approvals::inbox(ctx, &team.duan).await.unwrap().questions.is_empty());
        assert_eq!(submit(ctx, bot, &ask, 1).await.unwrap().status, "done");
    }
);

backend_test!(
    /// Two answers of one question at the same moment: one wins, the step runs once.
    async fn concurrent_answers_have_one_winner(store) {
        let team = Team::new(&store).await;
        for round in 0..10 {
            let view = team
                .create(new_task("Ask", vec![new_step("ask", &["min"], &[])]))
                .await;
            let ask = step_id(&view, "ask");
            tasks::claim_step(&team.ctx, &team.min, &ask).await.unwrap();
            let request_id = approvals::ask(&team.ctx, &team.min, &ask, 1, "Go?", &[]).await.unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let handles = ["yes", "no"].map(|answer| {
                let ctx = team.ctx.clone();
                let aurora = team.aurora.clone();
                let request_id = request_id.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    approvals::answer(&ctx, &aurora, &request_id, answer).await
                })
            });
            let mut n_answered = 0;
            for handle in handles {
                match handle.await.unwrap() {
                    Ok(_) => n_answered += 1,
                    Err(err) => assert_eq!(err.code(), "conflict", "{err}"),
                }
            }
            assert_eq!(n_answered, 1, "round {round} on {:?}", store.backend());
            let n_told = events(&store, &team.min.agent_id)
                .await
                .iter()
                .filter(|frame| matches!(frame, ServerFrame::InputAnswered(answered) if answered.step_id == uuid(&ask)))
                .count();
            assert_eq!(n_told, 1, "round {round}");
            submit(&team.ctx, &team.min, &ask, 1).await.unwrap();
        }
    }
);

// ---------------------------------------------------------------- availability

backend_test!(
    async fn availability_requests_reach_the_agent_and_record_its_answer(store) {
        let team = Team::new(&store).await;
        let view = team.create(new_task("Soon", vec![new_step("one", &["min"], &[])])).await;
        let ctx = &team.ctx;
        let request = approvals::request_availability(
            ctx,
            &team.aurora,
            "duan-bot",
            "Can you take the report this week?",
            Some(&view.task.id),
        )
        .await
        .unwrap();
        let frames = events(&store, &team.duan_bot.agent_id).await;
        let ServerFrame::AvailabilityRequested(asked) = frames.last().unwrap() else {
            panic!("{:?}", types(&frames))
        };
        assert_eq!(asked.request_id, uuid(&request.id));
        assert_eq!(asked.task_id, Some(uuid(&view.task.id)));
        assert_eq!(asked.question, "Can you take the report this week?");
        assert!(
            !types(&events(&store, &team.min.agent_id).await).contains(&"availability.requested"),
            "only the asked agent hears of it"
        );

        expect_err(
            approvals::request_availability(ctx, &team.aurora, "ghost", "Free?", None).await,
            "not_found",
            "agent `ghost`",
        );
        expect_err(
            approvals::request_availability(ctx, &team.aurora, "min", "Free?", Some("nope")).await,
            "not_found",
            "task `nope`",
        );
        expect_err(
            approvals::request_availability(ctx, &team.aurora, "min", " ", None).await,
            "invalid",
            "the question must not be empty",
        );

        // Only the asked agent responds.
        expect_err(
            approvals::respond_availability(ctx, &team.min, &request.id, true, None).await,
            "forbidden",
            "addressed to another agent",
        );
        approvals::respond_availability(ctx, &team.duan_bot, &request.id, false, Some("on leave until Monday"))
            .await
            .unwrap();
        let request_id = request.id.clone();
        let stored: AvailabilityRequest = store
            .read(async |db| {
                db!(db, |conn| availability_requests::table
                    .find(&request_id)
                    .select(AvailabilityRequest::as_select())
                    .first(conn)
                    .await)
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(stored.available, Some(false));
        assert_eq!(stored.note.as_deref(), Some("on leave until Monday"));
        assert!(stored.responded_at.is_some());
        assert_eq!(stored.asked_by_member_id, team.aurora.member_id());
    }
);

// ---------------------------------------------------------------- the inbox

backend_test!(
    /// A member's inbox holds the approvals awaiting them for the current attempt and
    /// the open questions of their agents' blocked steps, nothing else.
    async fn the_inbox_holds_pending_decisions_and_open_questions(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        assert!(approvals::inbox(ctx, &team.duan).await.unwrap().approvals.is_empty());
        let (_, first, _) = awaiting(&team, 2, &["duan@example.com"]).await;
        let (_, second, _) = awaiting(&team, 1, &["duan@example.com", "aurora@example.com"]).await;
        let (_, decided, _) = awaiting(&team, 2, &["duan@example.com"]).await;
        decide(&team, &team.duan, &decided, Decision::Approve, None).await.unwrap();
        let (_, reworked, _) = awaiting(&team, 2, &["aurora@example.com"]).await;
        decide(&team, &team.aurora, &reworked, Decision::Reject, Some("redo")).await.unwrap();

        let view = team
            .create(new_task("Ask", vec![new_step("ask", &["duan-bot"], &[])]))
            .await;
        let ask = step_id(&view, "ask");
        tasks::claim_step(ctx, &team.duan_bot, &ask).await.unwrap();
        let question = approvals::ask(ctx, &team.duan_bot, &ask, 1, "Which format?", &[]).await.unwrap();
        // A question whose step moved on (failed) is no longer open.
        let stale = team
            .create(new_task("Stale", vec![new_step("ask", &["duan-bot"], &[])]))
            .await;
        let stale_ask = step_id(&stale, "ask");
        tasks::claim_step(ctx, &team.duan_bot, &stale_ask).await.unwrap();
        approvals::ask(ctx, &team.duan_bot, &stale_ask, 1, "Still there?", &[]).await.unwrap();
        tasks::fail_step(ctx, &team.duan_bot, &stale_ask, 1, "gave up", false).await.unwrap();

        let inbox = approvals::inbox(ctx, &team.duan).await.unwrap();
        let mut approval_steps: Vec<&str> = inbox.approvals.iter().map(|(_, step)| step.id.as_str()).collect();
        approval_steps.sort_unstable();
        let mut expected = vec![first.as_str(), second.as_str()];
        expected.sort_unstable();
        assert_eq!(approval_steps, expected);
        for (approval, step) in &inbox.approvals {
            assert_eq!(approval.approver_member_id, team.duan.member_id());
            assert_eq!((step.status.as_str(), approval.attempt), ("awaiting_approval", step.attempt));
        }
        let questions: Vec<(&str, &str)> = inbox
            .questions
            .iter()
            .map(|(request, step)| (request.id.as_str(), step.id.as_str()))
            .collect();
        assert_eq!(questions, [(question.as_str(), ask.as_str())]);

        // aurora: the level 1 step only (her rejected step went back to ready).
        let aurora = approvals::inbox(ctx, &team.aurora).await.unwrap();
        let steps: Vec<&str> = aurora.approvals.iter().map(|(_, step)| step.id.as_str()).collect();
        assert_eq!(steps, [second.as_str()]);
        assert!(aurora.questions.is_empty());
    }
);
