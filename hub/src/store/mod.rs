//! Storage: connection pools for SQLite (the embedded default) and PostgreSQL, embedded
//! migrations, and the [`Db`] handle with the [`db!`](crate::db) macro that lets one diesel
//! query body run on either backend.
//!
//! This is the only module that names the connection types; everything else sees a
//! [`Store`] and a `&mut Db<'_>`.
//!
//! # Writing queries
//!
//! A query is written once; `db!` expands it once per backend, so it is type-checked
//! against both. Reads that need no transaction go through [`Store::read`], everything that
//! writes goes through [`Store::transaction`]:
//!
//! ```ignore
//! use diesel::prelude::*;
//! use diesel_async::RunQueryDsl; // shadows diesel's sync RunQueryDsl from the prelude
//!
//! use crate::schema::steps;
//! use crate::store::{Db, Store, StoreError};
//!
//! /// One conditional update: two agents racing for a step cannot both win.
//! async fn claim_step(db: &mut Db<'_>, step_id: &str, agent_id: &str) -> QueryResult<bool> {
//!     let n_rows = crate::db!(db, |conn| {
//!         diesel::update(steps::table)
//!             .filter(steps::id.eq(step_id).and(steps::status.eq("ready")))
//!             .set((steps::status.eq("claimed"), steps::claimed_by.eq(agent_id)))
//!             .execute(conn)
//!             .await
//!     })?;
//!     Ok(n_rows == 1)
//! }
//!
//! async fn claim(store: &Store, step_id: &str, agent_id: &str) -> Result<bool, StoreError> {
//!     store
//!         .transaction(async |db| {
//!             let won = claim_step(db, step_id, agent_id).await?;
//!             // ... insert the outbox events with the same `db` ...
//!             Ok(won)
//!         })
//!         .await
//! }
//! ```
//!
//! (`hub/tests/it/store.rs` runs this code on both backends.) The closure's error type is
//! inferred from the surrounding function; any `E: From<diesel::result::Error> +
//! From<StoreError>` works, so domain code can use the crate's own error. Inside the body
//! of `db!` the query is plain diesel-async; a query that only one backend supports (e.g.
//! `replace_into`) fails to compile, which is the point.
//!
//! Domain functions take `db: &mut Db<'_>` and return `QueryResult<T>`, so they compose
//! inside one transaction. Inside a transaction closure use only `db`: calling
//! `store.transaction` or `store.read` there is refused with
//! [`StoreError::NestedTransaction`] (on SQLite it would otherwise wait for the one writer
//! connection that the closure itself holds).
//!
//! # SQLite concurrency
//!
//! SQLite allows one writer at a time. With several pooled writer connections, concurrent
//! write transactions contend inside SQLite: a deferred `BEGIN` that reads and then writes
//! can fail with `SQLITE_BUSY` ("database is locked") whatever the `busy_timeout` (the
//! concurrency test in `hub/tests/it/store.rs` fails that way with 8 writer connections),
//! and even `BEGIN IMMEDIATE` only polls the lock through the busy handler, which is unfair
//! and holds a blocking thread per waiter. So the SQLite store has two pools:
//!
//! - **one writer connection** used by [`Store::transaction`]: writers queue for it (async,
//!   FIFO, bounded by [`StoreOptions::acquire_timeout`]), never inside SQLite, and
//!   transactions that queued meanwhile are committed together (group commit, see
//!   `writer.rs`: each in its own savepoint, each answered only after the commit);
//!   each transaction still starts with `BEGIN IMMEDIATE` and the connection has a
//!   `busy_timeout`, so another process on the same file (the admin CLI) waits instead of
//!   failing;
//! - **a few reader connections** (`PRAGMA query_only`) used by [`Store::read`]: in WAL mode
//!   readers never block the writer nor each other.
//!
//! Every connection runs with `journal_mode=WAL`, `busy_timeout`, `foreign_keys=ON` and
//! `synchronous=NORMAL` (durable across application crashes; a power loss can drop the last
//! transactions but never corrupts the file).
//!
//! On PostgreSQL both methods use one pool of [`StoreOptions::pg_pool_size`] connections and
//! transactions run at the default `READ COMMITTED` level: write conditional updates
//! (`... WHERE status = 'ready'`) or atomic increments rather than read-modify-write.

