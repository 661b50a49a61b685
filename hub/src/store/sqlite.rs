//! A SQLite connection for diesel-async that runs each statement in place, on the task
//! that awaits it, through diesel's synchronous API.
//!
//! diesel-async's `SyncConnectionWrapper` hands every statement to another thread: it
//! renders the statement's SQL, copies its binds into an owned form, locks the connection
//! behind an `Arc<Mutex<_>>`, and the connection then finds its prepared statement by that
//! SQL text. With the hand-off gone (a statement on a local file with `synchronous=NORMAL`
//! takes microseconds and never waits for the disk; checkpoints run on their own thread,
//! but for the few frames the writer copies now and then so that the WAL can restart),
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
//! The rows a query reads are copied into owned rows (they outlive its statement), which
//! carry the query's column names; diesel reads and copies those names from SQLite at
//! every load. Here a query whose type says its SQL (a static `QueryId`) reads them once
//! per connection and its later loads share them.
//!
//! A call that does wait is a write while another process (the admin CLI) holds the write
//! lock, for at most `busy_timeout`, on the one writer connection.
//!
//! The writer's connection also keeps the outbox's sequence counters of the group it has
//! open ([`SqliteConn::reserve_seqs`]): a reservation takes the numbers from memory and
//! each counter touched is written once, when the group commits, instead of one upsert
//! per audience per transaction. A rolled back transaction gives its numbers back; a
//! feed's last number read inside the group ([`SqliteConn::last_seq_in_group`], where a
//! new webhook's cursor starts) counts the group's own. The
//! group keeps its transactions' event and timeline rows too ([`SqliteConn::keep_events`],
//! [`SqliteConn::keep_timeline`]): nothing in a transaction reads events back, and the one
//! read of the timeline inside a transaction (who last moved a step) looks at the kept
//! rows first ([`SqliteConn::kept_timeline`]), so they are inserted just before the
//! group's commit, a few dozen rows per statement, instead of one statement per row (or
//! per transaction) inside each transaction's savepoint, whose journal copies every page
//! they change. A rolled back transaction's rows are dropped.

use diesel::backend::Backend;
use diesel::connection::{
    AnsiTransactionManager, CacheSize, Connection, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManager, TransactionManagerStatus, WithMetadataLookup,
};
use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};

use diesel::RunQueryDsl as _;
use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel::query_builder::{
    AsQuery, AstPass, CollectedQuery, MoveableBindCollector, Query, QueryFragment, QueryId,
};
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::row::IntoOwnedRow;
use diesel::sqlite::Sqlite;
use diesel::upsert::excluded;
use diesel::{ConnectionResult, QueryResult, SqliteConnection};
use diesel_async::{AsyncConnection, AsyncConnectionCore, SimpleAsyncConnection};
use futures_util::stream::{self, BoxStream, StreamExt};

use super::KeptTexts;
use crate::events::EventRow;
use crate::schema::{audience_seqs, events, timeline};
use crate::tasks::model::TimelineRow;

/// The bind values of a query, owned.
type BindData =
    <<Sqlite as Backend>::BindCollector<'static> as MoveableBindCollector<Sqlite>>::BindData;

/// A row read from SQLite, owned (it outlives the statement that read it).
type OwnedRow = <<SqliteConnection as LoadConnection>::Row<'static, 'static> as IntoOwnedRow<
    'static,
    Sqlite,
>>::OwnedRow;

/// The column names the owned rows of one load share (`None` until its first row).
type ColumnNames = <<SqliteConnection as LoadConnection>::Row<'static, 'static> as IntoOwnedRow<
    'static,
    Sqlite,
>>::Cache;

/// A SQLite connection whose statements run where they are awaited (see the module docs).
pub struct SqliteConn {
    inner: SqliteConnection,
    kept_by_sql: KeptTexts,
    /// The SQL text of each [`Fixed`](super::Fixed) statement run here, by its Rust type
    /// (the address of its `type_name`: a type whose name is found at two addresses
    /// is merely rendered twice).
    fixed: HashMap<usize, String>,
    /// The column names of the rows loaded here by each query whose type says its SQL
    /// (a static [`QueryId`]), shared by all its owned rows: diesel would read and copy
    /// them again at every load.
    column_names: HashMap<TypeId, ColumnNames>,
    seqs: Seqs,
}

/// The sequence counters of the writer's open group, and the rows it keeps until its
/// commit (see the module docs).
#[derive(Debug, Default)]
struct Seqs {
    /// A group is open (`BEGIN IMMEDIATE`): reservations are kept here until it commits.
    open: bool,
    /// The last seq of each audience known here: committed, or reserved in the open group.
    /// Valid while no other connection writes; cleared when one did (`data_version`).
    last: HashMap<String, i64>,
    /// What each reservation of the open group changed, to give it back when its
    /// transaction (a savepoint at `depth`) rolls back; also which counters to write.
    journal: Vec<Reserved>,
    /// SQLite's `PRAGMA data_version` when the last group began: another connection's
    /// commit (the admin CLI) changes it.
    data_version: Option<i64>,
    /// The rows the open group's transactions wrote and nothing in them reads back.
    kept: Kept,
}

