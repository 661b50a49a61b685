//! `agentd status`: hub, connection state, current steps, last seq.

use clap::Args;
use serde_json::json;

use crate::cmd::Ctx;
use crate::control::{self, ControlAnswer, ControlRequest};
use crate::error::{Error, Result};
use crate::state::State;

/// Show whether agentd runs, its hub, connection, current steps and last seq
#[derive(Debug, Args)]
pub struct Status {}

impl Status {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.loaded.config.hub.clone();
        let answer =
            control::request(&ctx.loaded.paths.control_socket(), &ControlRequest::Status).await?;
        match answer {
            Some(ControlAnswer::Status { status }) => {
                let value = json!({"running": true, "daemon": status});
                ctx.print(&value, || human(&status));
                Ok(())
            }
            Some(ControlAnswer::Error { message }) => Err(Error::other(message)),
            Some(ControlAnswer::Done) => Err(Error::other("unexpected answer from agentd")),
            None => {
                let last_seq = match &hub {
                    Some(hub) => {
                        State::open(&ctx.loaded.paths.state_dir, &ctx.loaded.paths.work_root())?
                            .position(hub)?
                    }
                    None => 0,
                };
                let logged_in = ctx.token().is_ok();
                ctx.print(
                    &json!({"running": false, "hub": hub, "logged_in": logged_in, "last_seq": last_seq}),
                    || {
                        format!(
                            "agentd is not running\nhub:       {}\nlogged in: {}\nlast seq:  {last_seq}\nstart it with `agentd run` or `agentd service install`",
                            hub.as_deref().unwrap_or("(none; run `agentd login --hub URL`)"),
                            if logged_in { "yes" } else { "no" }
                        )
                    },
                );
                Ok(())
            }
        }
    }
}

fn human(status: &serde_json::Value) -> String {
    let mut text = format!(
        "agentd is running (pid {})\nhub:       {}\nagent:     {}\nconnected: {}\nlast seq:  {}\nundelivered results: {}\n",
        status["pid"],
        status["hub"].as_str().unwrap_or_default(),
        status["agent_name"].as_str().unwrap_or("?"),
        if status["connected"].as_bool() == Some(true) {
            "yes"
        } else {
            "no (reconnecting)"
        },
        status["last_seq"],
        status["unacknowledged_results"],
    );
    let steps = status["steps"].as_array().cloned().unwrap_or_default();
    if steps.is_empty() {
        text.push_str("steps:     none running\n");
    } else {
        text.push_str("steps:\n");
        for step in steps {
            text.push_str(&format!(
                "  {}  {} (attempt {}, {}, {} s)\n",
                step["step_id"].as_str().unwrap_or_default(),
                step["title"].as_str().unwrap_or_default(),
                step["attempt"],
                step["executor"].as_str().unwrap_or_default(),
                step["running_secs"],
            ));
        }
    }
    text
}