mod batch;
mod pg;
mod sqlite;
mod url;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool::Runtime;
use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, SqliteConnection};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{BuildError, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Pool sizes and timeouts. `Default` gives the values used by `agenthub serve`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the PostgreSQL pool.
    pub pg_pool_size: usize,
    /// Reader connections in the SQLite store (there is always exactly one writer).
    pub sqlite_readers: usize,
    /// SQLite `busy_timeout`: how long a connection waits for a lock held by another
    /// process before failing.
    pub sqlite_busy_timeout: Duration,
    /// How long a caller waits for a pooled connection before getting
    /// [`StoreError::Pool`].
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pg_pool_size: 16,
            sqlite_readers: 4,
            sqlite_busy_timeout: Duration::from_millis(5000),
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// A handle to the database: cheap to clone (two `Arc`s), shared by every request.
#[derive(Clone)]
pub struct Store {
    pools: Pools,
    /// The URL with its password replaced, for `Debug` and logs.
    redacted_url: Arc<str>,
}

/// A borrowed connection of either backend, handed to [`Store::transaction`] and
/// [`Store::read`] closures. Run a query on it with [`db!`](crate::db).
pub enum Db<'a> {
    Sqlite(&'a mut SqliteConn),
    Postgres(&'a mut PgConn),
}

/// The closures taken by [`Store::transaction`] and [`Store::read`]: an async closure whose
/// future is `Send` for every borrow of the connection it is given.
///
/// This names the closure's future type so the bound `Fut: Send` can be written (the same
/// device diesel-async uses for its own `transaction`). It is implemented for every
/// `async |db: &mut Db<'_>| { ... }` closure; nothing needs to implement it by hand.
pub trait DbFn<Arg, Out>:
    AsyncFnOnce(Arg) -> Out + FnOnce(Arg) -> <Self as DbFn<Arg, Out>>::Fut
{
    /// The future returned by the closure.
    type Fut: Future<Output = Out>;
}

impl<F, Arg, Fut, Out> DbFn<Arg, Out> for F
where
    F: AsyncFnOnce(Arg) -> Out + FnOnce(Arg) -> Fut,
    Fut: Future<Output = Out>,
{
    type Fut = Fut;
}

/// Errors of the storage layer itself. Query errors inside a transaction closure are the
/// caller's own error type (`E: From<diesel::result::Error>`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend. `url` is redacted.
    #[error("invalid database url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A connection could not be established. `url` is redacted.
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: ConnectionError,
    },
    /// No pooled connection became available, or creating one failed.
    #[error("database pool")]
    Pool(#[from] PoolError),
    /// The pool could not be built (an invalid option).
    #[error("building the database pool")]
    PoolBuild(#[from] BuildError),
    /// A migration failed; the database keeps the migrations applied before it.
    #[error("running migrations")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A query outside any caller's transaction failed (`ping`, or a closure using
    /// `StoreError` as its error type).
    #[error("database query")]
    Query(#[from] diesel::result::Error),
    /// Creating the data directory failed.
    #[error("creating data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `store.transaction` or `store.read` was called inside a transaction closure.
    #[error("store.transaction or store.read called inside a transaction; use its `db`")]
    NestedTransaction,
    /// The commit of a group of SQLite transactions this one belonged to failed (its
    /// changes are not stored).
    #[error("committing the transaction: {0}")]
    GroupCommit(Arc<str>),
    /// The SQLite writer stayed busy for longer than the acquire timeout.
    #[error("the database writer was busy for {0:?}")]
    WriterTimeout(Duration),
    /// A blocking task (migrations) panicked or was cancelled.
    #[error("blocking database task failed")]
    Blocking(#[from] tokio::task::JoinError),
    /// PostgreSQL ended the session while a query ran on it (an administrator or a
    /// shutdown terminated the backend, the server crashed, the connection was lost):
    /// the query's error, whatever it says, is the database going away.
    #[error("the database ended the session: {0}")]
    SessionEnded(String),
}

/// Runs `$body` with `$conn` bound to the concrete connection of the backend behind `$db`
/// (a `&mut Db<'_>`). The body is expanded once per backend, so a diesel query written
/// once is compiled for both. It evaluates to the body's value, usually a `QueryResult`.
///
/// ```ignore
/// let n_steps: i64 = crate::db!(db, |conn| steps::table.count().get_result(conn).await)?;
/// ```
#[macro_export]
macro_rules! db {
    ($db:expr, |$conn:ident| $body:expr $(,)?) => {
        match $crate::store::Db::reborrow($db) {
            $crate::store::Db::Sqlite($conn) => $body,
            $crate::store::Db::Postgres($conn) => $body,
        }
    };
}

/// Inserts the row `$row` (a reference to an `Insertable` row type that sets every column,
/// as for [`Fixed`]) into `$table` inside a transaction, when nothing reads the insert's
/// result and its failure is the transaction's (a timeline row, a submission, a task):
/// a `QueryResult<()>`. On SQLite it runs at once; on PostgreSQL a copy of the row is sent
/// together with the transaction's next statement ([`PgConn::defer`]): no round trip of
/// its own, and a failure surfaces at that statement.
///
/// ```ignore
/// crate::insert_deferred!(db, tasks::table, row)?;
/// ```
#[macro_export]
macro_rules! insert_deferred {
    ($db:expr, $table:expr, $row:expr $(,)?) => {
        match $crate::store::Db::reborrow($db) {
            $crate::store::Db::Sqlite(conn) => diesel_async::RunQueryDsl::execute(
                $crate::store::Fixed(diesel::insert_into($table).values($row)),
                conn,
            )
            .await
            .map(drop),
            $crate::store::Db::Postgres(conn) => {
                conn.defer($crate::store::Fixed(
                    diesel::insert_into($table).values(Clone::clone($row)),
                ));
                Ok::<(), diesel::result::Error>(())
            }
        }
    };
}

/// Inserts `$rows` (a `Vec` of one `Insertable` row type that sets every column: no
/// `Option` field, or `treat_none_as_default_value = false`) into `$table` inside a
/// transaction, when nothing reads the inserts' results (the outbox's events, timeline
/// rows): a `QueryResult<()>`. On PostgreSQL one `INSERT … VALUES (…), (…)` per
/// [`ROWS_PER_INSERT`] rows, each deferred ([`insert_deferred!`](crate::insert_deferred)); on
/// SQLite, where a statement is a function call, one single-row `INSERT` per row at once,
/// reusing one prepared statement kept by its type ([`Fixed`]), where a multi-row one would
/// be parsed and planned again for each count of rows.
///
/// ```ignore
/// crate::insert_rows_deferred!(db, events::table, rows)?;
/// ```
#[macro_export]
macro_rules! insert_rows_deferred {
    ($db:expr, $table:expr, $rows:expr $(,)?) => {
        async {
            let mut rows = $rows;
            match $crate::store::Db::reborrow($db) {
                $crate::store::Db::Sqlite(conn) => {
                    for row in rows {
                        diesel_async::RunQueryDsl::execute(
                            $crate::store::Fixed(diesel::insert_into($table).values(row)),
                            conn,
                        )
                        .await?;
                    }
                }
                $crate::store::Db::Postgres(conn) => {
                    while !rows.is_empty() {
                        let rest = rows.split_off(rows.len().min($crate::store::ROWS_PER_INSERT));
                        let chunk = std::mem::replace(&mut rows, rest);
                        conn.defer(diesel::insert_into($table).values(chunk));
                    }
                }
            }
            Ok::<(), diesel::result::Error>(())
        }
        .await
    };
}

/// Starts a read inside a transaction whose answer is wanted later, and evaluates to an
/// [`Ahead`] that gives the answer ([`Ahead::get`]). `$read` is a future of a
/// `QueryResult`, with `$conn` bound as in [`db!`](crate::db); it owns what it binds
/// (it may be sent after the caller's borrows end). On SQLite it runs at once; on
/// PostgreSQL it goes out with the transaction's next statement ([`PgConn::ahead`]), so
/// reads that do not depend on each other's answers share one round trip. It should fail
/// only when the transaction cannot go on: a row not found is an answer (`optional()`).
///
/// ```ignore
/// let agent_id = agent_id.to_string();
/// let max = crate::ahead!(db, |conn| async move {
///     agents::table.find(agent_id).select(agents::max_concurrency)
///         .get_result::<i32>(conn).await.optional()
/// });
/// let step = find_step(db, step_id).await?; // the read above goes out with this one
/// let max = max.get(db).await?;
/// ```
#[macro_export]
macro_rules! ahead {
    ($db:expr, |$conn:ident| $read:expr $(,)?) => {
        match $crate::store::Db::reborrow($db) {
            $crate::store::Db::Sqlite($conn) => $crate::store::Ahead::answered($read.await),
            $crate::store::Db::Postgres(pg) => $crate::store::Ahead::sent(pg.ahead(move |pg| {
                ::std::boxed::Box::pin(async move {
                    let mut pg = pg;
                    let $conn = &mut pg;
                    $read.await
                })
            })),
        }
    };
}

/// The answer of a read started with [`ahead!`](crate::ahead).
#[must_use = "a read sent ahead is meant to be answered"]
pub struct Ahead<T>(AheadState<T>);

enum AheadState<T> {
    Answered(diesel::QueryResult<T>),
    Sent(pg::AheadSlot<T>),
}

impl<T> Ahead<T> {
    #[doc(hidden)]
    pub fn answered(answer: diesel::QueryResult<T>) -> Ahead<T> {
        Ahead(AheadState::Answered(answer))
    }

    #[doc(hidden)]
    pub fn sent(slot: pg::AheadSlot<T>) -> Ahead<T> {
        Ahead(AheadState::Sent(slot))
    }

    /// The read's answer, on the connection it was started on (sent now if no statement
    /// since took it along).
    pub async fn get(self, db: &mut Db<'_>) -> diesel::QueryResult<T> {
        match (self.0, db) {
            (AheadState::Answered(answer), _) => answer,
            (AheadState::Sent(slot), Db::Postgres(conn)) => conn.answer(slot).await,
            (AheadState::Sent(_), Db::Sqlite(_)) => Err(diesel::result::Error::QueryBuilderError(
                "a read sent ahead on PostgreSQL is answered on its own connection".into(),
            )),
        }
    }
}

/// Rows in one multi-row `INSERT` of [`insert_rows_deferred!`](crate::insert_rows_deferred) on PostgreSQL
/// (the widest table inserted this way has 64 columns; 65,535 bound values at most).
pub const ROWS_PER_INSERT: usize = 500;

/// A new id: a UUIDv7 string (time-ordered, so ids sort by creation).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now, as unix milliseconds: the unit of every timestamp column.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens a store without connecting yet (pools connect on first use; [`Store::migrate`]
    /// or [`Store::ping`] surface a bad URL). `postgres://` and `postgresql://` select
    /// PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a plain file path select SQLite.
    pub fn connect(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let pools = match url::parse(url)? {
            url::Target::Postgres(pg_url) => Pools::Postgres(PgPools {
                pool: pg_pool(&pg_url, opts)?,
                url: Arc::from(pg_url),
            }),
            url::Target::Sqlite(path) => {
                let path_str = path.to_str().ok_or_else(|| StoreError::InvalidUrl {
                    url: url::redact(url),
                    reason: "sqlite path is not valid UTF-8".to_owned(),
                })?;
                let shared_path: Arc<Path> = Arc::from(path.as_path());
                let wal_restart = Arc::new(AtomicBool::new(false));
                Pools::Sqlite(SqlitePools {
                    writer: Arc::new(writer::Writer::new(
                        sqlite_pool(path_str, 1, SqliteRole::Writer, opts)?,
                        opts.acquire_timeout,
                        Arc::clone(&wal_restart),
                    )),
                    readers: sqlite_pool(
                        path_str,
                        opts.sqlite_readers.max(1),
                        SqliteRole::Reader,
                        opts,
                    )?,
                    _checkpointer: Arc::new(Checkpointer::spawn(
                        Arc::clone(&shared_path),
                        opts.sqlite_busy_timeout,
                        wal_restart,
                    )),
                    path: shared_path,
                    busy_timeout: opts.sqlite_busy_timeout,
                })
            }
        };
        Ok(Store {
            pools,
            redacted_url: Arc::from(url::redact(url)),
        })
    }

    /// Opens (creating it if needed) the SQLite database `dir/agenthub.db`, creating `dir`
    /// first, with default options.
    pub fn open_data_dir(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let db_path = dir.join("agenthub.db");
        let db_path = db_path.to_str().ok_or_else(|| StoreError::InvalidUrl {
            url: db_path.display().to_string(),
            reason: "sqlite path is not valid UTF-8".to_owned(),
        })?;
        Store::connect(db_path, &StoreOptions::default())
    }

    pub fn backend(&self) -> Backend {
        match &self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// What the SQLite writer has done so far (`None` on PostgreSQL, whose transactions
    /// run side by side on the pool's connections).
    pub fn writer_stats(&self) -> Option<WriterStats> {
        match &self.pools {
            Pools::Sqlite(pools) => Some(pools.writer.stats()),
            Pools::Postgres(_) => None,
        }
    }

    /// Applies the pending embedded migrations of this backend and returns their versions.
    ///
    /// Runs diesel_migrations' sync harness on a dedicated connection inside
    /// `spawn_blocking`, so it works on current-thread runtimes too (diesel-async's
    /// `AsyncMigrationHarness` uses `block_in_place`, which panics there). On PostgreSQL a
    /// session advisory lock makes concurrently starting hubs apply them one at a time.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let versions = match &self.pools {
            Pools::Sqlite(sqlite) => {
                let path = Arc::clone(&sqlite.path);
                let busy_ms = sqlite.busy_timeout.as_millis();
                tokio::task::spawn_blocking(move || {
                    let path_str = path.to_string_lossy();
                    let mut conn = SqliteConnection::establish(&path_str).map_err(|source| {
                        StoreError::Connect {
                            url: path_str.to_string(),
                            source,
                        }
                    })?;
                    conn.batch_execute(&format!(
                        "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; \
                         PRAGMA foreign_keys = ON;"
                    ))?;
                    run_migrations(&mut conn, SQLITE_MIGRATIONS)
                })
                .await??
            }
            Pools::Postgres(pg) => {
                let url = Arc::clone(&pg.url);
                let redacted = self.redacted_url.to_string();
                tokio::task::spawn_blocking(move || {
                    // Inside spawn_blocking the wrapper drives the async connection with
                    // `Handle::block_on` on the caller's runtime.
                    let mut conn =
                        <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)
                            .map_err(|source| StoreError::Connect {
                                url: redacted,
                                source,
                            })?;
                    let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})");
                    SimpleConnection::batch_execute(&mut conn, &lock)?;
                    let res = run_migrations(&mut conn, PG_MIGRATIONS);
                    let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})");
                    SimpleConnection::batch_execute(&mut conn, &unlock)?;
                    res
                })
                .await??
            }
        };
        if !versions.is_empty() {
            tracing::info!(backend = ?self.backend(), migrations = ?versions, "applied migrations");
        }
        Ok(versions)
    }

    /// `SELECT 1` on a pooled connection, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(async |db| {
            crate::db!(db, |conn| conn.batch_execute("SELECT 1").await)?;
            Ok(())
        })
        .await
    }

    /// Runs `f` in a transaction: committed if it returns `Ok`, rolled back on `Err`.
    ///
    /// On SQLite it runs on the single writer connection and starts with `BEGIN IMMEDIATE`
    /// (see the module docs). Do not call `store.*` inside `f`; use its `db`.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'r, 'c> DbFn<&'r mut Db<'c>, Result<T, E>, Fut: Send> + Send,
        T: Send,
        E: From<diesel::result::Error> + From<StoreError> + fmt::Display + Send,
    {
        if in_transaction() {
            return Err(StoreError::NestedTransaction.into());
        }
        let work = async move {
            match &self.pools {
                Pools::Sqlite(sqlite) => sqlite.writer.transaction(f).await,
                Pools::Postgres(pg) => {
                    let mut conn = pg.pool.get().await.map_err(StoreError::from)?;
                    let res = conn
                        .transaction(async move |conn| {
                            let mut db = Db::Postgres(conn);
                            f(&mut db).await
                        })
                        .await;
                    session_ended(&mut conn, res)
                }
            }
        };
        IN_TRANSACTION.scope((), work).await
    }

    /// Runs `f` on a pooled connection without a transaction. On SQLite the connection is
    /// read-only (`PRAGMA query_only`): writes belong in [`Store::transaction`].
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'r, 'c> DbFn<&'r mut Db<'c>, Result<T, E>, Fut: Send> + Send,
        T: Send,
        E: From<StoreError> + fmt::Display + Send,
    {
        if in_transaction() {
            return Err(StoreError::NestedTransaction.into());
        }
        match &self.pools {
            Pools::Sqlite(sqlite) => {
                let mut conn = sqlite.readers.get().await.map_err(StoreError::from)?;
                let mut db = Db::Sqlite(&mut conn);
                f(&mut db).await
            }
            Pools::Postgres(pg) => {
                let mut conn = pg.pool.get().await.map_err(StoreError::from)?;
                let mut db = Db::Postgres(&mut conn);
                let res = f(&mut db).await;
                session_ended(&mut conn, res)
            }
        }
    }
}