/// The rows the writer's open group keeps until its commit, each with the depth of the
/// transaction that wrote it, in the order written.
#[derive(Debug, Default)]
struct Kept {
    events: Vec<(u32, EventRow)>,
    timeline: Vec<(u32, TimelineRow)>,
}

impl Kept {
    /// Drops the rows of the transactions at `depth` and deeper (rolled back).
    fn drop_from(&mut self, depth: u32) {
        self.events.retain(|(written_at, _)| *written_at < depth);
        self.timeline.retain(|(written_at, _)| *written_at < depth);
    }

    /// Hands the rows of the savepoint at `depth`, released, to the one around it.
    fn lift(&mut self, depth: u32) {
        let events = self.events.iter_mut().map(|(written_at, _)| written_at);
        let timeline = self.timeline.iter_mut().map(|(written_at, _)| written_at);
        for written_at in events.chain(timeline) {
            if *written_at >= depth {
                *written_at = depth - 1;
            }
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.timeline.clear();
    }
}

/// Inserts the rows left in `$rows` (an exact-size iterator of one `Insertable` row
/// type) into `$table`, `$n` per statement while `$n` are left, for each `$n` in turn:
/// each length is a statement SQLite prepares once (an array's length is part of its
/// type).
macro_rules! insert_in_arrays {
    ($conn:expr, $table:expr, $rows:expr, $($n:literal),+) => {{
        let mut rows = $rows;
        $(
            while rows.len() >= $n {
                let chunk: [_; $n] = std::array::from_fn(|_| rows.next().expect("counted"));
                ExecuteDsl::execute(diesel::insert_into($table).values(chunk), $conn)?;
            }
        )+
        Ok::<(), diesel::result::Error>(())
    }};
}

#[derive(Debug)]
struct Reserved {
    depth: u32,
    audience_id: String,
    before: Option<i64>,
}

/// Most counters kept between groups; past that they are read again.
const MAX_KEPT_SEQS: usize = 8_192;

#[derive(diesel::QueryableByName)]
struct DataVersion {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    data_version: i64,
}

impl SqliteConn {
    fn new(inner: SqliteConnection) -> SqliteConn {
        SqliteConn {
            inner,
            kept_by_sql: KeptTexts::default(),
            fixed: HashMap::new(),
            column_names: HashMap::new(),
            seqs: Seqs::default(),
        }
    }

    /// Open transactions and savepoints.
    pub(super) fn depth(&mut self) -> u32 {
        AnsiTransactionManager::transaction_manager_status_mut(&mut self.inner)
            .transaction_depth()
            .ok()
            .flatten()
            .map_or(0, |depth| depth.get())
    }

    /// Reserves `count` new numbers for each audience in the open group and returns the
    /// first of each, by audience id; `None` when no group is open (the caller then
    /// reserves them in the database). The counters are written when the group commits.
    pub(crate) fn reserve_seqs(
        &mut self,
        counts: &[(&str, i64)],
    ) -> QueryResult<Option<HashMap<String, i64>>> {
        let Some(depth) = self.group_depth() else {
            return Ok(None);
        };
        let mut firsts = HashMap::with_capacity(counts.len());
        for &(audience_id, count) in counts {
            let before = self.seqs.last.get(audience_id).copied();
            let last = match before {
                Some(last) => last,
                None => audience_seqs::table
                    .find(audience_id)
                    .select(audience_seqs::last_seq)
                    .first::<i64>(&mut self.inner)
                    .optional()?
                    .unwrap_or(0),
            };
            firsts.insert(audience_id.to_string(), last + 1);
            self.seqs.last.insert(audience_id.to_string(), last + count);
            self.seqs.journal.push(Reserved {
                depth,
                audience_id: audience_id.to_string(),
                before,
            });
        }
        Ok(Some(firsts))
    }

    /// Keeps the outbox's `rows` in the open group, to be inserted just before it commits
    /// (see the module docs), or gives them back when no group is open (the caller then
    /// inserts them).
    pub(crate) fn keep_events(&mut self, rows: Vec<EventRow>) -> Option<Vec<EventRow>> {
        let Some(depth) = self.group_depth() else {
            return Some(rows);
        };
        let kept = rows.into_iter().map(|row| (depth, row));
        self.seqs.kept.events.extend(kept);
        None
    }

    /// Keeps timeline `rows` in the open group, as [`SqliteConn::keep_events`] keeps
    /// events; `false` when no group is open (the caller then inserts them).
    pub(crate) fn keep_timeline(&mut self, rows: &[TimelineRow]) -> bool {
        let Some(depth) = self.group_depth() else {
            return false;
        };
        let kept = rows.iter().map(|row| (depth, row.clone()));
        self.seqs.kept.timeline.extend(kept);
        true
    }

