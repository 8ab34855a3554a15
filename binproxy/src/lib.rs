//! binproxy, the node agent: keeps each managed binary at the version
//! manager-lite targets for this host, and never leaves the host without a
//! working binary.
//!
//! A cycle ([`cycle`]) takes the [`lock`], finishes what the [`journal`] says
//! an earlier cycle left half-done, sends one keepalive through [`manager`]
//! (whose answer carries the targets), compares them with the local hashes
//! ([`hashcache`]), and for a bin off target: [`fetch`]es and [`verify`]s the
//! new file beside the live one (made from a patch or its zst form when the
//! target offers them: [`delivery`]), [`swap`]s it in with rename(2), restarts and
//! checks it ([`health`], [`hooks`]), and commits or rolls back. Outcomes go
//! to the manager through a durable outbox ([`report`]). [`mirror`]s serve
//! artifacts first, and signed targets while the manager is unreachable.
//! What must survive between runs is in [`state`]. [`status`] explains each
//! bin; [`daemon`] runs cycles in a loop; [`cli`] parses the command line;
//! [`tls`] says which
//! certificates HTTPS trusts. [`backoff`] keeps runs away from a manager that
//! failed or asked to wait; [`logging`] formats the log lines (with syslog
//! priorities under journald). [`bounds`] keeps every request, download and
//! cycle within its time limit; [`pipeline`] is a download's data path
//! (written on one thread, hashed on another); [`hygiene`] removes the temp
//! files a killed run left in the state directory. [`host`] is what the
//! keepalive says about this host; [`splay`] spreads a fleet's cycles;
//! [`outcome`] is how a bin and a run end; [`error`] says what went wrong.

pub mod backoff;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod credential;
pub mod cycle;
pub mod daemon;
pub mod delivery;
pub mod error;
pub mod fetch;
pub mod fsutil;
pub mod hashcache;
pub mod health;
pub mod hooks;
pub mod host;
pub mod hygiene;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod manager;
pub mod mirror;
pub mod outcome;
pub mod pipeline;
pub mod report;
pub mod splay;
pub mod state;
pub mod status;
pub mod swap;
pub mod tls;
pub mod verify;
