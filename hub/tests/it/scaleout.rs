//! Several hub processes on one PostgreSQL and one Redis behave as one: an event
//! committed through one hub reaches the sessions of another.

use std::time::Duration;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::ctx::{Ctx, Settings};
use agenthub::store::{Store, StoreError, StoreOptions};
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

/// Runs SQL on the admin database of the test PostgreSQL server.
async fn admin_sql(admin_url: &str, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    let admin = Store::connect(
        admin_url,
        &StoreOptions {
            pg_pool_size: 1,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    admin
        .read(async |db| {
            agenthub::db!(db, |conn| conn.batch_execute(sql).await).map_err(StoreError::from)
        })
        .await
        .unwrap();
}

/// Drops the database when the test ends, even when it fails.
struct DropOnExit {
    admin_url: String,
    name: String,
}

impl Drop for DropOnExit {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(admin_sql(
                &admin_url,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            ));
        })
        .join()
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_is_a_clear_503_and_the_hub_recovers() {
    let Ok(admin_url) = std::env::var("AGENTHUB_TEST_DATABASE_URL") else {
        crate::support::report_skipped(
            "scaleout::a_database_outage_is_a_clear_503_and_the_hub_recovers",
        );
        return;
    };
    let name = format!("agenthub_test_outage_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&admin_url, &format!("CREATE DATABASE \"{name}\"")).await;
    let _cleanup = DropOnExit {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
    let store = Store::connect(
        &url,
        &StoreOptions {
            pg_pool_size: 2,
            acquire_timeout: Duration::from_secs(2),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    store.migrate().await.unwrap();
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
    let key = accounts::create_api_key(&store, &workspace.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret;
    let ctx = Ctx::new(store, Settings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(agenthub::api::serve_with_listener(
        listener,
        ctx,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Cut the database off: no new connections, existing ones terminated.
    let outage = |allow: bool| {
        let (admin_url, name) = (admin_url.clone(), name.clone());
        async move {
            let sql = format!(
                "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allow}; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid();"
            );
            admin_sql(&admin_url, &sql).await;
        }
    };
    outage(false).await;
    for path in ["/readyz", "/v1/tasks", "/v1/tasks"] {
        let resp = http
            .get(format!("{base}{path}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{path}");
        assert_eq!(
            body["error"]["message"],
            "the database is unavailable, try again shortly"
        );
    }

    outage(true).await;
    let mut recovered = false;
    for _ in 0..50 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the hub did not recover");
    let resp = http
        .get(format!("{base}/v1/tasks"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
