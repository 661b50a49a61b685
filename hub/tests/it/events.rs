//! The event outbox: events commit with the state change that caused them, numbered per
//! audience without gaps (also under concurrent transactions), nothing of a rolled-back
//! change, each audience sees only its own, and `events::list_after` pages through them.

use std::sync::Arc;

use tokio::sync::Barrier;

use agenthub::accounts::Actor;
use agenthub::approvals;
use agenthub::events;
use agenthub::tasks::{self, WorkflowChange, WorkflowOp};
use agenthub_protocol::{Decision, ServerFrame};

use crate::support::{
    Team, backend_test, events, expect_err, new_step, new_task, report_task, step_id, submit, types,
};

/// The seqs of an audience's rows, oldest first.
async fn seqs(store: &agenthub::store::Store, audience_id: &str) -> Vec<u64> {
    events::list_after(store, audience_id, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|row| row.seq as u64)
        .collect()
}

backend_test!(
    /// The issue's task from creation to approval: after each call, each audience has
    /// exactly the events that call caused, numbered 1, 2, 3, …
    async fn every_state_change_writes_its_events_for_each_audience(store) {
        let team = Team::new(&store).await;
        let ctx = &team.ctx;
        let min = team.min.agent_id.clone();
        let bot = team.duan_bot.agent_id.clone();
        let aurora = team.aurora.member_id().to_string();
        let duan = team.duan.member_id().to_string();
        let audiences = [&min, &bot, &aurora, &duan];
        let snapshot = async || {
            let mut all = Vec::new();
            for audience in audiences {
                all.push(types(&events(&store, audience).await));
            }
            all
        };

        let view = team.create(report_task()).await;
        let draft = step_id(&view, "draft");
        let review = step_id(&view, "review");
        assert_eq!(
            snapshot().await,
            [
                vec!["task.created", "step.ready"],
                vec![],
                vec!["task.created"],
                vec!["task.created"],
            ]
        );
        // A claim with no other assignee and progress tell nobody.
        tasks::claim_step(ctx, &team.min, &draft).await.unwrap();
        tasks::progress_step(ctx, &team.min, &draft, 1, None, None).await.unwrap();
        assert_eq!(snapshot().await[0], ["task.created", "step.ready"]);

        submit(ctx, &team.min, &draft, 1).await.unwrap();
        assert_eq!(
            snapshot().await,
            [
                vec!["task.created", "step.ready", "step.ready", "step.completed"],
                vec![],
                vec!["task.created", "step.completed"],
                vec!["task.created"],
            ]
        );
        team.run_step(&team.min, &review).await;
        // The approver and the approver's agent are asked.
        assert_eq!(snapshot().await[1], ["approval.requested"]);
        assert_eq!(snapshot().await[3], ["task.created", "approval.requested"]);

        crate::support::decide_current(ctx, &team.duan, &review, approvals::Verdict::new(Decision::Approve, None))
            .await
            .unwrap();
        assert_eq!(
            snapshot().await,
            [
                vec![
                    "task.created",
                    "step.ready",
                    "step.ready",
                    "step.completed",
                    "approval.resolved",
                    "step.completed",
                    "task.updated",
                ],
                vec!["approval.requested", "approval.resolved"],
                vec!["task.created", "step.completed", "step.completed", "task.updated"],
                vec!["task.created", "approval.requested", "approval.resolved", "task.updated"],
            ]
        );
        for audience in audiences {
            let numbers = seqs(&store, audience).await;
            let n_events = numbers.len() as u64;
            assert_eq!(numbers, (1..=n_events).collect::<Vec<_>>(), "{audience}");
            assert_eq!(events::last_seq(&store, audience).await.unwrap(), n_events);
        }
        assert_eq!(events::last_seq(&store, "nobody").await.unwrap(), 0);
    }
);

