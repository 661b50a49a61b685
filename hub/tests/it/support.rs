//! Test harness: a fresh, migrated [`Store`] per test on SQLite (a temp dir) and, when
//! `AGENTHUB_TEST_DATABASE_URL` is set, on PostgreSQL (a new database per test, dropped
//! when the test ends).
//!
//! ```ignore
//! backend_test!(async fn counts_steps(store) {
//!     // runs once on SQLite, then once on PostgreSQL (or prints that it was skipped)
//! });
//! ```

use std::io::Write;

use diesel_async::RunQueryDsl;

use agenthub::accounts::{self, Actor, AgentActor, MemberActor, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::approvals::{self, ApprovalRef};
use agenthub::ctx::{Ctx, Settings};
use agenthub::error::Error;
use agenthub::events;
use agenthub::store::{Backend, Store, StoreOptions};
use agenthub::tasks::{self, NewStep, NewTask, Step, SubmitOutcome, Submitted, TaskView};
use agenthub_protocol::ServerFrame;

/// The PostgreSQL server the tests use, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
/// Each test creates its own database there.
pub const PG_URL_VAR: &str = "AGENTHUB_TEST_DATABASE_URL";

/// A migrated store on its own database, removed on drop.
pub struct TestDb {
    store: Store,
    /// The URL another process (a hub) opens the same database with.
    url: String,
    // Dropped after `store`, so the pools close before the database goes away.
    _cleanup: Cleanup,
}

impl TestDb {
    /// A SQLite store in a new temp dir.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = Store::open_data_dir(dir.path()).expect("open sqlite store");
        store.migrate().await.expect("migrate sqlite");
        TestDb {
            store,
            url: dir.path().join("agenthub.db").display().to_string(),
            _cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// [`TestDb::postgres`], reporting `test_name` skipped ([`report_skipped`]) when it
    /// is `None`.
    pub async fn postgres_or_skip(test_name: &str) -> Option<TestDb> {
        let db = TestDb::postgres().await;
        if db.is_none() {
            report_skipped(test_name);
        }
        db
    }

    /// A PostgreSQL store on a new database `agenthub_test_<random>`, or `None` when
    /// `AGENTHUB_TEST_DATABASE_URL` is not set.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = std::env::var(PG_URL_VAR).ok()?;
        let name = format!("agenthub_test_{}", uuid::Uuid::new_v4().simple());
        execute_admin(&admin_url, &format!("CREATE DATABASE \"{name}\"")).await;
        // From here on the database is dropped even if the rest of the setup panics.
        let cleanup = Cleanup::Postgres(DropDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        });
        let opts = StoreOptions {
            pg_pool_size: 4,
            ..StoreOptions::default()
        };
        let url = with_database(&admin_url, &name);
        let store = Store::connect(&url, &opts).expect("connect to the test database");
        store.migrate().await.expect("migrate postgres");
        Some(TestDb {
            store,
            url,
            _cleanup: cleanup,
        })
    }

    /// Both backends when PostgreSQL is configured, else SQLite only (printing the skip).
    pub async fn all(test_name: &str) -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite().await];
        match TestDb::postgres().await {
            Some(pg) => dbs.push(pg),
            None => report_skipped(test_name),
        }
        dbs
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }
}

/// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL store when
/// `AGENTHUB_TEST_DATABASE_URL` is set; otherwise reports the skip by name.
pub async fn for_each_backend<F>(test_name: &str, test: F)
where
    F: AsyncFn(Store),
{
    let sqlite = TestDb::sqlite().await;
    test(sqlite.store()).await;
    drop(sqlite);
    match TestDb::postgres().await {
        Some(pg) => test(pg.store()).await,
        None => report_skipped(test_name),
    }
}

