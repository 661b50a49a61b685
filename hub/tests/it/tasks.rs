//! Tasks and steps: creation with DAG validation, the step state machine, readiness
//! propagation, claims (with real concurrency), leases and the sweeper, submits,
//! failures, task status and workflow changes.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;

use agenthub::accounts::{Actor, AgentActor, Role};
use agenthub::approvals;
use agenthub::error::Error;
use agenthub::tasks::{self, NewStep, TaskAction, WorkflowChange, WorkflowOp};
use agenthub_protocol::ServerFrame;

use crate::support::{
    Team, backend_test, events, expect_err, new_step, new_task, report_task, short_lease, step_id,
    submit, types, uuid,
};

// ---------------------------------------------------------------- creation

backend_test!(
    async fn task_creation_refuses_a_bad_graph_naming_the_step(store) {
        let team = Team::new(&store).await;
        let other = team
            .create(new_task("Other", vec![new_step("outline", &["min"], &[])]))
            .await;
        let other_step = step_id(&other, "outline");
        let create = |steps: Vec<NewStep>| tasks::create_task(&team.ctx, &team.aurora, new_task("Bad", steps));

        let err = expect_err(
            create(vec![
                new_step("draft", &["min"], &["review"]),
                new_step("review", &["min"], &["draft"]),
                new_step("publish", &["min"], &[]),
            ])
            .await,
            "invalid",
            "dependencies form a cycle: draft -> review -> draft",
        );
        assert!(matches!(&err, Error::Invalid { field: Some(field), .. } if field == "depends_on"), "{err:?}");
        expect_err(
            create(vec![new_step("draft", &["min"], &["draft"])]).await,
            "invalid",
            "step `draft` depends on itself",
        );
        expect_err(
            create(vec![
                new_step("draft", &["min"], &[]),
                new_step("review", &["min"], &["drafts"]),
            ])
            .await,
            "invalid",
            "step `review` depends on `drafts`, which is not a step of this task",
        );
        // A step of another task, by id or by its key, is not a step of this task.
        for foreign in [other_step.as_str(), "outline"] {
            expect_err(
                create(vec![
                    new_step("draft", &["min"], &[]),
                    new_step("review", &["min"], &["draft", foreign]),
                ])
                .await,
                "invalid",
                &format!("step `review` depends on `{foreign}`, which is not a step of this task"),
            );
        }
        expect_err(
            create(vec![new_step("draft", &["ghost"], &[])]).await,
            "invalid",
            "step `draft`: assignee `ghost` is not an agent of this workspace",
        );
        expect_err(
            create(vec![new_step("draft", &[], &[])]).await,
            "invalid",
            "step `draft` needs at least one assignee",
        );
        let err = expect_err(
            create(vec![NewStep {
                approval_level: 2,
                ..new_step("review", &["min"], &[])
            }])
            .await,
            "invalid",
            "step `review` has approval level 2 but no approvers",
        );
        assert!(matches!(&err, Error::Invalid { field: Some(field), .. } if field == "steps.approvers"), "{err:?}");
        expect_err(
            create(vec![NewStep {
                approval_level: 4,
                approvers: vec!["duan@example.com".into()],
                ..new_step("review", &["min"], &[])
            }])
            .await,
            "invalid",
            "step `review`: approval level must be 0 to 3",
        );
        expect_err(
            create(vec![NewStep {
                approval_level: 1,
                approvers: vec!["ghost@example.com".into()],
                ..new_step("review", &["min"], &[])
            }])
            .await,
            "invalid",
            "step `review`: approver `ghost@example.com` is not a member of this workspace",
        );
        expect_err(
            create(vec![NewStep {
                required_capabilities: vec!["shell".into()],
                ..new_step("run", &["min", "duan-bot"], &[])
            }])
            .await,
            "invalid",
            "step `run`: agent `duan-bot` lacks the required capability `shell`",
        );
        expect_err(
            create(vec![new_step("a", &["min"], &[]), new_step("a", &["min"], &[])]).await,
            "invalid",
            "two steps have the key `a`",
        );
        expect_err(create(Vec::new()).await, "invalid", "a task needs at least one step");

        // Nothing of the refused tasks was stored, and nobody heard of them.
        let titles: Vec<String> = tasks::list_tasks(&team.ctx, &team.aurora, &tasks::TaskFilter::newest(100))
            .await
            .unwrap()
            .into_iter()
            .map(|(task, _)| task.title)
            .collect();
        assert_eq!(titles, ["Other"]);
        assert_eq!(types(&events(&store, &team.min.agent_id).await), ["task.created", "step.ready"]);
    }
);

backend_test!(
    async fn a_new_task_readies_only_its_independent_steps(store) {
        let team = Team::new(&store).await;
        let view = team.create(report_task()).await;
        assert_eq!(view.task.status, "active");
        let statuses: Vec<(&str, &str)> = view
            .steps
            .iter()
            .map(|step_view| (step_view.step.key.as_str(), step_view.step.status.as_str()))
            .collect();
        assert_eq!(statuses, [("draft", "ready"), ("review", "pending")]);
        let review = &view.steps[1];
        assert_eq!(review.depends_on, ["draft"]);
        assert_eq!(review.approvers, [(team.duan.member_id().to_string(), "duan@example.com".to_string())]);
        let names: Vec<(&str, bool)> = view
            .involved_agents
            .iter()
            .map(|agent| (agent.name.as_str(), agent.online))
            .collect();
        assert_eq!(names, [("min", false)]);

        let frames = events(&store, &team.min.agent_id).await;
        assert_eq!(types(&frames), ["task.created", "step.ready"]);
        let ServerFrame::StepReady(ready) = &frames[1] else { unreachable!() };
        assert_eq!(ready.step.step_id, uuid(&step_id(&view, "draft")));
        assert_eq!(ready.step.attempt, 1);
        assert_eq!(ready.step.input, json!({"files": ["report.pdf"]}));
        assert!(events(&store, &team.duan_bot.agent_id).await.is_empty());
    }
);

backend_test!(
    async fn a_new_tasks_answer_is_the_task_as_read_back(store) {
        let team = Team::new(&store).await;
        // One assignee and at most one dependency per step: the answer is built from
        // what the creation wrote; with approvers or a member assignee it is read back.
        let chain = new_task(
            "Chain",
            vec![
                new_step("outline", &["min"], &[]),
                new_step("draft", &["duan-bot"], &["outline"]),
                new_step("check", &["min"], &["draft"]),
                new_step("aside", &["duan-bot"], &[]),
            ],
        );
        let mut shared = new_step("both", &["min", "member:duan@example.com"], &[]);
        shared.approvers = vec!["duan@example.com".into()];
        let wide = new_task(
            "Wide",
            vec![shared, new_step("after", &["min"], &["both"]), new_step("join", &["min"], &["both", "after"])],
        );
        for new in [chain, wide, report_task()] {
            let created = team.create(new).await;
            let read = tasks::get_task(&team.ctx, &team.aurora, &created.task.id).await.unwrap();
            assert_eq!(format!("{created:?}"), format!("{read:?}"), "{}", created.task.title);
        }
    }
);

