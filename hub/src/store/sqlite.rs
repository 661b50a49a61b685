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
//! the hub's CPU per step. Here such a statement is rendered with its binds copied (as the
//! wrapper did for every statement) and kept by its SQL text (the text, not the type, says
//! which statement it is), for up to 1,024 distinct texts per connection ([`KeptTexts`]);
//! past that they are prepared per execution as before.
//!
//! A call that does wait is a write while another process (the admin CLI) holds the write
//! lock, for at most `busy_timeout`, on the one writer connection.

use diesel::backend::Backend;
use diesel::connection::{
    AnsiTransactionManager, CacheSize, Connection, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManager, TransactionManagerStatus, WithMetadataLookup,
};
use diesel::query_builder::{
    AsQuery, AstPass, CollectedQuery, MoveableBindCollector, Query, QueryBuilder, QueryFragment,
    QueryId,
};
use diesel::row::IntoOwnedRow;
use diesel::sqlite::{Sqlite, SqliteQueryBuilder};
use diesel::{ConnectionResult, QueryResult, SqliteConnection};
use diesel_async::{AsyncConnection, AsyncConnectionCore, SimpleAsyncConnection};
use futures_util::stream::{self, BoxStream, StreamExt};

use super::KeptTexts;

/// The bind values of a query, owned.
type BindData =
    <<Sqlite as Backend>::BindCollector<'static> as MoveableBindCollector<Sqlite>>::BindData;

/// A row read from SQLite, owned (it outlives the statement that read it).
type OwnedRow = <<SqliteConnection as LoadConnection>::Row<'static, 'static> as IntoOwnedRow<
    'static,
    Sqlite,
>>::OwnedRow;

/// A SQLite connection whose statements run where they are awaited (see the module docs).
pub struct SqliteConn {
    inner: SqliteConnection,
    kept_by_sql: KeptTexts,
}

impl SqliteConn {
    fn new(inner: SqliteConnection) -> SqliteConn {
        SqliteConn {
            inner,
            kept_by_sql: KeptTexts::default(),
        }
    }

    /// `query` as SQL text and bind values, when its prepared statement is to be kept by
    /// that text: diesel would not keep it, and the connection keeps this text or has
    /// room for it ([`KeptTexts`]). (Only a query built from its text can say it
    /// is safe to keep: diesel asks a query through a reference, which walks the original.)
    fn kept_by_sql<Q: QueryFragment<Sqlite>>(
        &mut self,
        query: &Q,
    ) -> QueryResult<Option<CollectedQuery<BindData>>> {
        if query.is_safe_to_cache_prepared(&Sqlite)? {
            return Ok(None);
        }
        let mut builder = SqliteQueryBuilder::new();
        query.to_sql(&mut builder, &Sqlite)?;
        let sql = builder.finish();
        if !self.kept_by_sql.keep(&sql) {
            return Ok(None);
        }
        let mut binds = <Sqlite as Backend>::BindCollector::<'_>::default();
        query.collect_binds(&mut binds, self.inner.metadata_lookup(), &Sqlite)?;
        Ok(Some(CollectedQuery::new(sql, true, binds.moveable())))
    }

    /// Opens a write transaction that takes SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`, which diesel-async's transaction manager does not issue), for the
    /// writer's groups.
    pub(super) fn begin_immediate(&mut self) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction_sql(&mut self.inner, "BEGIN IMMEDIATE")
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
        let rows = (|| match self.kept_by_sql(&query)? {
            Some(collected) => owned_rows(self.inner.load(collected)?),
            None => owned_rows(self.inner.load(Run(query))?),
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
        let count = (|| match self.kept_by_sql(&source)? {
            Some(collected) => self.inner.execute_returning_count(&collected),
            None => self.inner.execute_returning_count(&source),
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
        std::future::ready(AnsiTransactionManager::begin_transaction(&mut conn.inner))
    }

    fn rollback_transaction(conn: &mut SqliteConn) -> impl Future<Output = QueryResult<()>> + Send {
        std::future::ready(AnsiTransactionManager::rollback_transaction(
            &mut conn.inner,
        ))
    }

    fn commit_transaction(conn: &mut SqliteConn) -> impl Future<Output = QueryResult<()>> + Send {
        std::future::ready(AnsiTransactionManager::commit_transaction(&mut conn.inner))
    }

    fn transaction_manager_status_mut(conn: &mut SqliteConn) -> &mut TransactionManagerStatus {
        AnsiTransactionManager::transaction_manager_status_mut(&mut conn.inner)
    }
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::SqliteConn;
    use crate::store::tests::Prepared;

    diesel::table! {
        items (id) {
            id -> Text,
            state -> Text,
            n -> BigInt,
        }
    }

    #[tokio::test]
    async fn updates_and_in_lists_are_prepared_once_per_sql_text() {
        let mut conn = SqliteConn::establish(":memory:").await.unwrap();
        conn.batch_execute(
            "CREATE TABLE items (id TEXT PRIMARY KEY, state TEXT NOT NULL, n BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        let prepared = Prepared::default();
        conn.set_instrumentation(prepared.clone());
        for i in 0..5_i64 {
            diesel::insert_into(items::table)
                .values((
                    items::id.eq(format!("i{i}")),
                    items::state.eq("ready"),
                    items::n.eq(i),
                ))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for i in 0..5_i64 {
            let moved = diesel::update(items::table)
                .filter(items::id.eq(format!("i{i}")))
                .filter(items::state.eq("ready"))
                .set((items::state.eq("claimed"), items::n.eq(items::n + 1)))
                .execute(&mut conn)
                .await
                .unwrap();
            assert_eq!(moved, 1);
        }
        for _ in 0..3 {
            let ids: Vec<String> = items::table
                .filter(items::id.eq_any(["i1", "i3"]))
                .select(items::id)
                .order(items::id)
                .load(&mut conn)
                .await
                .unwrap();
            assert_eq!(ids, ["i1", "i3"]);
        }
        let lists = prepared
            .all()
            .iter()
            .filter(|sql| sql.contains(" IN ("))
            .count();
        assert_eq!(
            (prepared.starting_with("UPDATE"), lists),
            (1, 1),
            "prepared for the cache: {:#?}",
            prepared.all()
        );
    }
}