/// Prints `skipped on postgres: ... (<test name>)`. Written to the process's stderr
/// directly (not `eprintln!`), so libtest's output capture does not hide it.
pub fn report_skipped(test_name: &str) {
    // `module_path!()` starts with the binary's name; libtest's names do not.
    let test_name = test_name.strip_prefix("it::").unwrap_or(test_name);
    let _ = writeln!(
        std::io::stderr(),
        "skipped on postgres: {PG_URL_VAR} not set ({test_name})"
    );
}

/// Declares a `#[tokio::test]` (multi-threaded, so races are real) whose body runs once per
/// backend with `$store` bound to a fresh migrated [`Store`].
macro_rules! backend_test {
    ($(#[$attr:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::support::for_each_backend(
                concat!(module_path!(), "::", stringify!($name)),
                async |$store: ::agenthub::store::Store| $body,
            )
            .await;
        }
    };
}
pub(crate) use backend_test;

enum Cleanup {
    Sqlite(#[expect(dead_code, reason = "held for its Drop")] tempfile::TempDir),
    Postgres(#[expect(dead_code, reason = "held for its Drop")] DropDatabase),
}

struct DropDatabase {
    admin_url: String,
    name: String,
}

impl Drop for DropDatabase {
    /// Drops the database from a new thread with its own runtime: `Drop` cannot await, and
    /// the test's runtime may be a current-thread one (or already shutting down).
    /// `WITH (FORCE)` ends connections that clones of the store still hold.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let res = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build runtime");
            runtime.block_on(execute_admin(&admin_url, &sql));
        })
        .join();
        if res.is_err() {
            // The thread already printed its panic; don't panic again inside a drop.
            let _ = writeln!(std::io::stderr(), "failed to drop database {}", self.name);
        }
    }
}

/// Runs one statement outside a transaction (CREATE/DROP DATABASE refuse to run in one)
/// on the admin database.
async fn execute_admin(admin_url: &str, sql: &str) {
    let opts = StoreOptions {
        pg_pool_size: 1,
        ..StoreOptions::default()
    };
    let admin = Store::connect(admin_url, &opts).expect("connect to the admin database");
    admin
        .read(async |db| {
            agenthub::db!(db, |conn| diesel::sql_query(sql).execute(conn).await)?;
            Ok::<_, agenthub::store::StoreError>(())
        })
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err} ({:?})", std::error::Error::source(&err)));
}

/// `admin_url` with its database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |idx| idx + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

// ---------------------------------------------------------------- domain fixtures

/// A workspace with two members and two agents, and a [`Ctx`] over the test store.
///
/// - `aurora@example.com` (owner), who creates tasks; her agent `min` (capabilities
///   `docs`, `shell`; max concurrency 4);
/// - `duan@example.com` (member), the reviewer; his agent `duan-bot` (capability `docs`;
///   max concurrency 4).
pub struct Team {
    pub ctx: Ctx,
    pub workspace_id: String,
    pub aurora: Actor,
    pub duan: Actor,
    pub min: AgentActor,
    pub duan_bot: AgentActor,
}

impl Team {
    /// The team in workspace `acme` with default settings.
    pub async fn new(store: &Store) -> Team {
        Team::build(store, "acme", Settings::default()).await
    }

    /// The same team (same emails and agent names) in another workspace of the store.
    pub async fn in_workspace(store: &Store, workspace: &str) -> Team {
        Team::build(store, workspace, Settings::default()).await
    }

    async fn build(store: &Store, workspace: &str, settings: Settings) -> Team {
        let ctx = Ctx::new(store.clone(), settings);
        let workspace_id = accounts::create_workspace(store, workspace)
            .await
            .unwrap()
            .id;
        let aurora = add_member(store, &workspace_id, "aurora@example.com", Role::Owner).await;
        let duan = add_member(store, &workspace_id, "duan@example.com", Role::Member).await;
        let min = add_agent(
            store,
            &workspace_id,
            "min",
            "aurora@example.com",
            &["docs", "shell"],
            4,
        )
        .await;
        let duan_bot = add_agent(
            store,
            &workspace_id,
            "duan-bot",
            "duan@example.com",
            &["docs"],
            4,
        )
        .await;
        Team {
            ctx,
            workspace_id,
            aurora,
            duan,
            min,
            duan_bot,
        }
    }

    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// Adds a member and returns them as an [`Actor::Member`].
    pub async fn add_member(&self, email: &str, role: Role) -> Actor {
        add_member(self.store(), &self.workspace_id, email, role).await
    }

