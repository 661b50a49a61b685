//! `agentd done`: finish a manual step held by the running agentd.

use clap::Args;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cmd::Ctx;
use crate::control::{self, ControlAnswer, ControlRequest};
use crate::error::{Error, Result};

/// Finish a manual step with its result
#[derive(Debug, Args)]
pub struct Done {
    /// The step's id
    pub step_id: Uuid,
    /// The result: JSON, or plain text
    #[arg(long)]
    pub result: String,
    /// A short summary [default: the result when it is text]
    #[arg(long)]
    pub summary: Option<String>,
}

impl Done {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let (result, summary) = match serde_json::from_str::<Value>(&self.result) {
            Ok(value) => (value, self.summary),
            Err(_) => (
                json!({"text": self.result}),
                self.summary.or(Some(self.result.clone())),
            ),
        };
        let request = ControlRequest::Done {
            step_id: self.step_id,
            result,
            summary,
        };
        match control::request(&ctx.loaded.paths.control_socket(), &request).await? {
            Some(ControlAnswer::Done) => {
                ctx.print(&json!({"step_id": self.step_id, "handed_in": true}), || {
                    format!(
                        "step {} handed in; agentd submits it to the hub",
                        self.step_id
                    )
                });
                Ok(())
            }
            Some(ControlAnswer::Error { message }) => Err(Error::Refused {
                status: 404,
                code: "not_found".into(),
                message,
            }),
            Some(ControlAnswer::Status { .. }) => {
                Err(Error::other("unexpected answer from agentd"))
            }
            None => Err(Error::config(
                "agentd is not running, and only the running agentd holds the step; start it with `agentd run`",
            )),
        }
    }
}