    /// The last number of `audience_id` as the open group sees it, its own reservations
    /// included (they are written to `audience_seqs` at its commit); `None` when no group
    /// is open or this connection has not read the audience's counter since the last
    /// commit by another connection (then the table holds the last number).
    pub(crate) fn last_seq_in_group(&mut self, audience_id: &str) -> Option<i64> {
        self.group_depth()?;
        self.seqs.last.get(audience_id).copied()
    }

    /// The timeline rows the open group keeps, oldest first: newer than every row in the
    /// database, and not in it until the group commits.
    pub(crate) fn kept_timeline(&self) -> impl DoubleEndedIterator<Item = &TimelineRow> {
        self.seqs.kept.timeline.iter().map(|(_, row)| row)
    }

    /// The depth of the transaction running in the writer's open group, if one is: the
    /// group's first member runs in the group's transaction itself (depth 1), the others
    /// each in a savepoint.
    fn group_depth(&mut self) -> Option<u32> {
        let depth = self.depth();
        (self.seqs.open && depth > 0).then_some(depth)
    }

    /// Inserts the rows the open group kept (before its commit): the events in the order
    /// of their audience and number (rows that share an index page go in together), the
    /// timeline's in the order written.
    fn write_kept(&mut self) -> QueryResult<()> {
        let kept = std::mem::take(&mut self.seqs.kept);
        let mut events: Vec<EventRow> = kept.events.into_iter().map(|(_, row)| row).collect();
        events.sort_unstable_by(|left, right| {
            (&left.audience_id, left.seq).cmp(&(&right.audience_id, right.seq))
        });
        let conn = &mut self.inner;
        insert_in_arrays!(conn, events::table, events.into_iter(), 64, 16, 4, 1)?;
        let timeline = kept.timeline.into_iter().map(|(_, row)| row);
        insert_in_arrays!(conn, timeline::table, timeline, 32, 8, 2, 1)
    }

    /// Writes the counters the open group moved (before its commit).
    fn write_seqs(&mut self) -> QueryResult<()> {
        let moved: BTreeSet<String> = self
            .seqs
            .journal
            .drain(..)
            .map(|reserved| reserved.audience_id)
            .collect();
        let rows: Vec<(String, i64)> = moved
            .into_iter()
            .filter_map(|audience_id| {
                let last = *self.seqs.last.get(&audience_id)?;
                Some((audience_id, last))
            })
            .collect();
        // One upsert per counter (SQLite takes a multi-row upsert from diesel row by row
        // anyway), `Fixed`: its text is rendered once and its statement kept, where diesel
        // would prepare an upsert at every execution.
        for (audience_id, last) in rows {
            let upsert = super::Fixed(
                diesel::insert_into(audience_seqs::table)
                    .values((
                        audience_seqs::audience_id.eq(audience_id),
                        audience_seqs::last_seq.eq(last),
                    ))
                    .on_conflict(audience_seqs::audience_id)
                    .do_update()
                    .set(audience_seqs::last_seq.eq(excluded(audience_seqs::last_seq))),
            );
            self.execute(&upsert)?;
        }
        Ok(())
    }

    /// Runs `query`, kept by its SQL text when diesel would not keep it
    /// ([`SqliteConn::kept_by_sql`]); its number of rows changed.
    fn execute<Q: QueryFragment<Sqlite> + QueryId>(&mut self, query: &Q) -> QueryResult<usize> {
        match self.kept_by_sql(query)? {
            Some(collected) => self.inner.execute_returning_count(&collected),
            None => self.inner.execute_returning_count(query),
        }
    }

    /// Gives back what the transactions at `depth` and deeper reserved, and drops the
    /// rows they wrote that the group kept.
    fn give_back_seqs(&mut self, depth: u32) {
        self.seqs.kept.drop_from(depth);
        while self
            .seqs
            .journal
            .last()
            .is_some_and(|reserved| reserved.depth >= depth)
        {
            let reserved = self.seqs.journal.pop().expect("checked above");
            match reserved.before {
                Some(before) => self.seqs.last.insert(reserved.audience_id, before),
                None => self.seqs.last.remove(&reserved.audience_id),
            };
        }
    }

    /// After a savepoint at `depth` is released its reservations belong to the one
    /// around it.
    fn keep_seqs(&mut self, depth: u32) {
        for reserved in &mut self.seqs.journal {
            if reserved.depth >= depth {
                reserved.depth = depth - 1;
            }
        }
        self.seqs.kept.lift(depth);
    }

    /// Ends the group's counters: `committed` or rolled back (then nothing here is known
    /// to be on disk, and all is read again).
    fn end_group(&mut self, committed: bool) {
        self.seqs.open = false;
        self.seqs.journal.clear();
        self.seqs.kept.clear();
        if !committed || self.seqs.last.len() > MAX_KEPT_SEQS {
            self.seqs.last.clear();
        }
    }

