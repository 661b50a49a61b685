//! Every task reaches an end: final step failures and what they skip, attempt limits,
//! `continue_on_failure`, retries, the order and audience of the end's `task.updated`,
//! progress, the timeline, drafts, skips by workflow change, pauses that revoke held
//! steps, the status of agents and who hears of their presence.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::{Barrier, Notify};

use agenthub::accounts::{Actor, AgentActor, Role};
use agenthub::agents;
use agenthub::approvals::{self, ApprovalRef};
use agenthub::ctx::Ctx;
use agenthub::db;
use agenthub::schema::step_approvers;
use agenthub::store::{Backend, Store, StoreError};
use agenthub::tasks::{self, NewStep, NewTask, TaskAction, TaskView, WorkflowChange, WorkflowOp};
use agenthub_protocol::{ActorRef, Decision, ServerFrame, TaskOutcome};

use crate::support::{
    Team, backend_test, events, expect_err, expire_lease, new_step, new_task, report_task,
    short_lease, step_id, submit, types, uuid,
};

// ---------------------------------------------------------------- helpers

/// (key, status) of every step of the view, in task order.
fn statuses(view: &TaskView) -> Vec<(String, String)> {
    view.steps
        .iter()
        .map(|step_view| (step_view.step.key.clone(), step_view.step.status.clone()))
        .collect()
}

/// Status and outcome of every `task.updated` for `task_id` in `frames`, in order.
fn task_updates(frames: &[ServerFrame], task_id: &str) -> Vec<(String, Option<TaskOutcome>)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::TaskUpdated(updated) if updated.task.task_id == uuid(task_id) => {
                Some((updated.task.status.clone(), updated.task.outcome.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The index of the `task.updated` that reports `status` for `task_id`.
#[track_caller]
fn update_index(frames: &[ServerFrame], task_id: &str, status: &str) -> usize {
    frames
        .iter()
        .position(|frame| {
            matches!(frame, ServerFrame::TaskUpdated(updated)
                if updated.task.task_id == uuid(task_id) && updated.task.status == status)
        })
        .unwrap_or_else(|| panic!("no task.updated({status}) in {:?}", types(frames)))
}

/// The `step.ready` pushes of `step` in `frames`: their attempts.
fn ready_attempts(frames: &[ServerFrame], step: &str) -> Vec<u32> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::StepReady(ready) if ready.step.step_id == uuid(step) => {
                Some(ready.step.attempt)
            }
            _ => None,
        })
        .collect()
}

/// The reasons of the `step.revoked` of `step` in `frames`, with their attempts.
fn revocations(frames: &[ServerFrame], step: &str) -> Vec<(u32, String)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::StepRevoked(revoked) if revoked.step_id == uuid(step) => {
                Some((revoked.attempt, revoked.reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The agent as an outcome's `by`.
fn by_agent(agent: &AgentActor) -> ActorRef {
    ActorRef {
        kind: "agent".into(),
        id: Some(uuid(&agent.agent_id)),
        name: Some(agent.agent_name.clone()),
    }
}

/// The outcome of a task as its view shows it, in the shape `task.updated` carries.
#[track_caller]
fn outcome_of(view: &TaskView) -> TaskOutcome {
    let outcome = tasks::Outcome::of(&view.task).unwrap_or_else(|| {
        panic!(
            "task `{}` ({}) has no outcome",
            view.task.title, view.task.status
        )
    });
    TaskOutcome {
        status: outcome.status.as_str().to_string(),
        step_id: outcome.step.as_ref().map(|(id, _)| uuid(id)),
        step_key: outcome.step.map(|(_, key)| key),
        reason: outcome.reason,
        by: outcome.by.map(|by| ActorRef {
            kind: by.kind,
            id: by.id.as_deref().map(uuid),
            name: by.name,
        }),
    }
}

/// Claims `step` and fails its current attempt.
async fn claim_and_fail(
    team: &Team,
    agent: &AgentActor,
    step: &str,
    reason: &str,
    retryable: bool,
) -> String {
    let claimed = tasks::claim_step(&team.ctx, agent, step).await.unwrap();
    tasks::fail_step(&team.ctx, agent, step, claimed.attempt, reason, retryable)
        .await
        .unwrap()
}

fn change(reason: &str, operations: Vec<WorkflowOp>) -> WorkflowChange {
    WorkflowChange {
        reason: reason.into(),
        operations,
    }
}

// ---------------------------------------------------------------- final failures

backend_test!(
    /// `draft` fails for good while `run` (another branch) is running and `check` awaits
    /// approval: the task fails at once with an outcome naming the step, the reason and
    /// the agent; what has not started is skipped with a reason; the running branch still
    /// finishes and its results are kept; nothing new starts.
    async fn a_final_failure_fails_the_task_and_skips_what_has_not_started(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Launch",
                vec![
                    new_step("draft", &["min"], &[]),
                    new_step("review", &["min"], &["draft"]),
                    new_step("publish", &["min"], &["review"]),
                    new_step("side", &["duan-bot"], &[]),
                    new_step("run", &["duan-bot"], &[]),
                    new_step("after_run", &["duan-bot"], &["run"]),
                    NewStep {
                        approval_level: 1,
                        approvers: vec!["duan@example.com".into()],
                        ..new_step("check", &["duan-bot"], &[])
                    },
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [draft, review, publish, side, run, after_run, check] = [
            "draft",
            "review",
            "publish",
            "side",
            "run",
            "after_run",
            "check",
        ]
        .map(|key| step_id(&view, key));
        let run_attempt = tasks::claim_step(ctx, &team.duan_bot, &run)
            .await
            .unwrap()
            .attempt;
        tasks::progress_step(
            ctx,
            &team.duan_bot,
            &run,
            run_attempt,
            Some(50),
            Some("half"),
        )
        .await
        .unwrap();
        assert_eq!(
            team.run_step(&team.duan_bot, &check).await,
            "awaiting_approval"
        );

        let status = claim_and_fail(&team, &team.min, &draft, "the source is gone", false).await;
        assert_eq!(status, "failed");

        let failed = team.task(&task_id).await;
        assert_eq!(failed.task.status, "failed");
        let outcome = outcome_of(&failed);
        assert_eq!(outcome.status, "failed");
        assert_eq!(outcome.step_id, Some(uuid(&draft)));
        assert_eq!(outcome.step_key.as_deref(), Some("draft"));
        assert!(
            outcome
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains("the source is gone")),
            "{outcome:?}"
        );
        assert_eq!(outcome.by, Some(by_agent(&team.min)));
        let expected: Vec<(String, String)> = [
            ("draft", "failed"),
            ("review", "skipped"),
            ("publish", "skipped"),
            ("side", "skipped"),
            ("run", "running"),
            ("after_run", "skipped"),
            ("check", "awaiting_approval"),
        ]
        .map(|(key, status)| (key.to_string(), status.to_string()))
        .into();
        assert_eq!(statuses(&failed), expected);

        // Downstream steps name the failed step and its reason; other branches the task.
        for downstream in [&review, &publish] {
            let reason = team
                .step(downstream)
                .await
                .status_reason
                .unwrap_or_default();
            assert!(
                reason.starts_with("step `draft` failed"),
                "downstream reason: `{reason}`"
            );
        }
        for unrelated in [&side, &after_run] {
            let reason = team.step(unrelated).await.status_reason.unwrap_or_default();
            assert!(
                reason.starts_with("the task failed") && reason.contains("`draft`"),
                "independent branch reason: `{reason}`"
            );
        }
        // The assignee of the skipped ready step drops it.
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(
            revocations(&bot_frames, &side).len(),
            1,
            "{:?}",
            types(&bot_frames)
        );
        assert!(
            revocations(&bot_frames, &run).is_empty(),
            "the running step is not revoked"
        );
        expect_err(
            tasks::claim_step(ctx, &team.duan_bot, &side).await,
            "conflict",
            "step is skipped",
        );

        // The running branch finishes; its result is kept, the approval still works.
        assert_eq!(
            submit(ctx, &team.duan_bot, &run, run_attempt)
                .await
                .unwrap()
                .status,
            "done"
        );
        let run_step = team.step(&run).await;
        assert_eq!(run_step.status, "done");
        assert_eq!(
            run_step.summary.as_deref(),
            Some(format!("attempt {run_attempt}").as_str())
        );
        let decided = crate::support::decide_current(ctx, &team.duan, &check, approvals::Verdict::new(Decision::Approve, None))
        .await
        .unwrap();
        assert_eq!(decided.step_status, "done");
        // Nothing new started: the step after `run` stays skipped and cannot be claimed.
        assert_eq!(team.step(&after_run).await.status, "skipped");
        expect_err(
            tasks::claim_step(ctx, &team.duan_bot, &after_run).await,
            "conflict",
            "step is skipped",
        );
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert!(
            ready_attempts(&bot_frames, &after_run).is_empty(),
            "{:?}",
            types(&bot_frames)
        );

        // The task stays failed, with the same outcome, and every step is finished.
        let end = team.task(&task_id).await;
        assert_eq!(end.task.status, "failed");
        assert_eq!(outcome_of(&end), outcome);
        assert_eq!((end.progress.done, end.progress.total), (7, 7));
        assert!(end.progress.running.is_empty());

        // The creator and every involved agent hear of the end once, with the outcome,
        // after the failure of the step (for the creator: its `step.revoked`).
        let creator = events(&store, team.aurora.member_id()).await;
        let failure = creator
            .iter()
            .position(|frame| {
                matches!(frame, ServerFrame::StepRevoked(revoked)
                    if revoked.step_id == uuid(&draft))
            })
            .unwrap_or_else(|| panic!("the creator hears of the failure: {:?}", types(&creator)));
        assert!(
            failure < update_index(&creator, &task_id, "failed"),
            "{:?}",
            types(&creator)
        );
        for audience in [
            team.aurora.member_id(),
            team.min.agent_id.as_str(),
            team.duan_bot.agent_id.as_str(),
        ] {
            let updates = task_updates(&events(&store, audience).await, &task_id);
            assert_eq!(
                updates,
                [("failed".to_string(), Some(outcome.clone()))],
                "audience {audience}"
            );
        }
    }
);

backend_test!(
    /// The only step fails for good: the task fails with the step's reason, and a failed
    /// task can only be archived.
    async fn a_final_failure_on_a_single_step_task_ends_it(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task("Solo", vec![new_step("only", &["min"], &[])]))
            .await;
        let only = step_id(&view, "only");
        claim_and_fail(&team, &team.min, &only, "cannot parse the input", false).await;
        let failed = team.task(&view.task.id).await;
        assert_eq!(failed.task.status, "failed");
        assert_eq!(outcome_of(&failed).step_key.as_deref(), Some("only"));
        let reason = team.step(&only).await.status_reason.unwrap_or_default();
        assert!(reason.contains("cannot parse the input"), "`{reason}`");
        assert_eq!((failed.progress.done, failed.progress.total), (1, 1));
    }
);

backend_test!(
    /// A failed task is an end: only a retry re-opens it; it cannot be paused, resumed
    /// or cancelled, and it can be archived.
    async fn a_failed_task_is_reopened_only_by_a_retry(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task("Solo", vec![new_step("only", &["min"], &[])]))
            .await;
        let task_id = view.task.id.clone();
        claim_and_fail(
            &team,
            &team.min,
            &step_id(&view, "only"),
            "cannot parse the input",
            false,
        )
        .await;
        let n_events = events(&store, team.aurora.member_id()).await.len();
        for (action, target) in [
            (TaskAction::Pause, "paused"),
            (TaskAction::Resume, "active"),
            (TaskAction::Cancel, "cancelled"),
        ] {
            let res = tasks::set_task_status(&team.ctx, &team.aurora, &task_id, action).await;
            if let Ok(view) = &res {
                let creator = events(&store, team.aurora.member_id()).await;
                panic!(
                    "{action:?} of a failed task was accepted: the task is {}, \
                     the creator got {:?}",
                    view.task.status,
                    task_updates(&creator[n_events..], &task_id)
                        .into_iter()
                        .map(|(status, _)| status)
                        .collect::<Vec<_>>()
                );
            }
            expect_err(
                res,
                "conflict",
                &format!("task is failed; it cannot become {target}"),
            );
        }
        let creator = events(&store, team.aurora.member_id()).await;
        assert_eq!(
            types(&creator[n_events..]),
            Vec::<&str>::new(),
            "refusals tell nobody anything"
        );
        let archived =
            tasks::set_task_status(&team.ctx, &team.aurora, &task_id, TaskAction::Archive)
                .await
                .unwrap();
        assert_eq!(archived.task.status, "archived");
    }
);

// ---------------------------------------------------------------- attempt limits

backend_test!(
    async fn the_third_retryable_failure_fails_the_step_by_default(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Flaky",
                vec![
                    new_step("flaky", &["min"], &[]),
                    new_step("after", &["min"], &["flaky"]),
                ],
            ))
            .await;
        let flaky = step_id(&view, "flaky");
        assert_eq!(team.step(&flaky).await.max_attempts, 3);
        for attempt in 1..=2 {
            let status = claim_and_fail(&team, &team.min, &flaky, "network down", true).await;
            assert_eq!(status, "ready", "after failure {attempt}");
            assert_eq!(team.step(&flaky).await.attempt, attempt + 1);
            assert_eq!(team.task(&view.task.id).await.task.status, "active");
        }
        assert_eq!(
            claim_and_fail(&team, &team.min, &flaky, "network down", true).await,
            "failed"
        );
        let step = team.step(&flaky).await;
        assert_eq!((step.status.as_str(), step.attempt), ("failed", 3));
        let reason = step.status_reason.unwrap_or_default();
        assert!(
            reason.contains("network down") && reason.contains("on attempt 3 of 3"),
            "`{reason}`"
        );
        let failed = team.task(&view.task.id).await;
        assert_eq!(failed.task.status, "failed");
        let outcome = outcome_of(&failed);
        assert!(
            outcome
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains("on attempt 3 of 3")),
            "{outcome:?}"
        );
        assert_eq!(outcome.by, Some(by_agent(&team.min)));
        assert_eq!(team.step(&step_id(&view, "after")).await.status, "skipped");
        // min was pushed attempts 1-3 and never a fourth.
        assert_eq!(
            ready_attempts(&events(&store, &team.min.agent_id).await, &flaky),
            [1, 2, 3]
        );
    }
);

