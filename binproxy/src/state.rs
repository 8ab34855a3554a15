//! What the agent remembers between runs, per bin: the hash cache, the
//! quarantined hashes, the last outcome, the kept versions in order, the
//! download back-off, and where the installed (or staged) version's target
//! and bytes came from. One JSON file, replaced atomically, and only written
//! when something changed (a cycle with nothing to do writes nothing).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::delivery::Delivery;
use crate::error::Result;
use crate::fsutil;
use crate::hashcache;

/// At most this many quarantined hashes are remembered per bin.
const MAX_QUARANTINED: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub bins: BTreeMap<String, BinState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinState {
    #[serde(default)]
    pub hash: Option<hashcache::Entry>,
    #[serde(default)]
    pub quarantined: Vec<Quarantined>,
    #[serde(default)]
    pub last: Option<Outcome>,
    /// Hashes of kept previous versions, oldest first.
    #[serde(default)]
    pub kept: Vec<String>,
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Newest signed timestamp installed: older signatures are refused.
    #[serde(default)]
    pub signed_timestamp: Option<u64>,
    /// Where the version binproxy last installed came from; it describes
    /// what is on disk only while the hash on disk is its `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_from: Option<Provenance>,
    /// Where the `.part` file downloaded ahead of the maintenance window
    /// (`prestage`) came from, for the update that installs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_from: Option<Provenance>,
    /// The hash cache of kept versions that served as a patch's base: a
    /// kept file is trusted as a base only for the hash it has, not the
    /// name it has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_hashes: Vec<hashcache::Entry>,
}

/// Where a version came from: who named it as the target, and who sent its
/// bytes (see [`crate::mirror`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub sha256: String,
    /// `manager`, or `mirror <base URL>` (the manager was unreachable).
    pub target: String,
    /// Where the bytes came from: a mirror's base URL, or the URL the
    /// target named (the manager's download route or its artifact URL), or
    /// of the patch or zst file that made them.
    pub artifact: String,
    /// How they came (absent: an agent before deltas, or not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// A hash that failed on this host; not tried again until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub sha256: String,
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// How the last attempt on a bin ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `success`, `failed` or `rolled_back`.
    pub status: String,
    pub target: String,
    pub message: String,
    /// Unix seconds.
    pub at: u64,
}

/// Downloads of `sha256` wait until `until` (unix seconds) after failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub sha256: String,
    pub failures: u32,
    pub until: u64,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now: when an update began, for its processing time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl State {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("state.json")
    }

    pub fn load(state_dir: &Path) -> Result<State> {
        Ok(fsutil::read_json(&Self::path(state_dir))?.unwrap_or_default())
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        fsutil::write_json(&Self::path(state_dir), self)
    }

    pub fn bin(&mut self, name: &str) -> &mut BinState {
        self.bins.entry(name.to_owned()).or_default()
    }
}

impl BinState {
    pub fn quarantine_of(&self, sha: &str) -> Option<&Quarantined> {
        self.quarantined.iter().find(|q| q.sha256 == sha)
    }

    pub fn quarantine(&mut self, sha: &str, reason: &str) {
        self.quarantined.retain(|q| q.sha256 != sha);
        self.quarantined.push(Quarantined {
            sha256: sha.to_owned(),
            reason: reason.to_owned(),
            at: now_unix(),
        });
        let excess = self.quarantined.len().saturating_sub(MAX_QUARANTINED);
        self.quarantined.drain(..excess);
    }

    pub fn record(&mut self, status: &str, target: &str, message: &str) {
        self.last = Some(Outcome {
            status: status.to_owned(),
            target: target.to_owned(),
            message: message.to_owned(),
            at: now_unix(),
        });
    }

    /// Seconds to wait before downloading `sha` again, if any.
    pub fn backoff_left(&self, sha: &str) -> Option<u64> {
        let b = self.backoff.as_ref().filter(|b| b.sha256 == sha)?;
        b.until.checked_sub(now_unix()).filter(|s| *s > 0)
    }

    /// Doubles the wait after each failed download of `sha`: 1, 2, 4 ... 60 min.
    pub fn back_off(&mut self, sha: &str) -> Duration {
        let failures = match &self.backoff {
            Some(b) if b.sha256 == sha => b.failures + 1,
            _ => 1,
        };
        let wait = Duration::from_secs(60 << (failures - 1).min(6)).min(Duration::from_secs(3600));
        self.backoff = Some(Backoff {
            sha256: sha.to_owned(),
            failures,
            until: now_unix() + wait.as_secs(),
        });
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_is_bounded_and_deduplicated() {
        let mut b = BinState::default();
        for i in 0..30 {
            b.quarantine(&format!("{i:064}"), "bad");
        }
        b.quarantine(&format!("{:064}", 29), "again");
        assert_eq!(b.quarantined.len(), MAX_QUARANTINED);
        assert_eq!(b.quarantined.last().unwrap().reason, "again");
        assert!(b.quarantine_of(&format!("{:064}", 0)).is_none());
    }

    #[test]
    fn backoff_grows_and_is_per_hash() {
        let mut b = BinState::default();
        assert_eq!(b.back_off("a"), Duration::from_secs(60));
        assert_eq!(b.back_off("a"), Duration::from_secs(120));
        assert!(b.backoff_left("a").is_some());
        assert!(b.backoff_left("b").is_none());
        assert_eq!(b.back_off("b"), Duration::from_secs(60));
        for _ in 0..10 {
            b.back_off("b");
        }
        assert_eq!(b.back_off("b"), Duration::from_secs(3600));
    }
}
