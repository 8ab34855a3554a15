//! The files under `packaging/` work with the real tools: every systemd unit
//! passes `systemd-analyze verify` (with its ExecStart pointed at the real
//! binaries of this workspace), the config skeleton is accepted by the agent,
//! `install.sh` installs each mode into a temp root with the expected files
//! and modes (twice gives the same tree, an operator's config is kept,
//! uninstall removes, bad arguments exit 2 with the usage), and
//! `deb/build-deb.sh` builds binproxy and manager-lite packages that
//! `dpkg-deb` reads back with the promised layout. The units'
//! `manager-lite serve` command line is run for real.
//!
//! A missing tool (`systemd-analyze`, `dpkg-deb`) fails the test with what to
//! install; nothing is skipped. `tests/run.sh` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deb;
mod install;
mod units;
