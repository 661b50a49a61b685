//! Several hub processes on one PostgreSQL and one Redis behave as one: an event
//! committed through one hub reaches the sessions of another.

use std::time::Duration;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::ctx::{Ctx, Settings};
use agenthub::tasks::{self, NewStep, NewTask};

use crate::support::TestDb;

const REDIS_URL_VAR: &str = "AGENTHUB_TEST_REDIS_URL";

/// PostgreSQL and Redis for a scale-out test, or `None` (printing the skip).
async fn backends(test_name: &str) -> Option<(TestDb, String)> {
    let (Ok(redis_url), Some(db)) = (std::env::var(REDIS_URL_VAR), TestDb::postgres().await) else {
        eprintln!(
            "skipped: {REDIS_URL_VAR} and AGENTHUB_TEST_DATABASE_URL are both needed ({test_name})"
        );
        return None;
    };
    Some((db, redis_url))
}

async fn wait_healthy(ctx: &Ctx) {
    let remote = ctx.remote.as_ref().expect("redis configured");
    for _ in 0..100 {
        if remote.healthy() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the redis bus did not connect");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_committed_through_hub_a_reaches_a_session_on_hub_b() {
    let Some((db, redis_url)) =
        backends("scaleout::an_event_committed_through_hub_a_reaches_a_session_on_hub_b").await
    else {
        return;
    };
    let prefix = format!("agenthub-test-{}:", uuid::Uuid::new_v4().simple());
    let hub_a = Ctx::new(db.store(), Settings::default())
        .with_redis(&redis_url, &prefix)
        .unwrap();
    let hub_b = Ctx::new(db.store(), Settings::default())
        .with_redis(&redis_url, &prefix)
        .unwrap();
    wait_healthy(&hub_a).await;
    wait_healthy(&hub_b).await;

    let store = db.store();
    let workspace = accounts::create_workspace(&store, "acme").await.unwrap();
    accounts::add_member(
        &store,
        &workspace.id,
        "aurora@example.com",
        None,
        Role::Owner,
    )
    .await
    .unwrap();
    let agent = agents::create_agent(
        &store,
        NewAgent {
            workspace_id: &workspace.id,
            name: "min-laptop",
            owner: "aurora@example.com",
            capabilities: &[],
            max_concurrency: 1,
        },
    )
    .await
    .unwrap();
    let owner = accounts::create_api_key(&store, &workspace.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret;
    let actor = accounts::Actor::Member(
        accounts::authenticate_api_key(&store, &owner)
            .await
            .unwrap(),
    );

    // A session of the agent lives on hub B; the task is created through hub A.
    let mut on_b = hub_b.bus.subscribe(&agent.agent.id, 16);
    let mut on_a = hub_a.bus.subscribe(&agent.agent.id, 16);
    let task = NewTask {
        title: "Quarterly report".into(),
        steps: vec![NewStep {
            key: "draft".into(),
            title: "Draft".into(),
            assignees: vec!["min-laptop".into()],
            ..NewStep::default()
        }],
        ..NewTask::default()
    };
    tasks::create_task(&hub_a, &actor, task).await.unwrap();
    for (hub, subscription) in [("B", &mut on_b), ("A", &mut on_a)] {
        let mut seqs = Vec::new();
        while seqs.len() < 2 {
            let notice = tokio::time::timeout(Duration::from_secs(5), subscription.receiver.recv())
                .await
                .unwrap_or_else(|_| panic!("hub {hub} got no notice"))
                .unwrap();
            seqs.push(notice.seq);
            if notice.seq == 2 {
                assert!(
                    notice.payload.contains("\"type\":\"step.ready\""),
                    "{}",
                    notice.payload
                );
            }
        }
        assert_eq!(seqs, [1, 2], "hub {hub}");
    }
    // Hub A's own notices are not delivered twice through Redis.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), on_a.receiver.recv())
            .await
            .is_err()
    );
}
