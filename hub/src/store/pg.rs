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
//!
//! It also holds the writes of a transaction whose results nothing reads (the timeline's
//! rows, the outbox's events, a submission, …): [`PgConn::defer`] keeps such a statement
//! and sends it together with the transaction's next statement, which goes out right
//! behind it on the same connection without waiting for its answer (pipelining, as
//! diesel-async does for futures polled together). PostgreSQL still runs them one after
//! the other in the order sent, so the next statement sees the deferred writes; what is
//! saved is a round trip, and the server's and the hub's wake-ups for it, per deferred
//! write. A deferred write that fails fails the statement it went with (with its own
//! error: the statement after it only saw the transaction aborted), and the transaction's
//! `COMMIT` (with the write's kind of error) whatever the caller did with that error;
//! `ROLLBACK` drops the writes not yet sent, and `COMMIT` goes right behind them. The
//! transaction's `BEGIN` is deferred the same way.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use diesel::connection::{CacheSize, Instrumentation};
use diesel::pg::Pg;
use diesel::query_builder::{AsQuery, AstPass, Query, QueryFragment, QueryId};
use diesel::result::DatabaseErrorKind;
use diesel::{ConnectionResult, QueryResult};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncConnectionCore, AsyncPgConnection,
    SimpleAsyncConnection,
};
use futures_util::future::{BoxFuture, MaybeDone, maybe_done, poll_fn};
use futures_util::{FutureExt, TryFutureExt};

use super::KeptTexts;

/// diesel-async's PostgreSQL connection, keeping more prepared statements (see the module
/// docs).
pub struct PgConn {
    inner: AsyncPgConnection,
    kept_by_sql: KeptTexts,
    /// Writes kept by [`PgConn::defer`], in the order given, not sent yet.
    deferred: Vec<Deferred>,
    /// The transaction's `BEGIN` is among `deferred`: nothing of it reached the server.
    begin_deferred: bool,
    /// The first deferred write of the open transaction that failed (or was dropped
    /// unsent), if one did: that transaction cannot commit, whatever became of the error
    /// of the statement it went with (PostgreSQL would answer the `COMMIT` of an aborted
    /// transaction with a `ROLLBACK`, and no error).
    failed_write: FailedWrite,
}

/// A deferred write: builds the write's future on the connection when it is sent.
type Deferred =
    Box<dyn for<'c> FnOnce(&'c AsyncPgConnection) -> BoxFuture<'c, QueryResult<usize>> + Send>;

/// Where a read sent ahead ([`PgConn::ahead`]) leaves its answer.
pub type AheadSlot<T> = Arc<Mutex<Option<QueryResult<T>>>>;

/// Where the deferred writes sent with a statement record their failure.
type FailedWrite = Arc<Mutex<Option<(DatabaseErrorKind, String)>>>;

