//! `agentd status`: hub, connection state, the agent's state at the hub, current steps,
//! last seq.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::cmd::Ctx;
use crate::control::{self, ControlAnswer, ControlRequest};
use crate::error::{Error, Result};
use crate::state::State;

/// Show whether agentd runs, its hub, connection, the agent's state at the hub
/// (offline, idle, working, blocked, waiting), current steps and last seq
#[derive(Debug, Args)]
pub struct Status {}

impl Status {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.loaded.config.hub.clone();
        let answer =
            control::request(&ctx.loaded.paths.control_socket(), &ControlRequest::Status).await?;
        let at_hub = match (&hub, ctx.token()) {
            (Some(_), Ok(_)) => Some(agent_at_hub(&ctx).await),
            _ => None,
        };
        let at_hub_line = at_hub.as_ref().map(describe_at_hub).unwrap_or_default();
        match answer {
            Some(ControlAnswer::Status { status }) => {
                let value = json!({"running": true, "daemon": status, "agent": at_hub});
                ctx.print(&value, || human(&status, &at_hub_line));
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
                    &json!({"running": false, "hub": hub, "logged_in": logged_in, "last_seq": last_seq, "agent": at_hub}),
                    || {
                        format!(
                            "agentd is not running\nhub:       {}\nlogged in: {}\n{at_hub_line}last seq:  {last_seq}\nstart it with `agentd run` or `agentd service install`",
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

/// How long `agentd status` waits for the hub.
const HUB_TIMEOUT: Duration = Duration::from_secs(5);

/// This agent as the hub sees it: `{"name", "status", "online", "holds",
/// "other_machines"}` (the member's other agents and what they hold), or `{"error"}` when
/// the hub cannot say.
async fn agent_at_hub(ctx: &Ctx) -> Value {
    let lookup = async {
        let hub = ctx.hub()?;
        let me = hub.me().await?;
        let Some(agent_id) = me.agent_id else {
            return Err(Error::config(
                "the stored token is not an agent token; run `agentd login` with the agent's aha_… token",
            ));
        };
        let agent = hub.get::<Value>(&format!("v1/agents/{agent_id}")).await?;
        // The member's other machines: a step assigned to the member goes to any of them.
        // Best effort: without the list the agent's own state is still worth showing.
        let all = hub.get::<Value>("v1/agents").await.unwrap_or_default();
        let siblings: Vec<Value> = all["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|other| other["owner"] == agent["owner"] && other["id"] != agent["id"])
            .map(|other| {
                json!({
                    "name": other["name"],
                    "status": other["status"],
                    "online": other["online"],
                    "holds": other["holds"],
                })
            })
            .collect();
        Ok((agent, siblings))
    };
    match tokio::time::timeout(HUB_TIMEOUT, lookup).await {
        Ok(Ok((agent, siblings))) => json!({
            "name": agent["name"],
            "status": agent["status"],
            "online": agent["online"],
            "holds": agent["holds"],
            "other_machines": siblings,
        }),
        Ok(Err(err)) => json!({"error": err.to_string()}),
        Err(_) => {
            json!({"error": format!("the hub did not answer within {} s", HUB_TIMEOUT.as_secs())})
        }
    }
}

/// The hub's view: this agent's state, then the member's other machines and what each
/// holds.
fn describe_at_hub(at_hub: &Value) -> String {
    let mut text = format!("state:     {}\n", describe(at_hub));
    let others = at_hub["other_machines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !others.is_empty() {
        text.push_str("other machines of this member:\n");
        for other in others {
            text.push_str(&format!(
                "  {}  {}\n",
                other["name"].as_str().unwrap_or("?"),
                other["status"].as_str().unwrap_or("?"),
            ));
            for step in other["holds"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "    holds {}  {} ({})\n",
                    step["step_id"].as_str().unwrap_or_default(),
                    step["title"].as_str().unwrap_or_default(),
                    step["status"].as_str().unwrap_or_default(),
                ));
            }
        }
    }
    text
}

/// "working (at the hub)", or why the hub cannot say.
fn describe(at_hub: &Value) -> String {
    match (at_hub["status"].as_str(), at_hub["error"].as_str()) {
        (Some(status), _) => format!("{status} (at the hub)"),
        (None, Some(error)) => format!("unknown: {error}"),
        (None, None) => "unknown".to_string(),
    }
}

fn human(status: &Value, at_hub_line: &str) -> String {
    let mut text = format!(
        "agentd is running (pid {})\nhub:       {}\nagent:     {}\n{at_hub_line}connected: {}\nlast seq:  {}\nundelivered results: {}\n",
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
