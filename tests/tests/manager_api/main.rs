//! Every endpoint of manager-lite's HTTP API, its normal answer and each of its
//! documented errors, against the real server binary (see `/tmp/api-contract.md`).
//! Each test starts its own server on an ephemeral loopback port with its own
//! temporary data directory, so the tests run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod artifacts;
mod auth;
mod bad_names;
mod nodes;
mod progress;
