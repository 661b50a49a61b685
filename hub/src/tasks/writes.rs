//! The writes agents and people send most, task creations, claims and submits, run in
//! batches.
//!
//! On SQLite every write waits for the one writer, and a transaction handed from one
//! caller's task to the next leaves the writer idle until that task runs. So the writes
//! that queue while a batch runs are run by one caller (the batch's leader, see
//! [`Batcher`]) in one transaction, one after the other in the order they queued, each
//! deciding against what the ones before it wrote: of two claims on one step the first
//! wins. Each answers its own outcome after the commit:
//!
//! - a claim is refused before it writes anything, so it runs in the batch's transaction
//!   itself; so are a submit refused for its step (not found, not the agent's, not held
//!   at that attempt) and a creation refused for its steps' names (an assignee, approver
//!   or dependency that names nothing it may), which answer their refusal apart from a
//!   failure after their first write;
//! - a creation or a submit can be refused after its first write (a plan's limits, the
//!   events' size, the approval it asks, the task's end), so in a batch of several a
//!   refused one is rolled back alone: the batch runs straight in its transaction first,
//!   and when a creation or a submit fails there the transaction is rolled back and the
//!   batch runs again, each write from the failed one on in a savepoint of its own (a
//!   savepoint makes SQLite copy every page its write changes, which a batch whose writes
//!   all succeed is spared);
//! - a creation or a submit of a batch of several whose own statement fails (`internal`:
//!   a constraint no check caught, a stored value that cannot be read) is rolled back
//!   alone as well, the same way;
//! - when the transaction cannot go on (the connection is lost, a savepoint cannot be
//!   opened, released or rolled back, the commit fails) the whole batch fails and none of
//!   it is stored: the first write gets the database's error, the others
//!   [`Error::shared_failure`]. A retry is safe: a repeated claim by the holder and a
//!   resent submit answer as the first did, and a creation that failed made nothing.
//!
//! A write whose batch's leader went away before answering is queued again by its caller
//! (see [`Batcher`]), and its batch may have been committed: each kind answers as it did
//! the first time then (a claim by the step's holder and a submit of a submitted attempt
//! answer the same, and a creation, whose task id is chosen before it first runs, finds
//! its task and answers it).
//!
//! The events of a batch are published by its leader, in the order they were written,
//! once it has passed the lead on: the next batch runs meanwhile.
//!
//! PostgreSQL runs each write in a transaction of its own: batches of several hubs could
//! wait for each other's row locks (a shared step's, its agents', its task's).

use std::sync::Arc;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Outbox, Written};
use crate::store::{Backend, Batch, Batcher, Db, DbFn};
use crate::tasks::lifecycle::{
    ClaimOp, Claimed, SubmitOp, SubmitOutcome, claim_in_tx, submit_in_tx,
};
use crate::tasks::{CreateOp, TaskView, create_in_tx};

/// A write of a batch ([`Ctx::writes`]).
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create(Arc<CreateOp>),
    Claim(ClaimOp),
    Submit(Arc<SubmitOp>),
}

/// What a write of a batch answers: the outcome of its kind.
#[derive(Debug)]
pub enum WriteOut {
    Create(Result<Box<TaskView>>),
    Claim(Result<Claimed>),
    Submit(Result<SubmitOutcome>),
}

impl WriteOp {
    /// This write's answer when it failed with `err`.
    fn failed(&self, err: Error) -> WriteOut {
        match self {
            WriteOp::Create(_) => WriteOut::Create(Err(err)),
            WriteOp::Claim(_) => WriteOut::Claim(Err(err)),
            WriteOp::Submit(_) => WriteOut::Submit(Err(err)),
        }
    }
}

/// The batches of this hub process ([`Ctx::writes`]).
pub type Writes = Batcher<WriteOp, Answer>;

type WriteBatch = Batch<WriteOp, Answer>;

/// What a write of a batch is answered: its outcome and, for the batch's first write
/// (its leader's), the events the whole batch caused, in their order, which its caller
/// publishes once the lead has passed on (the next batch runs meanwhile).
#[derive(Debug)]
pub struct Answer {
    out: WriteOut,
    written: Vec<Written>,
}

/// Runs `op`, in a batch with those queued meanwhile on SQLite, alone on PostgreSQL.
pub(super) async fn run(ctx: &Ctx, op: WriteOp) -> WriteOut {
    let answer = match ctx.store.backend() {
        Backend::Sqlite => {
            ctx.writes
                .run(op, async |batch: &mut WriteBatch| {
                    run_batch(ctx, batch).await
                })
                .await
        }
        Backend::Postgres => run_batch(ctx, &mut Batch::one(op))
            .await
            .pop()
            .expect("one answer per write"),
    };
    for written in answer.written {
        ctx.publish(written).await;
    }
    answer.out
}

/// Runs a batch in one transaction, in its order, and answers each write (see the module
/// docs).
///
/// The writes run straight in the batch's transaction first: a savepoint per write makes
/// SQLite copy every page the write changes into the savepoint's journal, and a batch
/// whose writes all succeed needs none. When a creation or a submit fails there, the
/// transaction is rolled back and the batch runs again, each write from the failed one
/// on in a savepoint of its own (the ones before it succeeded, and run straight again).
async fn run_batch(ctx: &Ctx, batch: &mut WriteBatch) -> Vec<Answer> {
    let mut isolated_from = usize::MAX;
    loop {
        match run_pass(ctx, batch, isolated_from).await {
            Pass::Answered(answers) => return answers,
            // Only a write before `isolated_from` asks for another pass: each pass
            // isolates more of the batch, and one that isolates all of it is answered.
            Pass::Again { failed_at } => isolated_from = failed_at,
        }
    }
}

