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

use agenthub::store::{Backend, Store, StoreOptions};

/// The PostgreSQL server the tests use, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
/// Each test creates its own database there.
pub const PG_URL_VAR: &str = "AGENTHUB_TEST_DATABASE_URL";

/// A migrated store on its own database, removed on drop.
pub struct TestDb {
    store: Store,
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
            _cleanup: Cleanup::Sqlite(dir),
        }
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
        let store = Store::connect(&with_database(&admin_url, &name), &opts)
            .expect("connect to the test database");
        store.migrate().await.expect("migrate postgres");
        Some(TestDb {
            store,
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