// ---------------------------------------------------------------- the step state machine

/// The states a step can be brought to through the domain functions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Ready,
    Claimed,
    Running,
    Blocked,
    AwaitingApproval,
    Done,
    Failed,
    Cancelled,
}

impl State {
    const ALL: [State; 9] = [
        State::Pending,
        State::Ready,
        State::Claimed,
        State::Running,
        State::Blocked,
        State::AwaitingApproval,
        State::Done,
        State::Failed,
        State::Cancelled,
    ];

    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Ready => "ready",
            State::Claimed => "claimed",
            State::Running => "running",
            State::Blocked => "blocked",
            State::AwaitingApproval => "awaiting_approval",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

/// What an agent may try on a step.
#[derive(Debug, Clone, Copy)]
enum Op {
    Claim,
    Progress,
    Submit,
    Fail,
    Ask,
}

/// A new task whose step `s` (assigned to `agent`, level 1) is in `state` at attempt 1.
async fn step_in(team: &Team, agent: &AgentActor, state: State) -> String {
    let ctx = &team.ctx;
    let level_one = NewStep {
        approval_level: 1,
        approvers: vec!["duan@example.com".into()],
        ..new_step("s", &[agent.agent_name.as_str()], &["first"])
    };
    let view = team
        .create(new_task(
            "Machine",
            vec![
                new_step("first", &[agent.agent_name.as_str()], &[]),
                level_one,
            ],
        ))
        .await;
    let first = step_id(&view, "first");
    let step = step_id(&view, "s");
    if state == State::Pending {
        return step;
    }
    team.run_step(agent, &first).await;
    match state {
        State::Pending | State::Ready => {}
        State::Claimed => {
            tasks::claim_step(ctx, agent, &step).await.unwrap();
        }
        State::Running => {
            tasks::claim_step(ctx, agent, &step).await.unwrap();
            tasks::progress_step(ctx, agent, &step, 1, None, None)
                .await
                .unwrap();
        }
        State::Blocked => {
            tasks::claim_step(ctx, agent, &step).await.unwrap();
            approvals::ask(ctx, agent, &step, 1, "Which quarter?", &[])
                .await
                .unwrap();
        }
        State::AwaitingApproval => {
            team.run_step(agent, &step).await;
        }
        State::Done => {
            team.run_step(agent, &step).await;
            crate::support::decide_current(
                ctx,
                &team.duan,
                &step,
                approvals::Verdict::new(agenthub_protocol::Decision::Approve, None),
            )
            .await
            .unwrap();
        }
        State::Failed => {
            tasks::claim_step(ctx, agent, &step).await.unwrap();
            tasks::fail_step(ctx, agent, &step, 1, "disk full", false)
                .await
                .unwrap();
        }
        State::Cancelled => {
            tasks::set_task_status(ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
    assert_eq!(team.step(&step).await.status, state.as_str());
    step
}

async fn try_op(team: &Team, agent: &AgentActor, op: Op, step: &str) -> Result<(), Error> {
    let ctx = &team.ctx;
    match op {
        Op::Claim => tasks::claim_step(ctx, agent, step).await.map(drop),
        Op::Progress => tasks::progress_step(ctx, agent, step, 1, None, None)
            .await
            .map(drop),
        Op::Submit => submit(ctx, agent, step, 1).await.map(drop),
        Op::Fail => tasks::fail_step(ctx, agent, step, 1, "no", true)
            .await
            .map(drop),
        Op::Ask => approvals::ask(ctx, agent, step, 1, "?", &[])
            .await
            .map(drop),
    }
}

backend_test!(
    /// Every operation of an agent on a step in every reachable state: allowed ones
    /// succeed, every other is a `conflict` naming the step's current state.
    async fn every_transition_outside_the_state_machine_is_refused_naming_the_state(store) {
        let team = Team::new(&store).await;
        let worker = team.add_agent("worker", "aurora@example.com", &[], 1024).await;
        for state in State::ALL {
            for op in [Op::Claim, Op::Progress, Op::Submit, Op::Fail, Op::Ask] {
                use State::*;
                let allowed = match op {
                    // A holder claiming again gets the same answer.
                    Op::Claim => matches!(state, Ready | Claimed | Running),
                    Op::Progress | Op::Submit | Op::Ask => matches!(state, Claimed | Running),
                    Op::Fail => matches!(state, Claimed | Running | Blocked),
                };
                // Attempt 1 was submitted: submitting it again answers the first outcome
                // and changes nothing.
                let retried = matches!(op, Op::Submit) && matches!(state, AwaitingApproval | Done);
                let step = step_in(&team, &worker, state).await;
                let res = try_op(&team, &worker, op, &step).await;
                if allowed || retried {
                    res.unwrap_or_else(|err| panic!("{op:?} from {state:?}: {err}"));
                    if retried {
                        assert_eq!(team.step(&step).await.status, state.as_str());
                    }
                    continue;
                }
                let err = res.expect_err(&format!("{op:?} from {state:?} must be refused"));
                assert_eq!(err.code(), "conflict", "{op:?} from {state:?}: {err}");
                let message = err.to_string();
                let named = format!("step is {}", state.as_str());
                assert!(
                    message.starts_with(&format!("{named} ")) || message.starts_with(&format!("{named};")),
                    "{op:?} from {state:?}: `{err}` does not name the state"
                );
                assert_eq!(team.step(&step).await.status, state.as_str(), "{op:?} changed nothing");
            }
        }

        // The messages of the examples, in full.
        let ready = step_in(&team, &worker, State::Ready).await;
        expect_err(
            submit(&team.ctx, &worker, &ready, 1).await,
            "conflict",
            "step is ready at attempt 1 and this agent does not hold it",
        );
        let done = step_in(&team, &worker, State::Done).await;
        expect_err(
            tasks::progress_step(&team.ctx, &worker, &done, 1, None, None).await,
            "conflict",
            "step is done at attempt 1",
        );
        let pending = step_in(&team, &worker, State::Pending).await;
        expect_err(
            tasks::claim_step(&team.ctx, &worker, &pending).await,
            "conflict",
            "step is pending; it cannot become claimed",
        );
        // A wrong attempt, or a step held by someone else, is refused too.
        let claimed = step_in(&team, &worker, State::Claimed).await;
        expect_err(
            submit(&team.ctx, &worker, &claimed, 2).await,
            "conflict",
            "step is claimed at attempt 1; attempt 2 is not current",
        );
        // And an agent the step is not assigned to is forbidden, whatever the state.
        expect_err(
            tasks::claim_step(&team.ctx, &team.duan_bot, &ready).await,
            "forbidden",
            "is not assigned to agent `duan-bot`",
        );
    }
);

// ---------------------------------------------------------------- readiness propagation

/// The ids of the steps in the `step.ready` events of `frames`, with their attempts.
fn ready_steps(frames: &[ServerFrame]) -> Vec<(uuid::Uuid, u32)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::StepReady(ready) => Some((ready.step.step_id, ready.step.attempt)),
            _ => None,
        })
        .collect()
}

backend_test!(
    /// A diamond: `a` → (`b` by min, `c` by duan-bot) → `d`. Completing a step readies
    /// the dependents whose dependencies are all done, and only those, and tells their
    /// assignees with the same commit.
    async fn a_completed_step_readies_dependents_whose_dependencies_are_all_done(store) {
        let team = Team::new(&store).await;
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
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|key| step_id(&view, key));
        let status = async |step: &str| team.step(step).await.status;

        assert_eq!(team.run_step(&team.min, &a).await, "done");
        assert_eq!(
            [status(&b).await, status(&c).await, status(&d).await],
            ["ready", "ready", "pending"]
        );
        // min hears that a is done with b next for it; duan-bot gets c.
        let min_frames = events(&store, &team.min.agent_id).await;
        assert_eq!(ready_steps(&min_frames), [(uuid(&a), 1), (uuid(&b), 1)]);
        let completed = min_frames
            .iter()
            .find_map(|frame| match frame {
                ServerFrame::StepCompleted(completed) => Some(completed),
                _ => None,
            })
            .expect("step.completed for min");
        assert_eq!(completed.step_id, uuid(&a));
        let next: Vec<_> = completed.next.iter().map(|next| next.step_id).collect();
        assert_eq!(next, [uuid(&b)]);
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(ready_steps(&bot_frames), [(uuid(&c), 1)]);
        let ServerFrame::StepReady(ready_c) = bot_frames
            .iter()
            .find(|frame| matches!(frame, ServerFrame::StepReady(_)))
            .unwrap()
        else {
            unreachable!()
        };
        // The ready step carries the outputs of its dependencies.
        let inputs: Vec<_> = ready_c.step.inputs.iter().map(|input| (input.step_id, input.result.clone())).collect();
        assert_eq!(inputs, [(uuid(&a), json!({"ok": true}))]);

        // d waits for both b and c.
        assert_eq!(team.run_step(&team.min, &b).await, "done");
        assert_eq!(status(&d).await, "pending");
        assert_eq!(ready_steps(&events(&store, &team.duan_bot.agent_id).await), [(uuid(&c), 1)]);
        assert_eq!(team.run_step(&team.duan_bot, &c).await, "done");
        assert_eq!(status(&d).await, "ready");
        assert_eq!(
            ready_steps(&events(&store, &team.duan_bot.agent_id).await),
            [(uuid(&c), 1), (uuid(&d), 1)]
        );
        assert_eq!(team.task(&view.task.id).await.task.status, "active");
        assert_eq!(team.run_step(&team.duan_bot, &d).await, "done");
        assert_eq!(team.task(&view.task.id).await.task.status, "done");
        let creator = events(&store, team.aurora.member_id()).await;
        let task_done = creator.iter().any(|frame| {
            matches!(frame, ServerFrame::TaskUpdated(updated) if updated.task.status == "done")
        });
        assert!(task_done, "the creator hears the task is done: {:?}", types(&creator));
    }
);

