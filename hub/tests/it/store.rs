//! Store tests: migrations and schema parity on both backends, the `db!` query pattern,
//! transactions, SQLite write concurrency and the claim race.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::RunQueryDsl;
use tokio::sync::Barrier;

use agenthub::db;
use agenthub::schema::{agents, audience_seqs, events, members, steps, tasks, workspaces};
use agenthub::store::{Backend, Db, Store, StoreError, new_id, now_ms};

use crate::support::{PG_URL_VAR, TestDb, backend_test, report_skipped};

// ---------------------------------------------------------------- migrations and schema

backend_test!(
    async fn migrations_apply_and_are_idempotent(store) {
        // TestDb already migrated; a second run finds nothing pending.
        let applied = store.migrate().await.unwrap();
        assert_eq!(applied, Vec::<String>::new(), "{:?}", store.backend());
        store.ping().await.unwrap();

        let versions: Vec<String> = store
            .read(async |db| {
                let versions = db!(db, |conn| {
                    diesel::sql_query(
                        "SELECT version AS name FROM __diesel_schema_migrations ORDER BY version",
                    )
                    .load::<NameRow>(conn)
                    .await
                })?;
                Ok::<_, StoreError>(versions.into_iter().map(|row| row.name).collect())
            })
            .await
            .unwrap();
        let expected: Vec<String> = migration_dirs("sqlite")
            .iter()
            .map(|dir| dir.split('_').next().unwrap().replace('-', ""))
            .collect();
        assert_eq!(versions, expected);
    }
);

#[test]
fn migration_directories_match() {
    let sqlite = migration_dirs("sqlite");
    let postgres = migration_dirs("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres differ"
    );
    for dir in &sqlite {
        for file in ["up.sql", "down.sql"] {
            for backend in ["sqlite", "postgres"] {
                let path = migrations_root().join(backend).join(dir).join(file);
                assert!(path.is_file(), "missing {}", path.display());
            }
        }
    }
}

/// Every table and column of `schema.rs` exists in the migrated database, nothing more;
/// and the SQLite and PostgreSQL schemas agree on tables, columns, declared types,
/// nullability and named indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_match_schema_rs_and_each_other() {
    let expected = schema_rs_columns();
    let mut shapes = Vec::new();
    for test_db in TestDb::all("store::schemas_match_schema_rs_and_each_other").await {
        let shape = schema_shape(&test_db.store()).await;
        let names: BTreeMap<String, BTreeSet<String>> = shape
            .columns
            .iter()
            .map(|(table, columns)| {
                let names = columns.iter().map(|column| column.0.clone()).collect();
                (table.clone(), names)
            })
            .collect();
        assert_eq!(
            names,
            expected,
            "{:?} schema vs schema.rs",
            test_db.backend()
        );
        shapes.push((test_db.backend(), shape));
    }
    let expected_backends = if std::env::var(PG_URL_VAR).is_ok() {
        2
    } else {
        1
    };
    assert_eq!(shapes.len(), expected_backends);
    if let [(_, sqlite), (_, postgres)] = shapes.as_slice() {
        assert_eq!(
            sqlite.columns, postgres.columns,
            "column types or nullability differ"
        );
        assert_eq!(sqlite.indexes, postgres.indexes, "named indexes differ");
    }
}

