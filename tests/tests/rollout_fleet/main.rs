//! Progressive rollouts (issue #4, contract `/tmp/api4.md`) against the real
//! `manager-lite`, driven by a simulated fleet of hundreds of node ids that
//! keepalive and "update" over real HTTP on 127.0.0.1 (see
//! `binproxy_tests::fleet`). Each test has its own manager, started with
//! `--rollout-interval 100ms`, and its own temp data dir. Nothing asserts a
//! duration: every wait is a bounded poll, every loop bounded in rounds and time.
//! A check that the rollout did not move first waits for two passes of the
//! rollout timer (`manager_rollout_evaluations_total`), never for a sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod errors;
mod operations;
mod pause;
mod restarts;
mod selection;
mod waves;
mod why_not;
