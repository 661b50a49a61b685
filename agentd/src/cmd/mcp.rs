//! `agentd mcp-permission --socket PATH`: the MCP server Claude Code starts (from the
//! `--mcp-config` the `claude-code` executor writes) to ask for permission to use a
//! tool. It speaks MCP over stdio (JSON-RPC 2.0, one message a line) with one tool,
//! `approve`, and hands each call to the running step over the Unix socket PATH, which
//! answers `{"behavior": "allow", "updatedInput": …}` or `{"behavior": "deny",
//! "message": …}`; that answer is the tool's text result.

use std::path::PathBuf;

use std::io::{BufRead, BufReader, Write};

use clap::Args;
use serde_json::{Value, json};

use crate::error::Result;

/// The MCP protocol version answered when the client names none.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// Serve the permission tool of a running claude-code step (started by Claude Code)
#[derive(Debug, Args)]
pub struct McpPermission {
    /// The step's permission socket
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

impl McpPermission {
    /// Serves until stdin ends (a small process of its own: plain blocking I/O).
    pub fn run(self) -> Result<()> {
        let stdin = std::io::stdin();
        let mut stdout = std::io::stdout();
        for line in stdin.lock().lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let Some(reply) = self.handle(&line) else {
                continue;
            };
            writeln!(stdout, "{reply}")?;
            stdout.flush()?;
        }
        Ok(())
    }

    /// The answer to one JSON-RPC message; `None` for notifications.
    fn handle(&self, line: &str) -> Option<Value> {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            return Some(error(Value::Null, -32700, "parse error"));
        };
        let id = message.get("id").cloned()?;
        let method = message["method"].as_str().unwrap_or_default();
        let params = &message["params"];
        let result = match method {
            "initialize" => json!({
                "protocolVersion": params["protocolVersion"].as_str().unwrap_or(PROTOCOL_VERSION),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "agentd", "version": env!("CARGO_PKG_VERSION")},
            }),
            "ping" => json!({}),
            "tools/list" => json!({"tools": [{
                "name": "approve",
                "description": "Asks agentd whether a tool call is allowed (the teammate's policy, or the teammate through AgentHub).",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "tool_name": {"type": "string"},
                        "input": {"type": "object"},
                        "tool_use_id": {"type": "string"},
                    },
                    "required": ["tool_name", "input"],
                },
            }]}),
            "tools/call" if params["name"] == "approve" => {
                let answer = self.ask(&params["arguments"]);
                json!({"content": [{"type": "text", "text": answer.to_string()}]})
            }
            "tools/call" => return Some(error(id, -32602, "unknown tool")),
            _ => return Some(error(id, -32601, "method not found")),
        };
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    /// Hands the prompt to the step; a step that cannot be reached denies.
    fn ask(&self, arguments: &Value) -> Value {
        match self.ask_step(arguments) {
            Ok(answer) => answer,
            Err(err) => json!({
                "behavior": "deny",
                "message": format!("agentd could not decide on this tool call: {err}"),
            }),
        }
    }

    #[cfg(unix)]
    fn ask_step(&self, arguments: &Value) -> std::io::Result<Value> {
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket)?;
        let prompt = json!({
            "tool_name": arguments["tool_name"],
            "input": arguments.get("input").cloned().unwrap_or(json!({})),
        });
        writeln!(stream, "{prompt}")?;
        stream.flush()?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }

    #[cfg(not(unix))]
    fn ask_step(&self, _arguments: &Value) -> std::io::Result<Value> {
        Err(std::io::Error::other("no Unix sockets on this platform"))
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}