backend_test!(
    /// The two dependencies of a step finish at the same moment, in two transactions:
    /// the step still becomes ready (and a task whose last two steps finish at once
    /// becomes done).
    async fn dependencies_completed_concurrently_ready_their_dependent(store) {
        let team = Team::new(&store).await;
        for round in 0..15 {
            let view = team
                .create(new_task(
                    "Join",
                    vec![
                        new_step("left", &["min"], &[]),
                        new_step("right", &["duan-bot"], &[]),
                        new_step("join", &["min"], &["left", "right"]),
                    ],
                ))
                .await;
            let left = step_id(&view, "left");
            let right = step_id(&view, "right");
            tasks::claim_step(&team.ctx, &team.min, &left).await.unwrap();
            tasks::claim_step(&team.ctx, &team.duan_bot, &right).await.unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let handles = [(team.min.clone(), left), (team.duan_bot.clone(), right)].map(
                |(agent, step)| {
                    let ctx = team.ctx.clone();
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        submit(&ctx, &agent, &step, 1).await
                    })
                },
            );
            for handle in handles {
                assert_eq!(handle.await.unwrap().unwrap().status, "done");
            }
            let join = step_id(&view, "join");
            assert_eq!(
                team.step(&join).await.status,
                "ready",
                "round {round} on {:?}",
                store.backend()
            );
            let min_ready = ready_steps(&events(&store, &team.min.agent_id).await);
            assert!(min_ready.contains(&(uuid(&join), 1)), "round {round}: no step.ready for join");

            // The last two steps of a task finishing at once make the task done.
            let pair = team
                .create(new_task(
                    "Pair",
                    vec![new_step("x", &["min"], &[]), new_step("y", &["duan-bot"], &[])],
                ))
                .await;
            let x = step_id(&pair, "x");
            let y = step_id(&pair, "y");
            tasks::claim_step(&team.ctx, &team.min, &x).await.unwrap();
            tasks::claim_step(&team.ctx, &team.duan_bot, &y).await.unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let handles = [(team.min.clone(), x), (team.duan_bot.clone(), y)].map(|(agent, step)| {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    submit(&ctx, &agent, &step, 1).await
                })
            });
            for handle in handles {
                handle.await.unwrap().unwrap();
            }
            assert_eq!(
                team.task(&pair.task.id).await.task.status,
                "done",
                "round {round} on {:?}",
                store.backend()
            );
            // Finish `join` so min's concurrency stays free for the next round.
            team.run_step(&team.min, &join).await;
        }
    }
);

backend_test!(
    /// A task is paused while its agents claim one step and submit another at the same
    /// moment: the pause succeeds and leaves no step held (a claim either lands before it
    /// and is revoked, or is refused), and a submit either lands or is refused, 15 rounds.
    async fn a_pause_racing_claims_and_submits_leaves_nothing_held(store) {
        let team = Team::new(&store).await;
        for round in 0..15 {
            let view = team
                .create(new_task(
                    "Race",
                    vec![new_step("open", &["min"], &[]), new_step("held", &["duan-bot"], &[])],
                ))
                .await;
            let (open, held) = (step_id(&view, "open"), step_id(&view, "held"));
            tasks::claim_step(&team.ctx, &team.duan_bot, &held).await.unwrap();
            let barrier = Arc::new(Barrier::new(3));
            let claim = {
                let (ctx, agent, barrier) = (team.ctx.clone(), team.min.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    tasks::claim_step(&ctx, &agent, &open).await.map(|_| ())
                })
            };
            let submitted = {
                let (ctx, agent, barrier) =
                    (team.ctx.clone(), team.duan_bot.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    submit(&ctx, &agent, &held, 1).await.map(|_| ())
                })
            };
            let pause = {
                let (ctx, creator, barrier) = (team.ctx.clone(), team.aurora.clone(), Arc::clone(&barrier));
                let task_id = view.task.id.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    tasks::set_task_status(&ctx, &creator, &task_id, TaskAction::Pause).await
                })
            };
            let paused = pause.await.unwrap();
            assert_eq!(
                paused.map(|view| view.task.status).unwrap(),
                "paused",
                "round {round} on {:?}",
                store.backend()
            );
            for raced in [claim.await.unwrap(), submitted.await.unwrap()] {
                if let Err(err) = raced {
                    assert_eq!(err.code(), "conflict", "round {round}: {err}");
                }
            }
            for (key, step) in [("open", step_id(&view, "open")), ("held", step_id(&view, "held"))] {
                let status = team.step(&step).await.status;
                assert!(
                    ["ready", "done"].contains(&status.as_str()),
                    "round {round} on {:?}: `{key}` is {status} in a paused task",
                    store.backend()
                );
            }
            tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

