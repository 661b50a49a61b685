//! The one integration-test binary of `agenthub`: a module per area, `support` for helpers.

mod admin;
mod api;
mod deploy;
mod scaleout;
mod store;
mod support;
mod tidy;
