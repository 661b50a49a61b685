//! agentd: the teammate's agent daemon and CLI. It holds one WebSocket to the hub,
//! executes the steps pushed to this machine's agent, and lets its human approve,
//! answer and create work from the command line.

pub mod calendar;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod error;
pub mod executor;
pub mod hub;
pub mod intel;
pub mod notify;
pub mod progress;
pub mod state;
pub mod tls;

pub use error::{Error, Result};

/// `agentd/<version>`, sent in `hello` and as the HTTP user agent.
pub const AGENT_VERSION: &str = concat!("agentd/", env!("CARGO_PKG_VERSION"));
