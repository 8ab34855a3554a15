//! Operators' actions on a release's state (approve, pause, resume,
//! promote, cancel) and which of them, with rollback, a release accepts
//! now: the one answer both the API and the admin page's buttons use.

use binproxy_protocol::{Release, ReleaseOp, ReleaseStatus};
use std::fmt;
use std::time::SystemTime;

use super::{policy, Change};

/// Why an operator's action on a release is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not allowed in the release's current state.
    State {
        id: u64,
        status: ReleaseStatus,
        op: ReleaseOp,
    },
    /// An action that makes a new release (a rollback), not a state change.
    NotAStateChange(ReleaseOp),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::State { id, status, op } => {
                write!(f, "release {id} is {}: cannot {op} it", status.as_str())
            }
            Refused::NotAStateChange(op) => {
                write!(f, "{op} is not an operation on a release's state")
            }
        }
    }
}

impl std::error::Error for Refused {}

/// An operator's action on a release: the change, or why it is not allowed.
/// `failures` is the release's failure count now (a resume or promote
/// accepts those, so only new failures can pause it again).
pub fn operate(
    r: &mut Release,
    op: ReleaseOp,
    actor: &str,
    failures: u64,
    now: SystemTime,
) -> Result<Change, Refused> {
    use ReleaseOp::{Approve, Cancel, Pause, Promote, Resume, Rollback};
    use ReleaseStatus::{Cancelled, Paused, PendingApproval, RollingOut};
    let refuse = |r: &Release| {
        Err(Refused::State {
            id: r.id,
            status: r.status,
            op,
        })
    };
    match (op, r.status) {
        (Approve, PendingApproval) => {
            r.status = RollingOut;
            r.wave = 0;
            r.percent = r.waves.first().map_or(100, |w| w.percent);
        }
        (Pause, RollingOut) => {
            r.status = Paused;
            r.paused_reason = Some(format!("paused by {actor}"));
        }
        (Resume, Paused) => {
            r.status = RollingOut;
            r.paused_reason = None;
            r.failure_baseline = failures;
        }
        (Promote, RollingOut | Paused) => {
            r.status = RollingOut;
            r.paused_reason = None;
            r.failure_baseline = failures;
            r.wave = r.waves.len().saturating_sub(1);
            r.percent = 100;
            r.wave_started_at = Some(crate::time::rfc3339_millis(now));
        }
        (Cancel, PendingApproval | RollingOut | Paused) => r.status = Cancelled,
        // A rollback makes a new release: the handler does it, not this.
        (Rollback, _) => return Err(Refused::NotAStateChange(op)),
        (Approve | Pause | Resume | Promote | Cancel, _) => return refuse(r),
    }
    Ok(Change::Event(op.past_tense().into(), None))
}

/// The operations `r` accepts in its state now, asked of [`operate`] and
/// of the rollback's own check: what the page offers is what the API
/// would do (the caller's role aside).
pub fn allowed_ops(r: &Release, now: SystemTime) -> Vec<ReleaseOp> {
    use ReleaseOp::{Approve, Cancel, Pause, Promote, Resume, Rollback};
    let mut ops: Vec<ReleaseOp> = [Approve, Pause, Resume, Promote, Cancel]
        .into_iter()
        .filter(|&op| operate(&mut r.clone(), op, "", 0, now).is_ok())
        .collect();
    if policy::rollback_refusal(r).is_none() {
        ops.push(Rollback);
    }
    ops
}