fn record_failure(failed_write: &FailedWrite, kind: DatabaseErrorKind, message: String) {
    let mut failed = failed_write.lock().unwrap_or_else(|e| e.into_inner());
    failed.get_or_insert((kind, message));
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

    fn in_transaction(&mut self) -> bool {
        matches!(
            <AnsiTransactionManager as diesel_async::TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(&mut self.inner)
                .transaction_depth(),
            Ok(Some(_))
        )
    }

    /// Keeps `write` (a statement whose result nothing reads) to send with the next
    /// statement of this connection (see the module docs). Only inside a transaction:
    /// `COMMIT` is what guarantees it is sent (a connection holding writes outside one is
    /// broken, and the pool drops it).
    pub fn defer<Q>(&mut self, write: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + 'static,
    {
        debug_assert!(
            self.in_transaction(),
            "a write is deferred only inside a transaction"
        );
        let keep = self.keeps_by_sql(&write);
        self.deferred
            .push(Box::new(move |conn: &AsyncPgConnection| {
                let mut conn = conn;
                if keep {
                    conn.execute_returning_count(Kept(write))
                } else {
                    conn.execute_returning_count(write)
                }
            }));
    }

    /// Keeps `read` (a statement whose answer is wanted later in the transaction) to send
    /// with the next statement of this connection, as [`PgConn::defer`] keeps a write: its
    /// answer waits in the returned slot, and [`PgConn::answer`] takes it (sending the
    /// read first if nothing else did). `read` fails only when the transaction cannot go
    /// on (a row it does not find is an answer, e.g. `optional()`): its failure fails the
    /// statement it went with and the transaction's `COMMIT`, as a write's does. Outside
    /// a transaction the read waits for its answer to be asked (a connection given back
    /// to the pool with it unsent is broken, and dropped).
    pub fn ahead<T: Send + 'static>(
        &mut self,
        read: impl for<'c> FnOnce(&'c AsyncPgConnection) -> BoxFuture<'c, QueryResult<T>>
        + Send
        + 'static,
    ) -> AheadSlot<T> {
        let slot: AheadSlot<T> = Arc::default();
        let answer = Arc::clone(&slot);
        self.deferred
            .push(Box::new(move |conn: &AsyncPgConnection| {
                let read = read(conn);
                async move {
                    let result = read.await;
                    let sent = match &result {
                        Ok(_) => Ok(0),
                        Err(diesel::result::Error::DatabaseError(kind, info)) => {
                            Err(diesel::result::Error::DatabaseError(
                                *kind,
                                Box::new(info.message().to_string()),
                            ))
                        }
                        Err(err) => Err(diesel::result::Error::QueryBuilderError(
                            err.to_string().into(),
                        )),
                    };
                    *answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    sent
                }
                .boxed()
            }));
        slot
    }

    /// The answer of a read sent ahead ([`PgConn::ahead`]); sends what is kept first when
    /// the read is still among it.
    pub async fn answer<T>(&mut self, slot: AheadSlot<T>) -> QueryResult<T> {
        let taken = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(answer) = taken() {
            return answer;
        }
        self.send_deferred().await?;
        taken().unwrap_or_else(|| {
            Err(diesel::result::Error::QueryBuilderError(
                "a read sent ahead was not sent: the transaction ended before it".into(),
            ))
        })
    }

    /// The deferred writes' futures, in order (none kept any more), each recording its
    /// failure, and the connection to send what goes behind them on.
    fn take_deferred(&mut self) -> (Vec<BoxFuture<'_, QueryResult<usize>>>, &AsyncPgConnection) {
        let PgConn {
            inner,
            deferred,
            begin_deferred,
            failed_write,
            ..
        } = self;
        *begin_deferred = false;
        let inner = &*inner;
        let writes = deferred
            .drain(..)
            .map(|write| {
                let failed_write = Arc::clone(failed_write);
                write(inner)
                    .inspect_err(move |err| {
                        let kind = match err {
                            diesel::result::Error::DatabaseError(kind, _) => *kind,
                            _ => DatabaseErrorKind::Unknown,
                        };
                        record_failure(&failed_write, kind, err.to_string());
                    })
                    .boxed()
            })
            .collect();
        (writes, inner)
    }

    /// `then` sent right behind the deferred writes (see [`after_writes`]).
    fn behind_writes<'c, T: Send + 'c>(
        &'c mut self,
        then: impl FnOnce(&'c AsyncPgConnection) -> BoxFuture<'c, QueryResult<T>>,
    ) -> BoxFuture<'c, QueryResult<T>> {
        let failed_write = Arc::clone(&self.failed_write);
        let (writes, conn) = self.take_deferred();
        let sent = after_writes(writes, then(conn), failed_write);
        async move {
            match sent.await {
                (Err(err), _) => Err(err),
                (Ok(()), Some(then)) => then,
                (Ok(()), None) => unreachable!("`then` is sent unless a write failed"),
            }
        }
        .boxed()
    }

    /// Sends the deferred writes (and reads sent ahead) alone, and waits for them.
    async fn send_deferred(&mut self) -> QueryResult<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let failed_write = Arc::clone(&self.failed_write);
        let (writes, _) = self.take_deferred();
        let no_statement = async { Ok(()) }.boxed();
        after_writes(writes, no_statement, failed_write).await.0
    }

    /// The failure of a deferred write of the transaction, forgotten here.
    fn take_failed_write(&self) -> Option<(DatabaseErrorKind, String)> {
        self.failed_write
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// `COMMIT`, sent right behind the deferred writes as a prepared statement (it then
    /// queues behind a write still being prepared; see [`PgConn::batch_execute`]).
    async fn commit_after_writes(&mut self) -> QueryResult<()> {
        let failed_write = Arc::clone(&self.failed_write);
        let (writes, mut conn) = self.take_deferred();
        let commit = conn.execute_returning_count(Kept(diesel::sql_query("COMMIT")));
        let (_, committed) = after_writes(writes, commit, failed_write).await;
        let Some(committed) = committed else {
            // A write failed before it was sent: the `COMMIT` was not sent either.
            self.inner.batch_execute("ROLLBACK").await?;
            let failure = self.take_failed_write();
            return Err(failed_write_error(failure.unwrap_or_else(|| {
                (DatabaseErrorKind::Unknown, "a write was not sent".into())
            })));
        };
        match self.take_failed_write() {
            // The server ended the aborted transaction on the `COMMIT` (as a rollback).
            Some(failure) => Err(failed_write_error(failure)),
            None => committed.map(drop),
        }
    }
}

