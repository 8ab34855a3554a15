//! How things end: a bin's [`BinResult`] after a cycle or a command, the
//! process's [`Exit`] status, and the one [`logging::Action`] line that
//! closes every action on a bin.

use std::time::Duration;

use crate::delivery::Delivery;
use crate::logging;

/// How a bin ended a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinResult {
    OnTarget,
    NoTarget,
    /// Not on target, deliberately left alone (maintenance window, stop).
    Skipped(String),
    /// Not on target because a failure is still in force: the target is
    /// quarantined here, or its download backs off. A failure for the exit
    /// status (1), on every run until it clears, so monitoring keeps seeing it.
    Held(String),
    Updated,
    Failed(String),
    RolledBack(String),
}

impl BinResult {
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::RolledBack(_) | Self::Held(_))
    }
}

/// The process exit codes of `run` and `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// All bins on target or nothing to do, or another run holds the lock.
    Done = 0,
    /// A bin failed or was rolled back.
    Failed = 1,
    /// Usage or config error.
    Usage = 2,
    /// The manager could not be reached; nothing changed on disk, unless a
    /// mirror's signed target was installed instead (`Failed` wins over this
    /// when one failed or rolled back).
    Unreachable = 69,
}

/// The one line ending an action on a bin (see [`logging::Action`]); a bin
/// found on its target, or with none, is a `check`. `delivery`: how an
/// update's bytes came.
pub fn log_action(
    bin: &str,
    action: &str,
    from: Option<&str>,
    to: Option<&str>,
    result: &BinResult,
    took: Duration,
    delivery: Option<&Delivery>,
) {
    use log::Level::{Error as E, Info, Warn};
    let (action, outcome, level, reason) = match result {
        BinResult::OnTarget => ("check", "on_target", Info, None),
        BinResult::NoTarget => ("check", "no_target", Info, None),
        BinResult::Skipped(why) => (action, "skipped", Warn, Some(why.as_str())),
        BinResult::Held(why) => (action, "skipped", E, Some(why.as_str())),
        BinResult::Updated => (action, "ok", Info, None),
        BinResult::Failed(why) => (action, "failed", E, Some(why.as_str())),
        BinResult::RolledBack(why) => (action, "rolled_back", E, Some(why.as_str())),
    };
    let line = logging::Action {
        bin,
        action,
        from,
        to,
        outcome,
        took,
        delivery,
        reason,
    };
    log::log!(level, "{line}");
}
