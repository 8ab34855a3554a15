//! [`App`]: everything an endpoint needs, built once by [`crate::serve`] and
//! shared by every request (the store, the artifact directory, the tokens,
//! the limits, the metrics and the alerts).

use binproxy_protocol::ProgressStatus;

use binproxy_protocol::Node;

use crate::api::auth::Auth;
use crate::artifacts::Artifacts;
use crate::rollout::{self, targets, targets::Decision};
use crate::store::{Store, StoreError};

/// Everything a handler needs.
pub struct App {
    pub store: Store,
    pub artifacts: Artifacts,
    pub auth: Auth,
    pub max_artifact_size: u64,
    /// `--keep-versions`: pruned after each upload; `None`: keep all.
    pub keep_versions: Option<usize>,
    /// `--artifact-url-base`: where targets send agents for the bytes.
    pub artifact_url_base: Option<String>,
    /// When each bin's releases were last recounted after a report.
    pub recounted: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Release counts kept between recounts.
    pub counts: rollout::Counts,
    pub metrics: crate::metrics::Metrics,
    pub alerts: crate::alerts::Alerts,
    /// Versions waiting for their zst form and patches (`crate::deltas`).
    pub deltas: crate::deltas::Queue,
    /// The last answer of `GET /api/v1/fleet` (`crate::api::fleet`).
    pub fleet: Recent,
}

/// An answer made at most once per `ttl`, however many ask for it: a
/// whole-fleet count that many open admin pages poll.
#[derive(Default)]
pub struct Recent {
    last: std::sync::Mutex<Option<(std::time::Instant, Vec<u8>)>>,
}

impl Recent {
    /// The answer of less than `ttl` ago, or a new one from `make`.
    pub fn get<E>(
        &self,
        ttl: std::time::Duration,
        make: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, body)) = last.as_ref() {
            if at.elapsed() < ttl {
                return Ok(body.clone());
            }
        }
        let body = make()?;
        *last = Some((std::time::Instant::now(), body.clone()));
        Ok(body)
    }
}

impl crate::deltas::Parts for App {
    fn store(&self) -> &Store {
        &self.store
    }
    fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }
    fn queue(&self) -> &crate::deltas::Queue {
        &self.deltas
    }
}

/// Successes recount a bin's releases at most this often (a recount is
/// O(nodes)); failures recount at once, so a pause is never late.
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl App {
    /// The target of `node` for `bin` ([`targets::decide`]), its URL on
    /// `--artifact-url-base` when set: the bytes are content-addressed, so
    /// any server holding `<sha256>` serves the same artifact.
    pub fn decide(
        &self,
        node: &Node,
        bin: &str,
        arch: Option<&str>,
    ) -> Result<Decision, StoreError> {
        let mut decision = targets::decide(&self.store, node, bin, arch)?;
        if let (Some(base), Some(t)) = (&self.artifact_url_base, &mut decision.target) {
            t.url = format!("{base}{}", t.sha256sum);
            for d in &mut t.deltas {
                d.url = format!("{base}{}", d.sha256);
            }
            if let Some(z) = &mut t.zst {
                z.url = format!("{base}{}", z.sha256);
            }
        }
        Ok(decision)
    }

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
