//! The AgentHub hub: the source of truth of a team's tasks, steps, agents and approvals,
//! served over a REST API and the agent WebSocket gateway.

pub mod a2a;
pub mod accounts;
pub mod admin;
pub mod agents;
pub mod api;
pub mod approvals;
pub mod bus;
pub mod config;
pub mod content;
pub mod ctx;
pub mod error;
pub mod events;
pub mod files;
pub mod gateway;
pub mod metrics;
pub mod notifications;
pub mod schema;
pub mod store;
pub mod tasks;
pub mod web;
pub mod webhooks;
pub mod worker;