// ---------------------------------------------------------------- claims

backend_test!(
    /// Four assignees claim one ready step at the same moment: exactly one wins, the
    /// others get a conflict naming the state, 30 rounds.
    async fn of_concurrent_claims_exactly_one_wins(store) {
        let team = Team::new(&store).await;
        let extra = [
            team.add_agent("kai", "duan@example.com", &[], 1024).await,
            team.add_agent("lin", "aurora@example.com", &[], 1024).await,
        ];
        let contenders: Vec<AgentActor> = [team.min.clone(), team.duan_bot.clone()]
            .into_iter()
            .chain(extra)
            .collect();
        let names: Vec<&str> = contenders.iter().map(|agent| agent.agent_name.as_str()).collect();
        for round in 0..30 {
            let view = team
                .create(new_task("Race", vec![new_step("prize", &names, &[])]))
                .await;
            let prize = step_id(&view, "prize");
            let barrier = Arc::new(Barrier::new(contenders.len()));
            let handles: Vec<_> = contenders
                .iter()
                .map(|agent| {
                    let ctx = team.ctx.clone();
                    let agent = agent.clone();
                    let prize = prize.clone();
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let res = tasks::claim_step(&ctx, &agent, &prize).await;
                        (agent, res)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for handle in handles {
                let (agent, res) = handle.await.unwrap();
                match res {
                    Ok(claimed) => {
                        assert_eq!(claimed.attempt, 1);
                        winners.push(agent);
                    }
                    Err(err) => {
                        assert_eq!(err.code(), "conflict", "{err}");
                        assert!(
                            err.to_string().contains("step is claimed; it cannot become claimed"),
                            "{err}"
                        );
                    }
                }
            }
            assert_eq!(winners.len(), 1, "round {round} on {:?}", store.backend());
            let winner = &winners[0];
            let step = team.step(&prize).await;
            assert_eq!(step.status, "claimed");
            assert_eq!(step.claimed_by.as_deref(), Some(winner.agent_id.as_str()));
            // The losers drop the step from their ready lists.
            for loser in contenders.iter().filter(|agent| agent.agent_id != winner.agent_id) {
                let revoked = events(&store, &loser.agent_id).await.into_iter().any(|frame| {
                    matches!(frame, ServerFrame::StepRevoked(revoked)
                        if revoked.step_id == uuid(&prize)
                            && revoked.reason == format!("claimed by {}", winner.agent_name))
                });
                assert!(revoked, "round {round}: {} was not told", loser.agent_name);
            }
            // Free the winner's slot.
            submit(&team.ctx, winner, &prize, 1).await.unwrap();
        }
    }
);

backend_test!(
    /// An agent holds at most `max_concurrency` steps (claimed, running or blocked), also
    /// when it claims several at the same moment.
    async fn an_agent_holds_at_most_its_max_concurrency(store) {
        let team = Team::new(&store).await;
        let pair = team.add_agent("pair", "aurora@example.com", &[], 2).await;
        let view = team
            .create(new_task(
                "Many",
                vec![
                    new_step("one", &["pair"], &[]),
                    new_step("two", &["pair"], &[]),
                    new_step("three", &["pair"], &[]),
                ],
            ))
            .await;
        let [one, two, three] = ["one", "two", "three"].map(|key| step_id(&view, key));
        tasks::claim_step(&team.ctx, &pair, &one).await.unwrap();
        tasks::claim_step(&team.ctx, &pair, &two).await.unwrap();
        approvals::ask(&team.ctx, &pair, &two, 1, "Which file?", &[]).await.unwrap();
        expect_err(
            tasks::claim_step(&team.ctx, &pair, &three).await,
            "conflict",
            "agent `pair` already holds 2 steps (max concurrency 2)",
        );
        assert_eq!(team.step(&three).await.status, "ready");
        submit(&team.ctx, &pair, &one, 1).await.unwrap();
        tasks::claim_step(&team.ctx, &pair, &three).await.unwrap();

        // One slot, six steps claimed at once: one claim wins, every round.
        let single = team.add_agent("single", "aurora@example.com", &[], 1).await;
        for round in 0..10 {
            let keys: Vec<String> = (0..6).map(|idx| format!("s{idx}")).collect();
            let view = team
                .create(new_task(
                    "Burst",
                    keys.iter().map(|key| new_step(key, &["single"], &[])).collect(),
                ))
                .await;
            let barrier = Arc::new(Barrier::new(keys.len()));
            let handles: Vec<_> = keys
                .iter()
                .map(|key| {
                    let ctx = team.ctx.clone();
                    let agent = single.clone();
                    let step = step_id(&view, key);
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        tasks::claim_step(&ctx, &agent, &step).await.map(|_| step)
                    })
                })
                .collect();
            let mut held = Vec::new();
            for handle in handles {
                match handle.await.unwrap() {
                    Ok(step) => held.push(step),
                    Err(err) => assert_eq!(err.code(), "conflict", "{err}"),
                }
            }
            assert_eq!(held.len(), 1, "round {round} on {:?}: held {held:?}", store.backend());
            tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

// ---------------------------------------------------------------- leases

backend_test!(
    async fn an_expired_lease_returns_the_step_to_ready_with_the_next_attempt(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Leases",
                vec![
                    new_step("stale", &["min", "duan-bot"], &[]),
                    new_step("fresh", &["min"], &[]),
                ],
            ))
            .await;
        let stale = step_id(&view, "stale");
        let fresh = step_id(&view, "fresh");
        // `stale` is claimed with a 1 ms lease, `fresh` with the default 25 s.
        let short = short_lease(&store);
        tasks::claim_step(&short, &team.min, &stale).await.unwrap();
        tasks::progress_step(&short, &team.min, &stale, 1, None, None).await.unwrap();
        tasks::claim_step(&team.ctx, &team.min, &fresh).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;

        assert_eq!(tasks::sweep_expired_leases(&team.ctx).await.unwrap(), 1);
        let step = team.step(&stale).await;
        assert_eq!((step.status.as_str(), step.attempt), ("ready", 2));
        assert_eq!((step.claimed_by, step.lease_until), (None, None));
        assert_eq!(team.step(&fresh).await.status, "claimed");
        assert_eq!(tasks::sweep_expired_leases(&team.ctx).await.unwrap(), 0);

        // The old holder is told, and both assignees get the step again at attempt 2.
        let min_frames = events(&store, &team.min.agent_id).await;
        let revoked: Vec<_> = min_frames
            .iter()
            .filter_map(|frame| match frame {
                ServerFrame::StepRevoked(revoked) => Some((revoked.step_id, revoked.attempt, revoked.reason.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(revoked, [(uuid(&stale), 1, "lease expired")]);
        assert!(ready_steps(&min_frames).contains(&(uuid(&stale), 2)));
        assert_eq!(
            ready_steps(&events(&store, &team.duan_bot.agent_id).await),
            [(uuid(&stale), 1), (uuid(&stale), 2)]
        );

        // The old attempt is over; the new one can be claimed by anyone assigned.
        expect_err(
            submit(&team.ctx, &team.min, &stale, 1).await,
            "conflict",
            "step is ready at attempt 2",
        );
        expect_err(
            tasks::progress_step(&team.ctx, &team.min, &stale, 1, None, None).await,
            "conflict",
            "attempt 1 is not current",
        );
        let claimed = tasks::claim_step(&team.ctx, &team.duan_bot, &stale).await.unwrap();
        assert_eq!(claimed.attempt, 2);
        assert_eq!(submit(&team.ctx, &team.duan_bot, &stale, 2).await.unwrap().status, "done");
    }
);

backend_test!(
    /// Two sweepers run at the same moment over 12 expired steps: each step is returned
    /// once (attempt 2, one `step.revoked`), 5 rounds.
    async fn concurrent_sweepers_return_each_expired_step_exactly_once(store) {
        let team = Team::new(&store).await;
        let sweeper = team.add_agent("sweepy", "aurora@example.com", &[], 1024).await;
        let short = short_lease(&store);
        for round in 0..5 {
            let keys: Vec<String> = (0..12).map(|idx| format!("s{idx}")).collect();
            let view = team
                .create(new_task(
                    "Expiring",
                    keys.iter().map(|key| new_step(key, &["sweepy"], &[])).collect(),
                ))
                .await;
            let ids: Vec<String> = keys.iter().map(|key| step_id(&view, key)).collect();
            for id in &ids {
                tasks::claim_step(&short, &sweeper, id).await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let barrier = Arc::new(Barrier::new(2));
            let handles = [0, 1].map(|_| {
                let ctx = team.ctx.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    tasks::sweep_expired_leases(&ctx).await
                })
            });
            let mut n_total = 0;
            for handle in handles {
                n_total += handle.await.unwrap().unwrap();
            }
            assert_eq!(n_total, ids.len(), "round {round} on {:?}", store.backend());
            for id in &ids {
                let step = team.step(id).await;
                assert_eq!((step.status.as_str(), step.attempt), ("ready", 2), "round {round}");
            }
            let n_revoked = events(&store, &sweeper.agent_id)
                .await
                .iter()
                .filter(|frame| matches!(frame, ServerFrame::StepRevoked(_)))
                .count();
            assert_eq!(n_revoked, ids.len() * (round + 1), "round {round}");
            tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Cancel)
                .await
                .unwrap();
        }
    }
);

// ---------------------------------------------------------------- submits and failures

backend_test!(
    async fn a_retried_submit_returns_the_first_outcome(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Retry",
                vec![
                    new_step("draft", &["min", "duan-bot"], &[]),
                    new_step("next", &["min"], &["draft"]),
                ],
            ))
            .await;
        let draft = step_id(&view, "draft");
        tasks::claim_step(&team.ctx, &team.min, &draft).await.unwrap();
        assert_eq!(submit(&team.ctx, &team.min, &draft, 1).await.unwrap().status, "done");
        let first = team.step(&draft).await;
        let n_events = events(&store, &team.min.agent_id).await.len();

        // The same attempt again, even with another result: the first outcome, no change.
        let retry = tasks::submit_step(
            &team.ctx,
            &team.min,
            tasks::Submitted {
                step_id: draft.clone(),
                attempt: 1,
                result: json!({"ok": false}),
                summary: Some("second try".into()),
                self_check: None,
                check: None,
                files: Vec::new(),
                usage: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(retry.status, "done");
        let after = team.step(&draft).await;
        assert_eq!((after.result, after.summary), (first.result, first.summary));
        assert_eq!(after.completed_at, first.completed_at);
        assert_eq!(events(&store, &team.min.agent_id).await.len(), n_events, "no second completion");
        let next = step_id(&view, "next");
        assert_eq!(team.step(&next).await.status, "ready");

        // Another assignee cannot submit the attempt it did not hold.
        expect_err(
            submit(&team.ctx, &team.duan_bot, &draft, 1).await,
            "conflict",
            "attempt 1 was submitted by another agent",
        );
        // An attempt that never ran is refused.
        expect_err(
            submit(&team.ctx, &team.min, &draft, 2).await,
            "conflict",
            "step is done at attempt 1",
        );
    }
);

backend_test!(
    async fn a_retryable_failure_requeues_and_a_final_one_fails_the_step(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Flaky",
                vec![
                    new_step("flaky", &["min", "duan-bot"], &[]),
                    new_step("after", &["min"], &["flaky"]),
                ],
            ))
            .await;
        let flaky = step_id(&view, "flaky");
        tasks::claim_step(&team.ctx, &team.min, &flaky).await.unwrap();
        let status = tasks::fail_step(&team.ctx, &team.min, &flaky, 1, "network down", true)
            .await
            .unwrap();
        assert_eq!(status, "ready");
        let step = team.step(&flaky).await;
        assert_eq!((step.attempt, step.claimed_by), (2, None));
        for agent in [&team.min, &team.duan_bot] {
            assert!(
                ready_steps(&events(&store, &agent.agent_id).await).contains(&(uuid(&flaky), 2)),
                "{} gets the step again",
                agent.agent_name
            );
        }
        // The failed attempt is over.
        expect_err(
            tasks::fail_step(&team.ctx, &team.min, &flaky, 1, "again", true).await,
            "conflict",
            "step is ready at attempt 2",
        );

        tasks::claim_step(&team.ctx, &team.duan_bot, &flaky).await.unwrap();
        let status = tasks::fail_step(&team.ctx, &team.duan_bot, &flaky, 2, "the source is gone", false)
            .await
            .unwrap();
        assert_eq!(status, "failed");
        let step = team.step(&flaky).await;
        assert_eq!(step.summary.as_deref(), Some("the source is gone"));
        assert!(step.completed_at.is_some());
        let creator = events(&store, team.aurora.member_id()).await;
        let told = creator.iter().any(|frame| {
            matches!(frame, ServerFrame::StepRevoked(revoked)
                if revoked.step_id == uuid(&flaky) && revoked.reason == "the source is gone")
        });
        assert!(told, "the creator hears of the failure: {:?}", types(&creator));
        expect_err(
            tasks::claim_step(&team.ctx, &team.min, &flaky).await,
            "conflict",
            "step is failed; it cannot become claimed",
        );
        // A step failed for good ends its task's open path: its dependent is skipped
        // and the task fails.
        let after = team.step(&step_id(&view, "after")).await;
        assert_eq!(after.status, "skipped");
        assert_eq!(after.status_reason.as_deref(), Some("step `flaky` failed"));
        assert_eq!(team.task(&view.task.id).await.task.status, "failed");
    }
);

// ---------------------------------------------------------------- task status

backend_test!(
    async fn pause_resume_cancel_and_archive_follow_the_task_state_machine(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let set = async |task_id: &str, action: TaskAction| {
            tasks::set_task_status(ctx, &team.aurora, task_id, action).await
        };
        let view = team
            .create(new_task(
                "Lifecycle",
                vec![
                    new_step("held", &["min"], &[]),
                    new_step("waiting", &["duan-bot"], &[]),
                    new_step("later", &["duan-bot"], &["held"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [held, waiting, later] = ["held", "waiting", "later"].map(|key| step_id(&view, key));
        tasks::claim_step(ctx, &team.min, &held).await.unwrap();

        // Paused: held steps are revoked (back to ready at the next attempt), nothing new
        // is claimed, nothing is pushed.
        assert_eq!(set(&task_id, TaskAction::Pause).await.unwrap().task.status, "paused");
        let revoked = events(&store, &team.min.agent_id).await.into_iter().any(|frame| {
            matches!(frame, ServerFrame::StepRevoked(revoked)
                if revoked.step_id == uuid(&held) && revoked.attempt == 1 && revoked.reason == "the task was paused")
        });
        assert!(revoked, "the holder is told its attempt is over");
        expect_err(submit(ctx, &team.min, &held, 1).await, "conflict", "step is ready at attempt 2");
        let step = team.step(&held).await;
        assert_eq!((step.status.as_str(), step.attempt, step.failures), ("ready", 2, 0));
        expect_err(set(&task_id, TaskAction::Pause).await, "conflict", "task is paused; it cannot become paused");
        expect_err(set(&task_id, TaskAction::Archive).await, "conflict", "task is paused; it cannot become archived");
        expect_err(
            tasks::claim_step(ctx, &team.duan_bot, &waiting).await,
            "conflict",
            "task is paused; its steps cannot be claimed",
        );
        let bot_events = events(&store, &team.duan_bot.agent_id).await.len();
        let min_events = events(&store, &team.min.agent_id).await.len();

        // Resumed: the ready steps are pushed again, the revoked one at its new attempt.
        assert_eq!(set(&task_id, TaskAction::Resume).await.unwrap().task.status, "active");
        expect_err(set(&task_id, TaskAction::Resume).await, "conflict", "task is active; it cannot become active");
        expect_err(set(&task_id, TaskAction::Archive).await, "conflict", "task is active; it cannot become archived");
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(ready_steps(&bot_frames[bot_events..]), [(uuid(&waiting), 1)]);
        let min_frames = events(&store, &team.min.agent_id).await;
        assert_eq!(ready_steps(&min_frames[min_events..]), [(uuid(&held), 2)]);
        tasks::claim_step(ctx, &team.min, &held).await.unwrap();
        assert_eq!(submit(ctx, &team.min, &held, 2).await.unwrap().status, "done");
        assert_eq!(team.step(&later).await.status, "ready");

        // Cancelled: every unfinished step is cancelled and its holder told; done stays done.
        tasks::claim_step(ctx, &team.duan_bot, &waiting).await.unwrap();
        let view = set(&task_id, TaskAction::Cancel).await.unwrap();
        assert_eq!(view.task.status, "cancelled");
        let statuses: Vec<&str> = view.steps.iter().map(|step_view| step_view.step.status.as_str()).collect();
        assert_eq!(statuses, ["done", "cancelled", "cancelled"]);
        let revoked = events(&store, &team.duan_bot.agent_id).await.into_iter().any(|frame| {
            matches!(frame, ServerFrame::StepRevoked(revoked)
                if revoked.step_id == uuid(&waiting) && revoked.reason == "the task was cancelled")
        });
        assert!(revoked);
        expect_err(submit(ctx, &team.duan_bot, &waiting, 1).await, "conflict", "step is cancelled");
        for action in [TaskAction::Cancel, TaskAction::Pause, TaskAction::Resume] {
            expect_err(set(&task_id, action).await, "conflict", "task is cancelled; it cannot become");
        }
        let change = WorkflowChange {
            reason: "too late".into(),
            operations: vec![WorkflowOp::AddStep(Box::new(new_step("extra", &["min"], &[])))],
        };
        expect_err(
            tasks::change_workflow(ctx, &team.aurora, &task_id, change).await,
            "conflict",
            "task is cancelled; its workflow cannot change",
        );
        assert_eq!(set(&task_id, TaskAction::Archive).await.unwrap().task.status, "archived");
        for action in [TaskAction::Archive, TaskAction::Resume, TaskAction::Cancel] {
            expect_err(set(&task_id, action).await, "conflict", "task is archived; it cannot become");
        }

        // A done task can be archived, not cancelled.
        let quick = team.create(new_task("Quick", vec![new_step("only", &["min"], &[])])).await;
        team.run_step(&team.min, &step_id(&quick, "only")).await;
        assert_eq!(team.task(&quick.task.id).await.task.status, "done");
        expect_err(set(&quick.task.id, TaskAction::Cancel).await, "conflict", "task is done; it cannot become cancelled");
        assert_eq!(set(&quick.task.id, TaskAction::Archive).await.unwrap().task.status, "archived");
        expect_err(set("no-such-task", TaskAction::Pause).await, "not_found", "task `no-such-task`");
    }
);

backend_test!(
    /// The last step of a paused task is approved: the task is done once it is resumed.
    async fn a_task_finished_while_paused_is_done_when_resumed(store) {
        let team = Team::new(&store).await;
        let confirmed = NewStep {
            approval_level: 1,
            approvers: vec!["aurora@example.com".into()],
            ..new_step("only", &["min"], &[])
        };
        let view = team.create(new_task("Short", vec![confirmed])).await;
        let only = step_id(&view, "only");
        assert_eq!(team.run_step(&team.min, &only).await, "awaiting_approval");
        tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Pause)
            .await
            .unwrap();
        let decided = crate::support::decide_current(&team.ctx, &team.aurora, &only, approvals::Verdict::new(agenthub_protocol::Decision::Approve, None))
            .await
            .unwrap();
        assert_eq!(decided.step_status, "done");
        assert_eq!(team.task(&view.task.id).await.task.status, "paused");
        let resumed = tasks::set_task_status(&team.ctx, &team.aurora, &view.task.id, TaskAction::Resume)
            .await
            .unwrap();
        assert_eq!(resumed.task.status, "done");
        let creator = events(&store, team.aurora.member_id()).await;
        let last_update = creator.iter().rev().find_map(|frame| match frame {
            ServerFrame::TaskUpdated(updated) => Some(updated.task.status.clone()),
            _ => None,
        });
        assert_eq!(last_update.as_deref(), Some("done"), "{:?}", types(&creator));
    }
);

// ---------------------------------------------------------------- workflow changes

fn change(reason: &str, operations: Vec<WorkflowOp>) -> WorkflowChange {
    WorkflowChange {
        reason: reason.into(),
        operations,
    }
}

fn json_of(text: Option<&str>) -> serde_json::Value {
    text.map(|text| serde_json::from_str(text).unwrap())
        .unwrap_or(serde_json::Value::Null)
}

backend_test!(
    /// On a live task: add, reassign, re-wire, remove and reorder steps; every change is
    /// in the history with before, after, reason and who made it, and the agents hear of it.
    async fn workflow_changes_on_a_live_task_are_applied_and_recorded(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let view = team
            .create(new_task(
                "Live",
                vec![
                    new_step("a", &["min"], &[]),
                    new_step("b", &["min"], &["a"]),
                    new_step("c", &["min"], &["b"]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [a, b, c] = ["a", "b", "c"].map(|key| step_id(&view, key));
        team.run_step(&team.min, &a).await;
        let workflow = async |actor: &Actor, reason: &str, ops: Vec<WorkflowOp>| {
            tasks::change_workflow(ctx, actor, &task_id, change(reason, ops)).await
        };

        // Add a step after the finished `a`: it is ready at once and pushed.
        let added = workflow(
            &team.aurora,
            "legal must see it",
            vec![WorkflowOp::AddStep(Box::new(new_step("legal", &["duan-bot"], &["a"])))],
        )
        .await
        .unwrap();
        let legal = step_id(&added, "legal");
        assert_eq!(team.step(&legal).await.status, "ready");
        assert!(ready_steps(&events(&store, &team.duan_bot.agent_id).await).contains(&(uuid(&legal), 1)));

        // Reassign the ready `b`: min loses it, duan-bot gets it.
        workflow(
            &team.aurora,
            "min is away",
            vec![WorkflowOp::SetAssignees {
                step: "b".into(),
                assignees: vec!["duan-bot".into()],
            }],
        )
        .await
        .unwrap();
        let min_revoked = events(&store, &team.min.agent_id).await.into_iter().any(|frame| {
            matches!(frame, ServerFrame::StepRevoked(revoked)
                if revoked.step_id == uuid(&b) && revoked.reason == "reassigned")
        });
        assert!(min_revoked);
        assert!(ready_steps(&events(&store, &team.duan_bot.agent_id).await).contains(&(uuid(&b), 1)));
        expect_err(tasks::claim_step(ctx, &team.min, &b).await, "forbidden", "not assigned");

        // `c` now waits for `legal` instead of `b`; the creator's agent makes this change
        // (another member's agent may not: the task is not theirs).
        expect_err(
            workflow(
                &Actor::Agent(team.duan_bot.clone()),
                "legal first",
                vec![WorkflowOp::SetDependencies {
                    step: c.clone(),
                    depends_on: vec!["legal".into()],
                }],
            )
            .await,
            "forbidden",
            "only the task's creator",
        );
        let bot = Actor::Agent(team.min.clone());
        workflow(
            &bot,
            "legal first",
            vec![WorkflowOp::SetDependencies {
                step: c.clone(),
                depends_on: vec!["legal".into()],
            }],
        )
        .await
        .unwrap();
        assert_eq!(team.step(&c).await.status, "pending");
        // A new unfinished dependency sends a ready step back to pending.
        workflow(
            &team.aurora,
            "b needs legal too",
            vec![WorkflowOp::SetDependencies {
                step: "b".into(),
                depends_on: vec!["a".into(), "legal".into()],
            }],
        )
        .await
        .unwrap();
        assert_eq!(team.step(&b).await.status, "pending");
        let bot_revoked = events(&store, &team.duan_bot.agent_id).await.into_iter().any(|frame| {
            matches!(frame, ServerFrame::StepRevoked(revoked)
                if revoked.step_id == uuid(&b) && revoked.reason == "a new dependency must finish first")
        });
        assert!(bot_revoked);

        // Remove `c`, then reorder.
        workflow(&team.aurora, "not needed", vec![WorkflowOp::RemoveStep { step: "c".into() }])
            .await
            .unwrap();
        let reordered = workflow(
            &team.aurora,
            "legal goes first",
            vec![WorkflowOp::Reorder {
                order: vec!["legal".into(), "a".into(), "b".into()],
            }],
        )
        .await
        .unwrap();
        let keys: Vec<&str> = reordered.steps.iter().map(|step_view| step_view.step.key.as_str()).collect();
        assert_eq!(keys, ["legal", "a", "b"]);
        expect_err(tasks::get_step(ctx, &team.aurora, &c).await, "not_found", "step");

        let history = tasks::history(ctx, &team.aurora, &task_id).await.unwrap();
        let rows: Vec<_> = history
            .iter()
            .map(|row| {
                (
                    row.kind.as_str(),
                    row.reason.as_str(),
                    row.triggered_by.as_str(),
                    json_of(row.before_json.as_deref()),
                    json_of(row.after_json.as_deref()),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "step_added",
                    "legal must see it",
                    "member:aurora@example.com",
                    json!(null),
                    json!({"key": "legal", "title": "Step legal", "assignees": ["duan-bot"], "depends_on": ["a"]}),
                ),
                ("assignees_changed", "min is away", "member:aurora@example.com", json!(["min"]), json!(["duan-bot"])),
                ("dependencies_changed", "legal first", "agent:min", json!(["b"]), json!(["legal"])),
                ("dependencies_changed", "b needs legal too", "member:aurora@example.com", json!(["a"]), json!(["a", "legal"])),
                (
                    "step_removed",
                    "not needed",
                    "member:aurora@example.com",
                    json!({"key": "c", "title": "Step c", "status": "pending", "assignees": ["min"], "depends_on": ["legal"]}),
                    json!(null),
                ),
                ("steps_reordered", "legal goes first", "member:aurora@example.com", json!(["a", "b", "legal"]), json!(["legal", "a", "b"])),
            ]
        );
        assert_eq!(history[0].step_id.as_deref(), Some(legal.as_str()));
        assert_eq!(history[4].step_id.as_deref(), Some(c.as_str()));

        // Every change reached the involved agents and the creator.
        let changed = |frames: Vec<ServerFrame>| -> Vec<String> {
            frames
                .into_iter()
                .filter_map(|frame| match frame {
                    ServerFrame::WorkflowChanged(changed) => Some(changed.kind),
                    _ => None,
                })
                .collect()
        };
        let kinds: Vec<String> = history.iter().map(|row| row.kind.clone()).collect();
        assert_eq!(changed(events(&store, team.aurora.member_id()).await), kinds);
        assert_eq!(changed(events(&store, &team.duan_bot.agent_id).await), kinds);
    }
);

backend_test!(
    /// A change that would break the DAG or touch a finished or held step is refused as a
    /// whole: no operation of it applies and nothing is recorded.
    async fn workflow_changes_that_break_the_graph_or_touch_finished_steps_are_refused(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let other = team.create(new_task("Other", vec![new_step("x", &["min"], &[])])).await;
        let view = team
            .create(new_task(
                "Guarded",
                vec![
                    new_step("a", &["min"], &[]),
                    new_step("b", &["min"], &["a"]),
                    new_step("c", &["min"], &["b"]),
                    new_step("d", &["duan-bot"], &[]),
                ],
            ))
            .await;
        let task_id = view.task.id.clone();
        let [a, b, d] = ["a", "b", "d"].map(|key| step_id(&view, key));
        team.run_step(&team.min, &a).await;
        tasks::claim_step(ctx, &team.duan_bot, &d).await.unwrap();
        let before = team.task(&task_id).await;
        let n_events = events(&store, &team.min.agent_id).await.len();
        let workflow = async |ops: Vec<WorkflowOp>| {
            tasks::change_workflow(ctx, &team.aurora, &task_id, change("because", ops)).await
        };
        let add = |key: &str, deps: &[&str]| WorkflowOp::AddStep(Box::new(new_step(key, &["min"], deps)));
        let set_deps = |step: &str, deps: &[&str]| WorkflowOp::SetDependencies {
            step: step.into(),
            depends_on: deps.iter().map(|dep| dep.to_string()).collect(),
        };

        // A cycle, after an operation that alone would have succeeded.
        let err = expect_err(
            workflow(vec![add("e", &["a"]), set_deps("b", &["c"])]).await,
            "invalid",
            "dependencies form a cycle",
        );
        assert!(err.to_string().contains("b -> c") || err.to_string().contains("c -> b"), "{err}");
        expect_err(workflow(vec![set_deps("b", &["b"])]).await, "invalid", "step `b` depends on itself");
        expect_err(workflow(vec![add("e", &["e"])]).await, "invalid", "step `e` depends on itself");
        expect_err(
            workflow(vec![set_deps("c", &["ghost"])]).await,
            "invalid",
            "step `c` depends on `ghost`, which is not a step of this task",
        );
        let foreign = step_id(&other, "x");
        expect_err(
            workflow(vec![set_deps("c", &[foreign.as_str()])]).await,
            "invalid",
            &format!("step `c` depends on `{foreign}`, which is not a step of this task"),
        );
        expect_err(
            workflow(vec![add("e", &[foreign.as_str()])]).await,
            "invalid",
            &format!("step `e` depends on `{foreign}`, which is not a step of this task"),
        );
        expect_err(workflow(vec![add("a", &[])]).await, "invalid", "the task already has a step `a`");

        // Finished and held steps cannot change.
        for op in [
            WorkflowOp::RemoveStep { step: a.clone() },
            WorkflowOp::SetAssignees { step: "a".into(), assignees: vec!["duan-bot".into()] },
            set_deps("a", &[]),
        ] {
            expect_err(workflow(vec![op]).await, "conflict", "step `a` is done; finished steps cannot change");
        }
        for op in [WorkflowOp::RemoveStep { step: "d".into() }, set_deps("d", &["a"])] {
            expect_err(
                workflow(vec![op]).await,
                "conflict",
                "step `d` is claimed; only pending or ready steps can change",
            );
        }
        expect_err(
            workflow(vec![WorkflowOp::SetAssignees { step: "b".into(), assignees: vec!["ghost".into()] }]).await,
            "invalid",
            "assignee `ghost` is not an agent of this workspace",
        );
        expect_err(
            workflow(vec![WorkflowOp::Reorder { order: vec!["a".into(), "b".into()] }]).await,
            "invalid",
            "order must list every step key of the task exactly once",
        );
        expect_err(
            workflow(vec![WorkflowOp::RemoveStep { step: "zzz".into() }]).await,
            "invalid",
            "task has no step `zzz`",
        );
        expect_err(
            tasks::change_workflow(ctx, &team.aurora, &task_id, change("  ", vec![add("e", &[])])).await,
            "invalid",
            "a workflow change needs a reason",
        );
        expect_err(workflow(Vec::new()).await, "invalid", "a workflow change needs at least one operation");

        // Nothing changed.
        let after = team.task(&task_id).await;
        let shape = |view: &tasks::TaskView| -> Vec<(String, String, Vec<String>, Vec<String>)> {
            view.steps
                .iter()
                .map(|step_view| {
                    (
                        step_view.step.key.clone(),
                        step_view.step.status.clone(),
                        step_view.assignees.iter().map(|(_, name)| name.clone()).collect(),
                        step_view.depends_on.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(shape(&after), shape(&before));
        assert_eq!(team.step(&b).await.status, "ready");
        assert!(tasks::history(ctx, &team.aurora, &task_id).await.unwrap().is_empty());
        assert_eq!(events(&store, &team.min.agent_id).await.len(), n_events);
    }
);

backend_test!(
    /// A task created through an agent is also its bound member's; every member of the
    /// workspace reads it.
    async fn tasks_can_be_created_by_an_agent_and_read_by_every_member(store) {
        let team = Team::new(&store).await;
        let kim = team.add_member("kim@example.com", Role::Member).await;
        let created = tasks::create_task(
            &team.ctx,
            &Actor::Agent(team.duan_bot.clone()),
            new_task("From a bot", vec![new_step("one", &["min"], &[])]),
        )
        .await
        .unwrap();
        assert_eq!(created.task.creator_agent_id.as_deref(), Some(team.duan_bot.agent_id.as_str()));
        assert_eq!(created.task.creator_member_id.as_deref(), Some(team.duan.member_id()));
        let seen = tasks::get_task(&team.ctx, &kim, &created.task.id).await.unwrap();
        assert_eq!(seen.task.title, "From a bot");
        // The bound member hears of the task it created through its agent.
        assert_eq!(types(&events(&store, team.duan.member_id()).await), ["task.created"]);
        expect_err(tasks::get_task(&team.ctx, &kim, "nope").await, "not_found", "task `nope`");
        let active = tasks::list_tasks(
            &team.ctx,
            &kim,
            &tasks::TaskFilter {
                status: Some(agenthub::tasks::TaskStatus::Active),
                ..tasks::TaskFilter::newest(10)
            },
        )
            .await
            .unwrap();
        assert_eq!(active.len(), 1);
    }
);

backend_test! {
    async fn a_step_keeps_its_estimate_and_a_bad_one_is_refused(store) {
        let team = Team::new(&store).await;
        for minutes in [0, tasks::MAX_ESTIMATE_MINUTES + 1] {
            let step = NewStep {
                estimate_minutes: Some(minutes),
                ..new_step("only", &["min"], &[])
            };
            let err = tasks::create_task(&team.ctx, &team.aurora, new_task("Estimated", vec![step]))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Invalid { field: Some(field), message }
                    if field == "steps.estimate_minutes" && message.contains("an estimate is 1 to")),
                "{err:?}"
            );
        }
        let step = NewStep {
            estimate_minutes: Some(90),
            ..new_step("only", &["min"], &[])
        };
        let task = team.create(new_task("Estimated", vec![step])).await;
        let only = team.step(&step_id(&task, "only")).await;
        assert_eq!((only.estimate_minutes, only.kind.as_str()), (Some(90), "task"));
    }
}
