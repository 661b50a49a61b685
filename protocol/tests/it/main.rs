//! Integration tests of the protocol crate: examples of every frame, golden vectors,
//! round trips, hostile input and the spec check.

mod bad_input;
mod examples;
mod malformed;
mod roundtrip;
mod spec;
mod vectors;
