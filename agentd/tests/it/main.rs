//! agentd integration tests: the real binary as a child process against a fake hub and
//! a fake Claude API on 127.0.0.1, and end to end against the real hub.

mod cancel;
mod claude;
mod claude_code;
mod claude_code_real;
mod cli;
mod e2e;
mod ends;
mod executors;
mod failover;
mod files;
mod full_text;
mod hub;
mod inbox;
mod meetings;
mod notify;
mod plans;
mod quickstart;
mod run;
mod service;
mod support;
mod tasks;
mod tls;