    /// Registers another agent of the workspace, bound to `owner`.
    pub async fn add_agent(
        &self,
        name: &str,
        owner: &str,
        capabilities: &[&str],
        max_concurrency: u32,
    ) -> AgentActor {
        add_agent(
            self.store(),
            &self.workspace_id,
            name,
            owner,
            capabilities,
            max_concurrency,
        )
        .await
    }

    /// Creates a task as aurora.
    pub async fn create(&self, new: NewTask) -> TaskView {
        tasks::create_task(&self.ctx, &self.aurora, new)
            .await
            .unwrap()
    }

    pub async fn step(&self, step_id: &str) -> Step {
        tasks::get_step(&self.ctx, &self.aurora, step_id)
            .await
            .unwrap()
            .step
    }

    pub async fn task(&self, task_id: &str) -> TaskView {
        tasks::get_task(&self.ctx, &self.aurora, task_id)
            .await
            .unwrap()
    }

    /// Claims, reports progress and submits `step_id` as `agent`; returns the outcome.
    pub async fn run_step(&self, agent: &AgentActor, step_id: &str) -> String {
        let claimed = tasks::claim_step(&self.ctx, agent, step_id).await.unwrap();
        tasks::progress_step(&self.ctx, agent, step_id, claimed.attempt, None, None)
            .await
            .unwrap();
        submit(&self.ctx, agent, step_id, claimed.attempt)
            .await
            .unwrap()
            .status
    }
}

async fn add_member(store: &Store, workspace_id: &str, email: &str, role: Role) -> Actor {
    let member = accounts::add_member(store, workspace_id, email, None, role)
        .await
        .unwrap();
    Actor::Member(MemberActor {
        workspace_id: member.workspace_id,
        member_id: member.id,
        email: member.email,
        role,
        scopes: accounts::authority::Scopes::ALL,
    })
}

async fn add_agent(
    store: &Store,
    workspace_id: &str,
    name: &str,
    owner: &str,
    capabilities: &[&str],
    max_concurrency: u32,
) -> AgentActor {
    let capabilities: Vec<String> = capabilities.iter().map(|cap| cap.to_string()).collect();
    let created = agents::create_agent(
        store,
        NewAgent {
            workspace_id,
            name,
            owner,
            capabilities: &capabilities,
            max_concurrency,
        },
    )
    .await
    .unwrap();
    agents::authenticate_token(store, &created.token)
        .await
        .unwrap()
}

/// A step titled after its key, assigned to `assignees`, depending on `depends_on`.
pub fn new_step(key: &str, assignees: &[&str], depends_on: &[&str]) -> NewStep {
    NewStep {
        key: key.to_string(),
        title: format!("Step {key}"),
        assignees: assignees.iter().map(|name| name.to_string()).collect(),
        depends_on: depends_on.iter().map(|key| key.to_string()).collect(),
        ..NewStep::default()
    }
}

pub fn new_task(title: &str, steps: Vec<NewStep>) -> NewTask {
    NewTask {
        title: title.to_string(),
        steps,
        ..NewTask::default()
    }
}

/// The task of the issue: `min` drafts an outline, then reviews it; the review is level 2
/// and approved by duan, named by email.
pub fn report_task() -> NewTask {
    NewTask {
        draft: false,
        plan: None,
        title: "Quarterly report".into(),
        description: "Break down the director's report, then review it".into(),
        due_at: None,
        steps: vec![
            NewStep {
                title: "Draft the outline".into(),
                required_capabilities: vec!["docs".into()],
                executor: Some("claude".into()),
                input: serde_json::json!({"files": ["report.pdf"]}),
                ..new_step("draft", &["min"], &[])
            },
            NewStep {
                title: "Review the outline".into(),
                approval_level: 2,
                approvers: vec!["duan@example.com".into()],
                expected_outputs: Some("a reviewed outline".into()),
                ..new_step("review", &["min"], &["draft"])
            },
        ],
    }
}

