//! agentd integration tests: the real binary as a child process against a fake hub and
//! a fake Claude API on 127.0.0.1, and end to end against the real hub.

mod claude;
mod cli;
mod e2e;
mod ends;
mod hub;
mod notify;
mod quickstart;
mod run;
mod support;
mod tasks;
