//! [`App`]: everything an endpoint needs, built once by [`crate::serve`] and
//! shared by every request (the store, the artifact directory, the tokens,
//! the limits, the metrics and the alerts).

use binproxy_protocol::ProgressStatus;

use crate::api::auth::Auth;
use crate::artifacts::Artifacts;
use crate::rollout;
use crate::store::Store;

/// Everything a handler needs.
pub struct App {
    pub store: Store,
    pub artifacts: Artifacts,
    pub auth: Auth,
    pub max_artifact_size: u64,
    /// `--keep-versions`: pruned after each upload; `None`: keep all.
    pub keep_versions: Option<usize>,
    /// When each bin's releases were last recounted after a report.
    pub recounted: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Release counts kept between recounts.
    pub counts: rollout::Counts,
    pub metrics: crate::metrics::Metrics,
    pub alerts: crate::alerts::Alerts,
}

/// Successes recount a bin's releases at most this often (a recount is
/// O(nodes)); failures recount at once, so a pause is never late.
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl App {
    /// Whether a report of `status` for `bin` should recount its releases now.
    pub fn recount_due(&self, bin: &str, status: ProgressStatus) -> bool {
        let failure = matches!(status, ProgressStatus::Failed | ProgressStatus::RolledBack);
        let mut last = self
            .recounted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = failure || last.get(bin).is_none_or(|t| t.elapsed() >= RECOUNT_EVERY);
        if due {
            last.insert(bin.to_owned(), std::time::Instant::now());
        }
        due
    }
}
