//! A PostgreSQL connection that keeps the prepared statements diesel would not.
//!
//! diesel refuses to keep the prepared statement of any `UPDATE`, upsert, `IN (…)` list,
//! multi-row `INSERT` or SQL literal (their SQL may vary with the values, and a cache
//! keyed by type would mix them up). diesel-async then prepares such a statement before
//! every execution: one more round trip, and PostgreSQL parses and plans it again. Every
//! step moves through several of them (its transitions, the claim, the sequence
//! counters, the outbox and timeline inserts). This connection is diesel-async's own,
//! with those statements marked safe to keep and keyed by their SQL text (the text, not
//! the type, says which statement it is), for up to 1,024 distinct texts
//! per connection ([`KeptTexts`]); past that they are prepared per execution as before.

use diesel::connection::{CacheSize, Instrumentation};
use diesel::pg::Pg;
use diesel::query_builder::{AsQuery, AstPass, Query, QueryFragment, QueryId};
use diesel::{ConnectionResult, QueryResult};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncConnectionCore, AsyncPgConnection,
    SimpleAsyncConnection,
};

use super::KeptTexts;

/// diesel-async's PostgreSQL connection, keeping more prepared statements (see the module
/// docs).
pub struct PgConn {
    inner: AsyncPgConnection,
    kept_by_sql: KeptTexts,
}

impl PgConn {
    /// Whether to keep the prepared statement of `query` by its SQL text: diesel would not
    /// keep it, and the connection keeps this text or has room for it ([`KeptTexts`]). A
    /// [`Fixed`](super::Fixed) statement says it may be kept: diesel-async keeps it by the
    /// text it renders anyway.
    fn keeps_by_sql<Q: QueryFragment<Pg>>(&mut self, query: &Q) -> bool {
        // A statement that cannot be rendered fails as it would have; nothing to keep.
        matches!(query.is_safe_to_cache_prepared(&Pg), Ok(false))
            && matches!(self.kept_by_sql.text_to_keep(query, &Pg), Ok(Some(_)))
    }
}

/// A query whose prepared statement is kept by its SQL text: safe to keep, and no query
/// id, so the cache keys it by text. diesel-async asks the query it is given (not a
/// reference to it), so the answer here is the one it uses.
struct Kept<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Kept<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Kept<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Kept<Q> {
    type SqlType = Q::SqlType;
}

impl SimpleAsyncConnection for PgConn {
    async fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.inner.batch_execute(query).await
    }
}

impl AsyncConnectionCore for PgConn {
    type ExecuteFuture<'conn, 'query> =
        <AsyncPgConnection as AsyncConnectionCore>::ExecuteFuture<'conn, 'query>;
    type LoadFuture<'conn, 'query> =
        <AsyncPgConnection as AsyncConnectionCore>::LoadFuture<'conn, 'query>;
    type Stream<'conn, 'query> = <AsyncPgConnection as AsyncConnectionCore>::Stream<'conn, 'query>;
    type Row<'conn, 'query> = <AsyncPgConnection as AsyncConnectionCore>::Row<'conn, 'query>;
    type Backend = Pg;

    fn load<'conn, 'query, T>(&'conn mut self, source: T) -> Self::LoadFuture<'conn, 'query>
    where
        T: AsQuery + 'query,
        T::Query: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        let query = source.as_query();
        if self.keeps_by_sql(&query) {
            self.inner.load(Kept(query))
        } else {
            self.inner.load(query)
        }
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        if self.keeps_by_sql(&source) {
            self.inner.execute_returning_count(Kept(source))
        } else {
            self.inner.execute_returning_count(source)
        }
    }
}

impl AsyncConnection for PgConn {
    type TransactionManager = AnsiTransactionManager;

    async fn establish(database_url: &str) -> ConnectionResult<Self> {
        let inner = AsyncPgConnection::establish(database_url).await?;
        Ok(PgConn {
            inner,
            kept_by_sql: KeptTexts::default(),
        })
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

impl PoolableConnection for PgConn {
    fn is_broken(&mut self) -> bool {
        self.inner.is_broken()
    }
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::PgConn;
    use crate::store::tests::Prepared;

    diesel::table! {
        kept_items (id) {
            id -> Text,
            state -> Text,
            n -> BigInt,
        }
    }

    #[tokio::test]
    async fn updates_and_multi_row_inserts_are_prepared_once_per_sql_text() {
        let Ok(url) = std::env::var("AGENTHUB_TEST_DATABASE_URL") else {
            eprintln!(
                "skipped store::pg::tests::updates_and_multi_row_inserts_are_prepared_once_per_sql_text: AGENTHUB_TEST_DATABASE_URL is not set"
            );
            return;
        };
        let mut conn = PgConn::establish(&url).await.unwrap();
        // A temporary table lives in this session only: nothing to drop.
        conn.batch_execute(
            "CREATE TEMPORARY TABLE kept_items (id TEXT PRIMARY KEY, state TEXT NOT NULL, n BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        let prepared = Prepared::default();
        conn.set_instrumentation(prepared.clone());
        for i in 0..3_i64 {
            let rows: Vec<_> = (0..2_i64)
                .map(|j| {
                    (
                        kept_items::id.eq(format!("i{i}-{j}")),
                        kept_items::state.eq("ready"),
                        kept_items::n.eq(i),
                    )
                })
                .collect();
            diesel::insert_into(kept_items::table)
                .values(rows)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for i in 0..3_i64 {
            let moved = diesel::update(kept_items::table)
                .filter(kept_items::id.eq(format!("i{i}-0")))
                .filter(kept_items::state.eq("ready"))
                .set((
                    kept_items::state.eq("claimed"),
                    kept_items::n.eq(kept_items::n + 1),
                ))
                .execute(&mut conn)
                .await
                .unwrap();
            assert_eq!(moved, 1);
        }
        let claimed: i64 = kept_items::table
            .filter(kept_items::state.eq("claimed"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(claimed, 3);
        assert_eq!(
            (
                prepared.starting_with("UPDATE"),
                prepared.starting_with("INSERT")
            ),
            (1, 1),
            "prepared for the cache: {:#?}",
            prepared.all()
        );
    }
}
