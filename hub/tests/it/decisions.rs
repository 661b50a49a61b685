//! Decisions bound to what was seen (attempt and result digest) and the deadlines of
//! approvals and questions: reject, escalate, fail, acted on once by concurrent sweeps.

use std::sync::Arc;

use tokio::sync::Barrier;

use agenthub::accounts::Role;
use agenthub::approvals::{self, ApprovalRef, DecisionTimeout, OnTimeout, Verdict};
use agenthub::store::now_ms;
use agenthub::tasks::{self, NewStep};
use agenthub_protocol::{Decision, ServerFrame, TimeoutAction};

use crate::support::{Team, backend_test, events, expect_err, new_step, new_task, step_id, uuid};

const HOUR_MS: i64 = 3600 * 1000;

/// A task whose step `review` (by min, level `level`, approved by duan) awaits approval,
/// with `on_timeout` and a one-hour deadline. Returns (task id, review).
async fn awaiting(team: &Team, level: u8, on_timeout: OnTimeout) -> (String, String) {
    let view = team
        .create(new_task(
            "Report",
            vec![NewStep {
                approval_level: level,
                approvers: vec!["duan@example.com".into()],
                decision_timeout: DecisionTimeout::After(HOUR_MS),
                on_timeout,
                ..new_step("review", &["min"], &[])
            }],
        ))
        .await;
    let review = step_id(&view, "review");
    assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
    (view.task.id, review)
}

/// A task whose step `ask` (by min, `on_timeout`, one-hour deadline) is blocked on a
/// question to aurora. Returns (task id, step, question id).
async fn blocked(team: &Team, on_timeout: OnTimeout) -> (String, String, String) {
    let view = team
        .create(new_task(
            "Report",
            vec![NewStep {
                decision_timeout: DecisionTimeout::After(HOUR_MS),
                on_timeout,
                ..new_step("ask", &["min"], &[])
            }],
        ))
        .await;
    let ask = step_id(&view, "ask");
    tasks::claim_step(&team.ctx, &team.min, &ask).await.unwrap();
    let question = approvals::ask(&team.ctx, &team.min, &ask, 1, "Include Q2?", &[])
        .await
        .unwrap();
    (view.task.id, ask, question)
}

fn digest_in(frames: &[ServerFrame], step: &str, attempt: u32) -> String {
    frames
        .iter()
        .find_map(|frame| match frame {
            ServerFrame::ApprovalRequested(asked)
                if asked.step_id == uuid(step) && asked.attempt == attempt =>
            {
                Some(asked.digest.clone())
            }
            _ => None,
        })
        .expect("approval.requested of that attempt")
}

fn approval_in(frames: &[ServerFrame], step: &str, attempt: u32) -> String {
    frames
        .iter()
        .find_map(|frame| match frame {
            ServerFrame::ApprovalRequested(asked)
                if asked.step_id == uuid(step) && asked.attempt == attempt =>
            {
                Some(asked.approval_id.to_string())
            }
            _ => None,
        })
        .expect("approval.requested of that attempt")
}

fn timed_out(frames: &[ServerFrame]) -> Vec<TimeoutAction> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::ApprovalTimedOut(event) => Some(event.action),
            ServerFrame::InputTimedOut(event) => Some(event.action),
            _ => None,
        })
        .collect()
}

backend_test!(
    async fn a_decision_for_an_old_attempt_or_another_digest_is_refused_and_changes_nothing(store) {
        let team = Team::new(&store).await;
        let (_, review) = awaiting(&team, 2, OnTimeout::Escalate).await;
        let first = digest_in(&events(&store, team.duan.member_id()).await, &review, 1);
        assert!(first.starts_with("sha256:"), "{first}");
        assert_eq!(team.step(&review).await.result_digest.as_deref(), Some(first.as_str()));
        // Rework, then a second result: a decision made on the first is stale.
        approvals::decide(&team.ctx, &team.duan, ApprovalRef::Step(&review, 1),
            Verdict::new(Decision::Reject, Some("more detail"))).await.unwrap();
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        let before = team.step(&review).await;
        let n_events = events(&store, team.min.agent_id.as_str()).await.len();
        expect_err(
            approvals::decide(&team.ctx, &team.duan, ApprovalRef::Step(&review, 1),
                Verdict::new(Decision::Approve, None)).await,
            "conflict",
            "attempt 1 is no longer current: the step is awaiting_approval at attempt 2",
        );
        let second = digest_in(&events(&store, team.duan.member_id()).await, &review, 2);
        assert_ne!(first, second, "the summary names the attempt");
        expect_err(
            approvals::decide(&team.ctx, &team.duan, ApprovalRef::Step(&review, 2),
                Verdict::new(Decision::Approve, None).seen(&first)).await,
            "conflict",
            "look at it again before deciding",
        );
        // The old approval id is refused too (the path agents use).
        let old = approval_in(&events(&store, team.duan.member_id()).await, &review, 1);
        expect_err(
            approvals::decide(&team.ctx, &team.duan, ApprovalRef::Id(&old),
                Verdict::new(Decision::Approve, None)).await,
            "conflict",
            "this approval was for attempt 1",
        );
        let after = team.step(&review).await;
        assert_eq!((after.status.as_str(), after.attempt), (before.status.as_str(), before.attempt));
        assert_eq!(events(&store, team.min.agent_id.as_str()).await.len(), n_events, "nobody was told anything");
        // The decision on what is current goes through.
        let decided = approvals::decide(&team.ctx, &team.duan, ApprovalRef::Step(&review, 2),
            Verdict::new(Decision::Approve, None).seen(&second)).await.unwrap();
        assert_eq!(decided.step_status, "done");
    }
);