/// The error a transaction's commit reports when one of its deferred writes failed: of
/// the write's kind (a unique violation stays one).
fn failed_write_error((kind, failure): (DatabaseErrorKind, String)) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        kind,
        Box::new(format!(
            "a write of the transaction failed, nothing was committed: {failure}"
        )),
    )
}

/// Sends `then` right behind `writes` and waits for all of them: the writes' first error
/// (or `Ok`), and `then`'s answer unless it was not sent.
///
/// Every pass polls the writes in order before `then`: each sends its request when first
/// polled, or queues on diesel-async's statement cache behind the one being prepared, so
/// `then` reaches the server after every write. A write that failed before it was sent
/// (its values could not be bound) keeps `then` from being sent at all: the server would
/// run it without that write. Dropped before it is done, the whole counts as a failed
/// write (its writes may not have been sent), so the transaction cannot commit.
async fn after_writes<'c, T>(
    writes: Vec<BoxFuture<'c, QueryResult<usize>>>,
    then: BoxFuture<'c, QueryResult<T>>,
    failed_write: FailedWrite,
) -> (QueryResult<()>, Option<QueryResult<T>>) {
    /// Records a failure when dropped before [`Unfinished::done`].
    struct Unfinished(Option<FailedWrite>);
    impl Unfinished {
        fn done(mut self) {
            self.0 = None;
        }
    }
    impl Drop for Unfinished {
        fn drop(&mut self) {
            if let Some(failed_write) = &self.0 {
                let message = "a statement with deferred writes was dropped before it was answered";
                record_failure(failed_write, DatabaseErrorKind::Unknown, message.into());
            }
        }
    }
    let unfinished = Unfinished(Some(failed_write));
    let mut writes: Vec<MaybeDone<_>> = writes.into_iter().map(maybe_done).collect();
    let mut then = Some(maybe_done(then));
    let mut first_pass = true;
    poll_fn(|cx| {
        let mut pending = false;
        for write in &mut writes {
            pending |= Pin::new(write).poll(cx).is_pending();
        }
        if std::mem::take(&mut first_pass)
            && writes
                .iter()
                .any(|write| matches!(write, MaybeDone::Done(Err(_))))
        {
            then = None;
        }
        if let Some(then) = &mut then {
            pending |= Pin::new(then).poll(cx).is_pending();
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    unfinished.done();
    let mut written = Ok(());
    for write in &mut writes {
        if let Some(Err(err)) = Pin::new(write).take_output()
            && written.is_ok()
        {
            written = Err(err);
        }
    }
    let then = then.and_then(|mut then| Pin::new(&mut then).take_output());
    (written, then)
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
    /// `BEGIN`, `COMMIT`, `ROLLBACK` and the like. `BEGIN` is deferred, as a write is. A
    /// `ROLLBACK` drops the deferred writes (and is not sent when the `BEGIN` was not). A
    /// `COMMIT` goes right behind them as a prepared statement, and fails (having ended
    /// the transaction) when one of the transaction's deferred writes failed. Anything
    /// else waits for them: a simple query does not queue behind a write whose statement
    /// is still being prepared, so sent alongside it could overtake the write.
    async fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        if query == "BEGIN" {
            self.take_failed_write();
            self.deferred.push(Box::new(|conn: &AsyncPgConnection| {
                let mut conn = conn;
                conn.execute_returning_count(Kept(diesel::sql_query("BEGIN")))
            }));
            self.begin_deferred = true;
            return Ok(());
        }
        if query.starts_with("ROLLBACK") {
            self.deferred.clear();
            if query == "ROLLBACK" {
                self.take_failed_write();
                if std::mem::take(&mut self.begin_deferred) {
                    // Nothing of the transaction reached the server.
                    return Ok(());
                }
            }
        } else if query == "COMMIT" {
            if !self.deferred.is_empty() {
                return self.commit_after_writes().await;
            }
            if let Some(failure) = self.take_failed_write() {
                self.inner.batch_execute("ROLLBACK").await?;
                return Err(failed_write_error(failure));
            }
        } else {
            self.send_deferred().await?;
        }
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
        let keep = self.keeps_by_sql(&query);
        let load = move |mut conn: &'conn AsyncPgConnection| {
            if keep {
                conn.load(Kept(query))
            } else {
                conn.load(query)
            }
        };
        if self.deferred.is_empty() {
            return load(&self.inner);
        }
        self.behind_writes(load)
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        let keep = self.keeps_by_sql(&source);
        let execute = move |mut conn: &'conn AsyncPgConnection| {
            if keep {
                conn.execute_returning_count(Kept(source))
            } else {
                conn.execute_returning_count(source)
            }
        };
        if self.deferred.is_empty() {
            return execute(&self.inner);
        }
        self.behind_writes(execute)
    }
}

