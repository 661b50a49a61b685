//! Operations of many callers run together: one caller runs a batch of everything queued.
//!
//! A caller with an operation queues it. When no batch is running, it leads: it takes its
//! own operation and what others queued meanwhile (up to a bound), runs them as one batch
//! (one transaction on the writer, not one each), hands every other caller its outcome,
//! and passes the lead to the oldest caller still queued, which then runs the next batch
//! with its own operation first. Nothing waits for a timer: alone, an operation is a batch
//! of one and runs at once; under load batches grow by themselves while the one before
//! waits for the writer and its commit. Each leader leads one batch, so no caller's answer
//! waits behind batches that came after its own.
//!
//! A leader whose future is dropped halfway (its caller went away) passes the lead on as
//! well, and the callers of its batch queue their operations again: a batch dropped
//! before its commit left nothing behind (its transaction is rolled back), and one dropped
//! after it is answered the same way again (an operation run again must say so, as a
//! repeated claim by its holder does). A caller that went away before its batch was taken
//! is left out of it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::DbFn;

/// Most operations in one batch.
const MAX_BATCH: usize = 64;

/// Runs operations of type `Op` in batches; each answers an `Out`.
pub struct Batcher<Op, Out> {
    state: Mutex<State<Op, Out>>,
}

struct State<Op, Out> {
    queue: VecDeque<Queued<Op, Out>>,
    /// A caller leads a batch now (or has been told to): new operations queue.
    leading: bool,
}

struct Queued<Op, Out> {
    op: Op,
    turn: oneshot::Sender<Turn<Op, Out>>,
}

/// What a queued caller is told.
enum Turn<Op, Out> {
    /// Its operation ran; here is its outcome.
    Done(Out),
    /// Its operation (given back) leads the next batch.
    Lead(Op),
}

impl<Op, Out> Default for Batcher<Op, Out> {
    fn default() -> Self {
        Batcher {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                leading: false,
            }),
        }
    }
}

impl<Op, Out> fmt::Debug for Batcher<Op, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Batcher")
            .field("queued", &state.queue.len())
            .field("leading", &state.leading)
            .finish()
    }
}

impl<Op: Clone + Send, Out: Send> Batcher<Op, Out> {
    /// Runs `op` in a batch and answers its outcome. `run` runs a batch: it asks the
    /// batch's operations ([`Batch::ops`]) once it can run them, and answers one outcome
    /// per operation, in their order (the caller's own first when it leads).
    pub async fn run<F>(self: &Arc<Self>, op: Op, run: F) -> Out
    where
        F: for<'b> DbFn<&'b mut Batch<Op, Out>, Vec<Out>, Fut: Send>,
    {
        // Led at once, the operation itself; told to lead, the copy it queued.
        let given_back = loop {
            let Some(turn) = self.queue_or_lead(&op) else {
                break None;
            };
            match turn.await {
                Ok(Turn::Done(out)) => return out,
                Ok(Turn::Lead(own)) => break Some(own),
                // The batch that held it was dropped before answering: queue again.
                Err(_dropped) => continue,
            }
        };
        let own = given_back.unwrap_or(op);
        let lead = Lead { batcher: self };
        let mut batch = Batch {
            batcher: Some(Arc::clone(self)),
            ops: vec![own],
            turns: Vec::new(),
            taken: false,
        };
        let mut outs = run(&mut batch).await.into_iter();
        let own_out = outs.next();
        for (turn, out) in batch.turns.into_iter().zip(outs) {
            // A caller that went away meanwhile needs no answer.
            let _gone = turn.send(Turn::Done(out));
        }
        drop(lead);
        own_out.expect("a batch answers one outcome per operation")
    }

    /// `None` when the caller leads (no batch is running); else it queues a copy of `op`
    /// (its own stays, to queue again if the batch that takes it is dropped) and waits
    /// for its turn.
    fn queue_or_lead(&self, op: &Op) -> Option<oneshot::Receiver<Turn<Op, Out>>> {
        let mut state = self.lock();
        if !state.leading {
            state.leading = true;
            return None;
        }
        let (turn, told) = oneshot::channel();
        state.queue.push_back(Queued {
            op: op.clone(),
            turn,
        });
        Some(told)
    }
}