backend_test!(
    /// `max_attempts` is set per step (1-100); reviewer rejections and pause revocations
    /// are not failures.
    async fn max_attempts_is_per_step_and_counts_only_failures_and_expiries(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let create =
            |steps: Vec<NewStep>| tasks::create_task(ctx, &team.aurora, new_task("Limits", steps));
        for bad in [0, 101] {
            expect_err(
                create(vec![NewStep {
                    max_attempts: Some(bad),
                    ..new_step("s", &["min"], &[])
                }])
                .await,
                "invalid",
                "max_attempts",
            );
        }

        // One attempt: the first retryable failure is final.
        let once = team
            .create(new_task(
                "Once",
                vec![NewStep {
                    max_attempts: Some(1),
                    ..new_step("once", &["min"], &[])
                }],
            ))
            .await;
        let once_step = step_id(&once, "once");
        assert_eq!(
            claim_and_fail(&team, &team.min, &once_step, "timeout", true).await,
            "failed"
        );
        let reason = team
            .step(&once_step)
            .await
            .status_reason
            .unwrap_or_default();
        assert!(reason.contains("on attempt 1 of 1"), "`{reason}`");
        assert_eq!(team.task(&once.task.id).await.task.status, "failed");

        // Two attempts and a reviewer: a rejection and a pause do not use one up.
        let view = team
            .create(new_task(
                "Reviewed",
                vec![NewStep {
                    max_attempts: Some(2),
                    approval_level: 2,
                    approvers: vec!["duan@example.com".into()],
                    ..new_step("write", &["min"], &[])
                }],
            ))
            .await;
        let write = step_id(&view, "write");
        assert_eq!(team.step(&write).await.max_attempts, 2);
        assert_eq!(team.run_step(&team.min, &write).await, "awaiting_approval");
        crate::support::decide_current(ctx, &team.duan, &write, approvals::Verdict::new(Decision::Reject, Some("too short")))
        .await
        .unwrap();
        assert_eq!(team.step(&write).await.attempt, 2);
        tasks::claim_step(ctx, &team.min, &write).await.unwrap();
        tasks::set_task_status(ctx, &team.aurora, &view.task.id, TaskAction::Pause)
            .await
            .unwrap();
        tasks::set_task_status(ctx, &team.aurora, &view.task.id, TaskAction::Resume)
            .await
            .unwrap();
        let step = team.step(&write).await;
        assert_eq!((step.status.as_str(), step.attempt), ("ready", 3));
        // First counted failure: another attempt.
        assert_eq!(
            claim_and_fail(&team, &team.min, &write, "timeout", true).await,
            "ready"
        );
        // Second: the last.
        assert_eq!(
            claim_and_fail(&team, &team.min, &write, "timeout", true).await,
            "failed"
        );
        let reason = team.step(&write).await.status_reason.unwrap_or_default();
        assert!(reason.contains("of 2"), "`{reason}`");
        assert_eq!(team.task(&view.task.id).await.task.status, "failed");
    }
);

backend_test!(
    /// Lease expiries count like retryable failures; the last one fails the task in the
    /// hub's name.
    async fn a_lease_expiry_on_the_last_attempt_fails_the_task_in_the_hubs_name(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Vanishing",
                vec![
                    NewStep {
                        max_attempts: Some(2),
                        ..new_step("fragile", &["min"], &[])
                    },
                    new_step("after", &["min"], &["fragile"]),
                ],
            ))
            .await;
        let fragile = step_id(&view, "fragile");
        expire_lease(&team, &team.min, &fragile).await;
        let step = team.step(&fragile).await;
        assert_eq!((step.status.as_str(), step.attempt), ("ready", 2));
        expire_lease(&team, &team.min, &fragile).await;
        let step = team.step(&fragile).await;
        assert_eq!((step.status.as_str(), step.attempt), ("failed", 2));
        assert!(
            step.status_reason
                .as_deref()
                .is_some_and(|reason| reason.contains("lease expired on attempt 2 of 2")),
            "{:?}",
            step.status_reason
        );

        let failed = team.task(&view.task.id).await;
        assert_eq!(failed.task.status, "failed");
        let outcome = outcome_of(&failed);
        assert_eq!(outcome.step_id, Some(uuid(&fragile)));
        assert_eq!(
            outcome.by.as_ref().map(|by| by.kind.as_str()),
            Some("hub"),
            "{outcome:?}"
        );
        assert!(
            outcome
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains("lease expired on attempt 2 of 2")),
            "{outcome:?}"
        );
        assert_eq!(team.step(&step_id(&view, "after")).await.status, "skipped");
        // The holder is told its attempt is over, then that the task failed.
        let min_frames = events(&store, &team.min.agent_id).await;
        let revoked = min_frames
            .iter()
            .rposition(|frame| {
                matches!(frame, ServerFrame::StepRevoked(revoked)
                    if revoked.step_id == uuid(&fragile))
            })
            .expect("step.revoked for the last attempt");
        assert!(
            revoked < update_index(&min_frames, &view.task.id, "failed"),
            "{:?}",
            types(&min_frames)
        );
        assert_eq!(ready_attempts(&min_frames, &fragile), [1, 2]);
    }
);