backend_test!(
    /// Eight writers create tasks for the same agents and creator at the same time:
    /// every audience's seqs are still 1..=n with no gap and no duplicate (on PostgreSQL
    /// the creator's and the workspace's feeds are numbered after each commit, and each
    /// change returns once they are).
    async fn concurrent_changes_keep_each_audiences_seqs_gap_free(store) {
        const N_WRITERS: usize = 8;
        const N_TASKS_PER_WRITER: usize = 6;
        let team = Team::new(&store).await;
        // Agents with room for every writer's step at once.
        let alpha = team.add_agent("alpha", "aurora@example.com", &[], 1024).await;
        let beta = team.add_agent("beta", "duan@example.com", &[], 1024).await;
        let team = Arc::new(team);
        let barrier = Arc::new(Barrier::new(N_WRITERS));
        let handles: Vec<_> = (0..N_WRITERS)
            .map(|writer| {
                let team = Arc::clone(&team);
                let barrier = Arc::clone(&barrier);
                let (alpha, beta) = (alpha.clone(), beta.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    for idx in 0..N_TASKS_PER_WRITER {
                        // Writers alternate the order of their assignees.
                        let assignees = if writer % 2 == 0 {
                            ["alpha", "beta"]
                        } else {
                            ["beta", "alpha"]
                        };
                        let view = tasks::create_task(
                            &team.ctx,
                            &team.aurora,
                            new_task(
                                &format!("w{writer}-{idx}"),
                                vec![new_step("one", &assignees, &[])],
                            ),
                        )
                        .await
                        .unwrap();
                        let actor = if idx % 2 == 0 { &alpha } else { &beta };
                        team.run_step(actor, &step_id(&view, "one")).await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let workspace_feed = events::feed::workspace_audience_id(&team.workspace_id);
        for audience in [
            alpha.agent_id.as_str(),
            beta.agent_id.as_str(),
            team.aurora.member_id(),
            workspace_feed.as_str(),
        ] {
            let numbers = seqs(&store, audience).await;
            let n_events = numbers.len() as u64;
            assert!(n_events >= (N_WRITERS * N_TASKS_PER_WRITER) as u64);
            assert_eq!(
                numbers,
                (1..=n_events).collect::<Vec<_>>(),
                "{audience} on {:?}",
                store.backend()
            );
            // `events()` also checks that each payload carries its row's seq.
            assert_eq!(events(&store, audience).await.len() as u64, n_events);
        }
    }
);

backend_test!(
    /// A change that fails after it queued events (a workflow change whose second
    /// operation is refused) writes none, and the next change continues the numbering.
    async fn a_rolled_back_change_writes_no_events(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Rollback",
                vec![new_step("a", &["min"], &[]), new_step("b", &["min"], &["a"])],
            ))
            .await;
        let before = seqs(&store, &team.min.agent_id).await;
        let bot_before = seqs(&store, &team.duan_bot.agent_id).await;
        let creator_before = seqs(&store, team.aurora.member_id()).await;
        let last_before = events::last_seq(&store, &team.min.agent_id).await.unwrap();

        // The added step would be ready and pushed to both agents; the cycle undoes it all.
        let change = WorkflowChange {
            reason: "try".into(),
            operations: vec![
                WorkflowOp::AddStep(Box::new(new_step("c", &["min", "duan-bot"], &[]))),
                WorkflowOp::SetDependencies {
                    step: "a".into(),
                    depends_on: vec!["b".into()],
                },
            ],
        };
        expect_err(
            tasks::change_workflow(&team.ctx, &team.aurora, &view.task.id, change).await,
            "invalid",
            "cycle",
        );
        // A refused transition and a refused decision write nothing either.
        let b = step_id(&view, "b");
        expect_err(tasks::claim_step(&team.ctx, &team.min, &b).await, "conflict", "step is pending");
        expect_err(
            crate::support::decide_current(&team.ctx, &team.aurora, &b, approvals::Verdict::new(Decision::Approve, None))
                .await,
            "forbidden",
            "",
        );
        assert_eq!(seqs(&store, &team.min.agent_id).await, before);
        assert_eq!(seqs(&store, &team.duan_bot.agent_id).await, bot_before);
        assert_eq!(seqs(&store, team.aurora.member_id()).await, creator_before);
        assert_eq!(events::last_seq(&store, &team.min.agent_id).await.unwrap(), last_before);
        assert_eq!(team.task(&view.task.id).await.steps.len(), 2);

        // The next change numbers on from where the committed ones stopped.
        team.run_step(&team.min, &step_id(&view, "a")).await;
        let after = seqs(&store, &team.min.agent_id).await;
        let n_events = after.len() as u64;
        assert!(n_events > last_before);
        assert_eq!(after, (1..=n_events).collect::<Vec<_>>());
        // duan-bot's counter never moved: its first event will be seq 1.
        assert_eq!(events::last_seq(&store, &team.duan_bot.agent_id).await.unwrap(), 0);
    }
);

backend_test!(
    /// Each agent and member reads only the events addressed to it, in its own numbering.
    async fn each_audience_sees_only_its_own_events(store) {
        let team = Team::new(&store).await;
        let other = Team::in_workspace(&store, "globex").await;
        let mine = team
            .create(new_task("Min's", vec![new_step("m", &["min"], &[])]))
            .await;
        let bots = team
            .create(new_task("Bot's", vec![new_step("d", &["duan-bot"], &[])]))
            .await;
        other
            .create(new_task("Elsewhere", vec![new_step("x", &["min"], &[])]))
            .await;

        let step_ids = |frames: &[ServerFrame]| -> Vec<uuid::Uuid> {
            frames
                .iter()
                .filter_map(|frame| match frame {
                    ServerFrame::StepReady(ready) => Some(ready.step.step_id),
                    _ => None,
                })
                .collect()
        };
        let min_frames = events(&store, &team.min.agent_id).await;
        let bot_frames = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(step_ids(&min_frames), [crate::support::uuid(&step_id(&mine, "m"))]);
        assert_eq!(step_ids(&bot_frames), [crate::support::uuid(&step_id(&bots, "d"))]);
        // Same name, another workspace: another audience with its own numbering.
        let elsewhere = events(&store, &other.min.agent_id).await;
        assert_eq!(types(&elsewhere), ["task.created", "step.ready"]);
        assert_eq!(elsewhere[0].seq(), Some(1));
        // duan follows neither task (not creator, not approver); aurora created both.
        assert!(events(&store, team.duan.member_id()).await.is_empty());
        assert_eq!(types(&events(&store, team.aurora.member_id()).await), ["task.created", "task.created"]);

        // The actor's audience: an agent reads its own id, a member theirs.
        assert_eq!(Actor::Agent(team.min.clone()).audience_id(), team.min.agent_id);
        assert_eq!(team.duan.audience_id(), team.duan.member_id());
        let workspace_rows = events::list_after(&store, &team.min.agent_id, 0, 100).await.unwrap();
        assert!(workspace_rows.iter().all(|row| row.workspace_id == team.workspace_id
            && row.audience_kind == "agent"));
        let member_rows = events::list_after(&store, team.aurora.member_id(), 0, 100).await.unwrap();
        assert!(member_rows.iter().all(|row| row.audience_kind == "member"));
    }
);

backend_test!(
    /// Each agent of a new task hears of it with its own steps (`your_steps`); the task's
    /// feed and the workspace's feed (which the webhooks follow) hold its start once,
    /// as its members receive it.
    async fn the_feeds_hold_a_tasks_start_once_without_any_agents_own_steps(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Two agents",
                vec![new_step("a", &["min"], &[]), new_step("b", &["duan-bot"], &["a"])],
            ))
            .await;
        let own_steps = |frames: &[ServerFrame]| -> Vec<Vec<String>> {
            frames
                .iter()
                .filter_map(|frame| match frame {
                    ServerFrame::TaskCreated(created) => {
                        Some(created.your_steps.iter().map(|own| own.key.clone()).collect())
                    }
                    _ => None,
                })
                .collect()
        };
        assert_eq!(own_steps(&events(&store, &team.min.agent_id).await), [["a"]]);
        assert_eq!(own_steps(&events(&store, &team.duan_bot.agent_id).await), [["b"]]);
        let no_own_steps: [Vec<String>; 1] = [vec![]];
        assert_eq!(own_steps(&events(&store, team.aurora.member_id()).await), no_own_steps);
        let task_feed = events::feed::audience_id(&view.task.id);
        assert_eq!(own_steps(&events(&store, &task_feed).await), no_own_steps);
        let workspace_feed = events::feed::workspace_audience_id(&team.workspace_id);
        let workspace_frames = events(&store, &workspace_feed).await;
        assert_eq!(own_steps(&workspace_frames), no_own_steps);
        assert_eq!(types(&workspace_frames), ["task.created", "step.ready"]);
    }
);

