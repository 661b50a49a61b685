//! The `manual` executor: the human does the work and finishes the step with
//! `agentd done ID --result …`, which reaches the running daemon on its control socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agenthub_protocol::LogStream;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::executor::{Failure, ManualResult, Outcome, StepCtx};

/// Manual steps waiting for `agentd done`.
#[derive(Debug, Clone, Default)]
pub struct Waiters(Arc<Mutex<HashMap<Uuid, oneshot::Sender<ManualResult>>>>);

impl Waiters {
    /// Hands a result to the waiting step; false when no manual step has that id.
    pub fn finish(&self, step_id: Uuid, result: ManualResult) -> bool {
        let waiter = self.0.lock().expect("waiters lock").remove(&step_id);
        match waiter {
            Some(waiter) => waiter.send(result).is_ok(),
            None => false,
        }
    }

    /// The manual steps currently waiting.
    pub fn waiting(&self) -> Vec<Uuid> {
        self.0
            .lock()
            .expect("waiters lock")
            .keys()
            .copied()
            .collect()
    }

    fn register(&self, step_id: Uuid) -> oneshot::Receiver<ManualResult> {
        let (sender, receiver) = oneshot::channel();
        self.0.lock().expect("waiters lock").insert(step_id, sender);
        receiver
    }

    fn forget(&self, step_id: Uuid) {
        self.0.lock().expect("waiters lock").remove(&step_id);
    }
}

/// Waits for the human's result.
pub async fn execute(ctx: &mut StepCtx, waiters: &Waiters) -> Result<Outcome, Failure> {
    let step_id = ctx.step_id();
    let receiver = waiters.register(step_id);
    let guard = Forget { waiters, step_id };
    let message = format!(
        "manual step \"{}\" is yours: do it, then run `agentd done {step_id} --result '…'`",
        ctx.step.title
    );
    tracing::info!(step.id = %step_id, "{message}");
    ctx.log(LogStream::Info, format!("{message}\n")).await;
    let result = tokio::select! {
        result = receiver => result
            .map_err(|_| Failure::retryable("agentd stopped before the manual step was done"))?,
        () = ctx.stopped() => return Err(Failure::retryable("the step was stopped")),
    };
    drop(guard);
    Ok(Outcome {
        result: result.result,
        summary: result.summary,
        files: Vec::new(),
        usage: None,
        outputs: Vec::new(),
    })
}

struct Forget<'a> {
    waiters: &'a Waiters,
    step_id: Uuid,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiters.forget(self.step_id);
    }
}