/// How a pass over a batch ended.
enum Pass {
    /// Committed (or failed as a whole): each write's answer.
    Answered(Vec<Answer>),
    /// The write at `failed_at`, run straight in the transaction, failed: rolled back.
    Again { failed_at: usize },
}

/// How a write that may be refused after its first write runs in its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// Alone in its batch: its failure is the transaction's.
    Alone,
    /// Straight in the batch's transaction, the write at `at`: its failure rolls the
    /// batch back, to run again.
    Straight { at: usize },
    /// In a savepoint of its own: its failure is undone alone.
    Savepoint,
}

/// Runs the batch once, writes from `isolated_from` on each in a savepoint.
async fn run_pass(ctx: &Ctx, batch: &mut WriteBatch, isolated_from: usize) -> Pass {
    let mut written = Vec::new();
    let mut failed_at = None;
    let ran = ctx
        .store
        .transaction(async |db| {
            // Taken once the writer is held: the writes queued meanwhile join.
            let ops = batch.ops();
            let alone = ops.len() == 1;
            let mut outs = Vec::with_capacity(ops.len());
            for (at, op) in ops.iter().enumerate() {
                let isolation = if alone {
                    Isolation::Alone
                } else if at < isolated_from {
                    Isolation::Straight { at }
                } else {
                    Isolation::Savepoint
                };
                outs.push(match op {
                    WriteOp::Claim(claim) => {
                        WriteOut::Claim(claim_in_tx(ctx, db, claim, &mut written).await?)
                    }
                    WriteOp::Submit(submit) => {
                        let mut outbox = Outbox::default();
                        let submitted = isolated(db, isolation, &mut failed_at, async |db| {
                            submit_in_tx(db, submit, &mut outbox).await
                        })
                        .await?;
                        if submitted.is_ok() {
                            written.push(outbox.into_written());
                        }
                        WriteOut::Submit(submitted)
                    }
                    WriteOp::Create(create) => {
                        let mut outbox = Outbox::for_request();
                        let created = isolated(db, isolation, &mut failed_at, async |db| {
                            create_in_tx(ctx, db, create, &mut outbox).await
                        })
                        .await?
                        .map(Box::new);
                        if created.is_ok() {
                            written.push(outbox.into_written());
                        }
                        WriteOut::Create(created)
                    }
                });
            }
            Ok::<_, Error>(outs)
        })
        .await;
    let outs = match ran {
        Ok(outs) => outs,
        Err(_) if let Some(failed_at) = failed_at => return Pass::Again { failed_at },
        Err(err) => {
            let ops = batch.ops();
            let mut outs: Vec<WriteOut> = ops[1..]
                .iter()
                .map(|op| op.failed(Error::shared_failure(&err)))
                .collect();
            outs.insert(0, ops[0].failed(err));
            return Pass::Answered(answers(outs, Vec::new()));
        }
    };
    Pass::Answered(answers(outs, written))
}

/// Each write's answer, the first with every event the batch wrote.
fn answers(outs: Vec<WriteOut>, written: Vec<Written>) -> Vec<Answer> {
    let mut written = Some(written);
    outs.into_iter()
        .map(|out| Answer {
            out,
            written: written.take().unwrap_or_default(),
        })
        .collect()
}

/// Runs `write`, a write that may be refused after its first write, as `isolation` says.
/// `write` answers `Ok(Err(refusal))` for a refusal before its first write (nothing to
/// undo, however it ran), `Err` for a refusal or failure after it. Answers
/// `Ok(Err(refusal))` when it was refused before writing, or refused or one of its
/// statements failed and it was undone alone in its savepoint; `Err` when the connection
/// is lost or the savepoint itself failed (the transaction cannot go on), or it failed
/// after its first write without a savepoint (the batch's transaction rolls back: see
/// [`run_batch`]; run straight, a failure other than the connection's sets `failed_at` to
/// its place, for the pass that runs again).
async fn isolated<T, F>(
    db: &mut Db<'_>,
    isolation: Isolation,
    failed_at: &mut Option<usize>,
    write: F,
) -> Result<Result<T>>
where
    F: for<'r, 'c> DbFn<&'r mut Db<'c>, Result<Result<T>>, Fut: Send>,
{
    match isolation {
        Isolation::Alone => return write(db).await,
        Isolation::Straight { at } => {
            return write(db).await.inspect_err(|err| {
                if !matches!(err, Error::Unavailable(_)) {
                    *failed_at = Some(at);
                }
            });
        }
        Isolation::Savepoint => {}
    }
    match db.savepoint(write).await? {
        // Done, or refused before its first write: its savepoint is released.
        Ok(refused_or_done) => Ok(refused_or_done),
        // The connection is gone: so is the transaction.
        Err(err @ Error::Unavailable(_)) => Err(err),
        // Refused, or failed in its own statements (`internal`): rolled back alone.
        Err(failed) => Ok(Err(failed)),
    }
}