/// `res`, or [`StoreError::SessionEnded`] when it failed on a connection that can no
/// longer be used (the pool drops it): PostgreSQL ended the session (SQLSTATE class 57,
/// operator intervention: `57P01` admin_shutdown, `57P02` crash_shutdown, `57P03`
/// cannot_connect_now, after which the server closes the connection) or the connection
/// was lost (class 08, connection exception: tokio-postgres then closes it too).
///
/// The SQLSTATE itself cannot be read here: diesel-async turns a tokio-postgres error
/// with a code into `DatabaseError(kind, info)` with a kind for eight codes only (unique
/// and foreign key violations, serialization failure, …; `Unknown` for every other, 57P01
/// among them) and an `info` that carries the server's message but not the code, and an
/// error without a code (a closed connection) into `UnableToSendCommand` with its text.
/// The connection's state does tell, and diesel-async reports it: closed, or its
/// transaction could not be rolled back. That holds whatever the query's error says and
/// in whatever language the server speaks (`lc_messages`), where matching the message
/// would not.
fn session_ended<T, E>(conn: &mut PgConn, res: Result<T, E>) -> Result<T, E>
where
    E: From<StoreError> + fmt::Display,
{
    match res {
        Err(err) if PoolableConnection::is_broken(conn) => {
            Err(StoreError::SessionEnded(err.to_string()).into())
        }
        res => res,
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

impl Db<'_> {
    /// A shorter borrow of the same connection; used by [`db!`](crate::db) so `db` stays
    /// usable after each query.
    pub fn reborrow(&mut self) -> Db<'_> {
        match self {
            Db::Sqlite(conn) => Db::Sqlite(conn),
            Db::Postgres(conn) => Db::Postgres(conn),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs `f` in a savepoint of the open transaction: released when it returns `Ok`,
    /// rolled back (with what it wrote and, on SQLite, the rows and sequence numbers the
    /// writer keeps for it) on `Err`; the transaction goes on either way, and `f`'s
    /// outcome is the inner result. The outer `Err` is the database's error when the
    /// savepoint itself could not be opened, released or rolled back: the transaction
    /// cannot go on then (SQLite may have rolled it back already, after an I/O error or a
    /// full disk), whatever `f` answered.
    pub async fn savepoint<T, E, F>(&mut self, f: F) -> diesel::QueryResult<Result<T, E>>
    where
        F: for<'r, 'c> DbFn<&'r mut Db<'c>, Result<T, E>, Fut: Send>,
    {
        self.begin_savepoint().await?;
        let res = f(self).await;
        self.end_savepoint(res.is_ok()).await?;
        Ok(res)
    }

    async fn begin_savepoint(&mut self) -> diesel::QueryResult<()> {
        match self {
            Db::Sqlite(conn) => {
                <SqliteConn as AsyncConnection>::TransactionManager::begin_transaction(&mut **conn)
                    .await
            }
            Db::Postgres(conn) => {
                <PgConn as AsyncConnection>::TransactionManager::begin_transaction(&mut **conn)
                    .await
            }
        }
    }

    /// Releases the savepoint opened last (`keep`) or rolls it back.
    async fn end_savepoint(&mut self, keep: bool) -> diesel::QueryResult<()> {
        type Sqlite = <SqliteConn as AsyncConnection>::TransactionManager;
        type Postgres = <PgConn as AsyncConnection>::TransactionManager;
        match (self, keep) {
            (Db::Sqlite(conn), true) => Sqlite::commit_transaction(&mut **conn).await,
            (Db::Sqlite(conn), false) => Sqlite::rollback_transaction(&mut **conn).await,
            (Db::Postgres(conn), true) => Postgres::commit_transaction(&mut **conn).await,
            (Db::Postgres(conn), false) => Postgres::rollback_transaction(&mut **conn).await,
        }
    }
}

pub use batch::{Batch, Batcher};
pub use sqlite::SqliteConn;
pub use writer::WriterStats;

/// How often the WAL is copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Checkpoints the SQLite WAL on a thread of its own, so commits do not wait for the
/// checkpoints' `fsync`s (SQLite's automatic checkpoint runs inside the commit that
/// crosses 1,000 WAL pages, on the one writer connection: 15-45 ms every few hundred
/// commits). The writer connection runs with `wal_autocheckpoint = 0`; this thread runs
/// a `PASSIVE` checkpoint every [`CHECKPOINT_INTERVAL`], which never blocks readers or the
/// writer, and a last one when the store is dropped.
///
/// A checkpoint alone does not shrink the WAL: SQLite writes it from the start again
/// only when a write transaction begins with every frame already copied, and under a
/// steady load the writer commits again while each checkpoint runs, so the WAL grew by
/// every page every commit wrote (1.3 GB in 8 s of W1 on `docs/benchmarks.md`'s machine),
/// each append extending the file. Once the WAL holds [`WAL_RESTART_FRAMES`], this thread
/// checkpoints again at once (what was committed meanwhile, [`checkpoint_round`]) and,
/// when at most [`WAL_WRITER_FRAMES`] are left, asks the writer (`wal_restart`) to copy
/// them between two groups ([`SqliteConn::checkpoint`], which holds up the writer's
/// callers for that copy and its two `fsync`s), after which the next group writes the WAL
/// from its start, unless a reader still reads the WAL at that moment (then the thread
/// asks again). Under W1 the WAL stays at ~40 MB, and W1 on SQLite took 0.9x the hub's CPU
/// per step and 0.9x the p50 latency. A failing checkpoint is logged as a warning when the
/// failures begin, and again when they end.
struct Checkpointer {
    /// Dropped with the last clone of the store: the thread checkpoints once more and ends.
    _stop: std::sync::mpsc::Sender<()>,
}

/// WAL frames (pages of 4 KiB) past which the writer is asked to let the WAL restart.
const WAL_RESTART_FRAMES: i64 = 1_024;
/// The writer is asked only when at most this many frames are left for it to copy.
const WAL_WRITER_FRAMES: i64 = 256;

impl Checkpointer {
    fn spawn(
        path: Arc<Path>,
        busy_timeout: Duration,
        wal_restart: Arc<AtomicBool>,
    ) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut conn: Option<SqliteConnection> = None;
                // Whether the last round failed: a lasting failure (a full disk) is said
                // once, when it begins, and once when it ends.
                let mut failing = false;
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(CHECKPOINT_INTERVAL),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    );
                    match checkpoint_round(&mut conn, &path, busy_timeout) {
                        Ok(restart) => {
                            if std::mem::take(&mut failing) {
                                tracing::info!("WAL checkpoints succeed again");
                            }
                            if restart {
                                wal_restart.store(true, Ordering::Release);
                            }
                        }
                        Err(err) if failing => {
                            tracing::debug!(error = %err, "WAL checkpoint failed again; retrying");
                            conn = None;
                        }
                        Err(err) => {
                            tracing::warn!(
                                error = %err,
                                path = %path.display(),
                                "WAL checkpoint failed: the WAL file grows until one succeeds \
                                 (check the disk's free space and the file's permissions); \
                                 retrying every {} ms",
                                CHECKPOINT_INTERVAL.as_millis()
                            );
                            failing = true;
                            conn = None;
                        }
                    }
                    if last {
                        break;
                    }
                }
            });
        if let Err(err) = spawned {
            // Without the thread the WAL grows until the process ends; say so loudly.
            tracing::error!(error = %err, "cannot start the SQLite checkpoint thread");
        }
        Checkpointer { _stop: stop }
    }
}

