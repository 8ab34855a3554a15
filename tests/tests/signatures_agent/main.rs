//! Signed releases, end to end on the agent side: artifacts signed with the
//! real `minisign` CLI, the signature stored on the real `manager-lite`
//! (`PUT /api/v1/bins/{bin}/versions/{version}/signature`) and handed out in
//! the targets, and the real `binproxy run --config FILE --now` configured
//! with `trusted_keys` (and `allow_downgrade`) deciding whether to install.
//! Each test has its own manager, node directory and state directory, on
//! 127.0.0.1 only.
//!
//! Every refusal is checked the same way: exit code 1, the live file still
//! holds the previous version byte for byte, nothing was swapped (no kept
//! copy, no journal, no temp file beside the live one), the manager records
//! `failed` for the target with a message naming the problem, and still
//! shows the previous hash as installed.
//!
//! `minisign` must be installed (`tests/run.sh`, the README's test command,
//! installs it): without it these tests fail, they are not skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys;
mod refusals;