/// The operations of one batch, for the function that runs it.
pub struct Batch<Op, Out> {
    /// Where the operations queued behind the leader's are taken from; `None` for a batch
    /// of one made without a batcher.
    batcher: Option<Arc<Batcher<Op, Out>>>,
    ops: Vec<Op>,
    turns: Vec<oneshot::Sender<Turn<Op, Out>>>,
    taken: bool,
}

impl<Op, Out> Batch<Op, Out> {
    /// A batch of `op` alone.
    pub fn one(op: Op) -> Self {
        Batch {
            batcher: None,
            ops: vec![op],
            turns: Vec::new(),
            taken: true,
        }
    }

    /// The batch's operations: the leader's own first, then those queued until the first
    /// call (of callers still waiting, up to a bound). Asked once the batch can run (its
    /// transaction holds the writer), so what queued while it waited for it joins it.
    pub fn ops(&mut self) -> &[Op] {
        if let Some(batcher) = self.batcher.as_ref().filter(|_| !self.taken) {
            let mut state = batcher.lock();
            while self.ops.len() < MAX_BATCH {
                let Some(queued) = state.queue.pop_front() else {
                    break;
                };
                if queued.turn.is_closed() {
                    continue;
                }
                self.ops.push(queued.op);
                self.turns.push(queued.turn);
            }
        }
        self.taken = true;
        &self.ops
    }

    /// How many operations the batch holds (its outcomes must be as many).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Never: a batch holds its leader's operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl<Op, Out> Batcher<Op, Out> {
    /// Operations waiting for a batch.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<Op, Out>> {
        // The state is consistent after every statement under the lock: a panic elsewhere
        // leaves nothing half done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lead of a batch, held: passed on when dropped (the batch answered, or dropped
/// halfway).
struct Lead<'a, Op, Out> {
    batcher: &'a Batcher<Op, Out>,
}