impl AsyncConnection for PgConn {
    type TransactionManager = AnsiTransactionManager;

    async fn establish(database_url: &str) -> ConnectionResult<Self> {
        let inner = AsyncPgConnection::establish(database_url).await?;
        Ok(PgConn {
            inner,
            kept_by_sql: KeptTexts::default(),
            deferred: Vec::new(),
            begin_deferred: false,
            failed_write: Arc::default(),
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
    /// Broken as diesel-async's connection is, or holding writes (or reads sent ahead)
    /// no transaction will send.
    fn is_broken(&mut self) -> bool {
        self.inner.is_broken() || !self.deferred.is_empty() && !self.in_transaction()
    }
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    use futures_util::FutureExt;

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

    /// A connection with the session's own `kept_items` table, or `None` (skipped) without
    /// a database.
    async fn connection_with_table(test: &str) -> Option<PgConn> {
        let Ok(url) = std::env::var("AGENTHUB_TEST_DATABASE_URL") else {
            eprintln!("skipped store::pg::tests::{test}: AGENTHUB_TEST_DATABASE_URL is not set");
            return None;
        };
        let mut conn = PgConn::establish(&url).await.unwrap();
        conn.batch_execute(
            "CREATE TEMPORARY TABLE kept_items (id TEXT PRIMARY KEY, state TEXT NOT NULL, n BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        Some(conn)
    }

    /// [`connection_with_table`], the table holding `rows` (SQL `VALUES` tuples).
    async fn connection_with_rows(test: &str, rows: &str) -> Option<PgConn> {
        let mut conn = connection_with_table(test).await?;
        diesel::sql_query(format!("INSERT INTO kept_items VALUES {rows}"))
            .execute(&mut conn)
            .await
            .unwrap();
        Some(conn)
    }

    fn item(
        id: &str,
        n: i64,
    ) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
    + diesel::query_builder::QueryId
    + Send
    + 'static {
        diesel::insert_into(kept_items::table).values((
            kept_items::id.eq(id.to_string()),
            kept_items::state.eq("ready"),
            kept_items::n.eq(n),
        ))
    }

    async fn ids(conn: &mut PgConn) -> Vec<String> {
        kept_items::table
            .select(kept_items::id)
            .order(kept_items::id)
            .load(conn)
            .await
            .unwrap()
    }

    /// The failed write's own kind of error (a duplicate id).
    fn assert_unique_violation(err: &diesel::result::Error) {
        assert!(
            matches!(
                err,
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                )
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn deferred_writes_are_seen_by_the_next_statement_and_committed_in_order() {
        let test = "deferred_writes_are_seen_by_the_next_statement_and_committed_in_order";
        let Some(mut conn) = connection_with_table(test).await else {
            return;
        };
        let seen = conn
            .transaction(async |conn| {
                conn.defer(item("a", 1));
                // The second write depends on the first (it updates the row the first wrote).
                conn.defer(
                    diesel::update(kept_items::table.find("a".to_string()))
                        .set(kept_items::n.eq(kept_items::n + 1)),
                );
                let seen: i64 = kept_items::table
                    .find("a")
                    .select(kept_items::n)
                    .first(conn)
                    .await?;
                // Written last, sent with the COMMIT: more than a join polls in one go.
                for i in 0..40 {
                    conn.defer(item(&format!("b{i:02}"), i));
                }
                Ok::<_, diesel::result::Error>(seen)
            })
            .await
            .unwrap();
        assert_eq!(seen, 2, "the read saw both deferred writes, in order");
        let mut expected = vec!["a".to_string()];
        expected.extend((0..40).map(|i| format!("b{i:02}")));
        assert_eq!(ids(&mut conn).await, expected);
    }

    #[tokio::test]
    async fn a_failed_deferred_write_fails_the_next_statement_and_commits_nothing() {
        let test = "a_failed_deferred_write_fails_the_next_statement_and_commits_nothing";
        let Some(mut conn) = connection_with_rows(test, "('taken', 'ready', 0)").await else {
            return;
        };
        // The failure surfaces at the statement the write went with, as the write's own.
        let err = conn
            .transaction(async |conn| {
                conn.defer(item("c", 1));
                conn.defer(item("taken", 1));
                kept_items::table.count().get_result::<i64>(conn).await
            })
            .await
            .unwrap_err();
        assert_unique_violation(&err);
        // A caller that drops that error still cannot commit.
        let err = conn
            .transaction(async |conn| {
                conn.defer(item("d", 1));
                conn.defer(item("taken", 1));
                let _ignored = kept_items::table.count().get_result::<i64>(conn).await;
                Ok::<_, diesel::result::Error>(())
            })
            .await
            .unwrap_err();
        assert_unique_violation(&err);
        assert!(err.to_string().contains("nothing was committed"), "{err}");
        // Nor when the failing write was the last one, sent with the COMMIT.
        let err = conn
            .transaction(async |conn| {
                conn.defer(item("e", 1));
                conn.defer(item("taken", 1));
                Ok::<_, diesel::result::Error>(())
            })
            .await
            .unwrap_err();
        assert_unique_violation(&err);
        assert!(err.to_string().contains("nothing was committed"), "{err}");
        assert_eq!(
            ids(&mut conn).await,
            ["taken"],
            "nothing of those transactions"
        );
        // A rolled-back transaction's unsent writes are dropped, not sent with the next one.
        let err = conn
            .transaction(async |conn| {
                conn.defer(item("f", 1));
                Err::<(), _>(diesel::result::Error::RollbackTransaction)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, diesel::result::Error::RollbackTransaction));
        conn.transaction(async |conn| {
            conn.defer(item("g", 1));
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .unwrap();
        assert_eq!(ids(&mut conn).await, ["g", "taken"]);
    }

    #[tokio::test]
    async fn reads_sent_ahead_go_with_the_next_statement_and_answer_after_it() {
        let test = "reads_sent_ahead_go_with_the_next_statement_and_answer_after_it";
        let rows = "('a', 'ready', 1), ('b', 'ready', 2)";
        let Some(mut conn) = connection_with_rows(test, rows).await else {
            return;
        };
        let (first, missing, before, count, after) = conn
            .transaction(async |conn| {
                let first = conn.ahead(|mut conn| {
                    async move {
                        kept_items::table
                            .find("a")
                            .select(kept_items::n)
                            .get_result::<i64>(&mut conn)
                            .await
                    }
                    .boxed()
                });
                let missing = conn.ahead(|mut conn| {
                    async move {
                        kept_items::table
                            .find("nobody")
                            .select(kept_items::n)
                            .get_result::<i64>(&mut conn)
                            .await
                            .optional()
                    }
                    .boxed()
                });
                let before = conn.ahead(|mut conn| {
                    async move { kept_items::table.count().get_result::<i64>(&mut conn).await }
                        .boxed()
                });
                // Kept after the reads: sent after them, so they do not see it; the
                // statement it goes with does.
                conn.defer(item("c", 3));
                let count: i64 = kept_items::table.count().get_result(conn).await?;
                let first = conn.answer(first).await?;
                let missing = conn.answer(missing).await?;
                let before = conn.answer(before).await?;
                // A read sent ahead with nothing after it is sent when its answer is asked.
                let after = conn.ahead(|mut conn| {
                    async move { kept_items::table.count().get_result::<i64>(&mut conn).await }
                        .boxed()
                });
                let after = conn.answer(after).await?;
                Ok::<_, diesel::result::Error>((first, missing, before, count, after))
            })
            .await
            .unwrap();
        assert_eq!((first, missing, before, count, after), (1, None, 2, 3, 3));
        assert_eq!(ids(&mut conn).await, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_failed_read_sent_ahead_fails_the_next_statement_and_commits_nothing() {
        let test = "a_failed_read_sent_ahead_fails_the_next_statement_and_commits_nothing";
        let Some(mut conn) = connection_with_table(test).await else {
            return;
        };
        let err = conn
            .transaction(async |conn| {
                conn.defer(item("a", 1));
                // Division by zero: the transaction cannot go on.
                let broken = conn.ahead(|mut conn| {
                    async move {
                        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("1 / 0"))
                            .get_result::<i64>(&mut conn)
                            .await
                    }
                    .boxed()
                });
                let _ignored = kept_items::table.count().get_result::<i64>(conn).await;
                let answer = conn.answer(broken).await;
                assert!(answer.is_err(), "{answer:?}");
                Ok::<_, diesel::result::Error>(())
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing was committed"), "{err}");
        assert!(ids(&mut conn).await.is_empty());
    }
}
