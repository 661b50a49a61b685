//! A SQLite connection for diesel-async that runs each statement in place, on the task
//! that awaits it, through diesel's synchronous API.
//!
//! diesel-async's `SyncConnectionWrapper` hands every statement to another thread: it
//! renders the statement's SQL, copies its binds into an owned form, locks the connection
//! behind an `Arc<Mutex<_>>`, and the connection then finds its prepared statement by that
//! SQL text. With the hand-off gone (a statement on a local file with `synchronous=NORMAL`
//! takes microseconds and never waits for the disk; checkpoints run on their own thread),
//! none of that is needed: here the statement goes straight to
//! [`SqliteConnection`], which finds a statement of a static query type in its cache by
//! type, without rendering any SQL. Rendering and copying were about a fifth of the hub's
//! CPU per step on the W2 benchmark (`docs/benchmarks.md`).
//!
//! diesel also refuses to keep the prepared statement of any `UPDATE`, upsert, `IN (…)`
//! list or SQL literal (their SQL may vary with the values, and its cache would key them
//! by type): SQLite parsed and planned those again at every execution, about a sixth of
//! the hub's CPU per step. Here such a statement is kept by its SQL text instead (the
//! text, not the type, says which statement it is), for up to [`MAX_KEPT_BY_SQL`]
//! distinct texts per connection; past that they are prepared per execution as before.
//!
//! A call that does wait is a write while another process (the admin CLI) holds the write
//! lock, for at most `busy_timeout`, on the one writer connection.

use diesel::connection::{
    AnsiTransactionManager, CacheSize, Connection, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManagerStatus,
};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use diesel::query_builder::{AsQuery, AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::row::IntoOwnedRow;
use diesel::sqlite::{Sqlite, SqliteQueryBuilder};
use diesel::{ConnectionResult, QueryResult, SqliteConnection};
use diesel_async::{AsyncConnection, AsyncConnectionCore, SimpleAsyncConnection};
use futures_util::stream::BoxStream;
use futures_util::stream::{self, StreamExt};

/// A row read from SQLite, owned (it outlives the statement that read it).
type OwnedRow = <<SqliteConnection as LoadConnection>::Row<'static, 'static> as IntoOwnedRow<
    'static,
    Sqlite,
>>::OwnedRow;

/// Distinct SQL texts whose statements one connection keeps although diesel would not
/// (see the module docs). The hub's statements come from a fixed set of query shapes; the
/// bound only matters for `IN (…)` lists of many lengths.
const MAX_KEPT_BY_SQL: usize = 1024;

/// A SQLite connection whose statements run where they are awaited (see the module docs).
pub struct SqliteConn {
    inner: SqliteConnection,
    /// Hashes of the SQL texts kept by text.
    kept_by_sql: HashSet<u64>,
}

impl SqliteConn {
    fn new(inner: SqliteConnection) -> SqliteConn {
        SqliteConn {
            inner,
            kept_by_sql: HashSet::new(),
        }
    }

    /// Whether to keep the prepared statement of `query` by its SQL text: diesel would not
    /// keep it, and the connection keeps fewer than [`MAX_KEPT_BY_SQL`] texts or this one.
    fn keeps_by_sql<Q: QueryFragment<Sqlite>>(&mut self, query: &Q) -> QueryResult<bool> {
        if query.is_safe_to_cache_prepared(&Sqlite)? {
            return Ok(false);
        }
        let mut builder = SqliteQueryBuilder::new();
        query.to_sql(&mut builder, &Sqlite)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        builder.finish().hash(&mut hasher);
        let hash = hasher.finish();
        if self.kept_by_sql.contains(&hash) {
            return Ok(true);
        }
        if self.kept_by_sql.len() >= MAX_KEPT_BY_SQL {
            return Ok(false);
        }
        self.kept_by_sql.insert(hash);
        Ok(true)
    }

    /// Runs `f` on the underlying synchronous connection, for what diesel-async's query
    /// DSL does not build for SQLite (multi-row inserts, `BEGIN IMMEDIATE`).
    pub fn with_sync<R>(
        &mut self,
        f: impl FnOnce(&mut SqliteConnection) -> QueryResult<R>,
    ) -> std::future::Ready<QueryResult<R>> {
        std::future::ready(f(&mut self.inner))
    }
}

/// A query as the connection runs it: untyped, because [`SqliteConnection::load`] wants
/// the row's SQL type to have metadata, which diesel-async's `load` does not promise; the
/// SQL, the binds and the prepared-statement caching are the wrapped query's own.
struct Run<Q>(Q);

impl<Q: QueryFragment<Sqlite>> QueryFragment<Sqlite> for Run<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }
}

