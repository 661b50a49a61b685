//! The step operations agents send most, claims and submits, run in batches.
//!
//! On SQLite every write waits for the one writer, and a transaction handed from one
//! caller's task to the next leaves the writer idle until that task runs. So the claims
//! and submits that queue while a batch runs are run by one caller (the batch's leader,
//! see [`Batcher`]) in one transaction, one after the other in the order they queued,
//! each deciding against what the ones before it wrote: of two claims on one step the
//! first wins. Each answers its own outcome after the commit:
//!
//! - a claim is refused before it writes anything, so it runs in the batch's transaction
//!   itself;
//! - a submit can be refused after its first write (the approval it asks, the task's
//!   end), so in a batch of several it runs in a savepoint of its own and a refused one
//!   is rolled back alone;
//! - when the database fails (`unavailable`, `internal`) the whole batch fails and none of
//!   it is stored: the first operation gets the database's error, the others
//!   [`Error::shared_failure`]. A retry is safe: a repeated claim by the holder and a
//!   resent submit answer as the first did.
//!
//! PostgreSQL runs each operation in a transaction of its own: batches of several hubs
//! could wait for each other's row locks (a shared step's, its agents', its task's).

use std::sync::Arc;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{Outbox, Written};
use crate::store::{Backend, Batch, Batcher, Db};
use crate::tasks::lifecycle::{
    ClaimOp, Claimed, SubmitOp, SubmitOutcome, claim_in_tx, submit_in_tx,
};

/// An operation of a batch ([`Ctx::step_writes`]).
#[derive(Debug, Clone)]
pub enum StepOp {
    Claim(ClaimOp),
    Submit(Arc<SubmitOp>),
}

/// What an operation of a batch answers: the outcome of its kind.
#[derive(Debug)]
pub enum StepOut {
    Claim(Result<Claimed>),
    Submit(Result<SubmitOutcome>),
}

impl StepOp {
    /// This operation's answer when it failed with `err`.
    fn failed(&self, err: Error) -> StepOut {
        match self {
            StepOp::Claim(_) => StepOut::Claim(Err(err)),
            StepOp::Submit(_) => StepOut::Submit(Err(err)),
        }
    }
}

/// The batches of this hub process ([`Ctx::step_writes`]).
pub type StepWrites = Batcher<StepOp, StepOut>;

type StepBatch = Batch<StepOp, StepOut>;

/// Runs `op`, in a batch with those queued meanwhile on SQLite, alone on PostgreSQL.
pub(super) async fn run(ctx: &Ctx, op: StepOp) -> StepOut {
    match ctx.store.backend() {
        Backend::Sqlite => {
            ctx.step_writes
                .run(op, async |batch: &mut StepBatch| {
                    run_batch(ctx, batch).await
                })
                .await
        }
        Backend::Postgres => run_batch(ctx, &mut Batch::one(op))
            .await
            .pop()
            .expect("one outcome per operation"),
    }
}

/// Runs a batch in one transaction, in its order, and answers each operation (see the
/// module docs).
async fn run_batch(ctx: &Ctx, batch: &mut StepBatch) -> Vec<StepOut> {
    let mut written = Vec::new();
    let ran = ctx
        .store
        .transaction(async |db| {
            // Taken once the writer is held: the operations queued meanwhile join.
            let ops = batch.ops();
            let alone = ops.len() == 1;
            let mut outs = Vec::with_capacity(ops.len());
            for op in ops {
                outs.push(match op {
                    StepOp::Claim(claim) => {
                        StepOut::Claim(claim_in_tx(ctx, db, claim, &mut written).await?)
                    }
                    // Alone, its refusal rolls back the transaction and answers it.
                    StepOp::Submit(submit) if alone => {
                        let mut outbox = Outbox::default();
                        let outcome = submit_in_tx(db, submit, &mut outbox).await?;
                        written.push(outbox.into_written());
                        StepOut::Submit(Ok(outcome))
                    }
                    StepOp::Submit(submit) => {
                        StepOut::Submit(submit_in_savepoint(db, submit, &mut written).await?)
                    }
                });
            }
            Ok::<_, Error>(outs)
        })
        .await;
    match ran {
        Ok(outs) => {
            for written in written {
                ctx.publish(written).await;
            }
            outs
        }
        Err(err) => {
            let ops = batch.ops();
            let mut outs: Vec<StepOut> = ops[1..]
                .iter()
                .map(|op| op.failed(Error::shared_failure(&err)))
                .collect();
            outs.insert(0, ops[0].failed(err));
            outs
        }
    }
}

/// One submit of a batch of several, in a savepoint: `Ok(Err(refusal))` when it is
/// refused (its savepoint rolled back), `Err` when the database failed (the batch rolls
/// back).
async fn submit_in_savepoint(
    db: &mut Db<'_>,
    submit: &SubmitOp,
    written: &mut Vec<Written>,
) -> Result<Result<SubmitOutcome>> {
    let mut outbox = Outbox::default();
    let ran = db
        .savepoint(async |db| submit_in_tx(db, submit, &mut outbox).await)
        .await;
    match ran {
        Ok(outcome) => {
            written.push(outbox.into_written());
            Ok(Ok(outcome))
        }
        Err(err @ (Error::Unavailable(_) | Error::Internal(_))) => Err(err),
        Err(refused) => Ok(Err(refused)),
    }
}