backend_test!(
    async fn an_overdue_approval_set_to_reject_goes_back_for_rework(store) {
        let team = Team::new(&store).await;
        let (task_id, review) = awaiting(&team, 2, OnTimeout::Reject).await;
        assert_eq!(approvals::sweep_overdue(&team.ctx).await.unwrap(), 0, "not due yet");
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, now_ms() + 2 * HOUR_MS).await.unwrap(), 1);
        let step = team.step(&review).await;
        assert_eq!((step.status.as_str(), step.attempt), ("ready", 2));
        assert_eq!(step.rework_comment.as_deref(), Some("no decision in time"));
        for audience in [team.duan.member_id(), team.min.agent_id.as_str(), team.aurora.member_id()] {
            assert_eq!(timed_out(&events(&store, audience).await), [TimeoutAction::Reject], "{audience}");
        }
        let timeline = tasks::timeline(&team.ctx, &team.aurora, &task_id).await.unwrap();
        assert!(timeline.iter().any(|entry| entry.to == "rejected"
            && entry.reason.as_deref() == Some("no decision in time") && entry.actor.kind == "hub"));
        expect_err(
            approvals::decide(&team.ctx, &team.duan, ApprovalRef::Step(&review, 1),
                Verdict::new(Decision::Approve, None)).await,
            "conflict",
            "no longer current",
        );
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, now_ms() + 2 * HOUR_MS).await.unwrap(), 0, "acted once");
    }
);

backend_test!(
    async fn an_overdue_approval_set_to_fail_fails_the_step_and_its_task(store) {
        let team = Team::new(&store).await;
        let (task_id, review) = awaiting(&team, 1, OnTimeout::Fail).await;
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, now_ms() + 2 * HOUR_MS).await.unwrap(), 1);
        let step = team.step(&review).await;
        assert_eq!((step.status.as_str(), step.status_reason.as_deref()), ("failed", Some("no decision in time")));
        assert_eq!(team.task(&task_id).await.task.status, "failed");
        assert_eq!(timed_out(&events(&store, team.duan.member_id()).await), [TimeoutAction::Fail]);
    }
);

backend_test!(
    async fn an_overdue_approval_escalates_to_owners_and_admins_who_decide_for_everyone(store) {
        let team = Team::new(&store).await;
        let admin = team.add_member("ada@example.com", Role::Admin).await;
        // Level 3: without an escalated decision, duan's approval would still be needed.
        let (_, review) = awaiting(&team, 3, OnTimeout::Escalate).await;
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, now_ms() + 2 * HOUR_MS).await.unwrap(), 1);
        assert_eq!(team.step(&review).await.status, "awaiting_approval");
        for owner in [&team.aurora, &admin] {
            let inbox = approvals::inbox(&team.ctx, owner).await.unwrap();
            assert_eq!(inbox.approvals.len(), 1, "{owner:?}");
            assert!(inbox.approvals[0].0.escalated);
            let asked = events(&store, owner.member_id()).await;
            assert!(!digest_in(&asked, &review, 1).is_empty());
        }
        // duan still may decide, and is told of the escalation; no second deadline.
        assert_eq!(approvals::inbox(&team.ctx, &team.duan).await.unwrap().approvals.len(), 1);
        assert_eq!(timed_out(&events(&store, team.duan.member_id()).await), [TimeoutAction::Escalate]);
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, now_ms() + 48 * HOUR_MS).await.unwrap(), 0);
        let decided = approvals::decide(&team.ctx, &admin, ApprovalRef::Step(&review, 1),
            Verdict::new(Decision::Approve, None)).await.unwrap();
        assert_eq!(decided.step_status, "done");
    }
);

