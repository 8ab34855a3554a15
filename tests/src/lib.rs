//! The harness of the end-to-end tests: it runs the real `manager-lite` (and
//! `binproxy`) binaries as child processes on ephemeral loopback ports, with
//! their state in temporary directories, and talks to them over real HTTP.
//! Nothing is mocked.
//!
//! One module per role; the names used everywhere are re-exported here:
//!
//! - [`manager`]: [`Manager`], one `manager-lite serve` process (start,
//!   kill -9, SIGTERM, restart on the same data directory, its captured log).
//! - [`http`]: [`request`], a deliberately raw HTTP/1.1 client that sends the
//!   path exactly as given, and its [`Response`].
//! - [`build`]: where the binaries are, built once per test process.
//! - [`tempdir`]: [`TempDir`], removed on drop, and [`unique`] names.
//! - [`process`]: bounded waits on child processes and conditions.
//! - [`metrics`]: numbers off `GET /metrics`, and waiting on rollout passes.
//! - [`values`]: artifact bytes, sha256 hex, RFC 3339 shapes.
//! - [`agent`]: one node running the real `binproxy`.
//! - [`stub`]: a small HTTP server answering as a test's handler says;
//!   [`fake_manager`] is the misbehaving manager built on it.
//! - [`fleet`]: simulated fleets for the rollout tests and the benchmark.
//! - [`browser`]: a real headless Chromium over WebDriver, for the admin page;
//!   [`page`]: the admin page as its tests and benchmark drive it.
//! - [`minisign`]: keys and signatures made by the real `minisign` CLI.
//! - [`nginx`]: a real nginx on a loopback port (cache, static files, mirror).
//!
//! And what one group of test files shares (`tests/<name>/` or several
//! files):
//!
//! - [`api`]: the manager API tests (`manager_api/`).
//! - [`roles`]: the token, role and audit tests (`security_roles/`).
//! - [`raw_client`]: the hardening tests' client, lower than [`http`]: bytes
//!   as given, one answer at a time (`manager_hardening/`).
//! - [`rollout`]: the rollout tests over a simulated fleet (`rollout_fleet/`).
//! - [`packaging`]: the packaging tests (`packaging/`).
//! - [`signed`]: the agent's signature tests (`signatures_agent/`).
//! - [`mirror`]: the agent's mirror tests (`agent_mirrors.rs`): mirror trees
//!   written with the protocol's types, served by [`nginx`].
//! - [`delta`]: the agent's delta tests (`agent_delta.rs`): build-like
//!   artifacts, versions published with their patches and zst form, damaged
//!   patches, how a report says the bytes came.
//! - [`enrollment`], [`relay`]: the enrollment tests; [`tls`],
//!   [`tls_forward`]: the HTTPS tests; [`windows`]: the maintenance-window
//!   tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod api;
pub mod browser;
pub mod build;
pub mod delta;
pub mod enrollment;
pub mod fake_manager;
pub mod fleet;
pub mod http;
pub mod manager;
pub mod metrics;
pub mod minisign;
pub mod mirror;
pub mod nginx;
pub mod packaging;
pub mod page;
pub mod process;
pub mod raw_client;
pub mod relay;
pub mod roles;
pub mod rollout;
pub mod signed;
pub mod stub;
pub mod tempdir;
pub mod tls;
pub mod tls_forward;
pub mod values;
pub mod windows;

pub use build::{binproxy_bin, manager_bin};
pub use http::{query, request, status_counts, try_request, Response, IO_TIMEOUT};
pub use manager::{Manager, ManagerOptions, TokenSource, EXIT_TIMEOUT, START_TIMEOUT};
pub use process::{output_within, pin, wait_until};
pub use tempdir::{list_tree, names_starting, unique, TempDir};
pub use values::{artifact_bytes, is_rfc3339, sha256_hex};