backend_test!(
    async fn list_after_pages_through_an_audience_in_order(store) {
        let team = Team::new(&store).await;
        // 12 one-step tasks: task.created + step.ready each, 24 events for min.
        for idx in 0..12 {
            team.create(new_task(&format!("t{idx}"), vec![new_step("s", &["min"], &[])]))
                .await;
        }
        let audience = team.min.agent_id.clone();
        let mut pages = Vec::new();
        let mut after = 0;
        loop {
            let page = events::list_after(&store, &audience, after, 10).await.unwrap();
            if page.is_empty() {
                break;
            }
            let page_seqs: Vec<u64> = page.iter().map(|row| row.seq as u64).collect();
            after = *page_seqs.last().unwrap();
            pages.push(page_seqs);
        }
        assert_eq!(
            pages,
            [
                (1..=10).collect::<Vec<_>>(),
                (11..=20).collect::<Vec<_>>(),
                (21..=24).collect::<Vec<_>>(),
            ]
        );
        assert!(events::list_after(&store, &audience, 24, 10).await.unwrap().is_empty());
        assert!(events::list_after(&store, &audience, 1000, 10).await.unwrap().is_empty());
        let middle = events::list_after(&store, &audience, 5, 3).await.unwrap();
        let middle: Vec<(i64, &str)> = middle.iter().map(|row| (row.seq, row.event_type.as_str())).collect();
        assert_eq!(middle, [(6, "step.ready"), (7, "task.created"), (8, "step.ready")]);
        assert!(events::list_after(&store, &audience, 0, 0).await.unwrap().is_empty());
        expect_err(
            events::list_after(&store, &audience, u64::MAX, 10).await,
            "invalid",
            "after is too large",
        );
        assert!(events::list_after(&store, "unknown-audience", 0, 10).await.unwrap().is_empty());
    }
);