    /// `query` as SQL text and bind values, when its prepared statement is to be kept by
    /// that text: diesel would not keep it, and the connection keeps this text or has
    /// room for it ([`KeptTexts`]), or it is a [`Fixed`](super::Fixed) statement, whose
    /// text is rendered once per type. (Only a query built from its text can say it is
    /// safe to keep: diesel asks a query through a reference, which walks the original.)
    fn kept_by_sql<Q: QueryFragment<Sqlite> + QueryId>(
        &mut self,
        query: &Q,
    ) -> QueryResult<Option<CollectedQuery<BindData>>> {
        let sql = if Q::is_safe_to_cache_prepared(query, &Sqlite)? {
            // diesel keeps it by its type, unless it is `Fixed`: asked through a reference,
            // as diesel asks, a `Fixed` statement is the one it wraps, which diesel would not.
            if <&Q as QueryFragment<Sqlite>>::is_safe_to_cache_prepared(&query, &Sqlite)? {
                return Ok(None);
            }
            self.fixed_sql(std::any::type_name::<Q>().as_ptr() as usize, query)?
        } else {
            match self.kept_by_sql.text_to_keep(query, &Sqlite)? {
                Some(sql) => sql,
                None => return Ok(None),
            }
        };
        let mut binds = <Sqlite as Backend>::BindCollector::<'_>::default();
        query.collect_binds(&mut binds, self.inner.metadata_lookup(), &Sqlite)?;
        Ok(Some(CollectedQuery::new(sql, true, binds.moveable())))
    }

    /// The SQL text of the [`Fixed`](super::Fixed) statement `query` of the type `key`,
    /// rendered once; debug builds render it every time and check that it did not change.
    fn fixed_sql<Q: QueryFragment<Sqlite>>(
        &mut self,
        key: usize,
        query: &Q,
    ) -> QueryResult<String> {
        if let Some(sql) = self.fixed.get(&key) {
            if cfg!(debug_assertions) {
                let rendered = super::render(query, &Sqlite)?;
                assert_eq!(
                    &rendered, sql,
                    "a `Fixed` statement's SQL changed with its values: it is not fixed"
                );
            }
            return Ok(sql.clone());
        }
        let sql = super::render(query, &Sqlite)?;
        self.fixed.insert(key, sql.clone());
        Ok(sql)
    }

    /// Copies the WAL frames no checkpoint has copied yet into the database file (`PRAGMA
    /// wal_checkpoint(PASSIVE)`: it never waits for a lock, but writes those pages and
    /// `fsync`s both files), between two of the writer's groups, so that the next one can
    /// begin with every frame copied and write the WAL from its start.
    pub(super) fn checkpoint(&mut self) -> QueryResult<()> {
        self.inner.batch_execute(super::PASSIVE_CHECKPOINT)
    }

    /// Opens a write transaction that takes SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`, which diesel-async's transaction manager does not issue), for the
    /// writer's groups.
    pub(super) fn begin_immediate(&mut self) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction_sql(&mut self.inner, "BEGIN IMMEDIATE")?;
        // With the write lock held nobody else writes until the group ends; whether
        // somebody did since the last group says whether the kept counters still hold.
        let version = diesel::sql_query("PRAGMA data_version")
            .get_result::<DataVersion>(&mut self.inner)?
            .data_version;
        if self.seqs.data_version != Some(version) {
            self.seqs.last.clear();
            self.seqs.data_version = Some(version);
        }
        self.seqs.open = true;
        self.seqs.journal.clear();
        self.seqs.kept.clear();
        Ok(())
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

/// Collects the rows of a loaded query as owned rows, which share `names` (read from
/// the statement at the first row when it is `None`).
fn owned_rows<'conn, 'query>(
    cursor: <SqliteConnection as LoadConnection>::Cursor<'conn, 'query>,
    names: &mut ColumnNames,
) -> QueryResult<BoxStream<'static, QueryResult<OwnedRow>>> {
    let mut rows = Vec::with_capacity(cursor.size_hint().0);
    for row in cursor {
        rows.push(Ok(IntoOwnedRow::into_owned(row?, names)));
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
        // A static query id names one SQL text, so one list of columns.
        let key = <T::Query as QueryId>::query_id();
        let known = key.and_then(|key| self.column_names.get(&key).cloned());
        let read_now = known.is_none();
        let mut names = known.unwrap_or_default();
        let rows = (|| match self.kept_by_sql(&query)? {
            Some(collected) => owned_rows(self.inner.load(collected)?, &mut names),
            None => owned_rows(self.inner.load(Run(query))?, &mut names),
        })();
        // Kept once its first row read them.
        if let (Some(key), true, Some(_)) = (key, read_now, &names) {
            self.column_names.insert(key, names);
        }
        std::future::ready(rows)
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        std::future::ready(self.execute(&source))
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
        let depth = conn.depth();
        let rolled_back = AnsiTransactionManager::rollback_transaction(&mut conn.inner);
        if depth <= 1 {
            conn.end_group(false);
        } else {
            conn.give_back_seqs(depth);
        }
        std::future::ready(rolled_back)
    }