backend_test!(
    /// After the task failed, held steps on other branches that go back for another
    /// attempt (a retryable failure, a lease expiry, a rejection) do not start: they are
    /// neither pushed nor claimable. When the failed step is retried and the task is
    /// active again, they are pushed to their assignees at their current attempt.
    async fn steps_sent_back_after_the_task_failed_wait_for_its_retry(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Branches",
                vec![
                    new_step("dead", &["min"], &[]),
                    new_step("flaky", &["duan-bot"], &[]),
                    new_step("lapsed", &["duan-bot"], &[]),
                    NewStep {
                        approval_level: 2,
                        approvers: vec!["duan@example.com".into()],
                        ..new_step("reviewed", &["duan-bot"], &[])
                    },
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [dead, flaky, lapsed, reviewed] =
            ["dead", "flaky", "lapsed", "reviewed"].map(|key| step_id(&view, key));
        tasks::claim_step(ctx, &team.duan_bot, &flaky)
            .await
            .unwrap();
        tasks::claim_step(&short_lease(&store), &team.duan_bot, &lapsed)
            .await
            .unwrap();
        assert_eq!(
            team.run_step(&team.duan_bot, &reviewed).await,
            "awaiting_approval"
        );
        claim_and_fail(&team, &team.min, &dead, "the source is gone", false).await;
        assert_eq!(team.task(&task_id).await.task.status, "failed");
        let n_bot = events(&store, &team.duan_bot.agent_id).await.len();

        tasks::fail_step(ctx, &team.duan_bot, &flaky, 1, "network down", true)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(tasks::sweep_expired_leases(ctx).await.unwrap(), 1);
        let reject = ApprovalRef::Step(&reviewed, 1);
        approvals::decide(ctx, &team.duan, reject, approvals::Verdict::new(Decision::Reject, Some("redo it")))
            .await
            .unwrap();
        assert_eq!(team.task(&task_id).await.task.status, "failed");
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        for step in [&flaky, &lapsed, &reviewed] {
            let status = team.step(step).await.status;
            assert!(matches!(status.as_str(), "ready" | "skipped"), "{status}");
            assert!(
                ready_attempts(&bot_frames[n_bot..], step).is_empty(),
                "pushed: {step}"
            );
            expect_err(
                tasks::claim_step(ctx, &team.duan_bot, step).await,
                "conflict",
                "",
            );
        }

        let retried = tasks::retry_step(ctx, &team.aurora, &dead, None)
            .await
            .unwrap();
        assert_eq!(retried.task.status, "active");
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        for step in [&flaky, &lapsed, &reviewed] {
            let row = team.step(step).await;
            assert_eq!(row.status, "ready");
            assert_eq!(
                ready_attempts(&bot_frames[n_bot..], step),
                [row.attempt as u32],
                "step `{}` is pushed again once the task is active: {:?}",
                row.key,
                types(&bot_frames[n_bot..])
            );
        }
        tasks::claim_step(ctx, &team.duan_bot, &flaky)
            .await
            .unwrap();
    }
);

// ---------------------------------------------------------------- continue_on_failure

backend_test!(
    async fn a_step_that_continues_on_failure_lets_its_dependents_start(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Best effort",
                vec![
                    NewStep {
                        continue_on_failure: true,
                        ..new_step("lint", &["min"], &[])
                    },
                    new_step("ship", &["duan-bot"], &["lint"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [lint, ship] = ["lint", "ship"].map(|key| step_id(&view, key));
        assert_eq!(
            claim_and_fail(&team, &team.min, &lint, "linter crashed", false).await,
            "failed"
        );
        let after = team.task(&task_id).await;
        assert_eq!(after.task.status, "active");
        assert!(tasks::Outcome::of(&after.task).is_none());
        assert_eq!(team.step(&ship).await.status, "ready");
        assert_eq!(
            ready_attempts(&events(&store, &team.duan_bot.agent_id).await, &ship),
            [1]
        );

        assert_eq!(team.run_step(&team.duan_bot, &ship).await, "done");
        let done = team.task(&task_id).await;
        assert_eq!(done.task.status, "done");
        assert_eq!(outcome_of(&done).status, "done");
        assert_eq!((done.progress.done, done.progress.total), (2, 2));
        // The same holds when its retryable failures run out.
        let flaky = team
            .create(new_task(
                "Best effort again",
                vec![
                    NewStep {
                        continue_on_failure: true,
                        max_attempts: Some(1),
                        ..new_step("lint", &["min"], &[])
                    },
                    new_step("ship", &["duan-bot"], &["lint"]),
                ],
            ))
            .await;
        claim_and_fail(&team, &team.min, &step_id(&flaky, "lint"), "timeout", true).await;
        assert_eq!(team.step(&step_id(&flaky, "ship")).await.status, "ready");
        assert_eq!(team.task(&flaky.task.id).await.task.status, "active");
    }
);

// ---------------------------------------------------------------- retry

backend_test!(
    /// The creator retries a step that failed for good: it is ready again at the next
    /// attempt with its failures forgotten, the steps its failure skipped come back, the
    /// task is active again; the retry is in the history and the timeline.
    async fn a_retry_brings_back_the_failed_step_and_what_it_skipped(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Report",
                vec![
                    NewStep {
                        max_attempts: Some(2),
                        ..new_step("draft", &["min"], &[])
                    },
                    new_step("review", &["min"], &["draft"]),
                    new_step("side", &["duan-bot"], &[]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [draft, review, side] = ["draft", "review", "side"].map(|key| step_id(&view, key));
        claim_and_fail(&team, &team.min, &draft, "quota exceeded", true).await;
        assert_eq!(
            claim_and_fail(&team, &team.min, &draft, "quota exceeded", true).await,
            "failed"
        );
        assert_eq!(team.task(&task_id).await.task.status, "failed");
        let n_creator = events(&store, team.aurora.member_id()).await.len();
        let n_bot = events(&store, &team.duan_bot.agent_id).await.len();

        let retried = tasks::retry_step(ctx, &team.aurora, &draft, Some("the quota was raised"))
            .await
            .unwrap();
        assert_eq!(retried.task.status, "active");
        assert!(tasks::Outcome::of(&retried.task).is_none());
        let expected: Vec<(String, String)> =
            [("draft", "ready"), ("review", "pending"), ("side", "ready")]
                .map(|(key, status)| (key.to_string(), status.to_string()))
                .into();
        assert_eq!(statuses(&retried), expected);
        let step = team.step(&draft).await;
        assert_eq!(step.attempt, 3);
        assert_eq!(step.status_reason, None);
        assert_eq!(team.step(&review).await.status_reason, None);

        // Pushed again, and the task is active again for its creator.
        assert_eq!(
            ready_attempts(&events(&store, &team.min.agent_id).await, &draft),
            [1, 2, 3]
        );
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(ready_attempts(&bot_frames[n_bot..], &side), [1]);
        let creator = events(&store, team.aurora.member_id()).await;
        let updates = task_updates(&creator[n_creator..], &task_id);
        assert_eq!(updates, [("active".to_string(), None)]);

        // The failures were reset: one more failure leaves another attempt.
        assert_eq!(
            claim_and_fail(&team, &team.min, &draft, "quota exceeded", true).await,
            "ready"
        );
        assert_eq!(team.run_step(&team.min, &draft).await, "done");
        assert_eq!(team.run_step(&team.min, &review).await, "done");
        assert_eq!(team.run_step(&team.duan_bot, &side).await, "done");
        let done = team.task(&task_id).await;
        assert_eq!(done.task.status, "done");
        assert_eq!(outcome_of(&done).status, "done");
        // Everyone on the task heard it fail, open again, and end.
        for audience in [
            team.aurora.member_id(),
            team.min.agent_id.as_str(),
            team.duan_bot.agent_id.as_str(),
        ] {
            let updates: Vec<(String, Option<String>)> =
                task_updates(&events(&store, audience).await, &task_id)
                    .into_iter()
                    .map(|(status, outcome)| (status, outcome.map(|outcome| outcome.status)))
                    .collect();
            let expected = [
                ("failed", Some("failed")),
                ("active", None),
                ("done", Some("done")),
            ]
            .map(|(status, outcome)| (status.to_string(), outcome.map(str::to_string)));
            assert_eq!(updates, expected, "audience {audience}");
        }

        let history = tasks::history(ctx, &team.aurora, &task_id).await.unwrap();
        let retries: Vec<_> = history
            .iter()
            .filter(|row| row.kind == "step_retried")
            .map(|row| {
                (
                    row.step_id.clone(),
                    row.reason.clone(),
                    row.triggered_by.clone(),
                )
            })
            .collect();
        assert_eq!(
            retries,
            [(
                Some(draft.clone()),
                "the quota was raised".to_string(),
                "member:aurora@example.com".to_string()
            )]
        );
        let timeline = tasks::timeline(ctx, &team.aurora, &task_id).await.unwrap();
        let retried_entry = timeline
            .iter()
            .find(|entry| {
                entry.step_id.as_deref() == Some(draft.as_str())
                    && entry.from.as_deref() == Some("failed")
            })
            .unwrap_or_else(|| panic!("no timeline entry leaves `failed`: {timeline:?}"));
        assert_eq!(
            retried_entry.reason.as_deref(),
            Some("the quota was raised")
        );
        assert_eq!(retried_entry.attempt, Some(3));
        let draft_moves: Vec<(Option<&str>, &str)> = timeline
            .iter()
            .filter(|entry| entry.step_id.as_deref() == Some(draft.as_str()))
            .map(|entry| (entry.from.as_deref(), entry.to.as_str()))
            .collect();
        let retry_at = draft_moves
            .iter()
            .position(|(from, _)| *from == Some("failed"))
            .unwrap();
        assert!(
            draft_moves[retry_at].1 == "ready"
                || draft_moves[retry_at..]
                    .iter()
                    .any(|(from, to)| (*from, *to) == (Some("pending"), "ready")),
            "the retried step becomes ready: {draft_moves:?}"
        );
        let task_moves: Vec<(Option<&str>, &str)> = timeline
            .iter()
            .filter(|entry| entry.step_id.is_none())
            .map(|entry| (entry.from.as_deref(), entry.to.as_str()))
            .collect();
        assert_eq!(
            task_moves,
            [
                (None, "active"),
                (Some("active"), "failed"),
                (Some("failed"), "active"),
                (Some("active"), "done")
            ]
        );
        assert_eq!(retried_entry.actor.kind, "member");
        assert_eq!(
            retried_entry.actor.id.as_deref(),
            Some(team.aurora.member_id())
        );
    }
);

backend_test!(
    /// Retry by the creator's agent, an owner or an admin; nobody else; only failed or
    /// skipped steps; a step skipped by another's failure names the step to retry.
    async fn retry_is_refused_to_others_and_to_steps_that_did_not_fail(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let kim = team.add_member("kim@example.com", Role::Member).await;
        let kims_bot = team
            .add_agent("kim-bot", "kim@example.com", &["docs"], 4)
            .await;
        let admin = team.add_member("ada@example.com", Role::Admin).await;
        // duan (a plain member) creates it.
        let view = tasks::create_task(
            ctx,
            &team.duan,
            new_task(
                "Duan's",
                vec![
                    new_step("draft", &["min"], &[]),
                    new_step("review", &["min"], &["draft"]),
                    new_step("side", &["duan-bot"], &[]),
                ],
            ),
        )
        .await
        .unwrap();
        let [draft, review, side] = ["draft", "review", "side"].map(|key| step_id(&view, key));

        // Not failed yet: a conflict naming the state.
        expect_err(
            tasks::retry_step(ctx, &team.duan, &draft, None).await,
            "conflict",
            "ready",
        );
        tasks::claim_step(ctx, &team.min, &draft).await.unwrap();
        expect_err(
            tasks::retry_step(ctx, &team.duan, &draft, None).await,
            "conflict",
            "claimed",
        );
        tasks::claim_step(ctx, &team.duan_bot, &side).await.unwrap();
        tasks::fail_step(ctx, &team.min, &draft, 1, "bad input", false)
            .await
            .unwrap();
        // `side` was running and finishes after the failure.
        assert_eq!(
            submit(ctx, &team.duan_bot, &side, 1).await.unwrap().status,
            "done"
        );
        expect_err(
            tasks::retry_step(ctx, &team.duan, &side, None).await,
            "conflict",
            "done",
        );

        // Others may not.
        expect_err(
            tasks::retry_step(ctx, &kim, &draft, None).await,
            "forbidden",
            "",
        );
        expect_err(
            tasks::retry_step(ctx, &Actor::Agent(kims_bot), &draft, None).await,
            "forbidden",
            "",
        );
        expect_err(
            tasks::retry_step(ctx, &team.duan, "no-such-step", None).await,
            "not_found",
            "no-such-step",
        );
        // Skipped because `draft` failed: retry `draft`.
        assert_eq!(team.step(&review).await.status, "skipped");
        expect_err(
            tasks::retry_step(ctx, &team.duan, &review, None).await,
            "conflict",
            "draft",
        );
        assert_eq!(team.task(&view.task.id).await.task.status, "failed");
        assert!(
            tasks::history(ctx, &team.duan, &view.task.id)
                .await
                .unwrap()
                .iter()
                .all(|row| row.kind != "step_retried")
        );

        // The creator's agent may.
        let retried = tasks::retry_step(ctx, &Actor::Agent(team.duan_bot.clone()), &draft, None)
            .await
            .unwrap();
        assert_eq!(retried.task.status, "active");
        let history = tasks::history(ctx, &team.duan, &view.task.id)
            .await
            .unwrap();
        let by: Vec<&str> = history
            .iter()
            .filter(|row| row.kind == "step_retried")
            .map(|row| row.triggered_by.as_str())
            .collect();
        assert_eq!(by, ["agent:duan-bot"]);

        // An admin and an owner may, too.
        for (round, actor) in [&admin, &team.aurora].into_iter().enumerate() {
            tasks::claim_step(ctx, &team.min, &draft).await.unwrap();
            let attempt = team.step(&draft).await.attempt as u32;
            tasks::fail_step(ctx, &team.min, &draft, attempt, "bad input", false)
                .await
                .unwrap();
            let retried = tasks::retry_step(ctx, actor, &draft, Some("try again"))
                .await
                .unwrap();
            assert_eq!(retried.task.status, "active", "round {round}");
            assert_eq!(team.step(&draft).await.status, "ready", "round {round}");
        }
    }
);

backend_test!(
    /// The creator and an admin retry the same failed step at the same moment, 10 rounds:
    /// one retry wins (one new attempt, one history row, one `task.updated(active)`),
    /// the other is a conflict.
    async fn of_concurrent_retries_exactly_one_wins(store) {
        let team = Team::new(&store).await;
        let admin = team.add_member("ada@example.com", Role::Admin).await;
        for round in 0..10 {
            let view = team
                .create(new_task(
                    "Retried",
                    vec![
                        new_step("s", &["min"], &[]),
                        new_step("t", &["min"], &["s"]),
                    ],
                ))
                .await;
            let task_id = view.task.id.clone();
            let s = step_id(&view, "s");
            claim_and_fail(&team, &team.min, &s, "broken", false).await;
            let barrier = Arc::new(Barrier::new(2));
            let handles = [team.aurora.clone(), admin.clone()].map(|actor| {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                let step = s.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    tasks::retry_step(&ctx, &actor, &step, None).await
                })
            });
            let mut n_won = 0;
            for handle in handles {
                match handle.await.unwrap() {
                    Ok(view) => {
                        assert_eq!(view.task.status, "active");
                        n_won += 1;
                    }
                    Err(err) => assert_eq!(err.code(), "conflict", "{err}"),
                }
            }
            let step = team.step(&s).await;
            let on = format!(
                "round {round} on {:?}: the step is {} at attempt {}",
                store.backend(),
                step.status,
                step.attempt
            );
            assert_eq!(n_won, 1, "{on}");
            assert_eq!((step.status.as_str(), step.attempt), ("ready", 2), "{on}");
            let n_retries = tasks::history(&team.ctx, &team.aurora, &task_id)
                .await
                .unwrap()
                .iter()
                .filter(|row| row.kind == "step_retried")
                .count();
            assert_eq!(n_retries, 1, "{on}");
            let updates = task_updates(&events(&store, team.aurora.member_id()).await, &task_id);
            let statuses: Vec<&str> = updates.iter().map(|(status, _)| status.as_str()).collect();
            assert_eq!(statuses, ["failed", "active"], "{on}");
            assert_eq!(
                ready_attempts(&events(&store, &team.min.agent_id).await, &s),
                [1, 2]
            );
            tasks::set_task_status(&team.ctx, &team.aurora, &task_id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

// ---------------------------------------------------------------- the end of a task

backend_test!(
    /// The end's `task.updated` reaches the creator, the agents bound to the creator and
    /// the involved agents, after the step event that caused it; nobody else.
    async fn the_end_of_a_task_follows_its_last_step_event_in_every_audience(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = tasks::create_task(
            ctx,
            &team.duan,
            new_task(
                "Duan's report",
                vec![
                    new_step("a", &["min"], &[]),
                    new_step("b", &["min"], &["a"]),
                ],
            ),
        )
        .await
        .unwrap();
        let task_id = view.task.id.clone();
        let [a, b] = ["a", "b"].map(|key| step_id(&view, key));
        team.run_step(&team.min, &a).await;
        assert_eq!(team.run_step(&team.min, &b).await, "done");
        assert_eq!(team.task(&task_id).await.task.status, "done");

        let completed_b = |frames: &[ServerFrame]| {
            frames
                .iter()
                .position(|frame| {
                    matches!(frame, ServerFrame::StepCompleted(completed)
                        if completed.step_id == uuid(&b))
                })
                .unwrap_or_else(|| panic!("no step.completed for b: {:?}", types(frames)))
        };
        for audience in [team.duan.member_id(), team.min.agent_id.as_str()] {
            let frames = events(&store, audience).await;
            let end = update_index(&frames, &task_id, "done");
            assert!(
                completed_b(&frames) < end,
                "audience {audience}: {:?}",
                types(&frames)
            );
            let updates = task_updates(&frames, &task_id);
            assert_eq!(updates.len(), 1, "audience {audience}");
            let outcome = updates[0].1.clone().expect("the end carries the outcome");
            assert_eq!(outcome.status, "done");
        }
        // duan's agent is not involved but its member created the task.
        let bot_updates = task_updates(&events(&store, &team.duan_bot.agent_id).await, &task_id);
        assert_eq!(bot_updates.len(), 1, "{bot_updates:?}");
        assert_eq!(bot_updates[0].0, "done");
        // aurora, though min's owner, did not create it.
        assert!(task_updates(&events(&store, team.aurora.member_id()).await, &task_id).is_empty());

        // Cancelled: the outcome names the member who cancelled.
        let other = tasks::create_task(
            ctx,
            &team.duan,
            new_task("Dropped", vec![new_step("x", &["min"], &[])]),
        )
        .await
        .unwrap();
        let cancelled = tasks::set_task_status(ctx, &team.duan, &other.task.id, TaskAction::Cancel)
            .await
            .unwrap();
        let outcome = outcome_of(&cancelled);
        assert_eq!(outcome.status, "cancelled");
        let by = outcome.by.expect("who cancelled");
        assert_eq!(
            (by.kind.as_str(), by.id),
            ("member", Some(uuid(team.duan.member_id())))
        );
        for audience in [
            team.duan.member_id(),
            team.min.agent_id.as_str(),
            team.duan_bot.agent_id.as_str(),
        ] {
            let updates = task_updates(&events(&store, audience).await, &other.task.id);
            let last = updates
                .last()
                .unwrap_or_else(|| panic!("audience {audience} hears nothing"));
            assert_eq!(last.0, "cancelled", "audience {audience}");
            assert_eq!(
                last.1.as_ref().map(|outcome| outcome.status.as_str()),
                Some("cancelled")
            );
        }
    }
);

// ---------------------------------------------------------------- progress

backend_test!(
    async fn progress_counts_finished_steps_and_shows_what_runs(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Diamond",
                vec![
                    new_step("a", &["min"], &[]),
                    new_step("b", &["min"], &["a"]),
                    new_step("c", &["duan-bot"], &["a"]),
                    new_step("d", &["duan-bot"], &["b", "c"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [a, b, c] = ["a", "b", "c"].map(|key| step_id(&view, key));
        assert_eq!((view.progress.done, view.progress.total), (0, 4));
        assert!(view.progress.running.is_empty());
        team.run_step(&team.min, &a).await;
        tasks::claim_step(ctx, &team.min, &b).await.unwrap();
        tasks::progress_step(ctx, &team.min, &b, 1, Some(40), Some("halfway through"))
            .await
            .unwrap();
        tasks::claim_step(ctx, &team.duan_bot, &c).await.unwrap();

        let progress = team.task(&task_id).await.progress;
        assert_eq!((progress.done, progress.total), (1, 4));
        let running: Vec<_> = progress
            .running
            .iter()
            .map(|step| {
                (
                    step.step_id.clone(),
                    step.key.clone(),
                    step.status.clone(),
                    step.percent,
                    step.message.clone(),
                )
            })
            .collect();
        assert_eq!(
            running,
            [
                (
                    b.clone(),
                    "b".to_string(),
                    "running".to_string(),
                    Some(40),
                    Some("halfway through".to_string())
                ),
                (
                    c.clone(),
                    "c".to_string(),
                    "claimed".to_string(),
                    None,
                    None
                ),
            ]
        );
        assert_eq!(progress.running[0].title, "Step b");
        let step = team.step(&b).await;
        assert_eq!(
            (step.progress_percent, step.progress_message.as_deref()),
            (Some(40), Some("halfway through"))
        );

        // A later progress replaces the percent; a percent over 100 is refused.
        tasks::progress_step(ctx, &team.min, &b, 1, Some(70), None)
            .await
            .unwrap();
        assert_eq!(team.step(&b).await.progress_percent, Some(70));
        expect_err(
            tasks::progress_step(ctx, &team.min, &b, 1, Some(101), None).await,
            "invalid",
            "percent",
        );
        assert_eq!(team.step(&b).await.progress_percent, Some(70));

        // A new attempt starts without progress.
        tasks::fail_step(ctx, &team.min, &b, 1, "crashed", true)
            .await
            .unwrap();
        let step = team.step(&b).await;
        assert_eq!(
            (step.attempt, step.progress_percent, step.progress_message),
            (2, None, None)
        );
        let progress = team.task(&task_id).await.progress;
        let running: Vec<&str> = progress
            .running
            .iter()
            .map(|step| step.key.as_str())
            .collect();
        assert_eq!(running, ["c"]);

        // Failed and skipped steps count as finished.
        tasks::fail_step(ctx, &team.duan_bot, &c, 1, "gone", false)
            .await
            .unwrap();
        let end = team.task(&task_id).await;
        assert_eq!(end.task.status, "failed");
        // a done, c failed, b (ready) and d (pending) skipped.
        assert_eq!((end.progress.done, end.progress.total), (4, 4));
        assert!(end.progress.running.is_empty());
    }
);

// ---------------------------------------------------------------- timeline

backend_test!(
    /// Every status change of the task and its steps, oldest first, with who made it.
    async fn the_timeline_records_every_status_change_and_who_made_it(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team.create(report_task()).await;
        let task_id = view.task.id.clone();
        let [draft, review] = ["draft", "review"].map(|key| step_id(&view, key));
        tasks::set_task_status(ctx, &team.aurora, &task_id, TaskAction::Pause)
            .await
            .unwrap();
        tasks::set_task_status(ctx, &team.aurora, &task_id, TaskAction::Resume)
            .await
            .unwrap();
        team.run_step(&team.min, &draft).await;
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        crate::support::decide_current(ctx, &team.duan, &review, approvals::Verdict::new(Decision::Approve, None))
        .await
        .unwrap();
        assert_eq!(team.task(&task_id).await.task.status, "done");

        let timeline = tasks::timeline(ctx, &team.aurora, &task_id).await.unwrap();
        assert!(
            timeline.windows(2).all(|pair| pair[0].at <= pair[1].at),
            "oldest first"
        );
        let key_of = |step: Option<&str>| -> &str {
            match step {
                None => "task",
                Some(id) if id == draft => "draft",
                Some(id) if id == review => "review",
                Some(other) => panic!("a step of another task: {other}"),
            }
        };
        // Who made a change: a member or agent of the team, or the hub.
        let who_of = |by: &tasks::By| -> String {
            let id = by.id.as_deref();
            let name = if id == Some(team.aurora.member_id()) {
                "aurora"
            } else if id == Some(team.duan.member_id()) {
                "duan"
            } else if id == Some(team.min.agent_id.as_str()) {
                "min"
            } else {
                "?"
            };
            format!("{}:{name}", by.kind)
        };
        let rows: Vec<(&str, Option<&str>, &str, String)> = timeline
            .iter()
            .map(|entry| {
                (
                    key_of(entry.step_id.as_deref()),
                    entry.from.as_deref(),
                    entry.to.as_str(),
                    who_of(&entry.actor),
                )
            })
            .collect();
        for entry in &timeline {
            if let Some(step) = &entry.step_id {
                assert_eq!(entry.step_key.as_deref(), Some(key_of(Some(step))));
            }
        }
        // These changes, in this order (others may sit between them); `*`: whoever the
        // hub names for a change that follows from another.
        let expected = [
            ("task", None, "active", "member:aurora"),
            ("task", Some("active"), "paused", "member:aurora"),
            ("task", Some("paused"), "active", "member:aurora"),
            ("draft", Some("ready"), "claimed", "agent:min"),
            ("draft", Some("claimed"), "running", "agent:min"),
            ("draft", Some("running"), "submitted", "agent:min"),
            ("draft", Some("submitted"), "done", "agent:min"),
            ("review", Some("pending"), "ready", "*"),
            (
                "review",
                Some("submitted"),
                "awaiting_approval",
                "agent:min",
            ),
            ("review", Some("awaiting_approval"), "done", "member:duan"),
            ("task", Some("active"), "done", "*"),
        ];
        let mut rest = rows.iter();
        for (key, from, to, who) in expected {
            assert!(
                rest.any(
                    |row| (row.0, row.1, row.2) == (key, from, to) && (who == "*" || row.3 == who)
                ),
                "missing or out of order: {:?} in {rows:#?}",
                (key, from, to, who)
            );
        }
        let claimed = timeline
            .iter()
            .find(|entry| entry.to == "claimed")
            .expect("claimed entry");
        assert_eq!(claimed.attempt, Some(1));
        assert_eq!(
            claimed.actor.id.as_deref(),
            Some(team.min.agent_id.as_str())
        );

        // Refused to callers outside the workspace, and for unknown tasks.
        let other = Team::in_workspace(&store, "elsewhere").await;
        expect_err(
            tasks::timeline(ctx, &other.aurora, &task_id).await,
            "not_found",
            "task",
        );
        expect_err(
            tasks::timeline(ctx, &team.aurora, "no-such-task").await,
            "not_found",
            "no-such-task",
        );
    }
);

backend_test!(
    /// Failures, skips and expiries are in the timeline too, with their reasons.
    async fn the_timeline_records_failures_and_skips_with_their_reasons(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Doomed",
                vec![
                    NewStep {
                        max_attempts: Some(2),
                        ..new_step("a", &["min"], &[])
                    },
                    new_step("b", &["min"], &["a"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let a = step_id(&view, "a");
        expire_lease(&team, &team.min, &a).await;
        claim_and_fail(&team, &team.min, &a, "out of memory", true).await;
        let timeline = tasks::timeline(&team.ctx, &team.aurora, &task_id)
            .await
            .unwrap();
        let find = |key: &str, to: &str| {
            timeline
                .iter()
                .find(|entry| entry.step_key.as_deref() == Some(key) && entry.to == to)
                .unwrap_or_else(|| panic!("no `{key}` → `{to}` in {timeline:#?}"))
        };
        let expired = timeline
            .iter()
            .find(|entry| {
                entry.step_key.as_deref() == Some("a")
                    && entry.to == "ready"
                    && entry.actor.kind == "hub"
            })
            .unwrap_or_else(|| panic!("no expiry by the hub in {timeline:#?}"));
        assert!(
            expired
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains("lease expired"))
        );
        let failed = find("a", "failed");
        assert_eq!(failed.actor.kind, "agent");
        assert_eq!(failed.attempt, Some(2));
        assert!(
            failed
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains("out of memory"))
        );
        let skipped = find("b", "skipped");
        assert!(
            skipped
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains("step `a` failed")),
            "{skipped:?}"
        );
        let task_failed = timeline
            .iter()
            .find(|entry| entry.step_id.is_none() && entry.to == "failed")
            .unwrap_or_else(|| panic!("no task failure in {timeline:#?}"));
        assert_eq!(task_failed.from.as_deref(), Some("active"));
    }
);

// ---------------------------------------------------------------- drafts

backend_test!(
    async fn a_draft_task_starts_nothing_until_it_is_published(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(NewTask {
                draft: true,
                ..report_task()
            })
            .await;
        let task_id = view.task.id.clone();
        let draft = step_id(&view, "draft");
        assert_eq!(view.task.status, "draft");
        assert!(
            view.steps
                .iter()
                .all(|step_view| step_view.step.status != "ready"),
            "{:?}",
            statuses(&view)
        );
        assert!(
            events(&store, &team.min.agent_id).await.is_empty(),
            "no push for a draft"
        );
        expect_err(
            tasks::claim_step(ctx, &team.min, &draft).await,
            "conflict",
            "",
        );

        // Only the creator (or an owner or admin) publishes.
        let kim = team.add_member("kim@example.com", Role::Member).await;
        expect_err(
            tasks::publish_task(ctx, &kim, &task_id).await,
            "forbidden",
            "creator",
        );
        assert_eq!(team.task(&task_id).await.task.status, "draft");
        assert!(events(&store, &team.min.agent_id).await.is_empty());

        let published = tasks::publish_task(ctx, &team.aurora, &task_id)
            .await
            .unwrap();
        assert_eq!(published.task.status, "active");
        let expected: Vec<(String, String)> = [("draft", "ready"), ("review", "pending")]
            .map(|(key, status)| (key.to_string(), status.to_string()))
            .into();
        assert_eq!(statuses(&published), expected);
        let min_frames = events(&store, &team.min.agent_id).await;
        assert_eq!(types(&min_frames), ["task.created", "step.ready"]);
        assert_eq!(ready_attempts(&min_frames, &draft), [1]);
        tasks::claim_step(ctx, &team.min, &draft).await.unwrap();

        expect_err(
            tasks::publish_task(ctx, &team.aurora, &task_id).await,
            "conflict",
            "active",
        );
        expect_err(
            tasks::publish_task(ctx, &team.aurora, "no-such-task").await,
            "not_found",
            "no-such-task",
        );
        let timeline = tasks::timeline(ctx, &team.aurora, &task_id).await.unwrap();
        let task_changes: Vec<(Option<&str>, &str)> = timeline
            .iter()
            .filter(|entry| entry.step_id.is_none())
            .map(|entry| (entry.from.as_deref(), entry.to.as_str()))
            .collect();
        assert_eq!(task_changes, [(None, "draft"), (Some("draft"), "active")]);
    }
);

backend_test!(
    /// A draft starts only through `publish_task` (creator, owner or admin; the agents
    /// get `task.created`): resuming it, as any member, is refused and changes nothing.
    async fn resuming_a_draft_does_not_publish_it(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(NewTask {
                draft: true,
                ..report_task()
            })
            .await;
        let task_id = view.task.id.clone();
        let kim = team.add_member("kim@example.com", Role::Member).await;
        for actor in [&kim, &team.aurora] {
            let res = tasks::set_task_status(&team.ctx, actor, &task_id, TaskAction::Resume).await;
            if let Ok(view) = &res {
                panic!(
                    "resuming a draft made it {}; min got {:?}",
                    view.task.status,
                    types(&events(&store, &team.min.agent_id).await)
                );
            }
            let err = res.unwrap_err();
            assert!(matches!(err.code(), "conflict" | "forbidden"), "{err}");
        }
        assert_eq!(team.task(&task_id).await.task.status, "draft");
        assert!(events(&store, &team.min.agent_id).await.is_empty());
    }
);

// ---------------------------------------------------------------- skip by workflow change

backend_test!(
    async fn a_skipped_step_lets_its_dependents_start(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Chain",
                vec![
                    new_step("a", &["min"], &[]),
                    new_step("b", &["min"], &["a"]),
                    new_step("c", &["duan-bot"], &["b"]),
                    new_step("solo", &["duan-bot"], &[]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [a, b, c, solo] = ["a", "b", "c", "solo"].map(|key| step_id(&view, key));
        let skip = async |step: &str, reason: &str| {
            tasks::change_workflow(
                ctx,
                &team.aurora,
                &task_id,
                change(reason, vec![WorkflowOp::SkipStep { step: step.into() }]),
            )
            .await
        };

        // `b` (pending, by key) is skipped: `c`, which waits only for it, is ready at once.
        skip("b", "the review is not needed").await.unwrap();
        let step = team.step(&b).await;
        assert_eq!(
            (step.status.as_str(), step.status_reason.as_deref()),
            ("skipped", Some("the review is not needed"))
        );
        assert_eq!(team.step(&c).await.status, "ready");
        assert_eq!(
            ready_attempts(&events(&store, &team.duan_bot.agent_id).await, &c),
            [1]
        );
        assert_eq!(team.step(&a).await.status, "ready");
        team.run_step(&team.min, &a).await;

        // A running or finished step cannot be skipped.
        tasks::claim_step(ctx, &team.duan_bot, &c).await.unwrap();
        expect_err(skip(&c, "late").await, "conflict", "claimed");
        expect_err(skip(&a, "late").await, "conflict", "done");
        expect_err(skip("ghost", "late").await, "invalid", "ghost");

        // A ready step (by id) is skipped too; the task ends done.
        skip(&solo, "done by hand").await.unwrap();
        assert_eq!(team.step(&solo).await.status, "skipped");
        expect_err(
            tasks::claim_step(ctx, &team.duan_bot, &solo).await,
            "conflict",
            "step is skipped",
        );
        submit(ctx, &team.duan_bot, &c, 1).await.unwrap();
        let end = team.task(&task_id).await;
        assert_eq!(end.task.status, "done");
        assert_eq!((end.progress.done, end.progress.total), (4, 4));

        let skips: Vec<(Option<String>, String, String)> =
            tasks::history(ctx, &team.aurora, &task_id)
                .await
                .unwrap()
                .into_iter()
                .filter(|row| row.kind == "step_skipped")
                .map(|row| (row.step_id, row.reason, row.triggered_by))
                .collect();
        assert_eq!(
            skips,
            [
                (
                    Some(b.clone()),
                    "the review is not needed".to_string(),
                    "member:aurora@example.com".to_string()
                ),
                (
                    Some(solo.clone()),
                    "done by hand".to_string(),
                    "member:aurora@example.com".to_string()
                ),
            ]
        );
    }
);

// ---------------------------------------------------------------- pause

backend_test!(
    /// Pausing revokes held steps (back to ready at the next attempt, not a failure);
    /// the revoked attempt can no longer be submitted; resuming pushes them again.
    async fn pausing_revokes_held_steps_and_resuming_pushes_them_again(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Paused",
                vec![
                    NewStep {
                        max_attempts: Some(1),
                        ..new_step("held", &["min"], &[])
                    },
                    new_step("running", &["duan-bot"], &[]),
                    new_step("waiting", &["duan-bot"], &[]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [held, running, waiting] =
            ["held", "running", "waiting"].map(|key| step_id(&view, key));
        tasks::claim_step(ctx, &team.min, &held).await.unwrap();
        tasks::claim_step(ctx, &team.duan_bot, &running)
            .await
            .unwrap();
        tasks::progress_step(ctx, &team.duan_bot, &running, 1, None, None)
            .await
            .unwrap();

        let paused = tasks::set_task_status(ctx, &team.aurora, &task_id, TaskAction::Pause)
            .await
            .unwrap();
        assert_eq!(paused.task.status, "paused");
        for step in [&held, &running] {
            let row = team.step(step).await;
            assert_eq!(
                (row.status.as_str(), row.attempt, row.claimed_by),
                ("ready", 2, None)
            );
        }
        assert_eq!(team.step(&waiting).await.attempt, 1);
        let min_frames = events(&store, &team.min.agent_id).await;
        assert_eq!(
            revocations(&min_frames, &held),
            [(1, "the task was paused".to_string())]
        );
        // The holder hears of its step first, then of the pause.
        let revoked_at = min_frames
            .iter()
            .position(|frame| matches!(frame, ServerFrame::StepRevoked(_)))
            .unwrap();
        assert!(
            revoked_at < update_index(&min_frames, &task_id, "paused"),
            "{:?}",
            types(&min_frames)
        );
        assert_eq!(
            revocations(&events(&store, &team.duan_bot.agent_id).await, &running),
            [(1, "the task was paused".to_string())]
        );
        expect_err(submit(ctx, &team.min, &held, 1).await, "conflict", "");
        expect_err(
            submit(ctx, &team.duan_bot, &running, 1).await,
            "conflict",
            "",
        );

        let n_min = events(&store, &team.min.agent_id).await.len();
        tasks::set_task_status(ctx, &team.aurora, &task_id, TaskAction::Resume)
            .await
            .unwrap();
        assert_eq!(
            ready_attempts(&events(&store, &team.min.agent_id).await[n_min..], &held),
            [2]
        );
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(ready_attempts(&bot_frames, &running), [1, 2]);
        // The revocation used no attempt of `held` (max 1): it runs and finishes.
        assert_eq!(team.run_step(&team.min, &held).await, "done");
        assert_eq!(team.task(&task_id).await.task.status, "active");
    }
);

backend_test!(
    /// Two branches end at the same moment in two transactions, 10 rounds: two final
    /// failures, or a final failure and the last submit. The task fails exactly once:
    /// one `task.updated(failed)` for the creator, an outcome naming one of the failures.
    async fn concurrent_ends_of_branches_fail_the_task_exactly_once(store) {
        let team = Team::new(&store).await;
        for round in 0..10 {
            let view = team
                .create(new_task(
                    "Race",
                    vec![
                        new_step("left", &["min"], &[]),
                        new_step("right", &["duan-bot"], &[]),
                        new_step("join", &["min"], &["left", "right"]),
                        new_step("after_right", &["duan-bot"], &["right"]),
                    ],
                ))
                .await;
            let task_id = view.task.id.clone();
            let left = step_id(&view, "left");
            let right = step_id(&view, "right");
            tasks::claim_step(&team.ctx, &team.min, &left)
                .await
                .unwrap();
            tasks::claim_step(&team.ctx, &team.duan_bot, &right)
                .await
                .unwrap();
            // Even rounds: both fail; odd rounds: `right` submits.
            let right_submits = round % 2 == 1;
            let barrier = Arc::new(Barrier::new(2));
            let handles = [
                (team.min.clone(), left.clone(), false),
                (team.duan_bot.clone(), right.clone(), right_submits),
            ]
            .map(|(agent, step, submits)| {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    if submits {
                        submit(&ctx, &agent, &step, 1)
                            .await
                            .map(|outcome| outcome.status)
                    } else {
                        tasks::fail_step(&ctx, &agent, &step, 1, "broken", false).await
                    }
                })
            });
            for handle in handles {
                handle.await.unwrap().unwrap();
            }
            let end = team.task(&task_id).await;
            let on = format!("round {round} on {:?}", store.backend());
            assert_eq!(end.task.status, "failed", "{on}");
            let outcome = outcome_of(&end);
            let failed_keys: &[&str] = if right_submits {
                &["left"]
            } else {
                &["left", "right"]
            };
            assert!(
                failed_keys.contains(&outcome.step_key.as_deref().unwrap_or_default()),
                "{on}: {outcome:?}"
            );
            // Nothing starts after the failure, whichever transaction went first.
            for (key, agent) in [("join", &team.min), ("after_right", &team.duan_bot)] {
                let step = step_id(&view, key);
                assert_eq!(team.step(&step).await.status, "skipped", "{on}: {key}");
                let claimed = tasks::claim_step(&team.ctx, agent, &step).await;
                expect_err(claimed, "conflict", "skipped");
            }
            let creator = events(&store, team.aurora.member_id()).await;
            let updates = task_updates(&creator, &task_id);
            assert_eq!(updates.len(), 1, "{on}: {updates:?}");
            assert_eq!(updates[0].1.as_ref(), Some(&outcome), "{on}");
        }
    }
);

backend_test!(
    /// A step skipped by a workflow change can be retried: it runs after all, and the
    /// step that had started because of the skip waits for it again.
    async fn a_step_skipped_by_a_person_can_be_retried(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Chain",
                vec![
                    new_step("a", &["min"], &[]),
                    new_step("b", &["min"], &["a"]),
                    new_step("c", &["duan-bot"], &["b"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [a, b, c] = ["a", "b", "c"].map(|key| step_id(&view, key));
        team.run_step(&team.min, &a).await;
        let skip = change(
            "not needed",
            vec![WorkflowOp::SkipStep { step: "b".into() }],
        );
        tasks::change_workflow(ctx, &team.aurora, &task_id, skip)
            .await
            .unwrap();
        assert_eq!(team.step(&c).await.status, "ready");
        assert_eq!(
            revocations(&events(&store, &team.min.agent_id).await, &b),
            [(1, "the step was skipped".to_string())]
        );

        let retried = tasks::retry_step(ctx, &team.aurora, &b, Some("needed after all"))
            .await
            .unwrap();
        let expected: Vec<(String, String)> = [("a", "done"), ("b", "ready"), ("c", "pending")]
            .map(|(key, status)| (key.to_string(), status.to_string()))
            .into();
        assert_eq!(statuses(&retried), expected);
        let step = team.step(&b).await;
        assert_eq!((step.attempt, step.status_reason), (2, None));
        assert_eq!(
            ready_attempts(&events(&store, &team.min.agent_id).await, &b),
            [1, 2]
        );
        assert_eq!(
            revocations(&events(&store, &team.duan_bot.agent_id).await, &c).len(),
            1
        );
        expect_err(
            tasks::claim_step(ctx, &team.duan_bot, &c).await,
            "conflict",
            "pending",
        );

        team.run_step(&team.min, &b).await;
        team.run_step(&team.duan_bot, &c).await;
        assert_eq!(team.task(&task_id).await.task.status, "done");
        let kinds: Vec<String> = tasks::history(ctx, &team.aurora, &task_id)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.kind)
            .collect();
        assert_eq!(kinds, ["step_skipped", "step_retried"]);
    }
);

backend_test!(
    /// A pause leaves a blocked step with its agent (it waits for a person, no lease
    /// runs); when it then fails for good, the paused task fails.
    async fn a_blocked_step_that_fails_for_good_fails_a_paused_task(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Asking",
                vec![
                    new_step("ask", &["min"], &[]),
                    new_step("next", &["min"], &["ask"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let ask = step_id(&view, "ask");
        tasks::claim_step(ctx, &team.min, &ask).await.unwrap();
        approvals::ask(ctx, &team.min, &ask, 1, "Which quarter?", &[])
            .await
            .unwrap();
        tasks::set_task_status(ctx, &team.aurora, &task_id, TaskAction::Pause)
            .await
            .unwrap();
        let step = team.step(&ask).await;
        assert_eq!((step.status.as_str(), step.attempt), ("blocked", 1));

        tasks::fail_step(ctx, &team.min, &ask, 1, "nobody answered", false)
            .await
            .unwrap();
        let failed = team.task(&task_id).await;
        assert_eq!(failed.task.status, "failed");
        assert_eq!(outcome_of(&failed).by, Some(by_agent(&team.min)));
        assert_eq!(team.step(&step_id(&view, "next")).await.status, "skipped");
        let timeline = tasks::timeline(ctx, &team.aurora, &task_id).await.unwrap();
        let task_moves: Vec<(Option<&str>, &str)> = timeline
            .iter()
            .filter(|entry| entry.step_id.is_none())
            .map(|entry| (entry.from.as_deref(), entry.to.as_str()))
            .collect();
        assert_eq!(
            task_moves,
            [
                (None, "active"),
                (Some("active"), "paused"),
                (Some("paused"), "failed")
            ]
        );
    }
);

backend_test!(
    /// A pause and the holder's submit at the same moment, 10 rounds: either the submit
    /// wins (the step is done, nobody is revoked) or the pause does (the submit is a
    /// conflict, the step is ready at attempt 2 and its holder got `step.revoked`).
    async fn a_pause_racing_a_submit_leaves_one_consistent_result(store) {
        let team = Team::new(&store).await;
        for round in 0..10 {
            let view = team
                .create(new_task(
                    "Racing",
                    vec![
                        new_step("s", &["min"], &[]),
                        new_step("other", &["min"], &[]),
                    ],
                ))
                .await;
            let task_id = view.task.id.clone();
            let s = step_id(&view, "s");
            tasks::claim_step(&team.ctx, &team.min, &s).await.unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let pause = {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                let actor = team.aurora.clone();
                let task_id = task_id.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    tasks::set_task_status(&ctx, &actor, &task_id, TaskAction::Pause).await
                })
            };
            let submitted = {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                let agent = team.min.clone();
                let step = s.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    submit(&ctx, &agent, &step, 1).await
                })
            };
            pause.await.unwrap().unwrap();
            let submitted = submitted.await.unwrap();
            let step = team.step(&s).await;
            let revoked = revocations(&events(&store, &team.min.agent_id).await, &s);
            let on = format!("round {round} on {:?}: {submitted:?}", store.backend());
            match submitted {
                Ok(outcome) => {
                    assert_eq!(outcome.status, "done", "{on}");
                    assert_eq!(step.status, "done", "{on}");
                    assert!(revoked.is_empty(), "{on}: {revoked:?}");
                }
                Err(err) => {
                    assert_eq!(err.code(), "conflict", "{on}");
                    assert_eq!((step.status.as_str(), step.attempt), ("ready", 2), "{on}");
                    assert_eq!(revoked, [(1, "the task was paused".to_string())], "{on}");
                }
            }
            tasks::set_task_status(&team.ctx, &team.aurora, &task_id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

// ---------------------------------------------------------------- agents

backend_test!(
    /// offline without a session; online: blocked > working > waiting > idle.
    async fn an_agents_status_follows_what_it_holds(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let status = async |agent: &AgentActor| {
            agents::get_agent(&store, &ctx.presence, &team.workspace_id, &agent.agent_name)
                .await
                .unwrap()
                .state
                .as_str()
        };
        let view = team
            .create(new_task(
                "Busy",
                vec![
                    new_step("one", &["min"], &[]),
                    new_step("two", &["min"], &[]),
                    NewStep {
                        approval_level: 1,
                        approvers: vec!["duan@example.com".into()],
                        ..new_step("three", &["min"], &[])
                    },
                ],
            ))
            .await;
        let [one, two, three] = ["one", "two", "three"].map(|key| step_id(&view, key));
        assert_eq!(status(&team.min).await, "offline");
        tasks::claim_step(ctx, &team.min, &one).await.unwrap();
        assert_eq!(
            status(&team.min).await,
            "offline",
            "holding a step without a session"
        );

        let min_session = ctx.sessions.register(&team.min.agent_id, "", 1);
        let _duan_bot_session = ctx.sessions.register(&team.duan_bot.agent_id, "", 1);
        assert_eq!(status(&team.duan_bot).await, "idle");
        assert_eq!(status(&team.min).await, "working");
        tasks::claim_step(ctx, &team.min, &two).await.unwrap();
        approvals::ask(ctx, &team.min, &two, 1, "Which quarter?", &[])
            .await
            .unwrap();
        assert_eq!(
            status(&team.min).await,
            "blocked",
            "blocked wins over working"
        );
        // `two` fails for good and its task with it; `three` (ready) is skipped and `one`
        // (held on the same task) is still min's.
        tasks::fail_step(ctx, &team.min, &two, 1, "no answer", false)
            .await
            .unwrap();
        assert_eq!(team.step(&three).await.status, "skipped");
        assert_eq!(status(&team.min).await, "working");
        submit(ctx, &team.min, &one, 1).await.unwrap();
        assert_eq!(status(&team.min).await, "idle");
        let view = team
            .create(new_task(
                "Review",
                vec![NewStep {
                    approval_level: 1,
                    approvers: vec!["duan@example.com".into()],
                    ..new_step("review", &["min"], &[])
                }],
            ))
            .await;
        let review = step_id(&view, "review");
        assert_eq!(team.run_step(&team.min, &review).await, "awaiting_approval");
        assert_eq!(status(&team.min).await, "waiting");
        let listed: Vec<(String, String)> =
            agents::list_agents(&store, &ctx.presence, &team.workspace_id)
                .await
                .unwrap()
                .into_iter()
                .map(|view| (view.agent.name, view.state.as_str().to_string()))
                .collect();
        assert!(
            listed.contains(&("min".to_string(), "waiting".to_string())),
            "{listed:?}"
        );
        crate::support::decide_current(ctx, &team.duan, &review, approvals::Verdict::new(Decision::Approve, None))
        .await
        .unwrap();
        assert_eq!(status(&team.min).await, "idle");
        ctx.sessions
            .unregister(&team.min.agent_id, min_session.session_id);
        assert_eq!(status(&team.min).await, "offline");
    }
);

backend_test!(
    /// `agent.online` reaches the agent's owner, the creators of active tasks it works
    /// on and the agents sharing an active task with it; not unrelated agents.
    async fn presence_reaches_the_owner_the_creators_and_the_agents_it_works_with(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let kim = team.add_member("kim@example.com", Role::Member).await;
        let kai = team.add_agent("kai", "kim@example.com", &[], 4).await;
        let loner = team.add_agent("loner", "kim@example.com", &[], 4).await;
        // duan's active task: min and kai work on it.
        tasks::create_task(
            ctx,
            &team.duan,
            new_task(
                "Shared",
                vec![
                    new_step("x", &["min"], &[]),
                    new_step("y", &["kai"], &["x"]),
                ],
            ),
        )
        .await
        .unwrap();
        // kim's finished task with min and loner: it no longer counts.
        let done = tasks::create_task(
            ctx,
            &kim,
            new_task(
                "Finished",
                vec![new_step("p", &["min"], &[]), new_step("q", &["loner"], &[])],
            ),
        )
        .await
        .unwrap();
        team.run_step(&team.min, &step_id(&done, "p")).await;
        team.run_step(&loner, &step_id(&done, "q")).await;
        assert_eq!(team.task(&done.task.id).await.task.status, "done");
        // An active task of loner and duan-bot, without min.
        team.create(new_task(
            "Apart",
            vec![new_step("z", &["loner", "duan-bot"], &[])],
        ))
        .await;

        let heard = async |audience: &str, kind: &str| {
            events(&store, audience)
                .await
                .iter()
                .any(|frame| match frame {
                    ServerFrame::AgentOnline(presence) if kind == "agent.online" => {
                        presence.agent_id == uuid(&team.min.agent_id)
                    }
                    ServerFrame::AgentOffline(presence) if kind == "agent.offline" => {
                        presence.agent_id == uuid(&team.min.agent_id)
                    }
                    _ => false,
                })
        };
        let min_session = ctx.sessions.register(&team.min.agent_id, "", 1);
        agents::announce_presence(ctx, &team.min, true)
            .await
            .unwrap();
        ctx.sessions
            .unregister(&team.min.agent_id, min_session.session_id);
        agents::announce_presence(ctx, &team.min, false)
            .await
            .unwrap();
        for kind in ["agent.online", "agent.offline"] {
            assert!(
                heard(team.aurora.member_id(), kind).await,
                "the owner hears {kind}"
            );
            assert!(
                heard(team.duan.member_id(), kind).await,
                "the creator of an active task hears {kind}"
            );
            assert!(
                heard(&kai.agent_id, kind).await,
                "an agent of the same active task hears {kind}"
            );
            assert!(
                !heard(kim.member_id(), kind).await,
                "the creator of a finished task does not hear {kind}"
            );
            assert!(
                !heard(&loner.agent_id, kind).await,
                "an agent of a finished task does not hear {kind}"
            );
            assert!(
                !heard(&team.duan_bot.agent_id, kind).await,
                "an unrelated agent does not hear {kind}"
            );
        }
    }
);

backend_test!(
    /// An agent that may hold one step claims two ready steps at the same moment, 10
    /// rounds: one claim wins and the other is a conflict naming the limit (on
    /// PostgreSQL the agent's row is locked and its held steps counted behind the lock).
    async fn concurrent_claims_of_one_agent_respect_its_max_concurrency(store) {
        let team = Team::new(&store).await;
        let solo = team.add_agent("solo", "aurora@example.com", &[], 1).await;
        for round in 0..10 {
            let view = team
                .create(new_task(
                    "Two at once",
                    vec![new_step("a", &["solo"], &[]), new_step("b", &["solo"], &[])],
                ))
                .await;
            let steps = [step_id(&view, "a"), step_id(&view, "b")];
            let barrier = Arc::new(Barrier::new(2));
            let handles = steps.clone().map(|step| {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                let agent = solo.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    tasks::claim_step(&ctx, &agent, &step).await
                })
            });
            let mut won = Vec::new();
            for (handle, step) in handles.into_iter().zip(&steps) {
                match handle.await.unwrap() {
                    Ok(_) => won.push(step.clone()),
                    Err(err) => {
                        assert_eq!(err.code(), "conflict", "{err}");
                        assert!(err.to_string().contains("max concurrency 1"), "{err}");
                    }
                }
            }
            let on = format!("round {round} on {:?}", store.backend());
            assert_eq!(won.len(), 1, "{on}");
            for step in &steps {
                let expected = if won.contains(step) { "claimed" } else { "ready" };
                assert_eq!(team.step(step).await.status, expected, "{on}");
            }
            tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

backend_test!(
    /// Fourteen claims at the same moment, 10 rounds: eight agents each claim a step of
    /// their own (one of them twice), three race for one shared step, and an agent that
    /// may hold one step claims two. Each claimer gets its own answer: every own step is
    /// won (the repeated claim answered the same), the shared step by one, the limited
    /// agent's by one with the other refused for its limit, and what is stored says the
    /// same. On SQLite, where the writer is held until all of them queued, the claims ran
    /// as one transaction.
    async fn claims_at_the_same_moment_each_get_their_own_answer(store) {
        let team = Team::new(&store).await;
        let agents = add_crew(&team, 8).await;
        let solo = team.add_agent("solo", "duan@example.com", &[], 1).await;
        for round in 0..10 {
            let mut steps: Vec<NewStep> = (0..8)
                .map(|n| new_step(&format!("own{n}"), &[&format!("crew{n}")], &[]))
                .collect();
            steps.push(new_step("prize", &["crew0", "crew1", "crew2"], &[]));
            steps.push(new_step("solo1", &["solo"], &[]));
            steps.push(new_step("solo2", &["solo"], &[]));
            let view = team.create(new_task("All at once", steps)).await;
            let mut claims: Vec<(String, AgentActor, String)> = (0..8)
                .map(|n| {
                    let key = format!("own{n}");
                    (key.clone(), agents[n].clone(), step_id(&view, &key))
                })
                .collect();
            claims.push(("own3".into(), agents[3].clone(), step_id(&view, "own3")));
            for racer in &agents[..3] {
                claims.push(("prize".into(), racer.clone(), step_id(&view, "prize")));
            }
            for key in ["solo1", "solo2"] {
                claims.push((key.into(), solo.clone(), step_id(&view, key)));
            }
            let n_claims = claims.len();
            let barrier = Arc::new(Barrier::new(n_claims));
            let (answers, before) = run_as_one_batch(&store, &team.ctx, n_claims, || {
                claims
                    .into_iter()
                    .map(|(key, agent, step)| {
                        let ctx = team.ctx.clone();
                        let barrier = Arc::clone(&barrier);
                        tokio::spawn(async move {
                            barrier.wait().await;
                            let answer = tasks::claim_step(&ctx, &agent, &step).await;
                            (key, agent, answer)
                        })
                    })
                    .collect()
            })
            .await;
            let on = format!("round {round} on {:?}", store.backend());
            let mut won: Vec<(String, String)> = Vec::new();
            for (key, agent, answer) in answers {
                match answer {
                    Ok(claimed) => {
                        assert_eq!(claimed.attempt, 1, "{on}");
                        won.push((key, agent.agent_id));
                    }
                    Err(err) => {
                        assert_eq!(err.code(), "conflict", "{key}: {err} ({on})");
                        let expected = match key.as_str() {
                            "prize" => "step is claimed; it cannot become claimed",
                            "solo1" | "solo2" => "max concurrency 1",
                            _ => panic!("{key} was refused: {err} ({on})"),
                        };
                        assert!(err.to_string().contains(expected), "{err} ({on})");
                    }
                }
            }
            let winners = |key: &str| -> Vec<String> {
                won.iter()
                    .filter(|(won_key, _)| won_key == key)
                    .map(|(_, agent_id)| agent_id.clone())
                    .collect()
            };
            for (n, agent) in agents.iter().enumerate() {
                let key = format!("own{n}");
                let expected = if n == 3 { 2 } else { 1 };
                assert_eq!(winners(&key), vec![agent.agent_id.clone(); expected], "{on}");
            }
            let prize = match &winners("prize")[..] {
                [prize] => prize.clone(),
                other => panic!("the shared step won by {other:?} ({on})"),
            };
            let solo_won: Vec<&str> = ["solo1", "solo2"]
                .into_iter()
                .filter(|key| !winners(key).is_empty())
                .collect();
            assert_eq!(solo_won.len(), 1, "{on}");
            for step_view in &view.steps {
                let key = step_view.step.key.as_str();
                let stored = team.step(&step_view.step.id).await;
                let holder = match key {
                    "prize" => Some(prize.clone()),
                    "solo1" | "solo2" if !solo_won.contains(&key) => None,
                    "solo1" | "solo2" => Some(solo.agent_id.clone()),
                    own => Some(agents[own["own".len()..].parse::<usize>().unwrap()].agent_id.clone()),
                };
                let status = if holder.is_some() { "claimed" } else { "ready" };
                assert_eq!((stored.status.as_str(), stored.claimed_by), (status, holder), "{key} ({on})");
            }
            if let (Some(before), Some(after)) = (before, store.writer_stats()) {
                let transactions = after.transactions - before;
                assert_eq!(
                    transactions, 2,
                    "the writer's holder, then the 14 claims in one transaction ({on})"
                );
            }
            tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

/// Runs `ops` as one batch ([`run_as_one_batch`]): (step key, index in `crew`, attempt)
/// each, a submit, or with attempt 0 a claim. Answers each op's key and attempt with its
/// answer (a submit's status, `claimed at N`, or `code: message`), sorted, and the
/// writer's transactions before them.
async fn submit_as_one_batch(
    store: &Store,
    team: &Team,
    crew: &[AgentActor],
    view: &TaskView,
    ops: &[(&'static str, usize, u32)],
) -> (
    Vec<(&'static str, u32, Result<String, String>)>,
    Option<u64>,
) {
    let barrier = Arc::new(Barrier::new(ops.len()));
    let (mut answers, before) = run_as_one_batch(store, &team.ctx, ops.len(), || {
        ops.iter()
            .map(|&(key, agent, attempt)| {
                let (ctx, agent, step) =
                    (team.ctx.clone(), crew[agent].clone(), step_id(view, key));
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let answer = if attempt == 0 {
                        tasks::claim_step(&ctx, &agent, &step)
                            .await
                            .map(|claimed| format!("claimed at {}", claimed.attempt))
                    } else {
                        submit(&ctx, &agent, &step, attempt)
                            .await
                            .map(|done| done.status)
                    };
                    (
                        key,
                        attempt,
                        answer.map_err(|err| format!("{}: {err}", err.code())),
                    )
                })
            })
            .collect()
    })
    .await;
    answers.sort();
    (answers, before)
}

/// Agents `crew0`, `crew1`, … of aurora, `n` of them.
async fn add_crew(team: &Team, n: usize) -> Vec<AgentActor> {
    let mut crew = Vec::new();
    for n in 0..n {
        crew.push(
            team.add_agent(&format!("crew{n}"), "aurora@example.com", &[], 1024)
                .await,
        );
    }
    crew
}

/// Starts `queued` operations (`start`) and answers what each returned, with the writer's
/// transactions before them. On SQLite the writer is held meanwhile, so that every one of
/// them queues: the first waits for the writer, and the rest join its batch when it gets
/// it.
async fn run_as_one_batch<T: Send + 'static>(
    store: &Store,
    ctx: &Ctx,
    queued: usize,
    start: impl FnOnce() -> Vec<tokio::task::JoinHandle<T>>,
) -> (Vec<T>, Option<u64>) {
    let before = store.writer_stats();
    let hold = Arc::new(Notify::new());
    let holder = before.map(|_| {
        let (store, hold) = (store.clone(), Arc::clone(&hold));
        tokio::spawn(async move {
            store
                .transaction(async |_db| {
                    hold.notified().await;
                    Ok::<_, agenthub::error::Error>(())
                })
                .await
                .unwrap();
        })
    });
    if let Some(before) = before {
        while store.writer_stats().unwrap().transactions < before.transactions + 1 {
            tokio::task::yield_now().await;
        }
    }
    let handles = start();
    if let Some(holder) = holder {
        while ctx.writes.queued() < queued - 1 {
            tokio::task::yield_now().await;
        }
        hold.notify_one();
        holder.await.unwrap();
    }
    let mut outs = Vec::new();
    for handle in handles {
        outs.push(handle.await.unwrap());
    }
    (outs, before.map(|before| before.transactions))
}

backend_test!(
    /// Submits and a claim at the same moment: each gets its own answer, and one refused
    /// after its first write is undone alone. Two steps are done (one submit resent in the
    /// same batch answers the same), a submit by an agent the step is not assigned to and
    /// one of a stale attempt are refused, a step of approval level 1 awaits its approver,
    /// a step whose approvers are gone is refused after its update (and stays claimed,
    /// without a result), and a claim of another step wins. On SQLite, where the writer is
    /// held until all of them queued, they ran as one batch: once straight, rolled back at
    /// the refusal after a write, and once more with the writes from it on in savepoints
    /// (the refusals before a write roll nothing back).
    async fn submits_at_the_same_moment_each_get_their_own_answer(store) {
        let team = Team::new(&store).await;
        let crew = add_crew(&team, 6).await;
        let gated = |key: &str, agent: &str| NewStep {
            approval_level: 1,
            approvers: vec!["duan@example.com".into()],
            ..new_step(key, &[agent], &[])
        };
        let view = team
            .create(new_task(
                "Submitted together",
                vec![
                    new_step("s0", &["crew0"], &[]),
                    new_step("s1", &["crew1"], &[]),
                    new_step("s2", &["crew2"], &[]),
                    new_step("s3", &["crew3"], &[]),
                    gated("gate", "crew4"),
                    gated("broken", "crew5"),
                    new_step("fresh", &["crew0"], &[]),
                ],
            ))
            .await;
        let id = |key: &str| step_id(&view, key);
        for (n, key) in ["s0", "s1", "s2", "s3", "gate", "broken"].into_iter().enumerate() {
            tasks::claim_step(&team.ctx, &crew[n], &id(key)).await.unwrap();
        }
        // The approvers of `broken` are gone: its submit is refused after the step's
        // update, when the approval is asked.
        let broken = id("broken");
        store
            .transaction(async |db| {
                db!(db, |conn| diesel::delete(
                    step_approvers::table.filter(step_approvers::step_id.eq(&broken))
                )
                .execute(conn)
                .await)?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let ops = vec![
            ("s0", 0, 1),
            ("s1", 1, 1),
            ("s1", 1, 1),
            ("s2", 3, 1),
            ("s3", 3, 2),
            ("gate", 4, 1),
            ("broken", 5, 1),
            ("fresh", 0, 0),
        ];
        let (answers, before) = submit_as_one_batch(&store, &team, &crew, &view, &ops).await;
        let ok = |status: &str| Ok(status.to_string());
        let expected: Vec<(&str, u32, Result<String, String>)> = vec![
            ("broken", 1, Err(
                "conflict: step `broken` needs approval but lists no approvers".into()
            )),
            ("fresh", 0, ok("claimed at 1")),
            ("gate", 1, ok("awaiting_approval")),
            ("s0", 1, ok("done")),
            ("s1", 1, ok("done")),
            ("s1", 1, ok("done")),
            ("s2", 1, Err(format!(
                "forbidden: step `{}` is not assigned to agent `crew3`",
                id("s2")
            ))),
            ("s3", 1 + 1, Err(
                "conflict: step is claimed at attempt 1; attempt 2 is not current".into()
            )),
        ];
        assert_eq!(answers, expected);
        if let (Some(before), Some(after)) = (before, store.writer_stats()) {
            assert_eq!(
                after.transactions - before,
                3,
                "the writer's holder, then the eight operations in one transaction, rolled \
                 back at the submit refused after its update and run again with each write \
                 from it on in a savepoint"
            );
        }
        let stored = |key: &str| {
            let team = &team;
            let step = id(key);
            async move { team.step(&step).await }
        };
        for (key, status) in [
            ("s0", "done"),
            ("s1", "done"),
            ("s2", "claimed"),
            ("s3", "claimed"),
            ("gate", "awaiting_approval"),
            ("broken", "claimed"),
            ("fresh", "claimed"),
        ] {
            assert_eq!(stored(key).await.status, status, "{key}");
        }
        let broken = stored("broken").await;
        assert_eq!((broken.result, broken.summary), (None, None), "nothing of the refused submit stays");
        // The gate's approver was asked: approving it finishes the step.
        let approve = approvals::Verdict::new(Decision::Approve, None);
        let decided = crate::support::decide_current(&team.ctx, &team.duan, &id("gate"), approve)
            .await
            .unwrap();
        assert_eq!(decided.step_status, "done");
    }
);

backend_test!(
    /// Submits refused before they write anything (a stale attempt, a step of another
    /// agent) in a batch with submits that succeed: each gets its own answer, the others'
    /// results are stored, and on SQLite the batch ran once, in one transaction (a refusal
    /// before a write rolls nothing back).
    async fn submits_refused_before_writing_leave_their_batch_one_transaction(store) {
        let team = Team::new(&store).await;
        let crew = add_crew(&team, 3).await;
        let view = team
            .create(new_task(
                "Refused early",
                vec![
                    new_step("s0", &["crew0"], &[]),
                    new_step("s1", &["crew1"], &[]),
                    new_step("s2", &["crew2"], &[]),
                ],
            ))
            .await;
        let id = |key: &str| step_id(&view, key);
        for (n, key) in ["s0", "s1", "s2"].into_iter().enumerate() {
            tasks::claim_step(&team.ctx, &crew[n], &id(key)).await.unwrap();
        }
        let ops = vec![("s0", 0, 2), ("s1", 1, 1), ("s0", 2, 1), ("s2", 2, 1)];
        let (answers, before) = submit_as_one_batch(&store, &team, &crew, &view, &ops).await;
        let expected: Vec<(&str, u32, Result<String, String>)> = vec![
            ("s0", 1, Err(format!(
                "forbidden: step `{}` is not assigned to agent `crew2`",
                id("s0")
            ))),
            ("s0", 2, Err(
                "conflict: step is claimed at attempt 1; attempt 2 is not current".into()
            )),
            ("s1", 1, Ok("done".into())),
            ("s2", 1, Ok("done".into())),
        ];
        assert_eq!(answers, expected);
        if let (Some(before), Some(after)) = (before, store.writer_stats()) {
            assert_eq!(
                after.transactions - before,
                2,
                "the writer's holder, then the four submits in one transaction"
            );
        }
        assert_eq!(team.step(&id("s0")).await.status, "claimed");
        for key in ["s1", "s2"] {
            let stored = team.step(&id(key)).await;
            assert_eq!((stored.status.as_str(), stored.result.is_some()), ("done", true), "{key}");
        }
    }
);

backend_test!(
    /// Task creations and a claim at the same moment: each gets its own answer, and a
    /// creation refused (an assignee that is not an agent of the workspace) or whose own
    /// statement fails (the database refuses its task's row: a trigger here) leaves no
    /// task behind, while the others are created with their steps ready and pushed. On
    /// SQLite, where the writer is held until all of them queued, they ran as one batch:
    /// once straight, rolled back at the failed statement, and once more with the writes
    /// from it on in savepoints.
    async fn creations_at_the_same_moment_each_get_their_own_answer(store) {
        let team = Team::new(&store).await;
        let crew0 = team.add_agent("crew0", "aurora@example.com", &[], 1024).await;
        team.add_agent("crew1", "aurora@example.com", &[], 1024).await;
        let waiting = team
            .create(new_task("Waiting", vec![new_step("w", &["crew0"], &[])]))
            .await;
        refuse_tasks_titled(&store, "Poison").await;
        let creations = [
            ("One", "crew0"),
            ("Bad", "nobody"),
            ("Poison", "crew0"),
            ("Two", "crew1"),
        ];
        let barrier = Arc::new(Barrier::new(creations.len() + 1));
        let (answers, before) = run_as_one_batch(&store, &team.ctx, creations.len() + 1, || {
            let mut handles = spawn_creations(&team, &barrier, &creations);
            let (ctx, agent, step) = (team.ctx.clone(), crew0.clone(), step_id(&waiting, "w"));
            let barrier = Arc::clone(&barrier);
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let claimed = tasks::claim_step(&ctx, &agent, &step).await;
                ("claim", claimed.map(|claimed| format!("attempt {}", claimed.attempt)))
            }));
            handles
        })
        .await;
        if let (Some(before), Some(after)) = (before, store.writer_stats()) {
            assert_eq!(
                after.transactions - before,
                3,
                "the writer's holder, then the five writes in one transaction, rolled back \
                 at the creation whose task's row the database refuses and run again with \
                 each write from it on in a savepoint"
            );
        }
        let mut created = Vec::new();
        for (title, answer) in answers {
            match (title, answer) {
                ("claim", Ok(attempt)) => assert_eq!(attempt, "attempt 1"),
                ("Bad", Err(err)) => {
                    assert_eq!(err.code(), "invalid", "{err}");
                    assert_eq!(
                        err.to_string(),
                        "step `a`: assignee `nobody` is not an agent of this workspace"
                    );
                }
                ("Poison", Err(err)) => {
                    let agenthub::error::Error::Internal(message) = &err else {
                        panic!("Poison: {err:?}");
                    };
                    assert!(message.contains("refused by a trigger"), "{message}");
                }
                ("One" | "Two", Ok(task_id)) => created.push((title, task_id)),
                (title, answer) => panic!("{title}: {answer:?}"),
            }
        }
        assert_eq!(created.len(), 2);
        for (title, task_id) in &created {
            let view = team.task(task_id).await;
            assert_eq!(view.task.title, *title);
            assert_eq!(statuses(&view), vec![("a".to_string(), "ready".to_string())]);
        }
        assert_eq!(
            listed_titles(&team).await,
            ["One", "Two", "Waiting"],
            "nothing of the refused creation stays"
        );
        assert_eq!(team.step(&step_id(&waiting, "w")).await.status, "claimed");
        // Each created step was pushed to its assignee.
        for (title, task_id) in &created {
            let view = team.task(task_id).await;
            let assignee = &view.steps[0].assignees[0].0;
            let pushed = events(&store, assignee)
                .await
                .into_iter()
                .any(|frame| matches!(&frame, ServerFrame::StepReady(ready)
                    if ready.step.step_id == uuid(&view.steps[0].step.id)));
            assert!(pushed, "{title}'s step was pushed");
        }
    }
);

/// The titles of the team's tasks as listed, sorted.
async fn listed_titles(team: &Team) -> Vec<String> {
    let mut listed: Vec<String> =
        tasks::list_tasks(&team.ctx, &team.aurora, &tasks::TaskFilter::newest(100))
            .await
            .unwrap()
            .into_iter()
            .map(|(task, _)| task.title)
            .collect();
    listed.sort();
    listed
}

/// Starts a creation of a one-step task per (title, assignee) of `creations`, each
/// after `barrier`; each answers its title and its task's id.
fn spawn_creations(
    team: &Team,
    barrier: &Arc<Barrier>,
    creations: &[(&'static str, &'static str)],
) -> Vec<tokio::task::JoinHandle<(&'static str, agenthub::error::Result<String>)>> {
    creations
        .iter()
        .map(|&(title, assignee)| {
            let (ctx, actor, barrier) =
                (team.ctx.clone(), team.aurora.clone(), Arc::clone(barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let new = new_task(title, vec![new_step("a", &[assignee], &[])]);
                let created = tasks::create_task(&ctx, &actor, new).await;
                (title, created.map(|view| view.task.id))
            })
        })
        .collect()
}

backend_test!(
    /// Creations refused for their steps' names (an assignee that is no agent of the
    /// workspace, a member who is not one) in a batch with creations that succeed: each
    /// gets its own answer, nothing of the refused ones is stored, and on SQLite the batch
    /// ran once, in one transaction (the names are resolved before the task is written,
    /// so a refusal rolls nothing back).
    async fn creations_refused_for_their_steps_names_leave_their_batch_one_transaction(store) {
        let team = Team::new(&store).await;
        add_crew(&team, 2).await;
        let creations = [
            ("One", "crew0"),
            ("Nobody", "nobody"),
            ("No member", "member:nobody@example.com"),
            ("Two", "crew1"),
        ];
        let barrier = Arc::new(Barrier::new(creations.len()));
        let (answers, before) = run_as_one_batch(&store, &team.ctx, creations.len(), || {
            spawn_creations(&team, &barrier, &creations)
        })
        .await;
        if let (Some(before), Some(after)) = (before, store.writer_stats()) {
            assert_eq!(
                after.transactions - before,
                2,
                "the writer's holder, then the four creations in one transaction"
            );
        }
        let answers: Vec<(&str, Result<(), String>)> = answers
            .into_iter()
            .map(|(title, answer)| (title, answer.map(|_| ()).map_err(|err| err.to_string())))
            .collect();
        assert_eq!(
            answers,
            vec![
                ("One", Ok(())),
                (
                    "Nobody",
                    Err("step `a`: assignee `nobody` is not an agent of this workspace".into())
                ),
                (
                    "No member",
                    Err("step `a`: assignee `member:nobody@example.com` is not a member of \
                         this workspace"
                        .into())
                ),
                ("Two", Ok(())),
            ]
        );
        assert_eq!(
            listed_titles(&team).await,
            ["One", "Two"],
            "nothing of the refused creations stays"
        );
    }
);

/// Makes the database itself refuse a task titled `title`: its row's insert fails (a
/// failure no check of the hub foresees).
async fn refuse_tasks_titled(store: &Store, title: &str) {
    use diesel_async::SimpleAsyncConnection;
    let sql = if store.backend() == Backend::Sqlite {
        format!(
            "CREATE TRIGGER refuse_task BEFORE INSERT ON tasks WHEN NEW.title = '{title}' \
             BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;"
        )
    } else {
        format!(
            "CREATE FUNCTION refuse_task() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.title = '{title}' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_task BEFORE INSERT ON tasks \
             FOR EACH ROW EXECUTE FUNCTION refuse_task();"
        )
    };
    store
        .transaction(async |db| {
            db!(db, |conn| conn.batch_execute(&sql).await).map_err(StoreError::from)
        })
        .await
        .unwrap();
}

backend_test!(
    /// A batch's leader that goes away after its batch ran, while the batch waits in the
    /// writer's open group for its commit: the creation it carried for another caller is
    /// queued again by that caller and answers the task the group committed, which exists
    /// once. The leader's batch hands the group on only when it ran within the group's
    /// age limit, so a round may end with the leader answered instead: up to eight rounds,
    /// and at least one must have gone the first way. (SQLite: PostgreSQL runs each write
    /// alone.)
    async fn a_creation_run_again_after_its_leader_went_away_answers_its_task_once(store) {
        let team = Team::new(&store).await;
        team.add_agent("crew0", "aurora@example.com", &[], 1024).await;
        if store.writer_stats().is_none() {
            return;
        }
        let mut went_away = 0;
        let mut expected = Vec::new();
        for round in 0..8 {
            let before = store.writer_stats().unwrap();
            // The writer is held while the leader and then another creation queue.
            let hold = Arc::new(Notify::new());
            let holder = {
                let (store, hold) = (store.clone(), Arc::clone(&hold));
                tokio::spawn(async move {
                    store
                        .transaction(async |_db| {
                            hold.notified().await;
                            // Older than a group may grow: it commits alone, and the
                            // leader's batch starts a group of its own.
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok::<_, agenthub::error::Error>(())
                        })
                        .await
                })
            };
            while store.writer_stats().unwrap().transactions < before.transactions + 1 {
                tokio::task::yield_now().await;
            }
            let create = |title: String| {
                let (ctx, actor) = (team.ctx.clone(), team.aurora.clone());
                let new = new_task(&title, vec![new_step("a", &["crew0"], &[])]);
                async move { tasks::create_task(&ctx, &actor, new).await }
            };
            let (one, two) = (format!("One {round}"), format!("Two {round}"));
            let mut leader = Box::pin(create(one.clone()));
            assert!(futures_util::poll!(leader.as_mut()).is_pending(), "it waits for the writer");
            let other = tokio::spawn(create(two.clone()));
            while team.ctx.writes.queued() < 1 {
                tokio::task::yield_now().await;
            }
            // Another transaction waits behind the leader's batch, so that the batch
            // hands the open group on instead of committing it and waits for its commit;
            // that transaction takes its time, so the group is committed only after the
            // leader went away.
            hold.notify_one();
            let after = {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .transaction(async |_db| {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            Ok::<_, agenthub::error::Error>(())
                        })
                        .await
                })
            };
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            // The leader runs its batch (both creations) and waits for the group's commit,
            // or, when it took longer than a group may grow, commits and is answered.
            if futures_util::poll!(leader.as_mut()).is_pending() {
                assert!(
                    store.writer_stats().unwrap().transactions >= before.transactions + 2,
                    "the holder, then the leader's batch"
                );
                went_away += 1;
                drop(leader);
            }
            holder.await.unwrap().unwrap();
            after.await.unwrap().unwrap();
            let created = other.await.unwrap().expect("the creation run again answers its task");
            assert_eq!(created.task.title, two);
            assert_eq!(statuses(&created), vec![("a".to_string(), "ready".to_string())]);
            expected.push((one, None));
            expected.push((two, Some(created.task.id.clone())));
        }
        assert!(went_away > 0, "no leader went away in eight rounds");
        let mut listed: Vec<(String, String)> =
            tasks::list_tasks(&team.ctx, &team.aurora, &tasks::TaskFilter::newest(100))
                .await
                .unwrap()
                .into_iter()
                .map(|(task, _)| (task.title, task.id))
                .collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed.len(), expected.len(), "each creation made one task: {listed:?}");
        for ((title, id), (expected_title, expected_id)) in listed.iter().zip(&expected) {
            assert_eq!(title, expected_title);
            if let Some(expected_id) = expected_id {
                assert_eq!(id, expected_id, "{title} answers the task it made");
            }
        }
    }
);
