//! The AgentHub hub: the source of truth of a team's tasks, steps, agents and approvals,
//! served over a REST API and the agent WebSocket gateway.

pub mod accounts;
pub mod agents;
pub mod approvals;
pub mod bus;
pub mod ctx;
pub mod error;
pub mod events;
pub mod schema;
pub mod store;
pub mod tasks;