    fn commit_transaction(conn: &mut SqliteConn) -> impl Future<Output = QueryResult<()>> + Send {
        let depth = conn.depth();
        let committed = if depth == 1 && conn.seqs.open {
            let committed = conn
                .write_kept()
                .and_then(|()| conn.write_seqs())
                .and_then(|()| AnsiTransactionManager::commit_transaction(&mut conn.inner));
            // A failed commit may have rolled back already: nothing kept is known to be
            // on disk then.
            conn.end_group(committed.is_ok());
            committed
        } else {
            AnsiTransactionManager::commit_transaction(&mut conn.inner)
                .inspect(|()| conn.keep_seqs(depth))
        };
        std::future::ready(committed)
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
    use crate::store::Fixed;
    use crate::store::tests::Prepared;

    diesel::table! {
        items (id) {
            id -> Text,
            state -> Text,
            n -> BigInt,
        }
    }

    /// A connection to a new in-memory database with the `items` table, counting the
    /// statements it prepares for its cache.
    async fn open() -> (SqliteConn, Prepared) {
        let mut conn = SqliteConn::establish(":memory:").await.unwrap();
        conn.batch_execute(
            "CREATE TABLE items (id TEXT PRIMARY KEY, state TEXT NOT NULL, n BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        let prepared = Prepared::default();
        conn.set_instrumentation(prepared.clone());
        (conn, prepared)
    }

    /// Inserts `i0` … `i{n-1}`, ready, with `n` their number, by a statement marked
    /// [`Fixed`].
    async fn insert_ready_items(conn: &mut SqliteConn, n: i64) {
        for i in 0..n {
            Fixed(diesel::insert_into(items::table).values((
                items::id.eq(format!("i{i}")),
                items::state.eq("ready"),
                items::n.eq(i),
            )))
            .execute(conn)
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn updates_and_in_lists_are_prepared_once_per_sql_text() {
        let (mut conn, prepared) = open().await;
        insert_ready_items(&mut conn, 5).await;
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

    /// The name of each column of `row` and the text it holds (numbers as text).
    fn by_name(row: &super::OwnedRow) -> Vec<(String, String)> {
        use diesel::deserialize::FromSql;
        use diesel::row::{Field, Row};
        (0..row.field_count())
            .map(|idx| {
                let field = row.get(idx).unwrap();
                let name = field.field_name().unwrap().to_string();
                let value = field.value().unwrap();
                let text =
                    <String as FromSql<diesel::sql_types::Text, diesel::sqlite::Sqlite>>::from_sql(
                        value,
                    )
                    .unwrap();
                (name, text)
            })
            .collect()
    }

    /// Two query types over one table, each loaded twice: every row names its own
    /// columns, and each type's names are read from SQLite once.
    #[tokio::test]
    async fn each_query_types_rows_carry_its_own_column_names_load_after_load() {
        use diesel_async::AsyncConnectionCore;
        use futures_util::TryStreamExt;

        let (mut conn, _) = open().await;
        insert_ready_items(&mut conn, 2).await;
        for _ in 0..2 {
            let by_id: Vec<super::OwnedRow> = AsyncConnectionCore::load(
                &mut conn,
                items::table.select((items::id, items::n)).order(items::n),
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
            let by_n: Vec<super::OwnedRow> = AsyncConnectionCore::load(
                &mut conn,
                items::table
                    .select((items::n, items::state, items::id))
                    .filter(items::n.eq(1_i64)),
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
            let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
                list.iter()
                    .map(|(name, text)| (name.to_string(), text.to_string()))
                    .collect()
            };
            assert_eq!(
                by_id.iter().map(by_name).collect::<Vec<_>>(),
                vec![
                    pairs(&[("id", "i0"), ("n", "0")]),
                    pairs(&[("id", "i1"), ("n", "1")])
                ]
            );
            assert_eq!(
                by_n.iter().map(by_name).collect::<Vec<_>>(),
                vec![pairs(&[("n", "1"), ("state", "ready"), ("id", "i1")])]
            );
        }
        // Read from SQLite once per query type, not once per load.
        assert_eq!(conn.column_names.len(), 2);
    }

    /// Inserts, updates and a select marked fixed run with their own values each time,
    /// from one prepared statement each; an update's SQL is rendered once (`fixed`).
    #[tokio::test]
    async fn fixed_statements_run_their_own_values_from_one_prepared_statement() {
        let (mut conn, prepared) = open().await;
        insert_ready_items(&mut conn, 4).await;
        for i in [1_i64, 3] {
            let moved = Fixed(
                diesel::update(items::table)
                    .filter(items::id.eq(format!("i{i}")))
                    .filter(items::state.eq("ready"))
                    .set((items::state.eq("claimed"), items::n.eq(items::n * 10))),
            )
            .execute(&mut conn)
            .await
            .unwrap();
            assert_eq!(moved, 1);
        }
        let mut rows = Vec::new();
        for i in 0..4_i64 {
            let row: (String, i64) = Fixed(
                items::table
                    .filter(items::id.eq(format!("i{i}")))
                    .select((items::state, items::n))
                    .limit(1),
            )
            .get_result(&mut conn)
            .await
            .unwrap();
            rows.push(row);
        }
        assert_eq!(
            rows,
            [
                ("ready".to_string(), 0),
                ("claimed".to_string(), 10),
                ("ready".to_string(), 2),
                ("claimed".to_string(), 30),
            ]
        );
        assert_eq!(
            (
                prepared.starting_with("INSERT"),
                prepared.starting_with("UPDATE"),
                prepared.starting_with("SELECT"),
            ),
            (1, 1, 1),
            "prepared for the cache: {:#?}",
            prepared.all()
        );
        // The update's text was rendered once; diesel keeps this insert and this select by
        // their types itself (no optional column, no `UPDATE`).
        let fixed: Vec<&str> = conn.fixed.values().map(|sql| &sql[..6]).collect();
        assert_eq!(fixed, ["UPDATE"], "{:#?}", conn.fixed);
    }

    /// A statement whose SQL varies with its values (an `IN (…)` list of another
    /// length) must not be marked fixed: debug builds, which the tests run, refuse it.
    #[cfg(debug_assertions)]
    #[tokio::test]
    async fn a_statement_marked_fixed_whose_sql_varies_is_refused_in_debug_builds() {
        use futures_util::FutureExt;
        let (mut conn, _prepared) = open().await;
        let mut runs = Vec::new();
        for ids in [vec!["a"], vec!["a", "b"]] {
            let run = std::panic::AssertUnwindSafe(async {
                Fixed(items::table.filter(items::id.eq_any(ids)).select(items::id))
                    .load::<String>(&mut conn)
                    .await
            })
            .catch_unwind()
            .await;
            runs.push(run.map_err(|panic| panic.downcast_ref::<String>().cloned()));
        }
        assert!(matches!(runs[0], Ok(Ok(_))), "{runs:?}");
        let refused = runs[1]
            .as_ref()
            .err()
            .cloned()
            .flatten()
            .unwrap_or_default();
        assert!(refused.contains("it is not fixed"), "{runs:?}");
    }
}

#[cfg(test)]
mod seq_tests {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager};

    use super::{InPlaceTransactionManager as Manager, SqliteConn};
    use crate::events::EventRow;
    use crate::schema::{audience_seqs, events, timeline};
    use crate::tasks::model::TimelineRow;

    async fn open(path: &str) -> SqliteConn {
        let mut conn = SqliteConn::establish(path).await.unwrap();
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS audience_seqs \
             (audience_id TEXT NOT NULL PRIMARY KEY, last_seq BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        conn
    }

    async fn stored(conn: &mut SqliteConn) -> Vec<(String, i64)> {
        audience_seqs::table
            .order(audience_seqs::audience_id)
            .load(conn)
            .await
            .unwrap()
    }

    /// One member of the open group: reserves `counts`, then commits or rolls back.
    async fn member(conn: &mut SqliteConn, counts: &[(&str, i64)], commit: bool) -> Vec<i64> {
        Manager::begin_transaction(conn).await.unwrap();
        let firsts = conn.reserve_seqs(counts).unwrap().expect("a group is open");
        if commit {
            Manager::commit_transaction(conn).await.unwrap();
        } else {
            Manager::rollback_transaction(conn).await.unwrap();
        }
        counts.iter().map(|(id, _)| firsts[*id]).collect()
    }

    #[tokio::test]
    async fn a_group_numbers_gap_free_gives_back_rolled_back_numbers_and_writes_at_commit() {
        let mut conn = open(":memory:").await;
        // Outside a group the caller reserves in the database.
        assert!(conn.reserve_seqs(&[("a", 1)]).unwrap().is_none());
        conn.begin_immediate().unwrap();
        assert_eq!(member(&mut conn, &[("a", 2), ("b", 1)], true).await, [1, 1]);
        assert_eq!(
            member(&mut conn, &[("a", 1), ("c", 5)], false).await,
            [3, 1]
        );
        assert_eq!(member(&mut conn, &[("a", 1)], true).await, [3]);
        // Nothing is written before the group commits ...
        assert_eq!(stored(&mut conn).await, []);
        Manager::commit_transaction(&mut conn).await.unwrap();
        // ... and then each counter moved once; the rolled back `c` not at all.
        assert_eq!(stored(&mut conn).await, [("a".into(), 3), ("b".into(), 1)]);
        conn.begin_immediate().unwrap();
        assert_eq!(member(&mut conn, &[("b", 1)], true).await, [2]);
        // A group rolled back as a whole leaves the counters as committed.
        Manager::rollback_transaction(&mut conn).await.unwrap();
        conn.begin_immediate().unwrap();
        assert_eq!(member(&mut conn, &[("b", 1), ("a", 1)], true).await, [2, 4]);
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert_eq!(stored(&mut conn).await, [("a".into(), 4), ("b".into(), 2)]);
    }

    /// The counters a group moved are written at its commit by an upsert prepared once,
    /// not at every commit (diesel prepares an upsert at every execution).
    #[tokio::test]
    async fn a_groups_counters_are_written_by_an_upsert_prepared_once() {
        let mut conn = open(":memory:").await;
        let prepared = crate::store::tests::Prepared::default();
        conn.set_instrumentation(prepared.clone());
        for round in 1..=3 {
            conn.begin_immediate().unwrap();
            assert_eq!(
                member(&mut conn, &[("a", 1), ("b", 2)], true).await,
                [round, 2 * round - 1]
            );
            Manager::commit_transaction(&mut conn).await.unwrap();
        }
        assert_eq!(stored(&mut conn).await, [("a".into(), 3), ("b".into(), 6)]);
        let upserts: Vec<String> = prepared
            .all()
            .into_iter()
            .filter(|sql| sql.contains("audience_seqs") && sql.starts_with("INSERT"))
            .collect();
        assert_eq!(upserts.len(), 1, "{upserts:?}");
    }

    /// The group's first member runs without a savepoint of its own (the writer rolls
    /// the whole group back when it fails): its numbers are the group's like any other's.
    #[tokio::test]
    async fn a_first_member_without_a_savepoint_numbers_within_the_group() {
        let mut conn = open(":memory:").await;
        conn.begin_immediate().unwrap();
        let first = conn
            .reserve_seqs(&[("a", 2)])
            .unwrap()
            .expect("a group is open");
        assert_eq!(first["a"], 1);
        assert_eq!(member(&mut conn, &[("a", 1)], false).await, [3]);
        assert_eq!(member(&mut conn, &[("a", 1), ("b", 1)], true).await, [3, 1]);
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert_eq!(stored(&mut conn).await, [("a".into(), 3), ("b".into(), 1)]);
        // A first member that fails takes the group with it: nothing it numbered stays.
        conn.begin_immediate().unwrap();
        conn.reserve_seqs(&[("a", 5)])
            .unwrap()
            .expect("a group is open");
        Manager::rollback_transaction(&mut conn).await.unwrap();
        conn.begin_immediate().unwrap();
        assert_eq!(member(&mut conn, &[("a", 1)], true).await, [4]);
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert_eq!(stored(&mut conn).await, [("a".into(), 4), ("b".into(), 1)]);
    }

    /// A cursor set inside the group (a webhook's, created while the group has numbered
    /// events of its feed) starts after the group's numbers, not the table's: it must not
    /// receive events from before it was created.
    #[tokio::test]
    async fn a_feeds_last_number_read_inside_a_group_counts_the_groups_reservations() {
        use crate::events::model::last_seq;
        use crate::store::Db;
        let mut conn = open(":memory:").await;
        conn.begin_immediate().unwrap();
        assert_eq!(member(&mut conn, &[("a", 3)], true).await, [1]);
        Manager::begin_transaction(&mut conn).await.unwrap();
        assert_eq!(last_seq(&mut Db::Sqlite(&mut conn), "a").await.unwrap(), 3);
        assert_eq!(last_seq(&mut Db::Sqlite(&mut conn), "b").await.unwrap(), 0);
        Manager::commit_transaction(&mut conn).await.unwrap();
        // A rolled back member's numbers are given back, and so are not counted.
        member(&mut conn, &[("a", 2)], false).await;
        assert_eq!(last_seq(&mut Db::Sqlite(&mut conn), "a").await.unwrap(), 3);
        Manager::commit_transaction(&mut conn).await.unwrap();
        // After the commit the table holds them.
        assert_eq!(last_seq(&mut Db::Sqlite(&mut conn), "a").await.unwrap(), 3);
        assert_eq!(stored(&mut conn).await, [("a".into(), 3)]);
    }

    fn event(audience_id: &str, seq: i64) -> EventRow {
        EventRow {
            audience_id: audience_id.into(),
            seq,
            workspace_id: "w".into(),
            audience_kind: "agent".into(),
            event_type: "step.ready".into(),
            payload: format!("{{\"type\":\"step.ready\",\"seq\":{seq}}}"),
            created_at: 0,
        }
    }

    async fn stored_events(conn: &mut SqliteConn) -> Vec<(String, i64)> {
        events::table
            .order((events::audience_id, events::seq))
            .select((events::audience_id, events::seq))
            .load(conn)
            .await
            .unwrap()
    }

    /// A group's event rows are inserted as it commits, those of a rolled back member not
    /// at all, and a group rolled back as a whole writes none.
    #[tokio::test]
    async fn a_groups_event_rows_are_written_at_its_commit_without_a_rolled_back_members() {
        let mut conn = open(":memory:").await;
        conn.batch_execute(
            "CREATE TABLE events (audience_id TEXT NOT NULL, seq BIGINT NOT NULL, \
             workspace_id TEXT NOT NULL, audience_kind TEXT NOT NULL, event_type TEXT NOT NULL, \
             payload TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (audience_id, seq))",
        )
        .await
        .unwrap();
        // Outside a group the caller inserts them itself.
        assert_eq!(
            conn.keep_events(vec![event("a", 1)]).map(|rows| rows.len()),
            Some(1)
        );
        conn.begin_immediate().unwrap();
        // The first member, in the group's transaction; then one rolled back, and 90 rows
        // of a third (more than one statement's worth, and a remainder).
        assert!(
            conn.keep_events(vec![event("b", 1), event("a", 1)])
                .is_none()
        );
        Manager::begin_transaction(&mut conn).await.unwrap();
        assert!(conn.keep_events(vec![event("a", 2)]).is_none());
        Manager::rollback_transaction(&mut conn).await.unwrap();
        Manager::begin_transaction(&mut conn).await.unwrap();
        assert!(
            conn.keep_events((2..92).map(|seq| event("a", seq)).collect())
                .is_none()
        );
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert_eq!(stored_events(&mut conn).await, []);
        Manager::commit_transaction(&mut conn).await.unwrap();
        let mut expected: Vec<(String, i64)> = (1..92).map(|seq| ("a".into(), seq)).collect();
        expected.push(("b".into(), 1));
        assert_eq!(stored_events(&mut conn).await, expected);
        conn.begin_immediate().unwrap();
        assert!(conn.keep_events(vec![event("b", 2)]).is_none());
        Manager::rollback_transaction(&mut conn).await.unwrap();
        conn.begin_immediate().unwrap();
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert_eq!(stored_events(&mut conn).await, expected);
    }

    fn entry(step_id: &str, to_status: &str) -> TimelineRow {
        TimelineRow {
            id: crate::store::new_id(),
            workspace_id: "w".into(),
            task_id: "t".into(),
            step_id: Some(step_id.into()),
            from_status: None,
            to_status: to_status.into(),
            reason: None,
            attempt: Some(1),
            actor_kind: "agent".into(),
            actor_id: None,
            actor_name: None,
            created_at: 0,
        }
    }

    fn kept(conn: &SqliteConn) -> Vec<(String, String)> {
        conn.kept_timeline()
            .map(|row| {
                (
                    row.step_id.clone().unwrap_or_default(),
                    row.to_status.clone(),
                )
            })
            .collect()
    }

    /// A group's timeline rows are seen as kept (the newest) until it commits, then
    /// inserted in the order written; a rolled back member's are dropped.
    #[tokio::test]
    async fn a_groups_timeline_rows_are_kept_until_its_commit_without_a_rolled_back_members() {
        let mut conn = open(":memory:").await;
        conn.batch_execute(
            "CREATE TABLE timeline (id TEXT NOT NULL PRIMARY KEY, workspace_id TEXT NOT NULL, \
             task_id TEXT NOT NULL, step_id TEXT, from_status TEXT, to_status TEXT NOT NULL, \
             reason TEXT, attempt INTEGER, actor_kind TEXT NOT NULL, actor_id TEXT, \
             actor_name TEXT, created_at BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        let stored_timeline = async |conn: &mut SqliteConn| -> Vec<(String, String)> {
            timeline::table
                .order(timeline::id)
                .select((timeline::step_id.assume_not_null(), timeline::to_status))
                .load(conn)
                .await
                .unwrap()
        };
        assert!(!conn.keep_timeline(&[entry("a", "claimed")]));
        conn.begin_immediate().unwrap();
        assert!(conn.keep_timeline(&[entry("a", "claimed")]));
        Manager::begin_transaction(&mut conn).await.unwrap();
        assert!(conn.keep_timeline(&[entry("a", "failed")]));
        assert_eq!(
            kept(&conn),
            [
                ("a".into(), "claimed".into()),
                ("a".into(), "failed".into())
            ]
        );
        Manager::rollback_transaction(&mut conn).await.unwrap();
        assert_eq!(kept(&conn), [("a".into(), "claimed".into())]);
        Manager::begin_transaction(&mut conn).await.unwrap();
        let many: Vec<TimelineRow> = (0..43).map(|_| entry("b", "ready")).collect();
        assert!(conn.keep_timeline(&many));
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert_eq!(kept(&conn).len(), 44);
        assert!(stored_timeline(&mut conn).await.is_empty());
        Manager::commit_transaction(&mut conn).await.unwrap();
        assert!(kept(&conn).is_empty());
        let mut expected = vec![("a".to_string(), "claimed".to_string())];
        expected.extend((0..43).map(|_| ("b".to_string(), "ready".to_string())));
        assert_eq!(stored_timeline(&mut conn).await, expected);
    }

    #[tokio::test]
    async fn counters_moved_by_another_connection_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seqs.db");
        let path = path.to_str().unwrap();
        let mut writer = open(path).await;
        writer.begin_immediate().unwrap();
        assert_eq!(member(&mut writer, &[("a", 1)], true).await, [1]);
        Manager::commit_transaction(&mut writer).await.unwrap();
        // Another process (the admin CLI) numbers events of `a` meanwhile.
        let mut other = open(path).await;
        diesel::update(audience_seqs::table.find("a"))
            .set(audience_seqs::last_seq.eq(10))
            .execute(&mut other)
            .await
            .unwrap();
        writer.begin_immediate().unwrap();
        assert_eq!(member(&mut writer, &[("a", 1)], true).await, [11]);
        Manager::commit_transaction(&mut writer).await.unwrap();
        assert_eq!(stored(&mut other).await, [("a".into(), 11)]);
    }
}