backend_test!(
    async fn overdue_questions_close_fail_or_reach_owners_and_admins(store) {
        let team = Team::new(&store).await;
        let later = now_ms() + 2 * HOUR_MS;
        // reject: the question closes unanswered; the step runs again, the agent is told.
        let (_, ask, question) = blocked(&team, OnTimeout::Reject).await;
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, later).await.unwrap(), 1);
        let step = team.step(&ask).await;
        assert_eq!((step.status.as_str(), step.attempt), ("running", 1));
        assert!(step.lease_until.is_some());
        assert_eq!(timed_out(&events(&store, team.min.agent_id.as_str()).await), [TimeoutAction::Reject]);
        expect_err(approvals::answer(&team.ctx, &team.aurora, &question, "yes").await, "conflict", "no answer in time");
        assert!(approvals::inbox(&team.ctx, &team.aurora).await.unwrap().questions.is_empty());
        tasks::fail_step(&team.ctx, &team.min, &ask, 1, "done here", false).await.unwrap();

        // fail: the step fails for good.
        let (task_id, ask, _) = blocked(&team, OnTimeout::Fail).await;
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, later).await.unwrap(), 1);
        let step = team.step(&ask).await;
        assert_eq!((step.status.as_str(), step.status_reason.as_deref()), ("failed", Some("no answer in time")));
        assert_eq!(team.task(&task_id).await.task.status, "failed");

        // escalate: owners and admins are asked too and may answer; the step waits.
        let admin = team.add_member("ada@example.com", Role::Admin).await;
        let (_, ask, question) = blocked(&team, OnTimeout::Escalate).await;
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, later).await.unwrap(), 1);
        assert_eq!(team.step(&ask).await.status, "blocked");
        let inbox = approvals::inbox(&team.ctx, &admin).await.unwrap();
        assert_eq!(inbox.questions.len(), 1);
        assert!(events(&store, admin.member_id()).await.iter().any(|frame| matches!(frame,
            ServerFrame::InputRequested(asked) if asked.input_request_id == uuid(&question))));
        assert_eq!(approvals::sweep_overdue_at(&team.ctx, later + 48 * HOUR_MS).await.unwrap(), 0);
        approvals::answer(&team.ctx, &admin, &question, "yes").await.unwrap();
        assert_eq!(team.step(&ask).await.status, "running");
    }
);

backend_test!(
    /// Two hubs sweep the same overdue approvals and questions at the same moment: each
    /// deadline is acted on exactly once.
    async fn concurrent_sweeps_act_on_each_deadline_once(store) {
        let team = Team::new(&store).await;
        let mut reviews = Vec::new();
        for _ in 0..6 {
            reviews.push(awaiting(&team, 2, OnTimeout::Reject).await.1);
        }
        let mut asks = Vec::new();
        for _ in 0..4 {
            asks.push(blocked(&team, OnTimeout::Reject).await.1);
        }
        let later = now_ms() + 2 * HOUR_MS;
        let barrier = Arc::new(Barrier::new(2));
        let sweeps: Vec<_> = (0..2)
            .map(|_| {
                let ctx = agenthub::ctx::Ctx::new(store.clone(), Default::default());
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    approvals::sweep_overdue_at(&ctx, later).await.unwrap()
                })
            })
            .collect();
        let mut n_acted = 0;
        for sweep in sweeps {
            n_acted += sweep.await.unwrap();
        }
        assert_eq!(n_acted, 10);
        for review in &reviews {
            assert_eq!(team.step(review).await.attempt, 2, "reworked once");
        }
        let frames = events(&store, team.min.agent_id.as_str()).await;
        assert_eq!(timed_out(&frames).len(), 10, "one event per deadline");
    }
);

backend_test!(
    async fn a_step_takes_its_workspace_default_deadline_which_an_operator_may_change(store) {
        let team = Team::new(&store).await;
        let created = |decision_timeout| {
            team.create(new_task(
                "Report",
                vec![NewStep {
                    decision_timeout,
                    ..new_step("write", &["min"], &[])
                }],
            ))
        };
        let step = created(DecisionTimeout::WorkspaceDefault).await.steps[0].step.clone();
        assert_eq!((step.decision_timeout_ms, step.on_timeout.as_str()), (Some(24 * HOUR_MS), "escalate"));
        agenthub::accounts::set_decision_timeout(&store, "acme", Some(8 * HOUR_MS)).await.unwrap();
        let step = created(DecisionTimeout::WorkspaceDefault).await.steps[0].step.clone();
        assert_eq!(step.decision_timeout_ms, Some(8 * HOUR_MS));
        let step = created(DecisionTimeout::Never).await.steps[0].step.clone();
        assert_eq!(step.decision_timeout_ms, None, "`none` has no deadline");
        agenthub::accounts::set_decision_timeout(&store, "acme", None).await.unwrap();
        let step = created(DecisionTimeout::WorkspaceDefault).await.steps[0].step.clone();
        assert_eq!(step.decision_timeout_ms, None);
    }
);

#[test]
fn deadlines_are_written_as_seconds_durations_or_none() {
    for (text, ms) in [
        ("90", 90_000),
        ("90s", 90_000),
        ("1h30m", 5_400_000),
        ("2d", 2 * 24 * HOUR_MS),
    ] {
        assert_eq!(
            DecisionTimeout::parse(text).unwrap(),
            DecisionTimeout::After(ms),
            "{text}"
        );
    }
    assert_eq!(
        DecisionTimeout::parse("none").unwrap(),
        DecisionTimeout::Never
    );
    for bad in [
        "",
        "0s",
        "h",
        "5 minutes",
        "1.5h",
        "400d",
        "99999999999999999999s",
    ] {
        let err = DecisionTimeout::parse(bad).expect_err(bad);
        assert_eq!(err.code(), "invalid", "{bad}: {err}");
    }
    assert_eq!(approvals::format_timeout(24 * HOUR_MS), "24h");
    assert_eq!(approvals::format_timeout(5_430_000), "1h30m30s");
}
