//! `agenthub`: the hub binary.
fn main() {}
