//! What manager-lite promises about its state: every acknowledged write
//! survives kill -9 and a clean SIGTERM, and concurrent clients never get a
//! 5xx or lose an acknowledged result. Real server binary, real redb files in
//! temporary directories, real signals.
//!
//! (A data dir whose database has a newer schema is covered by the store's
//! unit tests: it cannot be forged here without redb.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod concurrency;
mod last_seen;
mod signals;