backend_test!(
    async fn foreign_keys_are_enforced(store) {
        let res = store
            .transaction(async |db| {
                insert_member(db, "no-such-workspace").await?;
                Ok::<_, StoreError>(())
            })
            .await;
        assert!(
            matches!(
                res,
                Err(StoreError::Query(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _
                )))
            ),
            "{:?}: {res:?}",
            store.backend()
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connections_use_wal_and_the_configured_pragmas() {
    let test_db = TestDb::sqlite().await;
    let store = test_db.store();
    let read_pragmas = store.read(async |db| pragmas(db).await).await.unwrap();
    let write_pragmas = store
        .transaction(async |db| pragmas(db).await)
        .await
        .unwrap();
    for pragmas in [read_pragmas, write_pragmas] {
        assert_eq!(pragmas.journal_mode, "wal");
        assert_eq!(pragmas.foreign_keys, 1);
        assert_eq!(pragmas.busy_timeout, 5000);
        assert_eq!(pragmas.synchronous, 1, "NORMAL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_cannot_write() {
    let test_db = TestDb::sqlite().await;
    let res = test_db
        .store()
        .read(async |db| insert_workspace(db, "acme").await.map_err(StoreError::from))
        .await;
    let err = res.unwrap_err();
    assert!(err.to_string().contains("database query"), "{err}");
    assert!(format!("{err:?}").contains("readonly"), "{err:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn open_data_dir_creates_the_directory_and_migrates_on_a_current_thread_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("data");
    let store = Store::open_data_dir(&dir).unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    assert_eq!(
        store.migrate().await.unwrap().len(),
        migration_dirs("sqlite").len()
    );
    assert!(dir.join("agenthub.db").is_file());
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_migrates_on_a_current_thread_runtime() {
    let Some(test_db) = TestDb::postgres().await else {
        report_skipped("store::postgres_migrates_on_a_current_thread_runtime");
        return;
    };
    assert_eq!(
        test_db.store().migrate().await.unwrap(),
        Vec::<String>::new()
    );
}

/// A hub on its database's machine connects over PostgreSQL's Unix socket (the URL's host
/// is the socket's directory, percent-encoded), as docs/operations.md recommends: the
/// store works there as over TCP, and the connection really is the socket's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_reached_over_its_unix_socket() {
    const NAME: &str = "store::postgres_is_reached_over_its_unix_socket";
    #[derive(QueryableByName)]
    struct Server {
        #[diesel(sql_type = Text)]
        socket_dir: String,
        #[diesel(sql_type = Text)]
        port: String,
        #[diesel(sql_type = Text)]
        database: String,
        #[diesel(sql_type = Text)]
        login: String,
    }
    #[derive(QueryableByName)]
    struct Peer {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        address: Option<String>,
    }
    let Some(test_db) = TestDb::postgres().await else {
        report_skipped(NAME);
        return;
    };
    let over_tcp = test_db.store();
    let server = over_tcp
        .read(async |db| {
            db!(db, |conn| {
                diesel::sql_query(
                    "SELECT split_part(current_setting('unix_socket_directories'), ',', 1) \
                     AS socket_dir, current_setting('port') AS port, \
                     current_database() AS database, current_user::text AS login",
                )
                .get_result::<Server>(conn)
                .await
            })
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    let socket_dir = server.socket_dir.trim();
    if socket_dir.is_empty() {
        // A server that listens on TCP alone.
        report_skipped(NAME);
        return;
    }
    let url = format!(
        "postgres://{}@{}:{}/{}",
        server.login,
        socket_dir.replace('/', "%2F"),
        server.port,
        server.database
    );
    let opts = agenthub::store::StoreOptions {
        pg_pool_size: 1,
        ..agenthub::store::StoreOptions::default()
    };
    let over_socket = Store::connect(&url, &opts).unwrap();
    assert_eq!(over_socket.migrate().await.unwrap(), Vec::<String>::new());
    let workspace_id = over_socket
        .transaction(async |db| {
            insert_workspace(db, "over the socket")
                .await
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    let name: String = over_tcp
        .read(async |db| {
            db!(db, |conn| {
                workspaces::table
                    .find(&workspace_id)
                    .select(workspaces::name)
                    .first(conn)
                    .await
            })
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(name, "over the socket");
    // A connection over a Unix socket has no client address.
    let peer = over_socket
        .read(async |db| {
            db!(db, |conn| {
                diesel::sql_query("SELECT inet_client_addr()::text AS address")
                    .get_result::<Peer>(conn)
                    .await
            })
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(peer.address, None);
}

// ---------------------------------------------------------------- queries, transactions

backend_test!(
    async fn insert_select_and_conditional_claim_round_trip(store) {
        let fixture = create_fixture(&store).await;

        let step: StepRow = store
            .read(async |db| {
                db!(db, |conn| {
                    steps::table
                        .find(&fixture.step_id)
                        .select(StepRow::as_select())
                        .get_result(conn)
                        .await
                })
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(step.key, "draft");
        assert_eq!(step.status, "ready");
        assert_eq!(step.files, "[]", "column default");
        assert_eq!((step.input_tokens, step.output_tokens), (0, 0));
        assert_eq!(step.claimed_by, None);
        assert_eq!(step.input, r#"{"report":"q3"}"#);

        let agent_flags: (bool, String, Option<i64>) = store
            .read(async |db| {
                db!(db, |conn| {
                    agents::table
                        .find(&fixture.agent_id)
                        .select((agents::auto_approve, agents::status, agents::last_seen_at))
                        .get_result(conn)
                        .await
                })
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(agent_flags, (false, "idle".to_owned(), None), "column defaults");

        assert!(claim(&store, &fixture.step_id, &fixture.agent_id).await);
        assert!(!claim(&store, &fixture.step_id, &fixture.agent_id).await);

        let claimed: (String, Option<String>) = store
            .read(async |db| {
                db!(db, |conn| {
                    steps::table
                        .find(&fixture.step_id)
                        .select((steps::status, steps::claimed_by))
                        .get_result(conn)
                        .await
                })
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(claimed, ("claimed".to_owned(), Some(fixture.agent_id.clone())));
    }
);

backend_test!(
    async fn transaction_rolls_back_on_error(store) {
        let res = store
            .transaction(async |db| {
                insert_workspace(db, "rolled-back").await?;
                Err::<(), _>(StoreError::Query(diesel::result::Error::RollbackTransaction))
            })
            .await;
        assert!(res.is_err());
        assert_eq!(count_workspaces(&store).await, 0);

        store
            .transaction(async |db| {
                insert_workspace(db, "committed").await?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        assert_eq!(count_workspaces(&store).await, 1);
    }
);

backend_test!(
    async fn nested_store_calls_inside_a_transaction_are_refused(store) {
        let inner = store
            .transaction(async |_db| {
                let nested_read = store.read(async |_db| Ok::<_, StoreError>(())).await;
                let nested_tx = store.transaction(async |_db| Ok::<_, StoreError>(())).await;
                Ok::<_, StoreError>((nested_read, nested_tx))
            })
            .await
            .unwrap();
        assert!(matches!(inner.0, Err(StoreError::NestedTransaction)), "{:?}", inner.0);
        assert!(matches!(inner.1, Err(StoreError::NestedTransaction)), "{:?}", inner.1);
    }
);

backend_test!(
    /// A transaction future dropped half-way (a client hung up) rolls back and leaves the
    /// pool usable; on SQLite the single writer connection is replaced.
    async fn cancelled_transaction_rolls_back_and_frees_the_pool(store) {
        let cancelled = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            store.transaction(async |db| {
                insert_workspace(db, "abandoned").await?;
                std::future::pending::<()>().await;
                Ok::<_, StoreError>(())
            }),
        )
        .await;
        assert!(cancelled.is_err(), "the transaction should still be pending");

        let workspace_id = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            new_workspace(&store, "next"),
        )
        .await
        .expect("the writer is free again");
        assert!(!workspace_id.is_empty());
        assert_eq!(count_workspaces(&store).await, 1, "{:?}", store.backend());
    }
);

// ---------------------------------------------------------------- concurrency

backend_test!(
    /// Many writers at once (SQLite commits them in groups): every transaction that
    /// returned `Ok` is stored and already visible to readers when the call returns, and
    /// every one that failed left nothing, whatever its neighbours did.
    async fn concurrent_transactions_keep_exactly_the_successful_ones(store) {
        const N_TX: usize = 300;
        let mut handles = Vec::new();
        for idx in 0..N_TX {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let name = format!("ws-{idx}");
                let res = store
                    .transaction(async |db| {
                        insert_workspace(db, &name).await?;
                        if idx % 3 == 0 {
                            return Err(StoreError::Query(
                                diesel::result::Error::RollbackTransaction,
                            ));
                        }
                        Ok::<_, StoreError>(())
                    })
                    .await;
                if res.is_ok() {
                    assert!(
                        workspace_named(&store, &name).await,
                        "{name} is committed when its transaction returns"
                    );
                }
                (idx, res.is_ok())
            }));
        }
        for handle in handles {
            let (idx, ok) = handle.await.unwrap();
            assert_eq!(ok, idx % 3 != 0, "transaction {idx}");
        }
        let n_kept = (0..N_TX).filter(|idx| idx % 3 != 0).count();
        assert_eq!(count_workspaces(&store).await, n_kept as i64);
        for idx in (0..N_TX).step_by(3) {
            assert!(!workspace_named(&store, &format!("ws-{idx}")).await, "ws-{idx}");
        }
    }
);

/// 32 tasks x 20 write transactions on one SQLite file, each reading the counter and then
/// writing counter + 1 and an outbox row with that seq. None may fail with "database is
/// locked", and none may lose an update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_read_then_write_transactions_all_succeed() {
    const N_TASKS: usize = 32;
    const N_TX_PER_TASK: usize = 20;
    let test_db = TestDb::sqlite().await;
    let store = test_db.store();
    let workspace_id = new_workspace(&store, "busy").await;

    let mut handles = Vec::new();
    for _ in 0..N_TASKS {
        let store = store.clone();
        let workspace_id = workspace_id.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..N_TX_PER_TASK {
                store
                    .transaction(async |db| {
                        let last_seq: Option<i64> = db!(db, |conn| {
                            audience_seqs::table
                                .find("audience-1")
                                .select(audience_seqs::last_seq)
                                .get_result(conn)
                                .await
                                .optional()
                        })?;
                        let seq = last_seq.unwrap_or(0) + 1;
                        db!(db, |conn| {
                            diesel::insert_into(audience_seqs::table)
                                .values((
                                    audience_seqs::audience_id.eq("audience-1"),
                                    audience_seqs::last_seq.eq(seq),
                                ))
                                .on_conflict(audience_seqs::audience_id)
                                .do_update()
                                .set(audience_seqs::last_seq.eq(seq))
                                .execute(conn)
                                .await
                        })?;
                        insert_event(db, &workspace_id, "audience-1", seq).await?;
                        Ok::<_, StoreError>(())
                    })
                    .await
                    .expect("write transaction");
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }

    let seqs = event_seqs(&store, "audience-1").await;
    let n_total = i64::try_from(N_TASKS * N_TX_PER_TASK).unwrap();
    assert_eq!(
        seqs,
        (1..=n_total).collect::<Vec<_>>(),
        "gap-free, no lost update"
    );
}

/// Under a steady write load (every group begins while a commit of the one before is
/// still being checkpointed) the WAL is written from its start again now and then
/// instead of growing by every page every commit writes. Each round is 12,000
/// transactions of 16 KiB, each appending at least 4 new pages (~200 MB of WAL frames),
/// with readers alongside; the WAL must have been restarted twice within three rounds.
/// Before the writer took part, SQLite never restarted the WAL here (it grew to 300 MB
/// in one round); the WAL header's checkpoint sequence number counts the restarts. The
/// rounds leave room for a machine busy with other work, where the checkpoint thread
/// runs less often: the bar (restarts, not a smaller file) stays the same. Nothing
/// written is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_wal_stays_bounded_under_a_steady_write_load() {
    const N_TASKS: usize = 8;
    const N_TX_PER_TASK: usize = 1_500;
    const MAX_ROUNDS: usize = 3;
    let test_db = TestDb::sqlite().await;
    let store = test_db.store();
    let workspace_id = new_workspace(&store, "steady").await;
    let payload = "x".repeat(16 * 1024);
    let wal_path = format!("{}-wal", test_db.url());
    let reading = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let reading = Arc::clone(&reading);
            tokio::spawn(async move {
                // Not `reading.load(..)`: diesel's `RunQueryDsl::load` would be picked.
                while AtomicBool::load(&reading, Ordering::Relaxed) {
                    count_workspaces(&store).await;
                }
            })
        })
        .collect();
    let mut rounds = 0;
    let mut restarts = 0;
    while rounds < MAX_ROUNDS && restarts < 2 {
        let first_seq = (rounds * N_TX_PER_TASK) as i64 + 1;
        let writers: Vec<_> = (0..N_TASKS)
            .map(|task| {
                let store = store.clone();
                let workspace_id = workspace_id.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    let audience_id = format!("steady-{task}");
                    for seq in first_seq..first_seq + N_TX_PER_TASK as i64 {
                        let (workspace_id, audience_id, payload) =
                            (&workspace_id, &audience_id, &payload);
                        store
                            .transaction(async |db| {
                                insert_event_with(db, workspace_id, audience_id, seq, payload)
                                    .await?;
                                Ok::<_, StoreError>(())
                            })
                            .await
                            .expect("write transaction");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        rounds += 1;
        restarts = wal_restarts(&wal_path);
    }
    let wal_bytes = std::fs::metadata(&wal_path).expect("the WAL file").len();
    reading.store(false, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(
        restarts >= 2,
        "the WAL was written from its start {restarts} times under {rounds} rounds of \
         ~200 MB of frames (its file is {wal_bytes} bytes)"
    );
    for task in 0..N_TASKS {
        let seqs = event_seqs(&store, &format!("steady-{task}")).await;
        assert_eq!(
            seqs.len(),
            rounds * N_TX_PER_TASK,
            "every transaction of task {task} kept"
        );
    }
}

/// How many times the WAL at `wal_path` was written from its start: the checkpoint
/// sequence number in its header.
fn wal_restarts(wal_path: &str) -> u32 {
    let mut header = [0_u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open(wal_path).expect("the WAL file"),
        &mut header,
    )
    .expect("the WAL header");
    u32::from_be_bytes(header[12..16].try_into().unwrap())
}

backend_test!(
    /// The outbox counter as domain code should write it on both backends: one atomic
    /// upsert-and-return, then the event row, in the same transaction.
    async fn concurrent_outbox_seqs_are_gap_free(store) {
        const N_TASKS: usize = 8;
        const N_TX_PER_TASK: usize = 10;
        let workspace_id = new_workspace(&store, "outbox").await;
        let mut handles = Vec::new();
        for _ in 0..N_TASKS {
            let store = store.clone();
            let workspace_id = workspace_id.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..N_TX_PER_TASK {
                    store
                        .transaction(async |db| {
                            let seq = next_seq(db, "member-1").await?;
                            insert_event(db, &workspace_id, "member-1", seq).await?;
                            Ok::<_, StoreError>(())
                        })
                        .await
                        .expect("outbox transaction");
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let n_total = i64::try_from(N_TASKS * N_TX_PER_TASK).unwrap();
        let seqs = event_seqs(&store, "member-1").await;
        assert_eq!(seqs, (1..=n_total).collect::<Vec<_>>(), "{:?}", store.backend());
    }
);

backend_test!(
    /// Two agents claim the same ready step at the same moment: exactly one wins, 50 times.
    async fn concurrent_claims_have_exactly_one_winner(store) {
        let fixture = create_fixture(&store).await;
        let second_agent_id = new_agent(&store, &fixture, "agent-2").await;
        for round in 0..50 {
            reset_step(&store, &fixture.step_id).await;
            let barrier = Arc::new(Barrier::new(2));
            let contenders = [fixture.agent_id.clone(), second_agent_id.clone()].map(|agent_id| {
                let store = store.clone();
                let step_id = fixture.step_id.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    claim(&store, &step_id, &agent_id).await
                })
            });
            let mut n_winners = 0;
            for contender in contenders {
                n_winners += usize::from(contender.await.unwrap());
            }
            assert_eq!(n_winners, 1, "{:?} round {round}", store.backend());
        }
    }
);

// ---------------------------------------------------------------- helpers

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Bool)]
    not_null: bool,
}

/// A full `steps` row: loading it checks every column's type on the live database.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = steps)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[expect(
    dead_code,
    reason = "loaded to check the column types; some fields unread"
)]
struct StepRow {
    id: String,
    task_id: String,
    workspace_id: String,
    key: String,
    position: i32,
    title: String,
    description: String,
    status: String,
    approval_level: i32,
    executor: Option<String>,
    input: String,
    expected_inputs: Option<String>,
    expected_outputs: Option<String>,
    required_capabilities: String,
    result: Option<String>,
    summary: Option<String>,
    self_check: Option<String>,
    files: String,
    claimed_by: Option<String>,
    lease_until: Option<i64>,
    attempt: i32,
    rework_comment: Option<String>,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    input_tokens: i64,
    output_tokens: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug)]
struct SqlitePragmas {
    journal_mode: String,
    foreign_keys: i64,
    busy_timeout: i64,
    synchronous: i64,
}

/// (column, lowercased declared type, NOT NULL) per table.
type Columns = BTreeMap<String, BTreeSet<(String, String, bool)>>;

struct SchemaShape {
    columns: Columns,
    indexes: BTreeSet<String>,
}

struct Fixture {
    workspace_id: String,
    member_id: String,
    agent_id: String,
    step_id: String,
}

fn migrations_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

fn migration_dirs(backend: &str) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(migrations_root().join(backend))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    dirs
}

/// Table -> column names, read from the diesel `table!` definitions via the SQL they render.
fn schema_rs_columns() -> BTreeMap<String, BTreeSet<String>> {
    use agenthub::schema::*;
    use diesel::query_builder::AsQuery;
    macro_rules! tables {
        ($($table:ident),* $(,)?) => {
            [$((
                stringify!($table).to_owned(),
                diesel::debug_query::<diesel::sqlite::Sqlite, _>(&$table::table.as_query())
                    .to_string(),
            )),*]
        };
    }
    let rendered = tables!(
        workspaces,
        members,
        api_keys,
        agents,
        agent_tokens,
        tasks,
        steps,
        step_assignees,
        step_approvers,
        step_dependencies,
        step_submissions,
        approvals,
        input_requests,
        availability_requests,
        workflow_changes,
        plans,
        step_checks,
        workflow_approvals,
        meetings,
        meeting_participants,
        timeline,
        revoked_agent_tokens,
        events,
        audience_seqs,
        staged_floors,
        step_logs,
        files,
        usage,
        webhooks,
        webhook_deliveries,
        webhook_attempts,
        notifications,
        web_sessions,
        a2a_skills,
        a2a_calls,
    );
    rendered
        .into_iter()
        .map(|(table, sql)| {
            // SELECT `t`.`a`, `t`.`b` FROM `t` -- binds: []
            let select_list = sql
                .strip_prefix("SELECT ")
                .and_then(|rest| rest.split(" FROM ").next())
                .unwrap_or_else(|| panic!("unexpected sql {sql}"));
            let columns = select_list
                .split(", ")
                .map(|column| {
                    column
                        .rsplit('.')
                        .next()
                        .unwrap()
                        .trim_matches('`')
                        .to_owned()
                })
                .collect();
            (table, columns)
        })
        .collect()
}

async fn schema_shape(store: &Store) -> SchemaShape {
    let (columns, indexes) = store
        .read(async |db| {
            let columns_sql = match db.backend() {
                Backend::Sqlite => {
                    "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
                     p.\"notnull\" AS not_null \
                     FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                     AND m.name <> '__diesel_schema_migrations'"
                }
                Backend::Postgres => {
                    "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                     data_type::text AS data_type, (is_nullable = 'NO') AS not_null \
                     FROM information_schema.columns \
                     WHERE table_schema = current_schema() \
                     AND table_name <> '__diesel_schema_migrations'"
                }
            };
            let indexes_sql = match db.backend() {
                Backend::Sqlite => {
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx%'"
                }
                Backend::Postgres => {
                    "SELECT indexname::text AS name FROM pg_indexes \
                     WHERE schemaname = current_schema() AND indexname LIKE 'idx%'"
                }
            };
            let columns = db!(db, |conn| {
                diesel::sql_query(columns_sql).load::<ColumnRow>(conn).await
            })?;
            let indexes = db!(db, |conn| {
                diesel::sql_query(indexes_sql).load::<NameRow>(conn).await
            })?;
            Ok::<_, StoreError>((columns, indexes))
        })
        .await
        .unwrap();
    let mut shape = SchemaShape {
        columns: Columns::new(),
        indexes: indexes.into_iter().map(|row| row.name).collect(),
    };
    for row in columns {
        shape.columns.entry(row.table_name).or_default().insert((
            row.column_name,
            row.data_type.to_lowercase(),
            row.not_null,
        ));
    }
    shape
}

/// The SQLite settings of whichever pooled connection `db` is.
async fn pragmas(db: &mut Db<'_>) -> Result<SqlitePragmas, StoreError> {
    #[derive(QueryableByName)]
    struct JournalMode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }
    #[derive(QueryableByName)]
    struct ForeignKeys {
        #[diesel(sql_type = BigInt)]
        foreign_keys: i64,
    }
    #[derive(QueryableByName)]
    struct BusyTimeout {
        #[diesel(sql_type = BigInt)]
        timeout: i64,
    }
    #[derive(QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = BigInt)]
        synchronous: i64,
    }
    let journal_mode = db!(db, |conn| {
        diesel::sql_query("PRAGMA journal_mode")
            .get_result::<JournalMode>(conn)
            .await
    })?;
    let foreign_keys = db!(db, |conn| {
        diesel::sql_query("PRAGMA foreign_keys")
            .get_result::<ForeignKeys>(conn)
            .await
    })?;
    let busy_timeout = db!(db, |conn| {
        diesel::sql_query("PRAGMA busy_timeout")
            .get_result::<BusyTimeout>(conn)
            .await
    })?;
    let synchronous = db!(db, |conn| {
        diesel::sql_query("PRAGMA synchronous")
            .get_result::<Synchronous>(conn)
            .await
    })?;
    Ok(SqlitePragmas {
        journal_mode: journal_mode.journal_mode,
        foreign_keys: foreign_keys.foreign_keys,
        busy_timeout: busy_timeout.timeout,
        synchronous: synchronous.synchronous,
    })
}

async fn insert_workspace(db: &mut Db<'_>, name: &str) -> QueryResult<String> {
    let workspace_id = new_id();
    db!(db, |conn| {
        diesel::insert_into(workspaces::table)
            .values((
                workspaces::id.eq(&workspace_id),
                workspaces::name.eq(name),
                workspaces::created_at.eq(now_ms()),
            ))
            .execute(conn)
            .await
    })?;
    Ok(workspace_id)
}

async fn insert_member(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<String> {
    let member_id = new_id();
    db!(db, |conn| {
        diesel::insert_into(members::table)
            .values((
                members::id.eq(&member_id),
                members::workspace_id.eq(workspace_id),
                members::email.eq(format!("{member_id}@example.com")),
                members::name.eq("Min"),
                members::role.eq("owner"),
                members::created_at.eq(now_ms()),
            ))
            .execute(conn)
            .await
    })?;
    Ok(member_id)
}

async fn insert_agent(
    db: &mut Db<'_>,
    workspace_id: &str,
    member_id: &str,
    name: &str,
) -> QueryResult<String> {
    let agent_id = new_id();
    db!(db, |conn| {
        diesel::insert_into(agents::table)
            .values((
                agents::id.eq(&agent_id),
                agents::workspace_id.eq(workspace_id),
                agents::name.eq(name),
                agents::owner_member_id.eq(member_id),
                agents::capabilities.eq(r#"["docs"]"#),
                agents::max_concurrency.eq(2),
                agents::created_at.eq(now_ms()),
            ))
            .execute(conn)
            .await
    })?;
    Ok(agent_id)
}

async fn insert_event(
    db: &mut Db<'_>,
    workspace_id: &str,
    audience_id: &str,
    seq: i64,
) -> QueryResult<()> {
    let payload = format!(r#"{{"seq":{seq}}}"#);
    insert_event_with(db, workspace_id, audience_id, seq, &payload).await
}

async fn insert_event_with(
    db: &mut Db<'_>,
    workspace_id: &str,
    audience_id: &str,
    seq: i64,
    payload: &str,
) -> QueryResult<()> {
    db!(db, |conn| {
        diesel::insert_into(events::table)
            .values((
                events::audience_id.eq(audience_id),
                events::seq.eq(seq),
                events::workspace_id.eq(workspace_id),
                events::audience_kind.eq("member"),
                events::event_type.eq("task.updated"),
                events::payload.eq(payload),
                events::created_at.eq(now_ms()),
            ))
            .execute(conn)
            .await
    })?;
    Ok(())
}

/// Bumps and returns the audience's seq in one statement (works at READ COMMITTED).
async fn next_seq(db: &mut Db<'_>, audience_id: &str) -> QueryResult<i64> {
    db!(db, |conn| {
        diesel::insert_into(audience_seqs::table)
            .values((
                audience_seqs::audience_id.eq(audience_id),
                audience_seqs::last_seq.eq(1_i64),
            ))
            .on_conflict(audience_seqs::audience_id)
            .do_update()
            .set(audience_seqs::last_seq.eq(audience_seqs::last_seq + 1_i64))
            .returning(audience_seqs::last_seq)
            .get_result(conn)
            .await
    })
}

/// One conditional update: two agents racing for a step cannot both win.
/// (The example in the `store` module docs, verbatim.)
async fn claim_step(db: &mut Db<'_>, step_id: &str, agent_id: &str) -> QueryResult<bool> {
    let n_rows = db!(db, |conn| {
        diesel::update(steps::table)
            .filter(steps::id.eq(step_id).and(steps::status.eq("ready")))
            .set((steps::status.eq("claimed"), steps::claimed_by.eq(agent_id)))
            .execute(conn)
            .await
    })?;
    Ok(n_rows == 1)
}

async fn claim(store: &Store, step_id: &str, agent_id: &str) -> bool {
    let res: Result<bool, StoreError> = store
        .transaction(async |db| {
            let won = claim_step(db, step_id, agent_id).await?;
            Ok(won)
        })
        .await;
    res.unwrap()
}

async fn reset_step(store: &Store, step_id: &str) {
    store
        .transaction(async |db| {
            db!(db, |conn| {
                diesel::update(steps::table.find(step_id))
                    .set((
                        steps::status.eq("ready"),
                        steps::claimed_by.eq(None::<String>),
                    ))
                    .execute(conn)
                    .await
            })?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
}

async fn new_workspace(store: &Store, name: &str) -> String {
    store
        .transaction(async |db| Ok::<_, StoreError>(insert_workspace(db, name).await?))
        .await
        .unwrap()
}

async fn new_agent(store: &Store, fixture: &Fixture, name: &str) -> String {
    store
        .transaction(async |db| {
            let agent_id =
                insert_agent(db, &fixture.workspace_id, &fixture.member_id, name).await?;
            Ok::<_, StoreError>(agent_id)
        })
        .await
        .unwrap()
}

/// A workspace with one member, one agent, one active task and one ready step.
async fn create_fixture(store: &Store) -> Fixture {
    store
        .transaction(async |db| {
            let workspace_id = insert_workspace(db, "acme").await?;
            let member_id = insert_member(db, &workspace_id).await?;
            let agent_id = insert_agent(db, &workspace_id, &member_id, "agent-1").await?;
            let task_id = new_id();
            let step_id = new_id();
            let now = now_ms();
            db!(db, |conn| {
                diesel::insert_into(tasks::table)
                    .values((
                        tasks::id.eq(&task_id),
                        tasks::workspace_id.eq(&workspace_id),
                        tasks::title.eq("Director's report"),
                        tasks::description.eq("Break it down"),
                        tasks::status.eq("active"),
                        tasks::creator_member_id.eq(Some(&member_id)),
                        tasks::created_at.eq(now),
                        tasks::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await
            })?;
            db!(db, |conn| {
                diesel::insert_into(steps::table)
                    .values((
                        steps::id.eq(&step_id),
                        steps::task_id.eq(&task_id),
                        steps::workspace_id.eq(&workspace_id),
                        steps::key.eq("draft"),
                        steps::position.eq(0),
                        steps::title.eq("Draft the template"),
                        steps::description.eq(""),
                        steps::status.eq("ready"),
                        steps::approval_level.eq(0),
                        steps::input.eq(r#"{"report":"q3"}"#),
                        steps::required_capabilities.eq(r#"["docs"]"#),
                        steps::attempt.eq(1),
                        steps::created_at.eq(now),
                        steps::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await
            })?;
            Ok::<_, StoreError>(Fixture {
                workspace_id,
                member_id,
                agent_id,
                step_id,
            })
        })
        .await
        .unwrap()
}

async fn count_workspaces(store: &Store) -> i64 {
    store
        .read(async |db| {
            db!(db, |conn| workspaces::table.count().get_result(conn).await)
                .map_err(StoreError::from)
        })
        .await
        .unwrap()
}

async fn workspace_named(store: &Store, name: &str) -> bool {
    let n_rows: i64 = store
        .read(async |db| {
            db!(db, |conn| workspaces::table
                .filter(workspaces::name.eq(name))
                .count()
                .get_result(conn)
                .await)
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    n_rows == 1
}

async fn event_seqs(store: &Store, audience_id: &str) -> Vec<i64> {
    store
        .read(async |db| {
            db!(db, |conn| {
                events::table
                    .filter(events::audience_id.eq(audience_id))
                    .select(events::seq)
                    .order(events::seq)
                    .load(conn)
                    .await
            })
            .map_err(StoreError::from)
        })
        .await
        .unwrap()
}
