//! `agentd mcp-permission --socket PATH`: the MCP server Claude Code starts (from the
//! `--mcp-config` the `claude-code` executor writes) to ask for permission to use a
//! tool. It speaks MCP over stdio through `rmcp` (the official Rust MCP SDK) with one
//! tool, `approve`, and hands each call to the running step over the Unix socket PATH,
//! which answers `{"behavior": "allow", "updatedInput": …}` or `{"behavior": "deny",
//! "message": …}`; that answer is the tool's text result.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The permission tool's name (Claude Code calls it `mcp__agentd__approve`).
const TOOL: &str = "approve";

/// Serve the permission tool of a running claude-code step (started by Claude Code)
#[derive(Debug, Args)]
pub struct McpPermission {
    /// The step's permission socket
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

impl McpPermission {
    /// Serves on stdin/stdout until Claude Code closes them.
    pub async fn run(self) -> Result<()> {
        let server = PermissionServer {
            socket: self.socket,
        };
        let running = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|err| Error::other(format!("the MCP session did not start: {err}")))?;
        running
            .waiting()
            .await
            .map_err(|err| Error::other(format!("the MCP session ended badly: {err}")))?;
        Ok(())
    }
}

/// The MCP server: one tool, answered by the step behind `socket`.
#[derive(Debug, Clone)]
struct PermissionServer {
    socket: PathBuf,
}

impl ServerHandler for PermissionServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentd", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![approve_tool()]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        if request.name != TOOL {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`; this server has `{TOOL}`", request.name),
                None,
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let answer = self.ask(&arguments).await;
        Ok(CallToolResult::success(vec![ContentBlock::text(answer.to_string())]).into())
    }
}

/// The `approve` tool as Claude Code's `--permission-prompt-tool` calls it.
fn approve_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "tool_name": {"type": "string"},
            "input": {"type": "object"},
            "tool_use_id": {"type": "string"},
        },
        "required": ["tool_name", "input"],
    });
    let Value::Object(schema) = schema else {
        unreachable!("the schema is an object")
    };
    Tool::new(
        TOOL,
        "Asks agentd whether a tool call is allowed (the teammate's policy, or the teammate through AgentHub).",
        Arc::new(schema),
    )
}

impl PermissionServer {
    /// Hands the prompt to the step; a step that cannot be reached denies.
    async fn ask(&self, arguments: &Value) -> Value {
        match self.ask_step(arguments).await {
            Ok(answer) => answer,
            Err(err) => json!({
                "behavior": "deny",
                "message": format!("agentd could not decide on this tool call: {err}"),
            }),
        }
    }

    #[cfg(unix)]
    async fn ask_step(&self, arguments: &Value) -> std::io::Result<Value> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

        let mut stream = tokio::net::UnixStream::connect(&self.socket).await?;
        let mut prompt = json!({
            "tool_name": arguments["tool_name"],
            "input": arguments.get("input").cloned().unwrap_or(json!({})),
        })
        .to_string();
        prompt.push('\n');
        stream.write_all(prompt.as_bytes()).await?;
        stream.flush().await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }

    #[cfg(not(unix))]
    async fn ask_step(&self, _arguments: &Value) -> std::io::Result<Value> {
        Err(std::io::Error::other("no Unix sockets on this platform"))
    }
}
