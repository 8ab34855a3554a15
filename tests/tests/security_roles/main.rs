//! Named admin tokens with roles, four-eyes approval and the audit log of
//! manager-lite (issue #5 part 1, contract `/tmp/api5a.md`), against the real
//! server binary on 127.0.0.1 over real HTTP.
//!
//! The core is a table: every admin endpoint × every kind of caller (no token,
//! a wrong token, the bootstrap admin, a named admin, a publisher, an approver,
//! a viewer) must answer 2xx, 401 or 403 exactly as the contract's permission
//! table says. Each call gets its own fixture (a fresh bin, a release in the
//! state the operation needs, a fresh pin or token), so a refused call can be
//! checked to have changed nothing and an allowed one can only succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod cli;
mod fixtures;
mod four_eyes;
mod permissions;
mod table;
mod tokens;
