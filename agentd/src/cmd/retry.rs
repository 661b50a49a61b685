//! `agentd retry`: run a failed or skipped step again (`POST /v1/steps/{id}/retry`).

use clap::Args;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cmd::Ctx;
use crate::error::Result;

/// Run a failed or skipped step again (allowed for the task's creator and admins)
#[derive(Debug, Args)]
pub struct Retry {
    /// The step's id (see `agentd task show TASK_ID`)
    pub step_id: Uuid,
    /// Why, for the task's timeline
    #[arg(long)]
    pub reason: Option<String>,
}

impl Retry {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let body = match &self.reason {
            Some(reason) => json!({"reason": reason}),
            None => json!({}),
        };
        let task: Value = ctx
            .hub()?
            .post(&format!("v1/steps/{}/retry", self.step_id), &body)
            .await?;
        ctx.print(&task, || retried(&task, &self.step_id.to_string()));
        Ok(())
    }
}

/// "step `draft` is ready again (attempt 2); task "Quarterly report" is active".
fn retried(task: &Value, step_id: &str) -> String {
    let step = task["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|step| step["id"] == step_id));
    let task_part = format!(
        "task \"{}\" is {}",
        task["title"].as_str().unwrap_or_default(),
        task["status"].as_str().unwrap_or("?")
    );
    match step {
        Some(step) => format!(
            "step `{}` is {} again (attempt {}); {task_part}",
            step["key"].as_str().unwrap_or_default(),
            step["status"].as_str().unwrap_or("?"),
            step["attempt"]
        ),
        None => format!("step {step_id} retried; {task_part}"),
    }
}