/// On PostgreSQL a workspace's feed and its members' feeds are numbered after the change
/// commits. Events a hub committed but did not number (it stopped in between) are
/// numbered by the next sweep of any hub: after what was numbered, in the order they
/// were staged, with their seq in the payload, published live, and the notifications made
/// from them learn their seq. Before that, nobody reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_stopped_hub_left_unnumbered_are_numbered_by_the_next_sweep() {
    use diesel::sql_types::{BigInt, Text};

    let Some(test_db) = crate::support::TestDb::postgres_or_skip(concat!(
        module_path!(),
        "::events_a_stopped_hub_left_unnumbered_are_numbered_by_the_next_sweep"
    ))
    .await
    else {
        return;
    };
    let store = test_db.store();
    let team = Team::new(&store).await;
    let view = team.create(report_task()).await;
    team.run_step(&team.min, &step_id(&view, "draft")).await;
    let feed = events::feed::workspace_audience_id(&team.workspace_id);
    let member = team.aurora.member_id().to_string();
    let numbered = events(&store, &feed).await;
    let n_feed = numbered.len() as u64;
    assert!(n_feed >= 3, "{:?}", types(&numbered));
    assert_eq!(seqs(&store, &feed).await, (1..=n_feed).collect::<Vec<_>>());
    let n_member = seqs(&store, &member).await.len() as u64;
    assert!(n_member >= 1);

    // What a hub that stopped after its commit leaves: two frames of the workspace's
    // feed and one of aurora's with placeholders, and a notification made from hers.
    let unnumbered = |frame: &ServerFrame| {
        let mut frame = frame.clone();
        frame.set_seq(0);
        serde_json::to_string(&frame).unwrap()
    };
    let staged = [
        (feed.clone(), "workspace", &numbered[0]),
        (feed.clone(), "workspace", &numbered[1]),
        (member.clone(), "member", &numbered[0]),
    ];
    let mut placeholders = Vec::new();
    for (audience_id, kind, frame) in &staged {
        let payload = unnumbered(frame);
        let placeholder: Vec<Placeholder> = on_postgres(
            &store,
            diesel::sql_query(
                "INSERT INTO events (audience_id, seq, workspace_id, audience_kind, \
                 event_type, payload, created_at) \
                 VALUES ($1, -nextval('staged_event_ids'), $2, $3, $4, $5, 0) \
                 RETURNING seq",
            )
            .bind::<Text, _>(audience_id)
            .bind::<Text, _>(&team.workspace_id)
            .bind::<Text, _>(*kind)
            .bind::<Text, _>(frame.type_name())
            .bind::<Text, _>(&payload),
        )
        .await;
        placeholders.push(placeholder[0].seq);
    }
    on_postgres::<Placeholder, _>(
        &store,
        diesel::sql_query(
            "INSERT INTO notifications (id, workspace_id, member_id, kind, priority, \
             title, body, data, event_seq, created_at) \
             VALUES ('staged-notification', $1, $2, 'task.completed', 'info', 't', '', \
             '{}', $3, 0) RETURNING event_seq AS seq",
        )
        .bind::<Text, _>(&team.workspace_id)
        .bind::<Text, _>(&member)
        .bind::<BigInt, _>(placeholders[2]),
    )
    .await;
    // Unnumbered events are not read: not listed, not counted.
    assert_eq!(seqs(&store, &feed).await.len() as u64, n_feed);
    assert_eq!(events::last_seq(&store, &feed).await.unwrap(), n_feed);

    let mut live = team.ctx.bus.subscribe(&feed, 16);
    assert_eq!(events::staged::number_all(&team.ctx).await.unwrap(), 3);
    let frames = events(&store, &feed).await;
    assert_eq!(
        seqs(&store, &feed).await,
        (1..=n_feed + 2).collect::<Vec<_>>()
    );
    // In the order staged, each with its own seq in its payload (`events` checks it).
    assert_eq!(
        [&frames[n_feed as usize], &frames[n_feed as usize + 1]].map(&unnumbered),
        [unnumbered(&numbered[0]), unnumbered(&numbered[1])]
    );
    assert_eq!(
        seqs(&store, &member).await,
        (1..=n_member + 1).collect::<Vec<_>>()
    );
    for seq in [n_feed + 1, n_feed + 2] {
        let notice = live.receiver.recv().await.unwrap();
        assert_eq!(
            (notice.audience_id.as_str(), notice.seq),
            (feed.as_str(), seq)
        );
        assert!(
            notice.payload.contains(&format!(r#""seq":{seq}"#)),
            "{}",
            notice.payload
        );
    }
    let event_seq: Vec<Placeholder> = on_postgres(
        &store,
        diesel::sql_query(
            "SELECT event_seq AS seq FROM notifications WHERE id = 'staged-notification'",
        ),
    )
    .await;
    assert_eq!(event_seq[0].seq, (n_member + 1) as i64);
    // Nothing is left, and a second sweep numbers nothing.
    assert_eq!(events::staged::number_all(&team.ctx).await.unwrap(), 0);
}

#[derive(diesel::QueryableByName)]
struct Placeholder {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// The rows of one raw statement run on a PostgreSQL store, in a transaction of its own.
async fn on_postgres<'q, T, Q>(store: &agenthub::store::Store, query: Q) -> Vec<T>
where
    T: Send,
    Q: diesel_async::methods::LoadQuery<'q, agenthub::store::PgConn, T> + Send + 'q,
{
    use diesel_async::RunQueryDsl;
    store
        .transaction(async move |db| {
            let agenthub::store::Db::Postgres(conn) = db.reborrow() else {
                unreachable!("a PostgreSQL store");
            };
            Ok::<_, agenthub::store::StoreError>(query.load(conn).await?)
        })
        .await
        .unwrap()
}

/// A numbering round reads only the placeholders above its feed's floor, and the floor
/// never passes a placeholder whose transaction is still open: rounds that run meanwhile
/// leave it, and it is numbered once its transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_waits_for_a_placeholder_whose_transaction_is_still_open() {
    use agenthub::store::StoreError;
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;

    let Some(test_db) = crate::support::TestDb::postgres_or_skip(concat!(
        module_path!(),
        "::the_floor_waits_for_a_placeholder_whose_transaction_is_still_open"
    ))
    .await
    else {
        return;
    };
    let store = test_db.store();
    let team = Team::new(&store).await;
    let feed = events::feed::workspace_audience_id(&team.workspace_id);
    team.create(new_task("first", vec![new_step("s", &["min"], &[])]))
        .await;
    let first = events(&store, &feed).await;

    // A change that took its placeholder and has not committed yet.
    let (commit, committed) = tokio::sync::oneshot::channel::<()>();
    let (taken, placeholder) = tokio::sync::oneshot::channel::<i64>();
    let open = {
        let (store, feed, workspace_id) = (store.clone(), feed.clone(), team.workspace_id.clone());
        let payload = {
            let mut frame = first[0].clone();
            frame.set_seq(0);
            serde_json::to_string(&frame).unwrap()
        };
        let event_type = first[0].type_name();
        tokio::spawn(async move {
            store
                .transaction(async |db| {
                    let agenthub::store::Db::Postgres(conn) = db.reborrow() else {
                        unreachable!("a PostgreSQL store");
                    };
                    // As a change's flush: the transaction has its id before its placeholders.
                    diesel::sql_query("SELECT pg_current_xact_id()::text::bigint AS seq")
                        .load::<Placeholder>(conn)
                        .await?;
                    let rows: Vec<Placeholder> = diesel::sql_query(
                        "INSERT INTO events (audience_id, seq, workspace_id, audience_kind, \
                         event_type, payload, created_at) \
                         VALUES ($1, -nextval('staged_event_ids'), $2, 'workspace', $3, $4, 0) \
                         RETURNING seq",
                    )
                    .bind::<Text, _>(&feed)
                    .bind::<Text, _>(&workspace_id)
                    .bind::<Text, _>(event_type)
                    .bind::<Text, _>(&payload)
                    .load(conn)
                    .await?;
                    taken.send(rows[0].seq).unwrap();
                    committed.await.unwrap();
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        })
    };
    let placeholder = placeholder.await.unwrap();
    // Later changes are numbered round after round meanwhile.
    for idx in 0..4 {
        team.create(new_task(
            &format!("later {idx}"),
            vec![new_step("s", &["min"], &[])],
        ))
        .await;
    }
    let floor = async || -> i64 {
        let floors: Vec<Placeholder> = on_postgres(
            &store,
            diesel::sql_query("SELECT floor_id AS seq FROM staged_floors WHERE audience_id = $1")
                .bind::<Text, _>(&feed),
        )
        .await;
        floors.as_slice().first().map_or(0, |row| row.seq)
    };
    assert!(
        floor().await < -placeholder,
        "the floor passed an open transaction's placeholder"
    );
    let n_before = seqs(&store, &feed).await.len() as u64;

    commit.send(()).unwrap();
    open.await.unwrap();
    assert_eq!(events::staged::number_all(&team.ctx).await.unwrap(), 1);
    let numbered = events(&store, &feed).await;
    assert_eq!(
        seqs(&store, &feed).await,
        (1..=n_before + 1).collect::<Vec<_>>()
    );
    assert_eq!(numbered.last().unwrap().type_name(), first[0].type_name());
    // With nothing open any more, rounds move the floor past every placeholder so far.
    // The oldest running transaction is the whole server's: a transaction of another
    // test's database holds the floor too, until it ends.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while floor().await < -placeholder {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the floor never moved: {}",
            floor().await
        );
        events::staged::number_feeds(&team.ctx, std::slice::from_ref(&feed))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