/// One round of the checkpoint thread: a checkpoint and, once the WAL holds
/// [`WAL_RESTART_FRAMES`], up to [`WAL_CATCH_UP_PASSES`] more for what was committed
/// while the one before ran, so that what the writer copies itself (holding up its
/// callers) is little. `true` when the writer should copy the rest: at most
/// [`WAL_WRITER_FRAMES`] are left (more were committed meanwhile, or a reader of an older
/// snapshot held frames back: next round).
fn checkpoint_round(
    conn: &mut Option<SqliteConnection>,
    path: &Path,
    busy_timeout: Duration,
) -> Result<bool, Box<dyn std::error::Error>> {
    if checkpoint(conn, path, busy_timeout)?.log < WAL_RESTART_FRAMES {
        return Ok(false);
    }
    for _ in 0..WAL_CATCH_UP_PASSES {
        let result = checkpoint(conn, path, busy_timeout)?;
        if result.left().is_some_and(|left| left <= WAL_WRITER_FRAMES) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checkpoints a round runs at most after its first, each copying what was committed
/// while the one before ran, until at most [`WAL_WRITER_FRAMES`] are left.
const WAL_CATCH_UP_PASSES: usize = 4;

/// The checkpoint both the checkpoint thread and the writer run: it never waits for a
/// lock, and copies what it can.
const PASSIVE_CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// What `PRAGMA wal_checkpoint` reports.
#[derive(diesel::QueryableByName)]
struct CheckpointResult {
    /// 1 when another connection's checkpoint held the checkpoint lock.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    busy: i64,
    /// The frames in the WAL (-1 when not in WAL mode or busy).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
    /// The frames of the WAL now in the database file (-1 likewise).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    checkpointed: i64,
}

impl CheckpointResult {
    /// The frames left to copy; `None` when the checkpoint did not run.
    fn left(&self) -> Option<i64> {
        (self.busy == 0 && self.log >= 0).then_some(self.log - self.checkpointed)
    }
}

/// A `PASSIVE` checkpoint (nothing when there is no database yet).
fn checkpoint(
    conn: &mut Option<SqliteConnection>,
    path: &Path,
    busy_timeout: Duration,
) -> Result<CheckpointResult, Box<dyn std::error::Error>> {
    if !path.exists() {
        return Ok(CheckpointResult {
            busy: 0,
            log: 0,
            checkpointed: 0,
        });
    }
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let mut new_conn = SqliteConnection::establish(&path.to_string_lossy())?;
            new_conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {};",
                busy_timeout.as_millis()
            ))?;
            conn.insert(new_conn)
        }
    };
    Ok(diesel::RunQueryDsl::get_result(
        diesel::sql_query(PASSIVE_CHECKPOINT),
        conn,
    )?)
}
pub use pg::{AheadSlot, PgConn};

