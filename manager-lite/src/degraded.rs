//! Whether a part of the manager's storage (the database, the artifact
//! directory) is failing, since when and why, and how often to try it again.
//!
//! A part that hit an I/O error (a full disk, most often) is *degraded*
//! until a later write to it works. [`Condition`] only records that; the
//! database handle ([`crate::store`]) and the artifact directory
//! ([`crate::artifacts`]) report into one each, and [`crate::api::health`] turns
//! them into the `/health` answer and the metrics. This module depends on
//! nothing else in the crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// While a part is degraded, at most one write a second tries it again; the
/// others are refused at once with the reason (and `Retry-After` this long).
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// What went wrong with a part, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    pub since: SystemTime,
}

#[derive(Default)]
struct State {
    problem: Option<Problem>,
    /// When a write last tried the part while it was degraded.
    last_try: Option<Instant>,
}

/// A write refused without trying: the part is degraded and its retry is
/// not due yet. `reason` is the failure that degraded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub part: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} degraded: {}", self.part, self.reason)
    }
}

impl std::error::Error for Refused {}

/// The health of one storage part.
pub struct Condition {
    /// `database` or `artifacts`: the metrics label.
    pub part: &'static str,
    state: Mutex<State>,
    failures: AtomicU64,
}

impl Condition {
    pub fn new(part: &'static str) -> Condition {
        Condition {
            part,
            state: Mutex::default(),
            failures: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write failed on our side: the part is degraded, for `reason`.
    pub fn failed(&self, reason: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        if state.problem.is_none() {
            log::error!("{}: degraded: {reason}", self.part);
        }
        let since = state
            .problem
            .as_ref()
            .map_or_else(SystemTime::now, |p| p.since);
        state.problem = Some(Problem { reason, since });
        state.last_try = Some(Instant::now());
    }

    /// A write went through: the part is healthy (again).
    pub fn worked(&self) {
        let mut state = self.state();
        if let Some(p) = state.problem.take() {
            let down = SystemTime::now()
                .duration_since(p.since)
                .unwrap_or_default();
            log::warn!(
                "{}: writes work again after {} degraded",
                self.part,
                humantime::format_duration(Duration::from_secs(down.as_secs()))
            );
        }
        state.last_try = None;
    }

    /// Whether a write may try the part now: always while healthy; while
    /// degraded, once every [`RETRY_EVERY`], else [`Refused`] with the reason.
    pub fn may_try(&self) -> Result<(), Refused> {
        let mut state = self.state();
        let Some(problem) = &state.problem else {
            return Ok(());
        };
        if state.last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return Err(Refused {
                part: self.part,
                reason: problem.reason.clone(),
            });
        }
        state.last_try = Some(Instant::now());
        Ok(())
    }

    /// The current problem, if degraded.
    pub fn problem(&self) -> Option<Problem> {
        self.state().problem.clone()
    }

    /// Writes that failed on this part since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_until_a_write_works_and_tried_once_a_second() {
        let c = Condition::new("database");
        assert!(c.may_try().is_ok());
        assert!(c.problem().is_none());
        c.failed("disk full".into());
        let first = c.problem().unwrap();
        assert_eq!(first.reason, "disk full");
        // Just failed: the next write is refused with the reason.
        assert_eq!(c.may_try().map_err(|r| r.reason), Err("disk full".into()));
        c.failed("still full".into());
        let second = c.problem().unwrap();
        assert_eq!(second.reason, "still full");
        assert_eq!(
            second.since, first.since,
            "degraded since the first failure"
        );
        assert_eq!(c.failures(), 2);
        c.worked();
        assert!(c.problem().is_none());
        assert!(c.may_try().is_ok());
    }
}