/// [`report_task`] with both steps assigned to `agent` and no capability required.
pub fn report_task_for(agent: &str) -> NewTask {
    let mut task = report_task();
    for step in &mut task.steps {
        step.assignees = vec![agent.to_string()];
        step.required_capabilities.clear();
        step.approvers = vec!["aurora@example.com".into()];
    }
    task
}

/// The id of the step with `key` in a task view.
pub fn step_id(view: &TaskView, key: &str) -> String {
    view.steps
        .iter()
        .find(|step_view| step_view.step.key == key)
        .unwrap_or_else(|| panic!("no step `{key}`"))
        .step
        .id
        .clone()
}

/// Submits `{"ok": true}` for (step, attempt).
pub async fn submit(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
) -> Result<SubmitOutcome, Error> {
    submit_checked(ctx, agent, step_id, attempt, None).await
}

/// [`submit`] with the agent's check of its result.
pub async fn submit_checked(
    ctx: &Ctx,
    agent: &AgentActor,
    step_id: &str,
    attempt: u32,
    check: Option<agenthub_protocol::SelfCheck>,
) -> Result<SubmitOutcome, Error> {
    tasks::submit_step(
        ctx,
        agent,
        Submitted {
            step_id: step_id.to_string(),
            attempt,
            result: serde_json::json!({"ok": true}),
            summary: Some(format!("attempt {attempt}")),
            self_check: None,
            check,
            files: Vec::new(),
            usage: None,
        },
    )
    .await
}

/// Decides the caller's approval of the step's current attempt, whatever it is.
pub async fn decide_current(
    ctx: &Ctx,
    actor: &Actor,
    step_id: &str,
    verdict: approvals::Verdict<'_>,
) -> Result<approvals::Decided, Error> {
    let attempt = tasks::get_step(ctx, actor, step_id)
        .await
        .map_or(1, |view| view.step.attempt as u32);
    approvals::decide(ctx, actor, ApprovalRef::Step(step_id, attempt), verdict).await
}

/// The error of `res`, asserting its code and that its message contains `needle`.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(res: Result<T, Error>, code: &str, needle: &str) -> Error {
    let err = res.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err}");
    assert!(
        err.to_string().contains(needle),
        "`{err}` does not mention `{needle}`"
    );
    err
}

/// Every event of an audience (an agent or member id), oldest first, decoded.
pub async fn events(store: &Store, audience_id: &str) -> Vec<ServerFrame> {
    events::list_after(store, audience_id, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let frame: ServerFrame = serde_json::from_str(&row.payload).unwrap();
            assert_eq!(frame.type_name(), row.event_type);
            assert_eq!(frame.seq(), Some(row.seq as u64), "payload seq = row seq");
            frame
        })
        .collect()
}

/// The `type` of each frame.
pub fn types(frames: &[ServerFrame]) -> Vec<&'static str> {
    frames.iter().map(ServerFrame::type_name).collect()
}

/// A hub id as the UUID events carry.
pub fn uuid(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap()
}

/// A context whose claims hold a step for 1 ms, so that a sweep right after expires them.
pub fn short_lease(store: &Store) -> Ctx {
    Ctx::new(
        store.clone(),
        Settings {
            lease_ms: 1,
            ..Settings::default()
        },
    )
}

/// Claims `step` as `agent` with a 1 ms lease and sweeps it once it has expired.
pub async fn expire_lease(team: &Team, agent: &AgentActor, step: &str) {
    tasks::claim_step(&short_lease(team.store()), agent, step)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(tasks::sweep_expired_leases(&team.ctx).await.unwrap(), 1);
}