impl<Op, Out> Drop for Lead<'_, Op, Out> {
    fn drop(&mut self) {
        let mut state = self.batcher.lock();
        while let Some(queued) = state.queue.pop_front() {
            match queued.turn.send(Turn::Lead(queued.op)) {
                Ok(()) => return,
                // That caller went away: its operation is not run.
                Err(_gone) => continue,
            }
        }
        state.leading = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    /// A batch that doubles each number after a pause, counting its batches.
    async fn doubled(batches: &AtomicUsize, batch: &mut Batch<u32, u32>) -> Vec<u32> {
        batches.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        batch.ops().iter().map(|op| op * 2).collect()
    }

    #[tokio::test]
    async fn an_operation_alone_runs_at_once_as_a_batch_of_one() {
        let batcher = Arc::new(Batcher::<u32, u32>::default());
        let batches = AtomicUsize::new(0);
        let out = batcher
            .run(21, async |batch: &mut Batch<u32, u32>| {
                doubled(&batches, batch).await
            })
            .await;
        assert_eq!(out, 42);
        assert_eq!(batches.load(Ordering::Relaxed), 1);
        assert!(!batcher.lock().leading, "the lead is given up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_queued_while_a_batch_runs_run_together_and_each_gets_its_own_answer() {
        let batcher = Arc::new(Batcher::<u32, u32>::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..200u32)
            .map(|n| {
                let batcher = Arc::clone(&batcher);
                let batches = Arc::clone(&batches);
                tokio::spawn(async move {
                    let out = batcher
                        .run(n, async |batch: &mut Batch<u32, u32>| {
                            doubled(&batches, batch).await
                        })
                        .await;
                    (n, out)
                })
            })
            .collect();
        for caller in callers {
            let (n, out) = caller.await.unwrap();
            assert_eq!(out, n * 2, "each caller gets its own operation's outcome");
        }
        let batches = batches.load(Ordering::Relaxed);
        assert!(
            batches < 100,
            "200 operations queued at once ran in {batches} batches"
        );
        assert!(!batcher.lock().leading);
        assert_eq!(batcher.queued(), 0);
    }

    #[tokio::test]
    async fn what_queued_while_a_batch_waited_to_run_joins_it() {
        let batcher = Arc::new(Batcher::<u32, u32>::default());
        let go = Arc::new(Notify::new());
        let ran = Arc::new(Mutex::new(Vec::new()));
        let spawn = |n: u32| {
            let (batcher, go, ran) = (Arc::clone(&batcher), Arc::clone(&go), Arc::clone(&ran));
            tokio::spawn(async move {
                batcher
                    .run(n, async |batch: &mut Batch<u32, u32>| {
                        // Waits for its resource before it asks for its operations.
                        go.notified().await;
                        let ops = batch.ops().to_vec();
                        ran.lock().unwrap().push(ops.clone());
                        ops
                    })
                    .await
            })
        };
        let callers: Vec<_> = (0..5).map(spawn).collect();
        while batcher.queued() < 4 {
            tokio::task::yield_now().await;
        }
        go.notify_one();
        for (n, caller) in callers.into_iter().enumerate() {
            assert_eq!(caller.await.unwrap(), n as u32);
        }
        assert_eq!(*ran.lock().unwrap(), vec![vec![0, 1, 2, 3, 4]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_dropped_halfway_passes_the_lead_and_its_batch_runs_again() {
        let batcher = Arc::new(Batcher::<u32, u32>::default());
        let release = Arc::new(Notify::new());
        let stuck = Arc::new(Notify::new());
        let ran = Arc::new(Mutex::new(Vec::new()));
        // 0's batch takes 1, 2 and 3 along and never ends; 0 is dropped; the others'
        // operations then run again.
        let taken = Arc::new(Mutex::new(Vec::new()));
        let spawn = |n: u32| {
            let (batcher, release, stuck, ran, taken) = (
                Arc::clone(&batcher),
                Arc::clone(&release),
                Arc::clone(&stuck),
                Arc::clone(&ran),
                Arc::clone(&taken),
            );
            tokio::spawn(async move {
                batcher
                    .run(n, async |batch: &mut Batch<u32, u32>| {
                        if n == 0 {
                            release.notified().await;
                            taken.lock().unwrap().extend(batch.ops().iter().copied());
                            stuck.notify_one();
                            std::future::pending::<()>().await;
                        }
                        let ops = batch.ops().to_vec();
                        ran.lock().unwrap().extend(ops.iter().copied());
                        ops.into_iter().map(|op| op * 2).collect()
                    })
                    .await
            })
        };
        let leader = spawn(0);
        while !batcher.lock().leading {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (1..4).map(spawn).collect();
        while batcher.queued() < 3 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        stuck.notified().await;
        // The three queued in any order (they were spawned on two threads).
        let mut taken = taken.lock().unwrap().clone();
        taken.sort_unstable();
        assert_eq!(taken, [0, 1, 2, 3], "0's batch took the queued ones along");
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let mut outs = Vec::new();
        for caller in waiting {
            outs.push(caller.await.unwrap());
        }
        assert_eq!(
            outs,
            vec![2, 4, 6],
            "the dropped batch's other callers are answered"
        );
        let mut again = ran.lock().unwrap().clone();
        again.sort_unstable();
        assert_eq!(again, vec![1, 2, 3], "each ran once more, 0 never");
        assert!(!batcher.lock().leading);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_gone_before_its_batch_is_left_out_of_it() {
        let batcher = Arc::new(Batcher::<u32, u32>::default());
        let release = Arc::new(Notify::new());
        let ran = Arc::new(Mutex::new(Vec::new()));
        let spawn = |n: u32| {
            let (batcher, release, ran) =
                (Arc::clone(&batcher), Arc::clone(&release), Arc::clone(&ran));
            tokio::spawn(async move {
                batcher
                    .run(n, async |batch: &mut Batch<u32, u32>| {
                        if n == 1 {
                            release.notified().await;
                        }
                        let ops = batch.ops().to_vec();
                        ran.lock().unwrap().extend(ops.iter().copied());
                        ops
                    })
                    .await
            })
        };
        let leader = spawn(1);
        while !batcher.lock().leading {
            tokio::task::yield_now().await;
        }
        let gone = spawn(2);
        while batcher.queued() < 1 {
            tokio::task::yield_now().await;
        }
        let stays = spawn(3);
        while batcher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        release.notify_one();
        assert_eq!(leader.await.unwrap(), 1);
        assert_eq!(stays.await.unwrap(), 3);
        assert_eq!(
            *ran.lock().unwrap(),
            vec![1, 3],
            "the operation of the caller that went away did not run"
        );
    }
}