/// A statement whose SQL text cannot vary with its values: no `IN (…)` list, no optional
/// field a changeset or an insert leaves out (rows derive `Insertable` with
/// `treat_none_as_default_value = false`), no SQL built from a value. diesel keeps no
/// `UPDATE`'s or `INSERT`'s prepared statement by its type, so [`KeptTexts`] renders the
/// statement's SQL at every execution to find it by its text: about a tenth of the hub's
/// CPU on the W2 benchmark. A `Fixed` statement's text is not rendered to decide that:
/// on SQLite it is rendered once per Rust type of the statement ([`sqlite`]), and debug
/// builds render it at every execution and panic if the text changed (a statement
/// wrongly called fixed fails the test suite, not a user); on PostgreSQL diesel-async
/// keeps it by the text it renders anyway.
///
/// ```ignore
/// crate::db!(db, |conn| Fixed(diesel::insert_into(tasks::table).values(row))
///     .execute(conn)
///     .await)?;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fixed<Q>(pub Q);

impl<Q: diesel::query_builder::QueryId> diesel::query_builder::QueryId for Fixed<Q> {
    type QueryId = Fixed<Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<DB, Q> diesel::query_builder::QueryFragment<DB> for Fixed<Q>
where
    DB: diesel::backend::Backend,
    Q: diesel::query_builder::QueryFragment<DB> + diesel::query_builder::QueryId,
{
    fn walk_ast<'b>(
        &'b self,
        pass: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// Asked directly (as diesel-async and the hub's SQLite connection ask) it may be kept.
    /// Asked through a reference (as diesel's SQLite connection asks) it is the statement
    /// it wraps, which diesel would not keep: that difference is how the SQLite
    /// connection tells a `Fixed` statement ([`sqlite`]).
    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Fixed<Q> {
    type SqlType = Q::SqlType;
}

/// The SQL texts whose prepared statements a connection keeps although diesel would not
/// (see [`sqlite`] and [`pg`]): at most [`KeptTexts::MAX`] of them. The hub's statements
/// come from a fixed set of query shapes; the bound matters for `IN (…)` lists and
/// multi-row inserts of many lengths.
#[derive(Default)]
struct KeptTexts(std::collections::HashSet<u64>);

impl KeptTexts {
    const MAX: usize = 1024;

    /// The SQL text of `query`, which diesel would not keep (the caller asked it), when
    /// its prepared statement is to be kept by that text: this text is kept already or
    /// there is room for it.
    fn text_to_keep<DB, Q>(
        &mut self,
        query: &Q,
        backend: &DB,
    ) -> diesel::QueryResult<Option<String>>
    where
        DB: diesel::backend::Backend,
        DB::QueryBuilder: Default,
        Q: diesel::query_builder::QueryFragment<DB>,
    {
        let sql = render(query, backend)?;
        Ok(self.keep(&sql).then_some(sql))
    }

    /// Whether the statement of `sql` is (now) kept: it already was, or there was room.
    fn keep(&mut self, sql: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        sql.hash(&mut hasher);
        let hash = hasher.finish();
        if self.0.contains(&hash) {
            return true;
        }
        self.0.len() < Self::MAX && self.0.insert(hash)
    }
}

/// The SQL text of `query`.
fn render<DB, Q>(query: &Q, backend: &DB) -> diesel::QueryResult<String>
where
    DB: diesel::backend::Backend,
    DB::QueryBuilder: Default,
    Q: diesel::query_builder::QueryFragment<DB>,
{
    use diesel::query_builder::QueryBuilder;
    let mut builder = DB::QueryBuilder::default();
    query.to_sql(&mut builder, backend)?;
    Ok(builder.finish())
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Key of the PostgreSQL advisory lock held while migrating ("agenthub" in ASCII, truncated).
const MIGRATION_LOCK_ID: i64 = 0x6167_656e_7468_7562;

tokio::task_local! {
    /// Set while a transaction closure runs, to refuse nested `store.*` calls.
    static IN_TRANSACTION: ();
}

#[derive(Clone)]
enum Pools {
    Sqlite(SqlitePools),
    Postgres(PgPools),
}

#[derive(Clone)]
struct SqlitePools {
    /// Exactly one connection: every write transaction queues here (group commit).
    writer: Arc<writer::Writer>,
    /// Read-only connections for `Store::read`.
    readers: Pool<SqliteConn>,
    path: Arc<Path>,
    busy_timeout: Duration,
    _checkpointer: Arc<Checkpointer>,
}

#[derive(Clone)]
struct PgPools {
    pool: Pool<PgConn>,
    /// The full URL, password included; never printed (see `Store::redacted_url`).
    url: Arc<str>,
}

#[derive(Clone, Copy)]
enum SqliteRole {
    Writer,
    Reader,
}

fn in_transaction() -> bool {
    IN_TRANSACTION.try_with(|()| ()).is_ok()
}

fn pg_pool(url: &str, opts: &StoreOptions) -> Result<Pool<PgConn>, StoreError> {
    // `Fast` recycling: no `SELECT 1` round trip per checkout (five per step before). A
    // connection the server dropped fails its next query, which the caller sees as a
    // database error, and diesel-async marks it broken so the pool discards it.
    let mut config = ManagerConfig::<PgConn>::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<PgConn>::new_with_config(url, config);
    let pool = Pool::builder(manager)
        .max_size(opts.pg_pool_size.max(1))
        .wait_timeout(Some(opts.acquire_timeout))
        .create_timeout(Some(opts.acquire_timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

fn sqlite_pool(
    path: &str,
    size: usize,
    role: SqliteRole,
    opts: &StoreOptions,
) -> Result<Pool<SqliteConn>, StoreError> {
    let mut pragmas = format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = NORMAL;",
        opts.sqlite_busy_timeout.as_millis()
    );
    match role {
        SqliteRole::Reader => pragmas.push_str(" PRAGMA query_only = ON;"),
        // Checkpoints belong to the `Checkpointer` thread; a reset WAL is cut to 64 MiB.
        // Each transaction of a group runs in a savepoint, whose sub-journal SQLite would
        // spill to a new temporary file (open, write, unlink) past 64 KiB: kept in memory.
        SqliteRole::Writer => pragmas.push_str(
            " PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864; \
             PRAGMA temp_store = MEMORY;",
        ),
    }
    let pragmas: Arc<str> = Arc::from(pragmas);
    let mut config = ManagerConfig::<SqliteConn>::default();
    config.custom_setup = Box::new(move |path| {
        let pragmas = Arc::clone(&pragmas);
        let path = path.to_owned();
        async move {
            let mut conn = SqliteConn::establish(&path).await?;
            conn.batch_execute(&pragmas)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    // A local file cannot drop the connection; `Fast` still discards connections left
    // inside a transaction, and skips a `SELECT 1` round trip per checkout.
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::new_with_config(path, config);
    let pool = Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(opts.acquire_timeout))
        .create_timeout(Some(opts.acquire_timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

fn run_migrations<C>(
    conn: &mut C,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>, StoreError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let versions = conn
        .run_pending_migrations(migrations)
        .map_err(StoreError::Migration)?;
    Ok(versions.iter().map(ToString::to_string).collect())
}
