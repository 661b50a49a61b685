//! The one integration-test binary of `agenthub`: a module per area, `support` for helpers.

mod accounts;
mod admin;
mod api;
mod api_docs;
mod approvals;
mod authority;
mod cluster;
mod conformance;
mod content;
mod decisions;
mod deploy;
mod events;
mod gateway;
mod lifecycle;
mod python_agent;
mod scaleout;
mod store;
mod streams;
mod support;
mod task_end;
mod tasks;
mod tidy;
mod transport;
mod web;