impl<Q: QueryId> QueryId for Run<Q> {
    type QueryId = Q::QueryId;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q> Query for Run<Q> {
    type SqlType = diesel::sql_types::Untyped;
}

/// A query as [`Run`], whose prepared statement is kept by its SQL text although diesel
/// would not keep it (see the module docs): no query id, so the cache keys it by text.
struct BySql<Q>(Q);

impl<Q: QueryFragment<Sqlite>> QueryFragment<Sqlite> for BySql<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Sqlite) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for BySql<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for BySql<Q> {
    type SqlType = diesel::sql_types::Untyped;
}

/// Collects the rows of a loaded query as owned rows.
fn owned_rows<'conn, 'query>(
    cursor: <SqliteConnection as LoadConnection>::Cursor<'conn, 'query>,
) -> QueryResult<BoxStream<'static, QueryResult<OwnedRow>>> {
    let mut cache = Default::default();
    let mut rows = Vec::with_capacity(cursor.size_hint().0);
    for row in cursor {
        rows.push(Ok(IntoOwnedRow::into_owned(row?, &mut cache)));
    }
    Ok(stream::iter(rows).boxed())
}

impl SimpleAsyncConnection for SqliteConn {
    async fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.inner.batch_execute(query)
    }
}

impl AsyncConnectionCore for SqliteConn {
    type ExecuteFuture<'conn, 'query> = std::future::Ready<QueryResult<usize>>;
    type LoadFuture<'conn, 'query> = std::future::Ready<QueryResult<Self::Stream<'conn, 'query>>>;
    type Stream<'conn, 'query> = BoxStream<'static, QueryResult<OwnedRow>>;
    type Row<'conn, 'query> = OwnedRow;
    type Backend = Sqlite;

    fn load<'conn, 'query, T>(&'conn mut self, source: T) -> Self::LoadFuture<'conn, 'query>
    where
        T: AsQuery + 'query,
        T::Query: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        let query = source.as_query();
        let rows = (|| {
            if self.keeps_by_sql(&query)? {
                owned_rows(self.inner.load(BySql(query))?)
            } else {
                owned_rows(self.inner.load(Run(query))?)
            }
        })();
        std::future::ready(rows)
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        let count = (|| {
            if self.keeps_by_sql(&source)? {
                self.inner.execute_returning_count(&BySql(source))
            } else {
                self.inner.execute_returning_count(&source)
            }
        })();
        std::future::ready(count)
    }
}

impl AsyncConnection for SqliteConn {
    type TransactionManager = InPlaceTransactionManager;

    fn establish(database_url: &str) -> impl Future<Output = ConnectionResult<Self>> + Send {
        std::future::ready(SqliteConnection::establish(database_url).map(SqliteConn::new))
    }

    fn transaction_state(&mut self) -> &mut AnsiTransactionManager {
        self.inner.transaction_state()
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        self.inner.instrumentation()
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.inner.set_instrumentation(instrumentation);
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        self.inner.set_prepared_statement_cache_size(size);
    }
}

impl diesel_async::pooled_connection::PoolableConnection for SqliteConn {
    fn is_broken(&mut self) -> bool {
        use diesel_async::TransactionManager;
        InPlaceTransactionManager::is_broken_transaction_manager(self)
    }
}

/// diesel's own transaction manager, run in place on the underlying connection.
pub struct InPlaceTransactionManager;

impl diesel_async::TransactionManager<SqliteConn> for InPlaceTransactionManager {
    type TransactionStateData = AnsiTransactionManager;

    fn begin_transaction(conn: &mut SqliteConn) -> impl Future<Output = QueryResult<()>> + Send {
        std::future::ready(<AnsiTransactionManager as diesel::connection::TransactionManager<
            SqliteConnection,
        >>::begin_transaction(&mut conn.inner))
    }

    fn rollback_transaction(conn: &mut SqliteConn) -> impl Future<Output = QueryResult<()>> + Send {
        std::future::ready(<AnsiTransactionManager as diesel::connection::TransactionManager<
            SqliteConnection,
        >>::rollback_transaction(&mut conn.inner))
    }

    fn commit_transaction(conn: &mut SqliteConn) -> impl Future<Output = QueryResult<()>> + Send {
        std::future::ready(<AnsiTransactionManager as diesel::connection::TransactionManager<
            SqliteConnection,
        >>::commit_transaction(&mut conn.inner))
    }

    fn transaction_manager_status_mut(conn: &mut SqliteConn) -> &mut TransactionManagerStatus {
        <AnsiTransactionManager as diesel::connection::TransactionManager<SqliteConnection>>::transaction_manager_status_mut(&mut conn.inner)
    }
}
